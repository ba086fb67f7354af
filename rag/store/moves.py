"""A sync's changes to the store that need no embedding: documents of vanished files removed, and
documents of moved files re-keyed (new id and source on the record and its chunks, vectors and chunk
ids kept). Called inside Store.writing(), which has brought the store up to the latest generation,
so what another process saved meanwhile is judged too. Typed against `Store` alone.
"""
from __future__ import annotations

from pathlib import Path

from rag.errors import DocumentNotFound
from rag.store.generations import DocRecord
from rag.store.interface import Store
from rag.types import DocumentInfo, FolderScan, MovedDocument


def rekey(store: Store, old_id: str, new_id: str, new_source: str) -> DocRecord:
    """Give a document a new id and source, on its record and every chunk (`Store.rekey`: FAISS edits
    its records, PostgreSQL its rows in writing()'s transaction); its vectors (keyed by chunk id) stay
    as they are. Returns the new record. Call inside store.writing(), then save."""
    if old_id not in store.docs:
        raise DocumentNotFound(f"no document with id {old_id!r}; `rag list` shows the ids")
    if new_id in store.docs:
        raise ValueError(f"document id {new_id!r} is already in the index")
    return store.rekey(old_id, new_id, new_source)


def remember_hash(store: Store, doc_id: str, digest: str) -> None:
    """Keep the hash of a just-added document's file (inside writing()), so a later sync can re-key it."""
    store.set_content_hash(doc_id, digest)


def vanished(store: Store, found: FolderScan) -> list[DocRecord]:
    """The documents this sync covers whose file is no longer there, by source."""
    return [d for d in store.docs.values() if d.source not in found.sources and found.covers(d.source)]


def retire(store: Store, found: FolderScan, hashes: dict[str, tuple[str, str]]
           ) -> tuple[list[MovedDocument], list[DocumentInfo]]:
    """Re-key each vanished document whose contents (hash, and file type) reappear at a new path of
    `hashes` ({source: (content hash, new id)}), one new path per document; remove the other vanished
    documents. A document saved before content hashes were kept has none and is removed (its file is
    re-embedded at its new path). Returns (moved, removed); the caller saves."""
    gone = vanished(store, found)
    by_hash: dict[str, list[DocRecord]] = {}
    for record in gone:
        if record.content_hash:
            by_hash.setdefault(record.content_hash, []).append(record)
    moved: list[MovedDocument] = []
    taken: set[str] = set()
    for source, (digest, new_id) in sorted(hashes.items()):
        if not by_hash.get(digest) or store.doc_for_source(source) is not None or new_id in store.docs:
            continue
        suffix = Path(source).suffix.lower()
        old = next((r for r in by_hash[digest] if Path(r.source).suffix.lower() == suffix), None)
        if old is None:  # same bytes read as another type (.txt -> .html) give other text
            continue
        by_hash[digest].remove(old)
        record = rekey(store, old.id, new_id, source)
        taken.add(old.id)
        moved.append(MovedDocument(old_id=old.id, old_source=old.source, info=_info(record)))
    removed = [_info(store.remove(r.id)) for r in gone if r.id not in taken]
    return moved, removed


def _info(record: DocRecord) -> DocumentInfo:
    return DocumentInfo(id=record.id, source=record.source, chunks=len(record.chunk_ids), chars=record.chars)
