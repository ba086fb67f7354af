"""Index store: FAISS vectors + chunk/document records + a manifest, persisted atomically.

Layout of an index directory:
    manifest.json        format version, embedding model, dimension, chunk settings, generation, next id
    vectors.<gen>.faiss  FAISS index over inner product (cosine on normalised vectors), ids = chunk ids
    records.<gen>.json   documents and chunks

A save writes the generation's data files first and then replaces manifest.json with os.replace,
which is atomic: a crash at any point leaves a manifest that names complete files. FAISS ids come
from `next_id`, which only grows and is persisted, so an id is never reused after a deletion
(llama-index's FaissMapVectorStore takes ids from `ntotal` and does reuse them).

Index types (chosen when the store is saved, so a whole ingest is converted at most once):
    flat  IndexIDMap2(IndexFlatIP): exact; the scan costs ~0.33 µs per vector per query (3 ms at 10k).
    ivf   IndexIVFFlat (inverted lists carry the chunk ids; add_with_ids and remove_ids are native):
          same memory as flat, ~3 ms per query at 1M with recall@10 ~0.998 (docs/performance.md).
    hnsw  IndexIDMap2(IndexHNSWFlat): HNSW cannot remove, so a deleted id becomes a tombstone that
          searches skip (an IDSelector); the graph is rebuilt at save once tombstones pass 10%.
          The tombstones are not stored: they are the ids in the graph that no chunk record has.
`auto` (the default) keeps flat below AUTO_ANN_MIN vectors and switches to IVF above, back to flat
below AUTO_FLAT_BELOW; an `ivf` index is retrained when the corpus has grown ~4x since training.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

import faiss
import numpy as np

from rag.config import INDEX_TYPES
from rag.errors import DocumentNotFound, IndexMismatchError, StoreError
from rag.types import Chunk, DocumentInfo

FORMAT_VERSION = 1
MANIFEST = "manifest.json"

# Policy, from bench/search.py on 2 cores (docs/performance.md). Flat search is exact and needs no
# training, but scans ~0.33 µs per vector per query: 10 ms at ~30k vectors, 320 ms at 1M.
AUTO_ANN_MIN = 30_000  # auto: flat below this many vectors, IVF from here on
AUTO_FLAT_BELOW = 15_000  # auto: an ANN index shrunk (by deletions) below this goes back to flat
IVF_MIN_VECTORS = 1_000  # forced "ivf": flat until there are enough vectors to train the lists
IVF_TRAIN_PER_LIST = 40  # training sample: this many vectors per inverted list (faiss wants >= 39)
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 128  # 64 builds 2x faster but needs efSearch 256 for recall@10 0.99
HNSW_EF_SEARCH = 128
HNSW_MAX_DELETED = 0.10  # rebuild the graph at save when this fraction of it is tombstones


@dataclass
class Manifest:
    embed_model: str
    dim: int
    chunk_size: int
    chunk_overlap: int
    format_version: int = FORMAT_VERSION
    generation: int = 0
    next_id: int = 0
    metric: str = "inner_product"


@dataclass
class DocRecord:
    id: str
    source: str
    chars: int
    chunk_ids: list[int] = field(default_factory=list)


class IndexStore:
    """Vectors and records of one index directory. Not thread-safe by itself: RAG holds a lock."""

    def __init__(self, directory: Path, manifest: Manifest, index: faiss.Index,
                 documents: dict[str, DocRecord], chunks: dict[int, Chunk], index_type: str = "auto") -> None:
        self.directory = directory
        self.manifest = manifest
        self.docs = documents
        self.chunks = chunks
        # source -> doc id, so re-ingesting F files into D documents is O(F), not O(F*D)
        self._by_source = {d.source: d.id for d in documents.values()}
        self.index_type = index_type
        self._set_index(index)
        if self.kind == "hnsw":  # tombstones: ids still in the graph whose chunk records are gone
            in_graph = faiss.vector_to_array(index.id_map)
            gone = ~np.isin(in_graph, np.fromiter(chunks, dtype=np.int64, count=len(chunks)))
            self._deleted = set(in_graph[gone].tolist())

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
        return cls(Path(directory), manifest, _new_index(dim), {}, {}, index_type)

    @classmethod
    def open(cls, directory: Path, embed_model: str, dim: int, index_type: str = "auto") -> "IndexStore":
        directory = Path(directory)
        try:
            raw = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
            manifest = Manifest(**raw)
        except FileNotFoundError as exc:
            raise StoreError(f"no index at {directory} (manifest.json missing)") from exc
        except (OSError, ValueError, TypeError) as exc:
            raise StoreError(f"index manifest {directory / MANIFEST} is unreadable: {exc}") from exc
        if manifest.format_version != FORMAT_VERSION:
            raise StoreError(
                f"index at {directory} has format version {manifest.format_version}; this program reads "
                f"version {FORMAT_VERSION}. Rebuild it: rag ingest PATH --index NEWDIR")
        if manifest.embed_model != embed_model or manifest.dim != dim:
            raise IndexMismatchError(
                f"index at {directory} was built with embedding model {manifest.embed_model!r} "
                f"(dimension {manifest.dim}) but the configured model is {embed_model!r} (dimension {dim}). "
                f"Set RAG_EMBED_MODEL={manifest.embed_model} or build a new index with --index NEWDIR.")
        gen = manifest.generation
        try:
            index = faiss.read_index(str(directory / f"vectors.{gen}.faiss"))
            records = json.loads((directory / f"records.{gen}.json").read_text(encoding="utf-8"))
        except (OSError, RuntimeError, ValueError) as exc:
            raise StoreError(f"index files of generation {gen} in {directory} are missing or corrupt: {exc}") from exc
        try:
            docs = {d["id"]: DocRecord(**d) for d in records["documents"]}
            chunks = {c["id"]: Chunk(**c) for c in records["chunks"]}
        except (KeyError, TypeError, AttributeError) as exc:
            raise StoreError(f"index records of generation {gen} in {directory} are corrupt "
                             f"({type(exc).__name__}: {exc}); rebuild: rag ingest PATH --index NEWDIR") from exc
        try:
            index_kind(index)
        except StoreError as exc:
            raise StoreError(f"index files of generation {gen} in {directory} are corrupt: {exc}") from exc
        store = cls(directory, manifest, index, docs, chunks, index_type)
        live = index.ntotal - len(store._deleted)
        if live != len(chunks) or index.d != dim:
            raise StoreError(f"index in {directory} is inconsistent: {live} vectors for {len(chunks)} chunks")
        store._remove_stale_files()
        return store

    # -- changes ------------------------------------------------------------------------------
    def reserve_ids(self, count: int) -> int:
        """Hand out `count` fresh ids; ids only grow, so a deleted chunk's id is never reused."""
        first = self.manifest.next_id
        self.manifest.next_id += count
        return first

    def add(self, doc_id: str, source: str, chars: int, chunks: list[Chunk], vectors: np.ndarray) -> None:
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        if vectors.shape[1:] != (self.manifest.dim,):
            raise ValueError(f"vectors have shape {vectors.shape}, expected (n, {self.manifest.dim})")
        ids = np.array([c.id for c in chunks], dtype=np.int64)
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

    def doc_for_source(self, source: str) -> str | None:
        return self._by_source.get(source)

    # -- reading ------------------------------------------------------------------------------
    def search(self, query: np.ndarray, k: int) -> list[tuple[Chunk, float]]:
        live = self.index.ntotal - len(self._deleted)
        if live <= 0:
            return []
        query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        if self.kind == "hnsw":
            scores, ids = self.index.search(query, min(k, live), params=self._hnsw_params())
        else:
            scores, ids = self.index.search(query, min(k, live))
        return [(self.chunks[int(i)], float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]

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

    # -- persistence --------------------------------------------------------------------------
    def save(self) -> None:
        """Write a new generation, then switch the manifest to it atomically. A write that fails (disk
        full, read-only folder) leaves the previous generation in force and raises StoreError."""
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
        _write_atomic(self.directory / f"vectors.{gen}.faiss",
                      lambda fh: faiss.write_index(index, faiss.PyCallbackIOWriter(fh.write)))
        records = {
            "documents": [asdict(d) for d in self.docs.values()],
            "chunks": [asdict(c) for c in self.chunks.values()],
        }
        _write_atomic(self.directory / f"records.{gen}.json", json.dumps(records).encode("utf-8"))
        manifest = Manifest(**{**asdict(self.manifest), "generation": gen})
        _write_atomic(self.directory / MANIFEST, json.dumps(asdict(manifest), indent=2).encode("utf-8"))
        self.manifest.generation = gen
        self._remove_stale_files()

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
            ids, vectors = _ivf_contents(self.index)
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

    def _remove_stale_files(self) -> None:
        keep = {f"vectors.{self.manifest.generation}.faiss", f"records.{self.manifest.generation}.json", MANIFEST}
        for path in self.directory.iterdir():
            if path.name not in keep and (path.name.startswith(("vectors.", "records.")) or path.name.startswith(".tmp-")):
                try:
                    path.unlink()
                except OSError:
                    pass




def _new_index(dim: int) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def index_kind(index: faiss.Index) -> str:
    """"flat", "hnsw" or "ivf" for the three index layouts the store writes."""
    if isinstance(index, faiss.IndexIDMap2):
        inner = faiss.downcast_index(index.index)
        if isinstance(inner, faiss.IndexHNSW):
            return "hnsw"
        if isinstance(inner, faiss.IndexFlat):
            return "flat"
    elif isinstance(index, faiss.IndexIVF):
        return "ivf"
    raise StoreError(f"unexpected FAISS index type {type(index).__name__}")


def ivf_nlist(n: int) -> int:
    """Inverted lists for n vectors: the power of two nearest 4*sqrt(n), with >= 39 vectors per list."""
    if n < 39:
        return 1
    target = 2 ** round(math.log2(4 * math.sqrt(n)))
    return max(1, min(target, 2 ** int(math.log2(n // 39))))


def ivf_nprobe(nlist: int) -> int:
    """Lists scanned per query: recall@10 >= 0.99 on clustered data at 10k..1M (bench/search.py)."""
    return min(nlist, max(32, nlist // 64))


def build_index(kind: str, dim: int, ids: np.ndarray, vectors: np.ndarray, seed: int = 0) -> faiss.Index:
    """A new index of `kind` holding `vectors` under `ids` (the policy measured in docs/performance.md)."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    batch = 65_536
    if kind == "flat":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    elif kind == "hnsw":
        graph = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        graph.hnsw.efSearch = HNSW_EF_SEARCH
        index = faiss.IndexIDMap2(graph)
        batch = len(ids) or 1  # one call: HNSW adds in parallel within a call
    elif kind == "ivf":
        nlist = ivf_nlist(len(ids))
        index = faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
        sample = min(len(ids), IVF_TRAIN_PER_LIST * nlist)
        rows = np.sort(np.random.default_rng(seed).choice(len(ids), sample, replace=False))
        index.cp.seed = seed
        index.train(np.ascontiguousarray(vectors[rows], dtype=np.float32))
        index.nprobe = ivf_nprobe(nlist)
    else:
        raise ValueError(f"unknown index kind {kind!r}")
    for start in range(0, len(ids), batch):
        index.add_with_ids(np.ascontiguousarray(vectors[start:start + batch], dtype=np.float32), ids[start:start + batch])
    return index


def _ivf_contents(index: faiss.IndexIVF) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) stored in the inverted lists of an IndexIVFFlat."""
    lists = index.invlists
    dim = index.d
    ids = np.empty(index.ntotal, dtype=np.int64)
    vectors = np.empty((index.ntotal, dim), dtype=np.float32)
    pos = 0
    for lst in range(index.nlist):
        size = lists.list_size(lst)
        if size == 0:
            continue
        ids[pos:pos + size] = faiss.rev_swig_ptr(lists.get_ids(lst), size)
        codes = faiss.rev_swig_ptr(lists.get_codes(lst), size * lists.code_size)
        vectors[pos:pos + size] = np.frombuffer(codes, dtype=np.float32).reshape(size, dim)
        pos += size
    return ids[:pos], vectors[:pos]


def _write_atomic(path: Path, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write `data` (bytes, or a function that writes to the open file) to `path` atomically."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
