from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rag.config import SEEDS_DIR, Settings  # noqa: E402
from rag.pipeline import RAG  # noqa: E402
from rag.testing import FakeEmbedder, FakeLLM  # noqa: E402

SEED_ARTICLE = SEEDS_DIR / "000_a5055be445bd665f.txt"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Retrieval mode, best passage as [1]: most unit tests are about ranked passages; tests of the
    # whole-corpus context and of passage order set their own.
    return Settings(index_dir=tmp_path / "index", min_score=0.1, cache_dir=tmp_path / "cache", context="chunk",
                    passage_order="best_first", collections_dir=tmp_path / "collections")


@pytest.fixture
def make_rag(settings: Settings):
    """A RAG over a temp index with the fake embedder and a fake LLM scripted with `replies`."""

    def make(*replies, embedder: FakeEmbedder | None = None, **changes) -> RAG:
        llm = FakeLLM(replies or ("Not in the documents.",))
        return RAG.open(settings=settings.with_(**changes), embedder=embedder or FakeEmbedder(), llm=llm, seed=False)

    return make


@pytest.fixture(scope="session")
def real_embedder():
    from rag.models.embedding import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder()


@pytest.fixture(scope="session")
def real_rag(tmp_path_factory, real_embedder):
    """The real thing: MiniLM, FAISS, the default bundled GGUF model, over seeds/. Loaded once."""
    settings = Settings.load(index_dir=tmp_path_factory.mktemp("seed-index"))
    rag = RAG.open(settings=settings, embedder=real_embedder, seed=True)
    return rag
