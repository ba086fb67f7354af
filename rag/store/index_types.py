"""The FAISS index types the store uses, and how each is built.

Index types (chosen when the store is saved, so a whole ingest is converted at most once):
    flat  IndexIDMap2(IndexFlatIP): exact; the scan costs ~0.33 µs per vector per query (3 ms at 10k).
    ivf   IndexIVFFlat (inverted lists carry the chunk ids; add_with_ids and remove_ids are native):
          same memory as flat, ~3 ms per query at 1M with recall@10 ~0.998 (docs/performance.md).
    hnsw  IndexIDMap2(IndexHNSWFlat): HNSW cannot remove, so a deleted id becomes a tombstone that
          searches skip (an IDSelector); the graph is rebuilt at save once tombstones pass 10%.
          The tombstones are not stored: they are the ids in the graph that no chunk record has.
The choice between them (`IndexStore.wanted_kind`, the `auto` policy) lives with the store.
"""
from __future__ import annotations

import math

import faiss
import numpy as np

from rag.errors import StoreError
from rag.types import Chunk

IVF_TRAIN_PER_LIST = 40  # training sample: this many vectors per inverted list (faiss wants >= 39)
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 128  # 64 builds 2x faster but needs efSearch 256 for recall@10 0.99
HNSW_EF_SEARCH = 128


def tombstones(index: faiss.Index, chunks: dict[int, Chunk]) -> set[int]:
    """Ids still in an HNSW graph whose chunk records are gone (deleted, awaiting a rebuild)."""
    in_graph = faiss.vector_to_array(index.id_map)
    gone = ~np.isin(in_graph, np.fromiter(chunks, dtype=np.int64, count=len(chunks)))
    return set(in_graph[gone].tolist())


def new_index(dim: int) -> faiss.Index:
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


def ivf_contents(index: faiss.IndexIVF) -> tuple[np.ndarray, np.ndarray]:
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
