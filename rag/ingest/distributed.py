"""Distributed ingestion on a Ray cluster: workers load, chunk and embed; this process writes.

`RayExecutor.prepare` starts one `IngestWorker` actor per CPU of the cluster (each loads MiniLM from
its installed package once, offline), hands them the files in groups (`group_files`), a few groups in
flight per actor, and yields the workers' `PreparedFile`s in the order of the files, so `RAG.add`
commits exactly what a local ingest commits (same ids, chunks and spans; vectors equal to float noise).

Fault tolerance is Ray's: an actor whose process dies is restarted (`max_restarts`) and the groups it
held are run again (`max_task_retries`); a group's work has no side effect, so running it twice is safe.
Only if a group fails more often than that does the ingest stop, with the files before it saved.

Every node must see the files at the same paths as this process (one machine, or a shared filesystem)
and have rag-local installed with the extra: `pip install -e ".[scale]"`.
"""
from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Container, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import ConfigError, RagError
from rag.ingest import loading
from rag.ingest.chunking import SentenceChunker
from rag.ingest.executors import IngestExecutor, LocalExecutor, ProcessExecutor, prepare_and_embed
from rag.types import PreparedFile

if TYPE_CHECKING:  # pragma: no cover
    from rag.config import Settings
    from rag.ingest.ocr import OcrEngine

INSTALL_HINT = 'pip install -e ".[scale]"'
# A group of files is one task: up to this many files or bytes (a task's chunks are embedded in one call).
GROUP_FILES = 32
GROUP_BYTES = 256 * 1024
IN_FLIGHT_PER_WORKER = 3  # groups queued on each actor, so it never waits for this process
CONNECT_TIMEOUT_S = 5.0


class ClusterError(RagError):
    """The Ray cluster could not finish a group of files (its worker died more often than Ray retries)."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(f"ray_address (--ray) needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """A one-line ConfigError naming `address` if nothing listens there (ray.init would wait a minute)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    raise ConfigError(f"the Ray cluster at ray_address={address!r} cannot be reached ({reason}); start one with "
                      "`ray start --head` or fix --ray / RAG_RAY_ADDRESS")


def group_files(files: Sequence[Path], max_files: int = GROUP_FILES, max_bytes: int = GROUP_BYTES
                ) -> list[list[Path]]:
    """Consecutive files in groups of at most `max_files` files or about `max_bytes` bytes (a larger
    file is a group of its own). Sizes from lstat; a file that cannot be stat'ed counts as empty and
    its worker names what is wrong with it."""
    groups: list[list[Path]] = []
    size = 0
    for path in files:
        try:
            nbytes = os.lstat(path).st_size
        except OSError:
            nbytes = 0
        if not groups or len(groups[-1]) >= max_files or (groups[-1] and size + nbytes > max_bytes):
            groups.append([])
            size = 0
        groups[-1].append(path)
        size += nbytes
    return groups


class IngestWorker:
    """A Ray actor: the embedding model, loaded once, and the work of one group of files per call."""

    def __init__(self, settings: "Settings") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from rag.models.embedding import build_embedder

        self.embedder = build_embedder(settings)
        from rag.ingest.ocr import OcrEngine  # a worker reads scanned pages too, with its own engine

        self.ocr = OcrEngine.of(settings) if settings.ocr else None

    def identity(self) -> tuple[str, int, int]:
        return self.embedder.name, self.embedder.dim, os.getpid()

    def prepare(self, files: list[str], limits: loading.Limits, chunker: SentenceChunker,
                known: Container[str], max_chunks: int) -> list[PreparedFile]:
        return prepare_and_embed([Path(f) for f in files], limits, chunker, known, max_chunks, self.embedder, self.ocr)


class RayExecutor:
    """Load, chunk and embed on a Ray cluster's workers; results in file order (see the module doc)."""

    def __init__(self, address: str, settings: "Settings", *, workers: int | None = None,
                 group_size: int = GROUP_FILES, max_restarts: int = 3, max_task_retries: int = 3) -> None:
        self.address = address
        self.workers = workers  # actors; default one per CPU of the cluster
        self.group_size = group_size
        self.max_restarts = max_restarts
        self.max_task_retries = max_task_retries
        # One torch thread per actor (one actor per CPU); the rest of the embedder settings as given.
        self.worker_settings = settings.with_(threads=1)
        self.worker_pids: list[int] = []  # the actors' processes as the job starts (a test kills one)
        self.final_pids: list[int] = []  # ... and as it ends (a restarted actor has a new one)
        self._actors: list[Any] | None = None  # kept for the next call; they end with this process

    def _start(self, ray: Any) -> list[Any]:
        if self._actors is None:
            count = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            actor = ray.remote(num_cpus=1, max_restarts=self.max_restarts,
                               max_task_retries=self.max_task_retries)(IngestWorker)
            self._actors = [actor.remote(self.worker_settings) for _ in range(count)]
        return self._actors

    def close(self) -> None:
        """Stop the actors (they also end when this process disconnects from the cluster)."""
        if self._actors is not None:
            ray = import_ray()
            for a in self._actors:
                ray.kill(a)
            self._actors = None

    def connect(self) -> Any:
        ray = import_ray()
        if not ray.is_initialized():
            check_reachable(self.address)
            try:
                ray.init(address=self.address, namespace="rag-ingest", log_to_driver=False,
                         logging_level="ERROR", configure_logging=True)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(f"cannot join the Ray cluster at ray_address={self.address!r}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        return ray

    def prepare(self, files: Sequence[Path], limits: loading.Limits, chunker: SentenceChunker,
                known: Container[str], max_chunks: int) -> Iterator[PreparedFile]:
        ray = self.connect()
        groups = group_files(files, max_files=self.group_size)
        if not groups:
            return
        actors = self._start(ray)
        count = len(actors)
        finished = False
        try:
            names = ray.get([a.identity.remote() for a in actors])
            self.worker_pids = [pid for _, _, pid in names]
            known_ref = ray.put(frozenset(known))
            queue: deque = deque()
            todo = iter(enumerate(groups))

            def submit() -> None:
                for index, group in todo:
                    queue.append(actors[index % count].prepare.remote(
                        [str(f) for f in group], limits, chunker, known_ref, max_chunks))
                    return

            for _ in range(count * IN_FLIGHT_PER_WORKER):
                submit()
            while queue:
                ref = queue.popleft()
                try:
                    results = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    raise exc.as_instanceof_cause() from None  # a bug in the worker's code: as if local
                except ray.exceptions.RayError as exc:
                    raise ClusterError(f"the Ray cluster at {self.address} lost a group of files after "
                                       f"{self.max_task_retries} retries: {str(exc).splitlines()[0]}") from None
                submit()
                if not queue:  # the last group is in (RAG.add stops asking after the last file)
                    self.final_pids = [pid for _, _, pid in ray.get([a.identity.remote() for a in actors])]
                    finished = True
                yield from results
        finally:
            if not finished:  # an error or Ctrl-C: drop the actors with the groups still queued on them
                self.close()


def executor_for(settings: "Settings", ocr: "OcrEngine | None" = None) -> IngestExecutor:
    """Ray when `ray_address` is set (Ray itself is imported only when files are prepared), else local:
    in `load_workers` processes, or in this one if 1 (reading scanned pages with `ocr`; Ray's workers and
    the local worker processes make their own engine)."""
    if settings.ray_address:
        return RayExecutor(settings.ray_address, settings)
    return ProcessExecutor(settings.load_workers, ocr) if settings.load_workers > 1 else LocalExecutor(ocr)
