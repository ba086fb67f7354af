"""The generations of an index directory on disk, and how a reader loads the current one.

A generation is a pair of files, vectors.<gen>.faiss and records.<gen>.json, written whole before
manifest.json is switched to name it. Readers take no lock: they read the manifest, then the files it
names; a writer's cleanup may remove those files once a newer generation is in force, and the reader
then follows the manifest to the newer one (read_latest). IndexStore (faiss_index.py) decides what to
write; the files are written here (`write_atomic`) and older generations removed (`remove_older`).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar

import faiss

from rag.errors import IndexMismatchError, StoreError
from rag.store.index_types import index_kind, tombstones
from rag.types import Chunk

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# A reader whose generation's files vanish re-reads the manifest; this many generations in a row
# moving on under it (each a whole save by another process) means something else is wrong.
READ_ATTEMPTS = 5
T = TypeVar("T")
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
    """The generation manifest.json names, read whole, without a lock (following the manifest if the
    generation moves on meanwhile: `_follow`)."""
    manifest, (index, docs, chunks) = _follow(directory, lambda m: read_generation(directory, m.generation, dim),
                                             lambda m: check_manifest(directory, m, embed_model, dim))
    return manifest, index, docs, chunks


def read_counts(directory: Path) -> tuple[int, int]:
    """(documents, chunks) of the generation manifest.json names, from its records alone (no vectors
    read, no model needed), following the manifest as `read_latest` does."""
    return _follow(directory, lambda m: _record_counts(directory, m.generation))[1]


def _follow(directory: Path, read: Callable[[Manifest], T], check: Callable[[Manifest], None] | None = None
            ) -> tuple[Manifest, T]:
    """`read` the generation manifest.json names. If its files are missing or unreadable (StoreError)
    and the manifest meanwhile names a newer generation, the generation moved on under us (a writer's
    cleanup removed the old files): read the newer one instead of failing."""
    manifest = read_manifest(directory)
    for attempt in range(READ_ATTEMPTS):
        if check is not None:
            check(manifest)
        try:
            return manifest, read(manifest)
        except StoreError:
            latest = read_manifest(directory)
            if latest.generation == manifest.generation or attempt == READ_ATTEMPTS - 1:
                raise
            manifest = latest
    raise AssertionError("unreachable")


def _record_counts(directory: Path, gen: int) -> tuple[int, int]:
    try:
        records = json.loads((directory / f"records.{gen}.json").read_text(encoding="utf-8"))
        return len(records["documents"]), len(records["chunks"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"index records of generation {gen} in {directory} are missing or unreadable: {exc}") from exc


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


def remove_older(directory: Path, current: int) -> None:
    """Delete the files of generations older than `current`, and `.tmp-*` files.

    Only called under the directory lock, right after a save: no writer is writing then, so a
    `.tmp-*` file is a crashed writer's, and no reader will take an older generation from the
    manifest any more. A reader that is still loading an older generation may see its file vanish;
    it then re-reads the manifest and loads this one (read_latest). That was chosen over keeping
    the previous generation, which would double the index's disk use. A newer generation's files
    (a writer killed before its manifest switch) are left alone: the next save writes that
    generation again, replacing them."""
    for path in directory.iterdir():
        match = GENERATION_FILE.fullmatch(path.name)
        older = match is not None and int(match.group(1) or match.group(2)) < current
        if older or path.name.startswith(".tmp-"):
            try:
                path.unlink()
            except OSError:
                pass  # e.g. held open by a reader on Windows: a later save removes it


def write_atomic(path: Path, data: bytes | Callable[[BinaryIO], None]) -> None:
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
