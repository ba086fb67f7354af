from pathlib import Path

import pytest

from rag.config import Settings
from rag.errors import ConfigError


def test_precedence_file_then_env_then_overrides(tmp_path, monkeypatch):
    cfg = tmp_path / "rag.toml"
    cfg.write_text('top_k = 7\nmodel = "qwen2.5-0.5b"\nindex_dir = "/tmp/x"\n')
    monkeypatch.setenv("RAG_TOP_K", "4")
    s = Settings.load(cfg)
    assert (s.top_k, s.model, s.index_dir) == (4, "qwen2.5-0.5b", Path("/tmp/x"))
    assert Settings.load(cfg, top_k=9).top_k == 9


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"top_k": 0}, "top_k=0"),
        ({"chunk_size": 5}, "chunk_size=5"),
        ({"min_score": 2.0}, "min_score=2.0"),
        ({"model": "llama-9000"}, "qwen2.5-1.5b"),
        ({"retrieval": "sparse"}, "use hybrid, dense"),
        ({"context": "page"}, "use auto, corpus, chunk, sentences"),
        ({"answer_style": "long"}, "use sentence, short"),
        ({"support": "vibes"}, "use lexical, embedding"),
        ({"embed_backend": "tpu"}, "use torch, onnx, onnx-int8"),
        ({"claim_threshold": 1.5}, "claim_threshold=1.5"),
        ({"claim_threshold": -0.1}, "claim_threshold=-0.1"),
        ({"claim_check": "maybe"}, "claim_check='maybe'"),
        ({"embed_model": "e5-large"}, "use all-MiniLM-L6-v2, multilingual-e5-small"),
    ],
)
def test_bad_values_fail_at_construction_naming_valid_choices(changes, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        Settings(**changes)


def test_model_may_be_a_gguf_path_or_server_url():
    assert Settings(model="/models/x.gguf").model.endswith(".gguf")
    assert Settings(model="http://127.0.0.1:8000/v1").model.startswith("http")


def test_unknown_and_malformed_settings(tmp_path, monkeypatch):
    cfg = tmp_path / "rag.toml"
    cfg.write_text("topk = 3\n")
    with pytest.raises(ConfigError, match="unknown setting.*topk"):
        Settings.load(cfg)
    monkeypatch.setenv("RAG_TOP_K", "many")
    with pytest.raises(ConfigError, match="top_k='many'"):
        Settings.load()


def test_with_revalidates_and_reports_carry_every_setting():
    s = Settings()
    assert s.with_(top_k=3).top_k == 3 and s.top_k == 5
    with pytest.raises(ConfigError, match="top_k=0"):
        s.with_(top_k=0)
    with pytest.raises(ConfigError, match="unknown setting.*topk"):
        s.with_(topk=3)
    data = s.to_json()
    assert set(data) == set(Settings.model_fields)  # a new setting cannot drop out
    assert isinstance(data["index_dir"], str)


def test_rag_config_prints_each_setting_and_where_it_came_from(tmp_path, monkeypatch, capsys):
    import json

    from rag.app.cli import main

    cfg = tmp_path / "rag.toml"
    cfg.write_text('top_k = 7\nretrieval = "dense"\n')
    monkeypatch.setenv("RAG_TOP_K", "4")
    assert main(["--config", str(cfg), "config", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["top_k"] == {"value": 4, "source": "environment"}
    assert shown["retrieval"] == {"value": "dense", "source": "file"}
    assert shown["context"] == {"value": "auto", "source": "default"}
    assert shown["api_key"] == {"value": None, "source": "default"}  # secrets: set or not, never the value
    assert main(["--config", str(cfg), "config"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("retrieval "))
    assert line.split()[-1] == "file"


SECRET_VALUES = {"llm_api_key": "sk-upstream-7d1f", "api_key": "alice=k-alice-93c2,bob=k-bob-5e8a",
                 "auth": "alice:pw-alice-04be"}


def test_secrets_are_settings_and_never_shown(tmp_path, monkeypatch, capsys):
    """RAG_LLM_API_KEY, RAG_API_KEY and RAG_AUTH are read through Settings, and their values appear in
    no repr, report, `rag config` output or error message."""
    import json

    from rag.app.cli import main
    from rag.config import reveal

    for name, value in SECRET_VALUES.items():
        monkeypatch.setenv(f"RAG_{name.upper()}", value)
    monkeypatch.setenv("RAG_STORE", "postgresql://rag:db-pw-61aa@127.0.0.1:5432/rag")
    s = Settings()
    assert {name: reveal(getattr(s, name)) for name in SECRET_VALUES} == SECRET_VALUES
    assert reveal(s.with_(top_k=3).llm_api_key) == SECRET_VALUES["llm_api_key"]  # copies keep them
    secrets = [*SECRET_VALUES.values(), "k-alice-93c2", "pw-alice-04be", "db-pw-61aa"]
    shown = [repr(s), str(s), json.dumps(s.to_json())]
    assert main(["config"]) == 0 and main(["config", "--json"]) == 0
    shown.append(capsys.readouterr().out)
    for bad in ({"top_k": 0}, {"api_key": 12}, {"auth": ["x"]}, {"llm_api_key": {"a": 1}}):
        with pytest.raises(ConfigError) as err:
            s.with_(**bad)
        shown.append(str(err.value))
    for text in shown:
        assert not any(secret in text for secret in secrets), text
    assert s.to_json()["llm_api_key"] == "***" and s.to_json()["store"] == "postgresql://rag:***@127.0.0.1:5432/rag"
    assert Settings(api_key="  ").api_key is None  # empty: not set
