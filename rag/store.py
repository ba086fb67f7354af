"""Index store: FAISS vectors + chunk/document records + a manifest, persisted atomically.

Layout of an index directory:
    manifest.json        format version, embedding model, dimension, chunk settings, generation, next id
    vectors.<gen>.faiss  FAISS IndexIDMap2 over inner product (cosine on normalised vectors)
    records.<gen>.json   documents and chunks

A save writes the generation's data files first and then replaces manifest.json with os.replace,
which is atomic: a crash at any point leaves a manifest that names complete files. FAISS ids come
from `next_id`, which only grows and is persisted, so an id is never reused after a deletion
(llama-index's FaissMapVectorStore takes ids from `ntotal` and does reuse them).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np

from rag.errors import DocumentNotFound, IndexMismatchError, StoreError
from rag.types import Chunk, DocumentInfo

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


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
                 documents: dict[str, DocRecord], chunks: dict[int, Chunk]) -> None:
        self.directory = directory
        self.manifest = manifest
        self.index = index
        self.docs = documents
        self.chunks = chunks

    # -- opening -------------------------------------------------------------------------------
    @staticmethod
    def exists(directory: Path) -> bool:
        return (Path(directory) / MANIFEST).is_file()

    @classmethod
    def create(cls, directory: Path, embed_model: str, dim: int, chunk_size: int, chunk_overlap: int) -> "IndexStore":
        manifest = Manifest(embed_model=embed_model, dim=dim, chunk_size=chunk_size, chunk_overlap=chunk_overlap)
        return cls(Path(directory), manifest, _new_index(dim), {}, {})

    @classmethod
    def open(cls, directory: Path, embed_model: str, dim: int) -> "IndexStore":
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
        docs = {d["id"]: DocRecord(**d) for d in records["documents"]}
        chunks = {c["id"]: Chunk(**c) for c in records["chunks"]}
        if index.ntotal != len(chunks) or index.d != dim:
            raise StoreError(f"index in {directory} is inconsistent: {index.ntotal} vectors for {len(chunks)} chunks")
        store = cls(directory, manifest, index, docs, chunks)
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
        for chunk in chunks:
            self.chunks[chunk.id] = chunk

    def remove(self, doc_id: str) -> DocRecord:
        record = self.docs.pop(doc_id, None)
        if record is None:
            raise DocumentNotFound(f"no document with id {doc_id!r}; `rag list` shows the ids")
        if record.chunk_ids:
            self.index.remove_ids(np.array(record.chunk_ids, dtype=np.int64))
        for cid in record.chunk_ids:
            self.chunks.pop(cid, None)
        return record

    def doc_for_source(self, source: str) -> str | None:
        return next((d.id for d in self.docs.values() if d.source == source), None)

    # -- reading ------------------------------------------------------------------------------
    def search(self, query: np.ndarray, k: int) -> list[tuple[Chunk, float]]:
        if self.index.ntotal == 0:
            return []
        scores, ids = self.index.search(np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32), min(k, self.index.ntotal))
        return [(self.chunks[int(i)], float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]

    def documents(self) -> list[DocumentInfo]:
        return [DocumentInfo(id=d.id, source=d.source, chunks=len(d.chunk_ids), chars=d.chars)
                for d in sorted(self.docs.values(), key=lambda d: d.source)]

    # -- persistence --------------------------------------------------------------------------
    def save(self) -> None:
        """Write a new generation, then switch the manifest to it atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        gen = self.manifest.generation + 1
        _write_atomic(self.directory / f"vectors.{gen}.faiss", faiss.serialize_index(self.index).tobytes())
        records = {
            "documents": [asdict(d) for d in self.docs.values()],
            "chunks": [asdict(c) for c in self.chunks.values()],
        }
        _write_atomic(self.directory / f"records.{gen}.json", json.dumps(records).encode("utf-8"))
        manifest = Manifest(**{**asdict(self.manifest), "generation": gen})
        _write_atomic(self.directory / MANIFEST, json.dumps(asdict(manifest), indent=2).encode("utf-8"))
        self.manifest.generation = gen
        self._remove_stale_files()

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


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
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
