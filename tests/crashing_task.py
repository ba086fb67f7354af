"""A loader process's task that dies or is interrupted on given files (tests/ingest/test_ingest_executors.py).
Its own small module: a worker process imports it to run it, and should not import the whole test suite."""
from __future__ import annotations

import os
from pathlib import Path

from rag.ingest import executors

REAL_TASK = executors._prepare_in_worker


def crash_on_poison(path, limits, chunker, max_chunks):
    """Dies on a file named *poison*, as a crash in a parser's C code would; Ctrl-C on stop.md; else the real task."""
    if "poison" in Path(path).name:
        os._exit(3)
    if Path(path).name == "stop.md":
        raise KeyboardInterrupt
    return REAL_TASK(path, limits, chunker, max_chunks)
