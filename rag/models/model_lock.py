"""The lock around generating with the one model, with a lower priority for background work.

Chat questions and evaluation runs share one model (one generation at a time). An evaluation asks its
questions one by one inside `lock.background()`: each of its acquisitions waits while a foreground
caller (a chat question) holds the lock or is waiting for it, so a question asked during a long run is
answered between two of its items, never after the whole run.

    lock = ModelLock()
    with lock: ...                    # foreground (chat): first in line
    with lock.background(on_wait):    # this thread's acquisitions yield to foreground callers
        rag.ask(question)             # takes `lock` inside, as usual

A drop-in for the `threading.Lock` the RAG takes (`acquire`, `release`, `with`).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class ModelLock:
    """A non-reentrant lock where foreground callers go before background ones."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._held = False
        self._foreground_waiting = 0
        self._local = threading.local()

    # -- the threading.Lock interface ----------------------------------------------------------------
    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        background = getattr(self._local, "background", None)
        with self._cond:
            if background is None:
                return self._acquire_foreground(blocking, timeout)
            return self._acquire_background(background, blocking, timeout)

    def _acquire_foreground(self, blocking: bool, timeout: float) -> bool:
        if not self._held:
            self._held = True
            return True
        if not blocking:
            return False
        self._foreground_waiting += 1
        try:
            ok = self._cond.wait_for(lambda: not self._held, None if timeout < 0 else timeout)
        finally:
            self._foreground_waiting -= 1
        if ok:
            self._held = True
        else:
            self._cond.notify_all()  # a background waiter may go now
        return ok

    def _acquire_background(self, on_wait: Callable[[bool], None] | None, blocking: bool, timeout: float) -> bool:
        def free() -> bool:
            return not self._held and self._foreground_waiting == 0

        if free():
            self._held = True
            return True
        if not blocking:
            return False
        if on_wait is not None:
            on_wait(True)
        try:
            ok = self._cond.wait_for(free, None if timeout < 0 else timeout)
        finally:
            if on_wait is not None:
                on_wait(False)
        if ok:
            self._held = True
        return ok

    def release(self) -> None:
        with self._cond:
            if not self._held:
                raise RuntimeError("release of an unlocked ModelLock")
            self._held = False
            self._cond.notify_all()

    def locked(self) -> bool:
        return self._held

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- background work -----------------------------------------------------------------------------
    @property
    def foreground_waiting(self) -> int:
        """How many foreground callers wait for the lock now."""
        return self._foreground_waiting

    @contextmanager
    def background(self, on_wait: Callable[[bool], None] | None = None) -> Iterator[None]:
        """While active, this thread's acquisitions yield to foreground callers; `on_wait(True)` is
        called when one has to wait and `on_wait(False)` when it stops waiting."""
        previous = getattr(self._local, "background", None)
        self._local.background = on_wait or (lambda waiting: None)
        try:
            yield
        finally:
            self._local.background = previous
