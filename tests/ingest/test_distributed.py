"""Distributed ingestion on a real two-node Ray cluster on this machine, with the real MiniLM.

The cluster (a head and a second node, one CPU each, on 127.0.0.1, in a temp dir) is started once for
the module by `ray start --block` in its own process group, and torn down by killing exactly what it
started: those groups, then any process still carrying this cluster's token in its environment (the
workers Ray spawned). `ray stop` is not used: it would stop every Ray cluster on the machine."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest

import rag
from rag.config import Settings
from rag.ingest.distributed import RayExecutor
from rag.pipeline import RAG
from tests.conftest import SEED_ARTICLE

pytestmark = pytest.mark.integration
ray = pytest.importorskip("ray", reason='the Ray tests need the ray extra: pip install -e ".[test]"')

REPO = Path(rag.__file__).resolve().parent.parent
TOKEN_VAR = "RAG_TEST_RAY_CLUSTER"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ours(token: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.pid != os.getpid() and proc.environ().get(TOKEN_VAR) == token:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.fixture(scope="module")
def ray_cluster():
    temp = tempfile.mkdtemp(prefix="rgray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port, token = _free_port(), uuid.uuid4().hex
    # No token auth on this throwaway local cluster, for its nodes and for this driver alike: a
    # ~/.ray/auth_token (which a local `ray.init()` writes) would otherwise put the nodes in token mode.
    saved_auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, TOKEN_VAR: token, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    ray_bin = str(Path(sys.executable).with_name("ray"))
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats", "--block"]
    started: list[subprocess.Popen] = []
    address = f"127.0.0.1:{port}"
    try:
        with open(Path(temp) / "head.log", "w") as log:
            started.append(subprocess.Popen([ray_bin, "start", "--head", f"--port={port}", "--include-dashboard=false",
                                             f"--temp-dir={temp}", *common], env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and started[0].poll() is None, (Path(temp) / "head.log").read_text()
                time.sleep(0.5)
        with open(Path(temp) / "node.log", "w") as log:
            started.append(subprocess.Popen([ray_bin, "start", f"--address={address}", *common], env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True))
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        while ray.cluster_resources().get("CPU", 0) < 2:
            assert time.monotonic() < deadline, f"second node did not join: {(Path(temp) / 'node.log').read_text()}"
            time.sleep(0.5)
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for proc in started:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=20)
        leftovers = _ours(token)
        for proc in leftovers:
            proc.kill()
        psutil.wait_procs(leftovers, timeout=10)
        shutil.rmtree(temp, ignore_errors=True)
        if saved_auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved_auth


def _corpus(root: Path, files: int) -> Path:
    docs = root / "corpus"
    docs.mkdir()
    shutil.copy(SEED_ARTICLE, docs / "000_seed.txt")
    topics = ["cranes migrate", "glaciers retreat", "rivers flood", "bees pollinate", "ports expand"]
    for i in range(files):
        topic = topics[i % len(topics)]
        sentences = [f"Report {i} line {j}: {topic} by {i * 7 + j} units in region {j % 5}." for j in range(10 + 25 * (i % 4))]
        (docs / f"report_{i:02d}.md").write_text(f"# Report {i}\n\n" + " ".join(sentences) + "\n", encoding="utf-8")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7\nthis is not a PDF body")
    return docs


def _snapshot(rag: RAG) -> dict:
    store = rag.store
    ids = sorted(store.chunks)
    return {
        "docs": sorted((d.id, d.source, d.chunks, d.chars) for d in store.documents()),
        "chunks": [(c.id, c.doc_id, c.source, c.text, c.start, c.end, c.page) for c in (store.chunks[i] for i in ids)],
        "vectors": store.vectors(ids),
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, real_embedder) -> tuple[Path, dict, list]:
    """The seed article, 12 generated reports, one broken PDF; and its local ingest (snapshot, failures)."""
    root = tmp_path_factory.mktemp("ray-corpus")
    docs = _corpus(root, 12)
    local = RAG.open(settings=Settings.load(index_dir=root / "local"), embedder=real_embedder, seed=False)
    report = local.add([docs])
    assert len(report.added) == 13 and [Path(f.path).name for f in report.failed] == ["broken.pdf"]
    return docs, _snapshot(local), sorted((f.path, f.reason) for f in report.failed)


def _same(local: dict, remote: dict) -> None:
    assert remote["docs"] == local["docs"]
    assert remote["chunks"] == local["chunks"]
    assert remote["vectors"].shape == local["vectors"].shape
    assert float(np.abs(remote["vectors"] - local["vectors"]).max()) <= 1e-5


def test_ray_ingest_equals_a_local_ingest(ray_cluster, corpus, tmp_path, real_embedder):
    docs, local, local_failed = corpus
    settings = Settings.load(index_dir=tmp_path / "ray", ray_address=ray_cluster)
    distributed = RAG.open(settings=settings, embedder=real_embedder, seed=False)
    assert isinstance(distributed.executor, RayExecutor)  # from the setting, as `rag ingest --ray` does
    distributed.executor.group_size = 4  # 4 groups: both nodes' actors get work
    report = distributed.add([docs])
    assert sorted((f.path, f.reason) for f in report.failed) == local_failed
    assert len(report.added) == 13 and len(set(distributed.executor.final_pids)) == 2
    _same(local, _snapshot(distributed))
    _same(local, _snapshot(RAG.open(settings=settings, embedder=real_embedder, seed=False)))  # what was saved
    pids = distributed.executor.final_pids
    again = distributed.add([docs])  # unchanged files are skipped, by the same actors (MiniLM loaded once)
    assert len(again.unchanged) == 13 and not again.added and len(again.failed) == 1
    assert distributed.executor.final_pids == pids
    distributed.executor.close()


def test_a_worker_killed_mid_job_still_ends_in_a_complete_index(ray_cluster, corpus, tmp_path, real_embedder):
    docs, local, local_failed = corpus
    settings = Settings.load(index_dir=tmp_path / "ray", ray_address=ray_cluster)
    distributed = RAG.open(settings=settings, embedder=real_embedder, seed=False)
    executor = RayExecutor(ray_cluster, settings, group_size=2)  # 7 groups over 2 actors: each holds several
    killed: list[int] = []

    def kill_a_worker(event) -> None:
        # the first group's results are in; the second actor is still working through its queued groups
        if event.step == "reading" and event.done >= 1 and not killed:
            pid = executor.worker_pids[1]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    try:
        report = distributed.add([docs], on_event=kill_a_worker, executor=executor)
    finally:
        executor.close()
    assert killed and executor.final_pids[1] != killed[0]  # Ray restarted the actor and retried its groups
    assert sorted((f.path, f.reason) for f in report.failed) == local_failed
    assert len(report.added) == 13
    _same(local, _snapshot(RAG.open(settings=settings, embedder=real_embedder, seed=False)))
