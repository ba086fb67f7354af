"""Threads that fit the cores free right now (setting `adapt_threads`).

llama.cpp and torch split each step of the model over their threads and wait at a barrier for the
slowest; a thread whose core another process holds stalls them all (llama.cpp's threads spin while they
wait, taking more of the time the other process needs). On 2 cores beside one CPU-bound process, one
thread answered faster than two (docs/notes/2026-12-05-document-piles.md). So before each answer and
each embedding call the thread count is fitted: the setting's `threads`, less one for every other task
the kernel has running (`procs_running` in /proc/stat, least of a few quick reads), at least 1.

"Other" means other processes': this process's own running threads are not counted (`own_running`, from
/proc/self/task). Counting them made an idle machine look busy, because the embedder's OpenMP threads keep
spinning for a moment after the sentence selection: idle, the fitted count fell to 1 and answers over the
20-paper corpus took 1.7x as long (docs/notes/2026-12-05-document-piles.md).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def procs_running(path: str = "/proc/stat") -> int | None:
    """Tasks running or ready to run on the CPUs right now, this reader included; None where unknown."""
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith("procs_running "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def own_running(tasks: str = "/proc/self/task") -> int:
    """This process's threads that are running or ready to run (state R), the caller included; 1 where unknown."""
    count = 0
    try:
        names = os.listdir(tasks)
    except OSError:
        return 1
    for name in names:
        try:
            with open(os.path.join(tasks, name, "stat"), encoding="ascii", errors="replace") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        count += state == "R"
    return max(1, count)


def free_threads(wanted: int, cores: int | None = None, running: Callable[[], int | None] = procs_running,
                 reads: int = 3, own: Callable[[], int] = own_running) -> int:
    """`wanted`, less one for every task of another process running now (least of `reads` reads), at least 1."""
    cores = cores or os.cpu_count() or 1
    seen = [n - own() for n in (running() for _ in range(reads)) if n is not None]
    if not seen:
        return wanted
    others = max(0, min(seen))
    return max(1, min(wanted, cores - others))


def fit_llama_threads(llm: Any, wanted: int, running: Callable[[], int | None] = procs_running,
                      own: Callable[[], int] = own_running) -> int | None:
    """Set a llama-index LlamaCPP model's threads (generation and prompt) to what fits now; returns the
    count, or None for a model with no llama.cpp context (a server, a fake)."""
    llama = getattr(llm, "_model", None)
    ctx = getattr(getattr(llama, "_ctx", None), "ctx", None)
    if ctx is None:
        return None
    n = free_threads(wanted, running=running, own=own)
    if getattr(llama, "_rag_threads", None) != n:
        import llama_cpp

        llama_cpp.llama_set_n_threads(ctx, n, n)
        llama._rag_threads = n
    return n
