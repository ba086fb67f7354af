from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rag.config import SEEDS_DIR, Settings  # noqa: E402
from rag.pipeline import RAG  # noqa: E402
from rag.testing import FakeEmbedder, FakeLLM  # noqa: E402
from tests.tiers import fakes_start_no_server  # noqa: E402, F401 - autouse: the fakes-only tier starts no server

SEED_ARTICLE = SEEDS_DIR / "000_a5055be445bd665f.txt"


# Fixtures that start something beyond fakes, and the marker each one brings to every test that uses it
# (directly or through another fixture), so `-m "not integration and not postgres and not browser"` starts no
# server and no browser: pg_server runs PostgreSQL; `browser` (tests/app/test_ui_e2e.py) runs Chromium;
# real_rag answers with the bundled 1.5B model, whose ~100 prompt tokens/s on the 2-core CI machine put any
# real answer over 10 s.
MARKER_OF_FIXTURE = {"pg_server": "postgres", "browser": "browser", "real_rag": "slow"}


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items):
    for item in items:
        for fixture, marker in MARKER_OF_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(getattr(pytest.mark, marker))


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


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL + pgvector (Debian's PostgreSQL with the portable pgvector `.ci/install_pgvector`
    builds: tests/pg_local.py), on a unix socket in a temp dir (no TCP port); stopped and deleted at the end
    of the session. Not under pytest's tmp_path: pytest prunes old pytest-N folders, and another session's
    pruning would delete a running server's data. Where it is not installed the tests fail, not skip, in CI."""
    from tests.pg_local import INSTALL_HINT, LocalPostgres, find_bindir

    pytest.importorskip("psycopg")
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail(f"no PostgreSQL with pgvector on this machine: {INSTALL_HINT}")
        pytest.skip(f"no PostgreSQL with pgvector on this machine: {INSTALL_HINT}")
    server = LocalPostgres(bindir)
    yield server
    server.stop()


@pytest.fixture
def pg_uri(pg_server, request):
    """A new empty database on the session's server, dropped after the test."""
    import re

    import psycopg

    name = "t_" + re.sub(r"\W", "_", request.node.name.lower())[:40] + f"_{os.getpid()}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_server.get_uri(name)
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
