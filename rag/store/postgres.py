"""PgStore: the index in PostgreSQL with pgvector, for a team sharing one corpus (setting `store`).

Tables (one index per database):
    rag_meta       one row: format version, embedding model, dimension, chunk settings, generation,
                   next_id, words (the corpus's words, overlaps counted once: WholeCorpus's size check)
    rag_documents  id (loading.document_id: hash of path + contents), source (unique), chars, words,
                   content_hash (SHA-256 of the file; RAG.sync re-keys a moved file by it)
    rag_chunks     id, doc_id (ON DELETE CASCADE), source, text, start_char, end_char, page,
                   embedding vector(dim) with an HNSW index (cosine), tsv (generated tsvector, GIN index)

The same guarantees as the FAISS store, from the database instead of files:
    atomic      a change is one transaction (`writing()` ... `save()`); a writer killed before its
                commit leaves the previous state (PostgreSQL rolls the transaction back).
    serialised  `writing()` takes a transaction-scoped advisory lock, then reloads what another process
                committed; chunk ids come from rag_meta.next_id under that lock, so two processes never
                hand out one id and neither loses the other's write. The lock ends with the transaction
                (or with the connection of a killed process).
    stamped     opening compares the embedding model and dimension with rag_meta: IndexMismatchError
                naming both.
    cheap sync  `refresh()` reads rag_meta.generation (one row); a save bumps it, and only then are the
                document records (ids, sources, chunk ids; not texts or vectors) read again.
Search runs in SQL: dense by pgvector's HNSW index (`<=>`, cosine), lexical by full-text search
(`lexical_search`: ts_rank over the GIN-indexed tsvector), both filtered by chunk id in the WHERE clause
before ranking when a question is scoped. A search returns only chunks of the documents this store holds
(the generation of its last refresh): another process's commit since then shows from the next refresh
on, never half, as with the FAISS store's generations. Chunk texts are fetched as searches return them (cached per
generation), so no BM25 or corpus copy is rebuilt in memory per change.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from rag.errors import ConfigError, DocumentNotFound, IndexMismatchError, StoreError
from rag.store.generations import DocRecord, Manifest
from rag.store.interface import covered_words
from rag.store.pgvector_check import probe_pgvector
from rag.types import Chunk, DocumentInfo

FORMAT_VERSION = 1
LOCK_KEY = 0x7261_6700  # pg_advisory_xact_lock key of the writers ("rag\0")
LOCK_TIMEOUT_MS = 600_000  # as the FAISS store's LOCK_TIMEOUT: a writer waits this long for another
HNSW_EF_SEARCH = 100  # candidates per HNSW search (pgvector's default is 40; a search returns at most this)
EXACT_WITHIN_MAX = 20_000  # a scoped search over at most this many chunks is exact (no index)
TEXT_CONFIG = "english"
_CHUNK_COLS = "id, doc_id, source, text, start_char, end_char, page"


def redact(uri: str) -> str:
    """The URI without its password, for messages."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", uri)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _db_errors(method):
    """A database failure (server gone, connection lost) as a StoreError naming the database; the next
    refresh() (RAG does one before every read) connects again."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        import psycopg

        try:
            return method(self, *args, **kwargs)
        except psycopg.Error as exc:
            raise StoreError(f"the index database {redact(self.uri)} failed: {_first_line(exc)}") from exc
    return wrapper


def _chunk(row) -> Chunk:
    return Chunk(id=row[0], doc_id=row[1], source=row[2], text=row[3], start=row[4], end=row[5], page=row[6])


class PgStore:
    """An index in one PostgreSQL database. Not thread-safe by itself (RAG holds a lock); safe across
    processes and machines (module docstring)."""

    def __init__(self, conn, uri: str, directory: Path) -> None:
        self.conn = conn
        self.uri = uri
        self.directory = Path(directory)  # only for local files: llama.cpp prompt states
        self.index_type = "hnsw"
        self.chunks = _Chunks(self)
        self._in_tx = False
        self._load()

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def connect(cls, uri: str, embed_model: str, dim: int, chunk_size: int, chunk_overlap: int,
                directory: Path) -> "PgStore":
        """Open the index in the database at `uri`, creating its tables the first time (then stamped
        with this model, dimension and chunk settings); fail if it was built with another model."""
        conn = _connect(uri)  # first: without the client packages, a ConfigError naming the extra
        import psycopg

        try:
            probe_pgvector(uri, dim, redact(uri))
        except StoreError:
            conn.close()  # the crash ended this connection too
            raise

        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))  # two first opens create once
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                _create_tables(conn, dim)
                conn.execute("INSERT INTO rag_meta (format_version, embed_model, dim, chunk_size, chunk_overlap) "
                             "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                             (FORMAT_VERSION, embed_model, dim, chunk_size, chunk_overlap))
            _session(conn)
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"cannot set up the index in {redact(uri)}: {str(exc).strip()} "
                             "(the database needs the pgvector extension: CREATE EXTENSION vector)") from exc
        store = cls(conn, uri, directory)
        m = store.manifest
        if m.format_version != FORMAT_VERSION:
            conn.close()
            raise StoreError(f"the index in {redact(uri)} has format version {m.format_version}; this program "
                             f"reads version {FORMAT_VERSION}. Use a new database")
        if m.embed_model != embed_model or m.dim != dim:
            conn.close()
            raise IndexMismatchError(
                f"the index in {redact(uri)} was built with embedding model {m.embed_model!r} (dimension {m.dim}) "
                f"but the configured model is {embed_model!r} (dimension {dim}). "
                f"Set RAG_EMBED_MODEL={m.embed_model} or use another database.")
        return store

    def close(self) -> None:
        self.conn.close()

    @property
    def persisted(self) -> bool:
        return True  # the tables exist from connect() on

    def _load(self) -> None:
        """Read rag_meta and the document records in one snapshot."""
        with self.conn.transaction():
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            self._read()

    def _read(self) -> None:
        row = self.conn.execute("SELECT embed_model, dim, chunk_size, chunk_overlap, format_version, generation, "
                                "next_id, words FROM rag_meta").fetchone()
        self.manifest = Manifest(embed_model=row[0], dim=row[1], chunk_size=row[2], chunk_overlap=row[3],
                                 format_version=row[4], generation=row[5], next_id=row[6], metric="cosine")
        self.corpus_words = row[7]
        rows = self.conn.execute(
            "SELECT d.id, d.source, d.chars, coalesce(array_agg(c.id ORDER BY c.id) FILTER (WHERE c.id IS NOT NULL), "
            "'{}'), d.content_hash FROM rag_documents d LEFT JOIN rag_chunks c ON c.doc_id = d.id GROUP BY d.id").fetchall()
        self.docs = {r[0]: DocRecord(id=r[0], source=r[1], chars=r[2], chunk_ids=list(r[3]), content_hash=r[4])
                     for r in rows}
        self._by_source = {d.source: d.id for d in self.docs.values()}
        self.chunks.reset(sum(len(d.chunk_ids) for d in self.docs.values()))

    def disk_generation(self) -> int:
        return self.conn.execute("SELECT generation FROM rag_meta").fetchone()[0]

    @_db_errors
    def refresh(self) -> bool:
        """Reload the document records if another process committed since; one row read otherwise.
        A connection lost since the last call (the server restarted) is opened again first."""
        if self.conn.broken or self.conn.closed:
            self.conn = _connect(self.uri)
            _session(self.conn)
            self._load()
            return True
        if self._in_tx or self.disk_generation() == self.manifest.generation:
            return False
        self._load()
        return True

    @contextmanager
    def writing(self) -> Iterator["PgStore"]:
        """One transaction holding the writers' advisory lock, on the latest committed state: apply a
        change and save() inside; it is committed when the block ends, and rolled back (and this store
        reloaded) if the block fails. Re-entrant. Do slow work (embedding) before entering."""
        if self._in_tx:
            yield self
            return
        import psycopg

        try:
            with self.conn.transaction():
                self.conn.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
                try:
                    self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                except psycopg.errors.LockNotAvailable as exc:
                    raise StoreError(f"another process has held the index lock in {redact(self.uri)} for more "
                                     f"than {LOCK_TIMEOUT_MS / 1000:g} s; is an ingest still running?") from exc
                self._in_tx = True
                self._read()  # under the lock: what every earlier writer committed
                yield self
        except BaseException as exc:
            self._in_tx = False
            try:
                self._load()
            except psycopg.Error:
                pass  # the connection is gone: refresh() opens a new one
            if isinstance(exc, psycopg.Error):
                raise StoreError(f"the index database {redact(self.uri)} failed: {_first_line(exc)}; "
                                 "the change was rolled back") from exc
            raise
        finally:
            self._in_tx = False

    def _need_tx(self, what: str) -> None:
        if not self._in_tx:
            raise StoreError(f"PgStore.{what} outside writing(): changes are made in its transaction")

    # -- changes ------------------------------------------------------------------------------
    def reserve_ids(self, count: int) -> int:
        self._need_tx("reserve_ids")
        first = self.conn.execute("UPDATE rag_meta SET next_id = next_id + %s RETURNING next_id - %s",
                                  (count, count)).fetchone()[0]
        self.manifest.next_id = first + count
        return first

    def add(self, doc_id: str, source: str, chars: int, chunks: list[Chunk], vectors: np.ndarray) -> None:
        self._need_tx("add")
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(chunks) and vectors.shape[1:] != (self.manifest.dim,):
            raise ValueError(f"vectors have shape {vectors.shape}, expected (n, {self.manifest.dim})")
        words = covered_words(chunks)
        self.conn.execute("INSERT INTO rag_documents (id, source, chars, words) VALUES (%s, %s, %s, %s)",
                          (doc_id, source, chars, words))
        with self.conn.cursor() as cur:
            cur.executemany(f"INSERT INTO rag_chunks ({_CHUNK_COLS}, embedding) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                            [(c.id, doc_id, source, c.text, c.start, c.end, c.page, v) for c, v in zip(chunks, vectors)])
        self.conn.execute("UPDATE rag_meta SET words = words + %s", (words,))
        self.corpus_words += words
        self.docs[doc_id] = DocRecord(id=doc_id, source=source, chars=chars, chunk_ids=[c.id for c in chunks])
        self._by_source[source] = doc_id
        self.chunks.added(chunks)

    def remove(self, doc_id: str) -> DocRecord:
        self._need_tx("remove")
        row = self.conn.execute("DELETE FROM rag_documents WHERE id = %s RETURNING words", (doc_id,)).fetchone()
        record = self.docs.pop(doc_id, None)
        if row is None or record is None:
            raise DocumentNotFound(f"no document with id {doc_id!r}; `rag list` shows the ids")
        self.conn.execute("UPDATE rag_meta SET words = words - %s", (row[0],))
        self.corpus_words -= row[0]
        if self._by_source.get(record.source) == doc_id:
            del self._by_source[record.source]
        self.chunks.removed(record.chunk_ids)
        return record

    def set_content_hash(self, doc_id: str, digest: str) -> None:
        """Keep the SHA-256 of a document's file, so RAG.sync can re-key it when it moves (rag/store/moves.py)."""
        self._need_tx("set_content_hash")
        self.conn.execute("UPDATE rag_documents SET content_hash = %s WHERE id = %s", (digest, doc_id))
        self.docs[doc_id].content_hash = digest

    def rekey(self, old_id: str, new_id: str, new_source: str) -> DocRecord:
        """A moved document's new id and source, on its row and its chunks' rows; chunk ids and vectors kept."""
        self._need_tx("rekey")
        record = self.docs[old_id]
        self.conn.execute("INSERT INTO rag_documents (id, source, chars, words, content_hash) "
                          "SELECT %s, %s, chars, words, content_hash FROM rag_documents WHERE id = %s",
                          (new_id, new_source, old_id))
        self.conn.execute("UPDATE rag_chunks SET doc_id = %s, source = %s WHERE doc_id = %s", (new_id, new_source, old_id))
        self.conn.execute("DELETE FROM rag_documents WHERE id = %s", (old_id,))
        moved = self.docs[new_id] = DocRecord(new_id, new_source, record.chars, list(record.chunk_ids), record.content_hash)
        del self.docs[old_id]
        if self._by_source.get(record.source) == old_id:
            del self._by_source[record.source]
        self._by_source[new_source] = new_id
        self.chunks.reset(len(self.chunks))  # cached chunks carry the old source
        return moved

    def doc_for_source(self, source: str) -> str | None:
        return self._by_source.get(source)

    def save(self) -> None:
        """Mark the change as a new generation; writing() commits it when its block ends."""
        if not self._in_tx:
            with self.writing():
                self.save()
            return
        self.manifest.generation = self.conn.execute(
            "UPDATE rag_meta SET generation = generation + 1 RETURNING generation").fetchone()[0]

    # -- reading ------------------------------------------------------------------------------
    @_db_errors
    def search(self, query: np.ndarray, k: int, within: frozenset[int] | None = None) -> list[tuple[Chunk, float]]:
        """The k chunks nearest `query` by cosine, best first: pgvector's HNSW index; with `within`
        (chunk ids), only those, filtered before ranking (an exact scan up to EXACT_WITHIN_MAX of them,
        else the index with an iterative scan that goes on until k of them are found)."""
        if k <= 0 or (within is not None and not within):
            return []
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if within is None:
            if k > HNSW_EF_SEARCH:
                self.conn.execute(f"SET hnsw.ef_search = {min(1000, k)}")
            rows = self.conn.execute(f"SELECT {_CHUNK_COLS}, embedding <=> %s FROM rag_chunks "
                                     "ORDER BY embedding <=> %s LIMIT %s", (q, q, k)).fetchall()
            if k > HNSW_EF_SEARCH:
                self.conn.execute(f"SET hnsw.ef_search = {HNSW_EF_SEARCH}")
        elif len(within) <= EXACT_WITHIN_MAX:
            rows = self.conn.execute(
                f"WITH chosen AS MATERIALIZED (SELECT {_CHUNK_COLS}, embedding <=> %s AS d FROM rag_chunks "
                "WHERE id = ANY(%s)) SELECT * FROM chosen ORDER BY d, id LIMIT %s", (q, list(within), k)).fetchall()
        else:
            with self.conn.transaction():
                self.conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
                rows = self.conn.execute(f"SELECT {_CHUNK_COLS}, embedding <=> %s FROM rag_chunks WHERE id = ANY(%s) "
                                         "ORDER BY embedding <=> %s LIMIT %s", (q, list(within), q, k)).fetchall()
        return [(self.chunks.seen(_chunk(r)), 1.0 - float(r[7])) for r in rows if r[1] in self.docs]

    @_db_errors
    def lexical_search(self, question: str, k: int, within: frozenset[int] | None = None) -> list[Chunk]:
        """Full-text ranking: chunks sharing any of the question's stemmed words (stop words dropped),
        by ts_rank (normalised by log length), best first; `within` filters before ranking."""
        if k <= 0 or (within is not None and not within):
            return []
        where, args = ("AND c.id = ANY(%s)", [list(within)]) if within is not None else ("", [])
        rows = self.conn.execute(
            f"WITH q AS (SELECT replace(plainto_tsquery('{TEXT_CONFIG}', %s)::text, ' & ', ' | ')::tsquery AS q) "
            f"SELECT {', '.join('c.' + col.strip() for col in _CHUNK_COLS.split(','))} FROM rag_chunks c, q "
            f"WHERE c.tsv @@ q.q {where} ORDER BY ts_rank(c.tsv, q.q, 1) DESC, c.id LIMIT %s",
            [question, *args, k]).fetchall()
        return [self.chunks.seen(_chunk(r)) for r in rows if r[1] in self.docs]

    @_db_errors
    def vectors(self, ids: list[int]) -> np.ndarray | None:
        if not ids:
            return np.zeros((0, self.manifest.dim), np.float32)
        found = dict(self.conn.execute("SELECT id, embedding FROM rag_chunks WHERE id = ANY(%s)", (list(ids),)).fetchall())
        if any(i not in found for i in ids):
            return None
        # pgvector >= 0.4 reads a vector as its Vector class, older versions as a numpy array
        return np.stack([np.asarray(v.to_numpy() if hasattr(v, "to_numpy") else v, dtype=np.float32)
                         for v in (found[i] for i in ids)])

    def documents(self) -> list[DocumentInfo]:
        return [DocumentInfo(id=d.id, source=d.source, chunks=len(d.chunk_ids), chars=d.chars)
                for d in sorted(self.docs.values(), key=lambda d: d.source)]

    def counts(self) -> tuple[int, int]:
        return len(self.docs), len(self.chunks)


