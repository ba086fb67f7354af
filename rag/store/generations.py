"""The generations of an index directory on disk, and how a reader loads the current one.

A generation is a pair of files, vectors.<gen>.faiss and records.<gen>.json, written whole before
manifest.json is switched to name it. Readers take no lock: they read the manifest, then the files it
names; a writer's cleanup may remove those files once a newer generation is in force, and the reader
then follows the manifest to the newer one (read_latest). Writing is IndexStore's (faiss_index.py).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import faiss

from rag.errors import IndexMismatchError, StoreError
from rag.store.index_types import index_kind, tombstones
from rag.types import Chunk

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# A reader whose generation's files vanish re-reads the manifest; this many generations in a row
# moving on under it (each a whole save by another process) means something else is wrong.
READ_ATTEMPTS = 5
GENERATION_FILE = re.compile(r"(?:vectors\.(\d+)\.faiss|records\.(\d+)\.json)")


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
    content_hash: str = ""  # of the file's bytes (loading.content_hash); "" in indexes saved before it


def read_manifest(directory: Path) -> Manifest:
    try:
        raw = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        return Manifest(**raw)
    except FileNotFoundError as exc:
        raise StoreError(f"no index at {directory} (manifest.json missing)") from exc
    except (OSError, ValueError, TypeError) as exc:
        raise StoreError(f"index manifest {directory / MANIFEST} is unreadable: {exc}") from exc


def check_manifest(directory: Path, manifest: Manifest, embed_model: str, dim: int) -> None:
    if manifest.format_version != FORMAT_VERSION:
        raise StoreError(
            f"index at {directory} has format version {manifest.format_version}; this program reads "
            f"version {FORMAT_VERSION}. Rebuild it: rag ingest PATH --index NEWDIR")
    if manifest.embed_model != embed_model or manifest.dim != dim:
        raise IndexMismatchError(
            f"index at {directory} was built with embedding model {manifest.embed_model!r} "
            f"(dimension {manifest.dim}) but the configured model is {embed_model!r} (dimension {dim}). "
            f"Set RAG_EMBED_MODEL={manifest.embed_model} or build a new index with --index NEWDIR.")


def read_latest(directory: Path, embed_model: str, dim: int
                ) -> tuple[Manifest, faiss.Index, dict[str, DocRecord], dict[int, Chunk]]:
    """The generation manifest.json names, read whole, without a lock. If its files are missing or
    unreadable and the manifest meanwhile names a newer generation, the generation moved on under
    us (a writer's cleanup removed the old files): read the newer one instead of failing."""
    manifest = read_manifest(directory)
    for attempt in range(READ_ATTEMPTS):
        check_manifest(directory, manifest, embed_model, dim)
        try:
            return (manifest, *read_generation(directory, manifest.generation, dim))
        except StoreError:
            latest = read_manifest(directory)
            if latest.generation == manifest.generation or attempt == READ_ATTEMPTS - 1:
                raise
            manifest = latest
    raise AssertionError("unreachable")


def read_generation(directory: Path, gen: int, dim: int
                    ) -> tuple[faiss.Index, dict[str, DocRecord], dict[int, Chunk]]:
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
        kind = index_kind(index)
    except StoreError as exc:
        raise StoreError(f"index files of generation {gen} in {directory} are corrupt: {exc}") from exc
    live = index.ntotal - (len(tombstones(index, chunks)) if kind == "hnsw" else 0)
    if live != len(chunks) or index.d != dim:
        raise StoreError(f"index in {directory} is inconsistent: {live} vectors for {len(chunks)} chunks")
    return index, docs, chunks
