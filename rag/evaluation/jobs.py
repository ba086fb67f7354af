"""An evaluation run in the background, for the web UI: one thread asks the test set's questions one at a
time at background priority on the shared model lock (a chat question goes between two items), keeps
its progress (items done, running metrics, whether it waits for the model) for the page to poll, can
be cancelled, and keeps its report among the collection's runs (rag/evaluation/history.py).

    jobs = EvalJobs()
    job = jobs.start(owner, rag, testset, directory, lock)    # one job per owner at a time
    job.snapshot()    # Progress(done, total, metrics, waiting, state, run_id, error)
    jobs.cancel(owner)
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import InputError
from rag.evaluation.history import new_run_id, save_run
from rag.evaluation.runner import evaluate
from rag.evaluation.scoring import ItemResult, compute_metrics
from rag.evaluation.testsets import TestSet
from rag.models.model_lock import ModelLock

if TYPE_CHECKING:  # pragma: no cover
    from rag.evaluation.report import Report
    from rag.pipeline import RAG

log = logging.getLogger(__name__)

RUNNING, DONE, CANCELLED, FAILED = "running", "done", "cancelled", "failed"


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    right: int
    metrics: dict[str, Any]
    waiting: bool  # waiting for the model while a chat question is answered
    state: str  # running | done | cancelled | failed
    run_id: str
    collection: str
    error: str | None = None
    problems: tuple[str, ...] = ()  # test-set lines or items skipped


@dataclass
class EvalJob:
    owner: str
    collection: str
    total: int
    run_id: str = field(default_factory=new_run_id)
    state: str = RUNNING
    error: str | None = None
    report: "Report | None" = None
    problems: tuple[str, ...] = ()
    _results: list[ItemResult] = field(default_factory=list)
    _waiting: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _done: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def snapshot(self) -> Progress:
        results = list(self._results)
        return Progress(done=len(results), total=self.total, right=sum(1 for r in results if r.correct),
                        metrics=compute_metrics(results), waiting=self._waiting and self.state == RUNNING,
                        state=self.state, run_id=self.run_id, collection=self.collection, error=self.error,
                        problems=self.problems)

    def cancel(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the job has ended (its report kept, if it had any item)."""
        return self._done.wait(timeout)

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def _set_waiting(self, waiting: bool) -> None:
        self._waiting = waiting

    def _progress(self, results: list[ItemResult]) -> None:
        self._results = list(results)

    def run(self, rag: "RAG", testset: TestSet, directory: Path, lock: ModelLock) -> None:
        try:
            with lock.background(self._set_waiting):
                report = evaluate(rag, testset, on_item=self._progress, stop=self._stop.is_set)
            report.config["collection"] = self.collection
            self.report = report
            self._results = list(report.items)
            if report.items:
                save_run(directory, report, self.run_id)
            self.state = CANCELLED if report.partial else DONE
        except Exception as exc:  # noqa: BLE001 - shown on the page; the traceback goes to the log
            log.exception("evaluation run %s failed", self.run_id)
            self.error = f"{type(exc).__name__}: {exc}"
            self.state = FAILED
        finally:
            self._waiting = False
            self._done.set()


class EvalJobs:
    """The running (and last) evaluation job of each owner (a user name, or "" without a login)."""

    def __init__(self) -> None:
        self._jobs: dict[str, EvalJob] = {}
        self._lock = threading.Lock()

    def start(self, owner: str, collection: str, rag: "RAG", testset: TestSet, directory: Path,
              lock: ModelLock) -> EvalJob:
        if not testset.items:
            raise InputError("the test set has no usable items" +
                             (f" ({'; '.join(str(p) for p in testset.problems[:3])})" if testset.problems else ""))
        with self._lock:
            current = self._jobs.get(owner)
            if current is not None and not current.finished:
                raise InputError(f"an evaluation of {current.collection!r} is still running; cancel it or wait")
            job = EvalJob(owner=owner, collection=collection, total=len(testset.items),
                          problems=tuple(str(p) for p in testset.problems))
            job._thread = threading.Thread(target=job.run, args=(rag, testset, directory, lock),
                                           name=f"eval-{job.run_id}", daemon=True)
            self._jobs[owner] = job
        job._thread.start()
        return job

    def get(self, owner: str) -> EvalJob | None:
        return self._jobs.get(owner)

    def cancel(self, owner: str) -> bool:
        job = self._jobs.get(owner)
        if job is None or job.finished:
            return False
        job.cancel()
        return True
