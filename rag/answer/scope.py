"""Questions scoped to some documents: doc ids or path globs -> the chosen doc ids and their chunk ids.

Resolved once at the boundary (rag/asker.py, before ContextChoice.choose); retrieval then filters before ranking, so the
top k come from the chosen documents only (Store.search and Store.lexical_search with within=...,
WholeCorpus.passages(within=...)).
"""
from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

from rag.errors import InputError
from rag.store.interface import Store


@dataclass(frozen=True)
class Scope:
    doc_ids: frozenset[str]
    chunk_ids: frozenset[int]


def _patterns(entry: str) -> set[str]:
    """The glob as given, and as an absolute path (sources are stored resolved): `docs/a.pdf`, `~/x/*`."""
    if os.sep not in entry and "~" not in entry:
        return {entry}
    return {entry, os.path.abspath(os.path.expanduser(entry))}


def _matches(patterns: set[str], source: str) -> bool:
    name = PurePath(source).name
    return any(fnmatch.fnmatchcase(source, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def resolve_scope(store: Store, documents: Sequence[str] | None) -> Scope | None:
    """None or empty: the whole corpus (None). Otherwise every document whose id is given, or whose
    source path (or file name alone) matches a given glob; a relative or ~ path is also tried absolute. An entry matching nothing is an InputError."""
    if not documents:
        return None
    if isinstance(documents, str):
        raise InputError("documents must be a list of document ids or path globs, not one string")
    chosen: set[str] = set()
    unmatched: list[str] = []
    for entry in documents:
        if not isinstance(entry, str) or not entry.strip():
            raise InputError("a document to search in is empty; give a document id or a path glob")
        entry = entry.strip()
        if entry in store.docs:
            chosen.add(entry)
            continue
        patterns = _patterns(entry)
        hits = {d.id for d in store.docs.values() if _matches(patterns, d.source)}
        if not hits:
            unmatched.append(entry)
        chosen |= hits
    if unmatched:
        names = ", ".join(repr(u) for u in unmatched)
        raise InputError(f"no indexed document has the id or matches the path {names}; "
                         "`rag list` shows the documents (id and path)")
    chunk_ids = frozenset(i for d in chosen for i in store.docs[d].chunk_ids)
    return Scope(doc_ids=frozenset(chosen), chunk_ids=chunk_ids)
