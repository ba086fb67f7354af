"""One settings object, read from `RAG_*` environment variables and an optional TOML file.

Precedence: explicit keyword arguments > environment > config file (`RAG_CONFIG` or ./rag.toml) > defaults.
Validation happens at construction so a bad value fails before any model is loaded.
"""
from __future__ import annotations

import os
import tomllib
from importlib import resources
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rag.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# A checkout (an editable install, or running from the source tree) reads prompts/ and seeds/ at its top
# and keeps its default index in index/. An installed wheel carries prompts and seeds as package data
# (rag/_data/, copied from those same folders at build time; see pyproject.toml) and keeps its default
# index in the user's data directory, since site-packages is no place to write.
IN_CHECKOUT = (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "prompts").is_dir()


def _packaged(name: str) -> Path:
    return Path(str(resources.files("rag") / "_data" / name))


def _user_index_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("rag-local", appauthor=False)) / "index"


PROMPTS_DIR = PROJECT_ROOT / "prompts" if IN_CHECKOUT else _packaged("prompts")
SEEDS_DIR = PROJECT_ROOT / "seeds" if IN_CHECKOUT else _packaged("seeds")
DEFAULT_INDEX_DIR = PROJECT_ROOT / "index" if IN_CHECKOUT else _user_index_dir()

# Bundled model names; anything else must be a path to a .gguf file or an http(s) URL.
BUNDLED_MODELS = ("qwen2.5-1.5b", "qwen2.5-0.5b", "smollm2-135m")
DEFAULT_MODEL = "qwen2.5-1.5b"
DEFAULT_EMBED_MODEL = "all-MiniLM-L6-v2"
CONTEXTS = ("auto", "corpus", "chunk", "sentences")
PASSAGE_ORDERS = ("best_first", "best_last", "document")


