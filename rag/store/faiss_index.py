"""Index store: FAISS vectors + chunk/document records + a manifest, persisted atomically.

Layout of an index directory:
    manifest.json        format version, embedding model, dimension, chunk settings, generation, next id
    vectors.<gen>.faiss  FAISS index over inner product (cosine on normalised vectors), ids = chunk ids
    records.<gen>.json   documents and chunks
    .lock                the directory lock (filelock), held by a process while it saves and cleans up

A save writes the generation's data files first and then replaces manifest.json with os.replace,
which is atomic: a crash at any point leaves a manifest that names complete files. FAISS ids come
from `next_id`, which only grows and is persisted, so an id is never reused after a deletion
(llama-index's FaissMapVectorStore takes ids from `ntotal` and does reuse them).

Several processes may use one directory (`rag serve` while `rag ingest` runs elsewhere):
    writers  save only while holding the directory lock, and only from the latest generation on disk
             (`IndexStore.writing()` reloads a store that another process has moved on); so writes
             are serialised and none is lost. Saving a stale store raises IndexChangedError.
    readers  take no lock and delete nothing. They read manifest.json, then that generation's files;
             a file removed meanwhile (the generation moved on) makes them re-read the manifest and
             load the newer generation. `refresh()` reloads a long-lived store in place.
    cleanup  after a save, under the lock: only generations older than the new one, and `.tmp-*`
             files (no writer is writing while we hold the lock, so these are crash leftovers).

Index types (chosen when the store is saved, so a whole ingest is converted at most once): flat,
ivf and hnsw, described in rag/store/index_types.py.
`auto` (the default) keeps flat below AUTO_ANN_MIN vectors and switches to IVF above, back to flat
below AUTO_FLAT_BELOW; an `ivf` index is retrained when the corpus has grown ~4x since training.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

import faiss
import numpy as np
from filelock import FileLock, Timeout

from rag.config import INDEX_TYPES
from rag.errors import DocumentNotFound, IndexChangedError, StoreError
from rag.store.generations import (  # noqa: F401  (FORMAT_VERSION and MANIFEST, re-exported)
    FORMAT_VERSION,
    MANIFEST,
    DocRecord,
    Manifest,
    read_counts,
    read_latest,
    read_manifest,
    remove_older,
    write_atomic,
)
from rag.store.index_types import (  # noqa: F401  (the policy constants, re-exported for bench/)
    HNSW_EF_CONSTRUCTION,
    HNSW_EF_SEARCH,
    HNSW_M,
    IVF_TRAIN_PER_LIST,
    build_index,
    index_kind,
    ivf_contents,
    ivf_nlist,
    ivf_nprobe,
    new_index,
    tombstones,
)
from rag.store.bm25 import Bm25
from rag.store.interface import covered_words
from rag.types import Chunk, DocumentInfo

LOCK = ".lock"
# A writer waits this long for another process's save (a save of 1M vectors takes tens of seconds).
LOCK_TIMEOUT = 600.0
# Policy, from bench/search.py on 2 cores (docs/performance.md). Flat search is exact and needs no
# training, but scans ~0.33 µs per vector per query: 10 ms at ~30k vectors, 320 ms at 1M.
AUTO_ANN_MIN = 30_000  # auto: flat below this many vectors, IVF from here on
AUTO_FLAT_BELOW = 15_000  # auto: an ANN index shrunk (by deletions) below this goes back to flat
IVF_MIN_VECTORS = 1_000  # forced "ivf": flat until there are enough vectors to train the lists
# A scoped search on HNSW scans the chosen chunks' vectors when they are few, or too small a share of the
# graph for a filtered graph search (efSearch would pass HNSW_MAX_EF to meet ~efSearch chosen nodes).
HNSW_EXACT_MAX = 2_000
HNSW_MAX_EF = 4_096
HNSW_MAX_DELETED = 0.10  # rebuild the graph at save when this fraction of it is tombstones


class IndexStore:
    """Vectors and records of one index directory. Not thread-safe by itself: RAG holds a lock.
    Safe across processes: writers serialise on the directory lock, readers need none (module docstring)."""

    def __init__(self, directory: Path, manifest: Manifest, index: faiss.Index,
                 documents: dict[str, DocRecord], chunks: dict[int, Chunk], index_type: str = "auto") -> None:
        self.directory = directory
        self.index_type = index_type
        self._lock = FileLock(directory / LOCK, timeout=LOCK_TIMEOUT)
        self._bm25 = Bm25()
        self._install(manifest, index, documents, chunks)

    def _install(self, manifest: Manifest, index: faiss.Index, documents: dict[str, DocRecord],
                 chunks: dict[int, Chunk]) -> None:
        """Make this store hold one generation's contents (at creation, and when refresh() reloads)."""
        self.manifest = manifest
        self.docs = documents
        self.chunks = chunks
        self._dirty = False  # changed since loaded or saved
        # source -> doc id, so re-ingesting F files into D documents is O(F), not O(F*D)
        self._by_source = {d.source: d.id for d in documents.values()}
        self._set_index(index)
        if self.kind == "hnsw":
            self._deleted = tombstones(index, chunks)

    @property
    def index_type(self) -> str:
        """The wanted index type: "auto", "flat", "hnsw" or "ivf"; it takes effect at the next save."""
        return self._index_type

    @index_type.setter
    def index_type(self, value: str) -> None:
        if value not in INDEX_TYPES:
            raise ValueError(f"index_type={value!r} is not one of {', '.join(INDEX_TYPES)}")
        self._index_type = value

    @property
    def kind(self) -> str:
        """The type of the index in use: "flat", "hnsw" or "ivf"."""
        return index_kind(self.index)

    def _set_index(self, index: faiss.Index) -> None:
        self.index = index
        self._deleted: set[int] = set()  # HNSW tombstones
        self._params: faiss.SearchParameters | None = None
        if isinstance(index, faiss.IndexIVF):
            index.nprobe = ivf_nprobe(index.nlist)

    # -- opening -------------------------------------------------------------------------------
    @staticmethod
    def exists(directory: Path) -> bool:
        return (Path(directory) / MANIFEST).is_file()

    @classmethod
    def create(cls, directory: Path, embed_model: str, dim: int, chunk_size: int, chunk_overlap: int,
               index_type: str = "auto") -> "IndexStore":
        manifest = Manifest(embed_model=embed_model, dim=dim, chunk_size=chunk_size, chunk_overlap=chunk_overlap)
        return cls(Path(directory), manifest, new_index(dim), {}, {}, index_type)

    @classmethod
    def open(cls, directory: Path, embed_model: str, dim: int, index_type: str = "auto") -> "IndexStore":
        """Load the generation manifest.json names. Takes no lock and deletes nothing: another process
        may be writing the next generation at this moment, and its files are not ours to judge."""
        directory = Path(directory)
        return cls(directory, *read_latest(directory, embed_model, dim), index_type)

    persisted = property(lambda self: self.exists(self.directory), doc="A save has written the manifest (Store).")

    def disk_generation(self) -> int | None:
        """The generation manifest.json names now (None before the first save). Reading one small
        file is cheap enough to do before every question, to notice another process's save."""
        return read_manifest(self.directory).generation if self.exists(self.directory) else None

    def refresh(self) -> bool:
        """Reload from disk, in place, if another process has saved since this store was loaded or
        saved; return whether it did. In place, so whatever holds this store (retrievers, the BM25 and
        whole-corpus caches, which key on the generation) sees the new contents. Changes made here and
        not saved are dropped; RAG makes none outside writing()."""
        generation = self.disk_generation()
        if generation is None or generation == self.manifest.generation:
            return False
        self._install(*read_latest(self.directory, self.manifest.embed_model, self.manifest.dim))
        return True

    @contextmanager
    def writing(self) -> Iterator[IndexStore]:
        """Hold the directory lock, with this store brought up to the latest generation on disk; apply
        a change and save() inside the block. Another process's writer waits for the block to end, and
        then starts from this save, so no write is lost; readers keep the previous generation until the
        manifest switch. Re-entrant within a thread. Do slow work (embedding) before entering.

        A block that fails after changing the store (a save refused by a full disk, a change that
        broke half-way) leaves it reloaded from disk: holding changes no process can see would serve
        them until a later save wrote them unasked, or a reload dropped them."""
        with self._locked():
            self.refresh()
            try:
                yield self
            except BaseException:
                if self._dirty and self.exists(self.directory):
                    self._install(*read_latest(self.directory, self.manifest.embed_model, self.manifest.dim))
                raise

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except Timeout as exc:  # a TimeoutError, so an OSError: first
            raise StoreError(f"another process has held the index lock {self.directory / LOCK} for more than "
                             f"{self._lock.timeout:g} s; is an ingest still running?") from exc
        except OSError as exc:
            raise StoreError(f"could not lock the index in {self.directory}: {exc.strerror or exc}"
                             f"{f' ({exc.filename})' if exc.filename else ''}") from exc
        try:
            yield
        finally:
            self._lock.release()

    # -- changes ------------------------------------------------------------------------------
    def reserve_ids(self, count: int) -> int:
        """Hand out `count` fresh ids; ids only grow, so a deleted chunk's id is never reused."""
        first = self.manifest.next_id
        self.manifest.next_id += count
        self._dirty = True
        return first

    def add(self, doc_id: str, source: str, chars: int, chunks: list[Chunk], vectors: np.ndarray) -> None:
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        if vectors.shape[1:] != (self.manifest.dim,):
            raise ValueError(f"vectors have shape {vectors.shape}, expected (n, {self.manifest.dim})")
        ids = np.array([c.id for c in chunks], dtype=np.int64)
        self._dirty = True
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
        self.docs[doc_id] = DocRecord(id=doc_id, source=source, chars=chars, chunk_ids=[int(i) for i in ids])
        self._by_source[source] = doc_id
        for chunk in chunks:
            self.chunks[chunk.id] = chunk

    def remove(self, doc_id: str) -> DocRecord:
        record = self.docs.pop(doc_id, None)
        if record is None:
            raise DocumentNotFound(f"no document with id {doc_id!r}; `rag list` shows the ids")
        self._dirty = True
        if self._by_source.get(record.source) == doc_id:
            del self._by_source[record.source]
        if record.chunk_ids and self.kind == "hnsw":
            self._deleted.update(record.chunk_ids)
            self._params = None
        elif record.chunk_ids:
            self.index.remove_ids(np.array(record.chunk_ids, dtype=np.int64))
        for cid in record.chunk_ids:
            self.chunks.pop(cid, None)
        return record

    def rekey(self, old_id: str, new_id: str, new_source: str) -> DocRecord:
        """A moved document's new id and source, on its record and every chunk; chunk ids and vectors
        kept (a re-key touches records only). Inside writing(), then save()."""
        record = self.docs.pop(old_id)
        moved = self.docs[new_id] = replace(record, id=new_id, source=new_source, chunk_ids=list(record.chunk_ids))
        if self._by_source.get(record.source) == old_id:
            del self._by_source[record.source]
        self._by_source[new_source] = new_id
        for cid in record.chunk_ids:
            self.chunks[cid] = replace(self.chunks[cid], doc_id=new_id, source=new_source)
        self._dirty = True
        return moved

    def set_content_hash(self, doc_id: str, digest: str) -> None:
        """Keep the hash of a document's file (saved with the records), so a sync can re-key it when it moves."""
        self.docs[doc_id].content_hash = digest
        self._dirty = True

    def doc_for_source(self, source: str) -> str | None:
        return self._by_source.get(source)

    # -- reading ------------------------------------------------------------------------------
    def search(self, query: np.ndarray, k: int, within: frozenset[int] | None = None) -> list[tuple[Chunk, float]]:
        """The k chunks nearest `query`, best first; with `within`, only among those chunk ids (filtered
        before ranking, so the k come from them)."""
        if within is not None:
            return self._search_within(query, k, within)
        live = self.index.ntotal - len(self._deleted)
        if live <= 0:
            return []
        query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        if self.kind == "hnsw":
            scores, ids = self.index.search(query, min(k, live), params=self._hnsw_params())
        else:
            scores, ids = self.index.search(query, min(k, live))
        return [(self.chunks[int(i)], float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]

    def _search_within(self, query: np.ndarray, k: int, within: frozenset[int]) -> list[tuple[Chunk, float]]:
        """Exact top k among `within` (live chunk ids). Flat: the scan with an IDSelector. IVF: the
        selector over every inverted list (nprobe = nlist; the chosen chunks may sit in any list), a
        flat scan's cost. HNSW: a selector on the graph misses a narrow selection (the search sees
        ~efSearch nodes, few of them chosen: 3 of 3,000 gave nothing), so up to HNSW_EXACT_MAX chunks, or
        when they are under 1/32 of the graph, their stored vectors are scanned (exact); otherwise the
        selector, with efSearch raised by the inverse share so the search meets ~efSearch chosen nodes."""
        ids = np.fromiter(sorted(i for i in within if i in self.chunks), dtype=np.int64)
        if len(ids) == 0 or k <= 0:
            return []
        query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        k = min(k, len(ids))
        kind = self.kind
        share = len(ids) / max(1, self.index.ntotal)
        ef = max(k, int(HNSW_EF_SEARCH / share))
        if kind == "hnsw" and (len(ids) <= HNSW_EXACT_MAX or ef > HNSW_MAX_EF):
            scores = self.index.reconstruct_batch(ids) @ query[0]  # IndexIDMap2 maps the ids
            top = np.argsort(-scores, kind="stable")[:k]
            return [(self.chunks[int(ids[i])], float(scores[i])) for i in top]
        selector = faiss.IDSelectorBatch(ids)
        if kind == "hnsw":
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=ef)
        elif kind == "ivf":
            params = faiss.SearchParametersIVF(sel=selector, nprobe=self.index.nlist)
        else:
            params = faiss.SearchParameters(sel=selector)
        scores, found = self.index.search(query, k, params=params)
        return [(self.chunks[int(i)], float(s)) for s, i in zip(scores[0], found[0]) if i >= 0]

    def vectors(self, ids: list[int]) -> np.ndarray | None:
        """Stored vectors of live chunk ids (flat and HNSW); None where FAISS cannot reconstruct (IVF
        without a direct map), so the caller re-embeds instead."""
        if self.kind == "ivf":
            return None
        try:
            return np.stack([self.index.reconstruct(int(i)) for i in ids]) if ids else np.zeros((0, self.manifest.dim), np.float32)
        except RuntimeError:
            return None

    def _hnsw_params(self) -> faiss.SearchParametersHNSW:
        if self._params is None:
            params = faiss.SearchParametersHNSW()
            params.efSearch = HNSW_EF_SEARCH
            if self._deleted:
                batch = faiss.IDSelectorBatch(np.fromiter(self._deleted, dtype=np.int64, count=len(self._deleted)))
                params.sel = faiss.IDSelectorNot(batch)
                params._keep = (batch, params.sel)  # the selectors are not owned by params
            self._params = params
        return self._params

    def documents(self) -> list[DocumentInfo]:
        return [DocumentInfo(id=d.id, source=d.source, chunks=len(d.chunk_ids), chars=d.chars)
                for d in sorted(self.docs.values(), key=lambda d: d.source)]

    def counts(self) -> tuple[int, int]:
        return len(self.docs), len(self.chunks)

    @staticmethod
    def stored_counts(directory: Path) -> tuple[int, int]:
        """(documents, chunks) of the index saved in `directory`, without loading it; (0, 0) if none."""
        return read_counts(Path(directory)) if IndexStore.exists(directory) else (0, 0)

    @property
    def corpus_words(self) -> int:
        """Words of every document's chunks, each overlap counted once (`covered_words`)."""
        by_doc: dict[str, list[Chunk]] = {}
        for c in self.chunks.values():
            by_doc.setdefault(c.doc_id, []).append(c)
        return sum(covered_words(chunks) for chunks in by_doc.values())

    def lexical_search(self, question: str, k: int, within: frozenset[int] | None = None) -> list[Chunk]:
        """Full-text ranking: BM25 over the chunks (rag/store/bm25.py, rebuilt in memory after a change),
        chunks with a positive score, best first; `within` filters before ranking."""
        key = (self.manifest.generation, self.manifest.next_id, len(self.chunks))
        return [self.chunks[i] for i in self._bm25.search(self.chunks, key, question, k, within)]

    # -- persistence --------------------------------------------------------------------------
    def save(self) -> None:
        """Write a new generation, then switch the manifest to it atomically. A write that fails (disk
        full, read-only folder) leaves the previous generation in force and raises StoreError.

        Under the directory lock (re-entrant: writing() already holds it). A store loaded before
        another process's save is refused with IndexChangedError: saving it would drop that save."""
        with self._locked():
            on_disk = self.disk_generation()
            if on_disk is not None and on_disk != self.manifest.generation:
                raise IndexChangedError(
                    f"the index in {self.directory} is at generation {on_disk} on disk, but this store holds "
                    f"generation {self.manifest.generation}: another process saved meanwhile. Make changes "
                    "inside IndexStore.writing(), which reloads the latest generation first")
            try:
                self._save()
            except OSError as exc:
                raise StoreError(f"could not save the index in {self.directory}: "
                                 f"{exc.strerror or exc}{f' ({exc.filename})' if exc.filename else ''}; "
                                 "the index on disk is unchanged since its last save") from exc

    def _save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fit_index()
        gen = self.manifest.generation + 1
        index = self.index
        # Streamed to the file: serialize_index would hold one (and .tobytes() a second) copy in memory.
        write_atomic(self.directory / f"vectors.{gen}.faiss",
                      lambda fh: faiss.write_index(index, faiss.PyCallbackIOWriter(fh.write)))
        records = {
            "documents": [asdict(d) for d in self.docs.values()],
            "chunks": [asdict(c) for c in self.chunks.values()],
        }
        write_atomic(self.directory / f"records.{gen}.json", json.dumps(records).encode("utf-8"))
        manifest = Manifest(**{**asdict(self.manifest), "generation": gen})
        write_atomic(self.directory / MANIFEST, json.dumps(asdict(manifest), indent=2).encode("utf-8"))
        self.manifest.generation = gen
        self._dirty = False
        remove_older(self.directory, self.manifest.generation)

    # -- index type ---------------------------------------------------------------------------
    def wanted_kind(self, n: int | None = None) -> str:
        """The index type this store should use for `n` live vectors (default: the current count)."""
        n = len(self.chunks) if n is None else n
        current = self.kind
        if self.index_type == "flat":
            return "flat"
        if self.index_type == "hnsw":
            return "hnsw"
        if self.index_type == "ivf":
            return "ivf" if n >= IVF_MIN_VECTORS else "flat"
        # auto: a hysteresis band, so a corpus near the threshold is not rebuilt back and forth
        if n >= AUTO_ANN_MIN:
            return current if current != "flat" else "ivf"
        if n < AUTO_FLAT_BELOW:
            return "flat"
        return current

    def fit_index(self) -> bool:
        """Rebuild the index if its type should change, an IVF index has outgrown its training, or
        an HNSW graph holds too many tombstones. Returns whether it rebuilt. Called by save()."""
        want, kind, n = self.wanted_kind(), self.kind, len(self.chunks)
        if want == kind:
            if kind == "ivf" and ivf_nlist(n) < 2 * self.index.nlist:
                return False
            if kind == "hnsw" and len(self._deleted) <= HNSW_MAX_DELETED * self.index.ntotal:
                return False
            if kind == "flat":
                return False
        ids, vectors = self._live_vectors()
        self._set_index(build_index(want, self.manifest.dim, ids, vectors))
        return True

    def _live_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every live chunk, ids ascending. Flat and HNSW storage are viewed, not copied."""
        if self.kind == "ivf":
            ids, vectors = ivf_contents(self.index)
        else:
            inner = faiss.downcast_index(self.index.index)
            flat = inner.storage if isinstance(inner, faiss.IndexHNSW) else inner
            flat = faiss.downcast_index(flat)
            n = flat.ntotal
            ids = faiss.vector_to_array(self.index.id_map)
            vectors = faiss.rev_swig_ptr(flat.get_xb(), n * flat.d).reshape(n, flat.d) if n else np.zeros((0, flat.d), np.float32)
        if self._deleted:
            keep = ~np.isin(ids, np.fromiter(self._deleted, dtype=np.int64, count=len(self._deleted)))
            ids, vectors = ids[keep], vectors[keep]
        if len(ids) > 1 and np.any(ids[1:] < ids[:-1]):
            order = np.argsort(ids, kind="stable")
            ids, vectors = ids[order], vectors[order]
        return ids, vectors
