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
        ({"retrieval": "sparse"}, "use dense or hybrid"),
        ({"context": "page"}, "use auto, corpus, chunk, sentences"),
        ({"answer_style": "long"}, "use sentence or short"),
        ({"support": "vibes"}, "use lexical or embedding"),
        ({"embed_backend": "tpu"}, "use torch, onnx or onnx-int8"),
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