class _Chunks(Mapping[int, Chunk]):
    """{chunk id: Chunk} of a PgStore without holding the corpus: the ids come from the document records,
    a text is read when asked for, and chunks returned by a search are kept until the next reload."""

    def __init__(self, store: PgStore) -> None:
        self.store = store
        self._cache: dict[int, Chunk] = {}
        self._n = 0
        self._ids: set[int] | None = None

    def reset(self, n: int) -> None:
        self._cache, self._n, self._ids = {}, n, None

    def added(self, chunks: list[Chunk]) -> None:
        self._n += len(chunks)
        self._ids = None
        self._cache.update((c.id, c) for c in chunks)

    def removed(self, ids: list[int]) -> None:
        self._n -= len(ids)
        self._ids = None
        for i in ids:
            self._cache.pop(i, None)

    def seen(self, chunk: Chunk) -> Chunk:
        self._cache[chunk.id] = chunk
        return chunk

    def _all_ids(self) -> set[int]:
        if self._ids is None:
            self._ids = {i for d in self.store.docs.values() for i in d.chunk_ids}
        return self._ids

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._all_ids()))

    def __contains__(self, key: object) -> bool:
        return key in self._all_ids()

    def __getitem__(self, key: int) -> Chunk:
        if key in self._cache:
            return self._cache[key]
        row = self.store.conn.execute(f"SELECT {_CHUNK_COLS} FROM rag_chunks WHERE id = %s", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return self.seen(_chunk(row))

    def values(self):  # type: ignore[override]
        """Every chunk, read from the database (WholeCorpus, only for a corpus small enough to show whole)."""
        rows = self.store.conn.execute(f"SELECT {_CHUNK_COLS} FROM rag_chunks ORDER BY id").fetchall()
        return [self.seen(_chunk(r)) for r in rows]


def _connect(uri: str):
    try:
        import pgvector.psycopg  # noqa: F401
        import psycopg
    except ImportError as exc:
        raise ConfigError(f"store={redact(uri)!r} needs the PostgreSQL client ({exc.name} is not installed): "
                          'pip install -e ".[scale]", or leave store empty for the FAISS index') from exc
    try:
        return psycopg.connect(uri, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to the index database {redact(uri)}: {_first_line(exc)}") from exc


def _session(conn) -> None:
    from pgvector.psycopg import register_vector

    register_vector(conn)
    conn.execute(f"SET hnsw.ef_search = {HNSW_EF_SEARCH}")


def _create_tables(conn, dim: int) -> None:
    conn.execute("""CREATE TABLE IF NOT EXISTS rag_meta (
        one boolean PRIMARY KEY DEFAULT true CHECK (one), format_version int NOT NULL, embed_model text NOT NULL,
        dim int NOT NULL, chunk_size int NOT NULL, chunk_overlap int NOT NULL,
        generation bigint NOT NULL DEFAULT 0, next_id bigint NOT NULL DEFAULT 0, words bigint NOT NULL DEFAULT 0)""")
    row = conn.execute("SELECT dim FROM rag_meta").fetchone()
    dim = row[0] if row else dim  # an existing index keeps its dimension; connect() compares the stamp
    conn.execute("""CREATE TABLE IF NOT EXISTS rag_documents (
        id text PRIMARY KEY, source text NOT NULL UNIQUE, chars int NOT NULL, words int NOT NULL)""")
    # content_hash (SHA-256 of the file, for RAG.sync's moves): added to tables made before it, "" there
    conn.execute("ALTER TABLE rag_documents ADD COLUMN IF NOT EXISTS content_hash text NOT NULL DEFAULT ''")
    conn.execute(f"""CREATE TABLE IF NOT EXISTS rag_chunks (
        id bigint PRIMARY KEY, doc_id text NOT NULL REFERENCES rag_documents (id) ON DELETE CASCADE,
        source text NOT NULL, text text NOT NULL, start_char int NOT NULL, end_char int NOT NULL, page int,
        embedding vector({int(dim)}) NOT NULL,
        tsv tsvector GENERATED ALWAYS AS (to_tsvector('{TEXT_CONFIG}', text)) STORED)""")
    conn.execute("CREATE INDEX IF NOT EXISTS rag_chunks_doc ON rag_chunks (doc_id)")
    conn.execute("CREATE INDEX IF NOT EXISTS rag_chunks_embedding ON rag_chunks USING hnsw (embedding vector_cosine_ops)")
    conn.execute("CREATE INDEX IF NOT EXISTS rag_chunks_tsv ON rag_chunks USING gin (tsv)")
