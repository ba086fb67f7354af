"""`rag sync --watch`: keep the index matching folders as files change, with watchdog.

Changes come in bursts (an editor's save is several events; a `git checkout` hundreds), so the paths
named by events are collected until nothing has happened for `quiet` seconds, then synced at once:
one `RAG.sync(folders, changed=paths)`, which looks at those paths only. A file created and deleted
within one burst (an editor's temp file) is gone by then and leaves no trace; hidden entries are
skipped as ingest skips them. The observer thread only collects paths; syncing runs in the caller's
thread, so Ctrl-C there stops both (a sync interrupted mid-way keeps what it saved, as `rag ingest`).
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import InputError
from rag.types import IngestEvent, SyncReport

if TYPE_CHECKING:
    from rag.pipeline import RAG

QUIET_SECONDS = 1.0
# Events that change nothing on disk; a folder's "modified" only says an entry in it changed, and that
# entry has its own event (syncing the folder itself would re-read everything under it).
IGNORED = {"opened", "closed_no_write"}


class ChangedPaths:
    """The paths named by file-system events since the last take(), and when the last one came."""

    def __init__(self, ignore_under: Path | None = None) -> None:
        self._paths: set[str] = set()
        self._last = 0.0
        self._lock = threading.Lock()
        self._ignore = ignore_under

    def dispatch(self, event) -> None:  # watchdog's handler interface
        if event.event_type in IGNORED or (event.is_directory and event.event_type == "modified"):
            return
        paths = [os.fsdecode(p) for p in (event.src_path, getattr(event, "dest_path", "")) if p]
        if self._ignore is not None:
            paths = [p for p in paths if not Path(p).is_relative_to(self._ignore)]
        if paths:
            with self._lock:
                self._paths.update(paths)
                self._last = time.monotonic()

    def take(self, quiet: float) -> list[str]:
        """The paths collected, if none came in the last `quiet` seconds (else nothing yet)."""
        with self._lock:
            if not self._paths or time.monotonic() - self._last < quiet:
                return []
            paths, self._paths = sorted(self._paths), set()
            return paths


def watch(rag: RAG, folders: Sequence[str | Path], *, on_event: Callable[[IngestEvent], None] | None = None,
          on_batch: Callable[[SyncReport], None] | None = None, quiet: float = QUIET_SECONDS,
          stop: threading.Event | None = None, only_supported: bool = False) -> None:
    """Sync `folders` once, then after every burst of changes, until `stop` is set or Ctrl-C.
    `on_event` hears every file's outcome, `on_batch` each sync's report (the first one included)."""
    from watchdog.observers import Observer  # only for this command

    stop = stop or threading.Event()
    changes = ChangedPaths(ignore_under=rag.store.directory.resolve())
    roots = [Path(f).expanduser().resolve() for f in folders]
    for root in roots:
        if not root.exists():
            raise InputError(f"folder to sync does not exist: {root}")
    observer = Observer()
    for root in roots:  # watched before the first sync: a change made while it runs is synced after it
        observer.schedule(changes, str(root), recursive=root.is_dir())
    observer.start()
    try:
        report = rag.sync(roots, on_event=on_event, only_supported=only_supported)
        if on_batch is not None:
            on_batch(report)
        while not stop.wait(min(0.1, quiet / 4)):
            paths = changes.take(quiet)
            if paths:
                report = rag.sync(roots, changed=paths, on_event=on_event, only_supported=only_supported)
                if on_batch is not None:
                    on_batch(report)
    finally:
        observer.stop()
        observer.join()