@dataclass(frozen=True)
class Settings:
    model: str = DEFAULT_MODEL
    # For an OpenAI-compatible server: the model name it serves, and an API key if it wants one.
    server_model: str = "default"
    api_key: str = "not-needed"
    embed_model: str = DEFAULT_EMBED_MODEL
    embed_backend: str = "torch"  # torch | onnx | onnx-int8 (rag/embedding.py; docs/performance.md)
    index_dir: Path = DEFAULT_INDEX_DIR
    top_k: int = 5
    chunk_size: int = 160  # words per chunk, roughly 200 MiniLM tokens (its window is 256)
    chunk_overlap: int = 1  # sentences shared by neighbouring chunks
    threads: int = max(1, os.cpu_count() or 1)
    context_window: int = 4096
    max_new_tokens: int = 200
    temperature: float = 0.0
    # Refusal: the best passage must reach this cosine similarity, else we refuse without asking the LLM.
    min_score: float = 0.30
    max_question_chars: int = 2000
    # FAISS index: "auto" picks flat (exact) for small corpora and IVF for large ones (rag/store.py).
    index_type: str = "auto"
    # Quality switches (issue 5); defaults are the best measured configuration (docs/evaluation.md).
    retrieval: str = "hybrid"  # hybrid (dense fused with BM25) | dense; measured in docs/evaluation.md
    # auto: the whole corpus in the prompt when it has at most corpus_max_words words (its KV cache is
    # then reused question after question), else the retrieved passages narrowed to the sentences near
    # the question (as `sentences`) | corpus | chunk | sentences
    context: str = "auto"
    corpus_max_words: int = 1500
    context_words: int = 60  # per passage, when context = sentences
    answer_style: str = "sentence"  # sentence | short (just the answering words, cited)
    support: str = "lexical"  # lexical | embedding (also accept close paraphrases; rag/citations.py)
    # document: retrieved passages in the order of their files (stable, so consecutive prompts share
    # more of their prefix) | best_first | best_last (the top passage next to the question)
    passage_order: str = "document"
    # Refusal from the model's own probability of starting its reply with the refusal: refuse when it
    # reaches this, even if the greedy reply was an answer (1 = only the greedy reply decides). 0.4 is
    # what `rag eval calibrate` chose over the seed, SQuAD and COVID runs (docs/evaluation.md).
    refusal_prob: float = 0.4
    # When the model refuses with a probability below this, ask again with the refusal banned and keep
    # that answer if the support check backs it (0 = never; rag/answering.py). 0.35: the seed's own
    # acceptance question is refused at p = 0.27 on a freshly evaluated prompt; on the three test sets
    # the retry at 0.35 is neutral (3 right only with it, 4 only without; docs/evaluation.md).
    retry_below: float = 0.35
    query_rewrite: str = "off"  # off | hyde (search with a hypothetical answer; one more LLM call)
    diversity: float = 0.0  # MMR weight against near-duplicate passages; 0 = off (rag/retrieval.py)
    cache_dir: Path = field(default_factory=lambda: Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rag")

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.top_k > 50:
            raise ConfigError(f"top_k={self.top_k} is out of range; use 1..50")
        if self.chunk_size < 20 or self.chunk_size > 2000:
            raise ConfigError(f"chunk_size={self.chunk_size} is out of range; use 20..2000 words")
        if self.chunk_overlap < 0 or self.chunk_overlap > 5:
            raise ConfigError(f"chunk_overlap={self.chunk_overlap} is out of range; use 0..5 sentences")
        if self.threads < 1:
            raise ConfigError(f"threads={self.threads} must be at least 1")
        if self.embed_backend not in ("torch", "onnx", "onnx-int8"):
            raise ConfigError(f"embed_backend={self.embed_backend!r} is not known; use torch, onnx or onnx-int8")
        if self.retrieval not in ("dense", "hybrid"):
            raise ConfigError(f"retrieval={self.retrieval!r} is not known; use dense or hybrid")
        if self.context not in CONTEXTS:
            raise ConfigError(f"context={self.context!r} is not known; use {', '.join(CONTEXTS)}")
        if not 0 <= self.corpus_max_words <= 100_000:
            raise ConfigError(f"corpus_max_words={self.corpus_max_words} is out of range; use 0..100000 (0 = never)")
        if not 0.0 <= self.retry_below <= 1.0:
            raise ConfigError(f"retry_below={self.retry_below} is out of range; use 0 (off) up to 1")
        if not 0.0 < self.refusal_prob <= 1.0:
            raise ConfigError(f"refusal_prob={self.refusal_prob} is out of range; use above 0 up to 1 (1 = off)")
        if self.answer_style not in ("sentence", "short"):
            raise ConfigError(f"answer_style={self.answer_style!r} is not known; use sentence or short")
        if self.support not in ("lexical", "embedding"):
            raise ConfigError(f"support={self.support!r} is not known; use lexical or embedding")
        if self.query_rewrite not in ("off", "hyde"):
            raise ConfigError(f"query_rewrite={self.query_rewrite!r} is not known; use off or hyde")
        if self.passage_order not in PASSAGE_ORDERS:
            raise ConfigError(f"passage_order={self.passage_order!r} is not known; use {', '.join(PASSAGE_ORDERS)}")
        if not 0.0 <= self.diversity < 1.0:
            raise ConfigError(f"diversity={self.diversity} is out of range; use 0 (off) up to below 1, e.g. 0.3")
        if not 10 <= self.context_words <= 1000:
            raise ConfigError(f"context_words={self.context_words} is out of range; use 10..1000")
        if self.index_type not in ("auto", "flat", "hnsw", "ivf"):
            raise ConfigError(f"index_type={self.index_type!r} is not known; use auto, flat, hnsw or ivf")
        if not 0.0 <= self.min_score <= 1.0:
            raise ConfigError(f"min_score={self.min_score} must be between 0 and 1")
        if not (
            self.model in BUNDLED_MODELS
            or self.model.endswith(".gguf")
            or self.model.startswith(("http://", "https://"))
        ):
            raise ConfigError(
                f"model={self.model!r} is not known; use one of {', '.join(BUNDLED_MODELS)}, "
                "a path to a .gguf file, or an http(s) URL of an OpenAI-compatible server"
            )

    def with_(self, **changes: Any) -> "Settings":
        return replace(self, **changes)

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides: Any) -> "Settings":
        """Build settings from file, then environment, then explicit overrides (None means unset)."""
        values: dict[str, Any] = {}
        path = config_file or os.environ.get("RAG_CONFIG")
        if path is None and Path("rag.toml").is_file():
            path = "rag.toml"
        if path is not None:
            try:
                values.update(tomllib.loads(Path(path).read_text(encoding="utf-8")))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        known = {f.name: f for f in fields(cls)}
        for name in known:
            env = os.environ.get(f"RAG_{name.upper()}")
            if env is not None:
                values[name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown setting(s) {unknown}; valid: {sorted(known)}")
        return cls(**{k: _coerce(k, v, known[k].type) for k, v in values.items()})


def _coerce(name: str, value: Any, typ: Any) -> Any:
    typ = str(typ)
    try:
        if typ == "int":
            return int(value)
        if typ == "float":
            return float(value)
        if typ == "Path":
            return Path(value).expanduser()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name}={value!r} is not a valid {typ}") from exc
    return value
