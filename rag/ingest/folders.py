"""What a sync looks at: the synced folders, the part of them to look at now, and the files there.

`RAG.sync` makes the index match folders. A full sync looks at all of them; a watcher passes the paths
that changed (files or folders, present or gone), and only those are looked at. A document is the
sync's to remove only if its source lies under a synced folder and under a looked-at path, and is not
hidden there: hidden entries are skipped as `discover` skips them, both ways (never added, never removed).
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from rag.errors import InputError
from rag.ingest import loading
from rag.types import FolderScan, hidden_in


def _absolute(path: str | Path) -> Path:
    """The resolved path, also for a path that is gone (its existing parents resolved)."""
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def scan(folders: Iterable[str | Path], changed: Iterable[str | Path] | None = None,
         skip_under: Path | None = None) -> FolderScan:
    """Find the files under `folders` (or, with `changed`, under those of the changed paths that lie in
    the folders and still exist). A synced folder that does not exist is an InputError: a typo must not
    empty the index of a folder. Files under `skip_under` (the index itself) are left out."""
    roots = []
    for folder in folders:
        path = Path(folder).expanduser()
        if not path.exists():
            raise InputError(f"folder to sync does not exist: {path}")
        roots.append(path.resolve())
    if not roots:
        raise InputError("no folder to sync; name one or more folders")
    scope = None
    look = roots
    if changed is not None:
        scope = []
        for raw in changed:
            path = _absolute(raw)
            root = next((r for r in roots if path.is_relative_to(r)), None)
            if root is not None and not hidden_in(path, root):
                scope.append(path)
        look = [p for p in scope if os.path.lexists(p)]
    files: list[Path] = []
    for top in look:
        try:
            files.extend(p for p in loading.discover([top])
                         if skip_under is None or not p.resolve().is_relative_to(skip_under))
        except InputError:  # a changed path gone since it was looked at: its documents go
            continue
    files = list(dict.fromkeys(files))  # a changed folder and a changed file in it
    return FolderScan(tuple(roots), None if scope is None else tuple(scope), files,
                      frozenset(str(p.resolve()) for p in files))


def file_hashes(files: Iterable[Path], max_bytes: int) -> dict[str, tuple[str, str]]:
    """{source: (content hash, document id)} of readable regular files of a supported type, up to
    `max_bytes` each: what a moved file is recognised by. A file that cannot be read is left to `load`,
    which names why."""
    out: dict[str, tuple[str, str]] = {}
    for path in files:
        if path.suffix.lower() not in loading.SUPPORTED_EXTENSIONS:
            continue
        try:
            if not path.is_file() or path.stat().st_size > max_bytes:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        source = str(path.resolve())
        out[source] = (loading.content_hash(data), loading.document_id(source, data))
    return out
