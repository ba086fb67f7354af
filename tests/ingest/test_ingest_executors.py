"""The pluggable load+chunk(+embed) step of RAG.add, without a cluster (fakes only).

`GroupedExecutor` does in this process what a Ray worker does (rag/ingest/distributed.py: groups of
files, each loaded, chunked and embedded in one call), so these tests pin down that RAG.add commits the
same index from a distributed executor's results as from its own local step. The real cluster is in
tests/ingest/test_distributed.py."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.app import cli
from rag.errors import ConfigError
from rag.ingest.distributed import RayExecutor, check_reachable, group_files
from rag.ingest.executors import prepare_and_embed
from rag.pipeline import RAG
from rag.testing import FakeEmbedder
from tests import crashing_task
from tests.conftest import SEED_ARTICLE


class GroupedExecutor:
    """A distributed executor's contract, in process: groups of files prepared and embedded by their own
    embedder, yielded in file order."""

    def __init__(self, embedder, group: int = 3) -> None:
        self.embedder, self.group = embedder, group

    def prepare(self, files, limits, chunker, known, max_chunks):
        for group in group_files(files, max_files=self.group):
            yield from prepare_and_embed(group, limits, chunker, frozenset(known), max_chunks, self.embedder)


def _corpus(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir()
    (docs / "seed.txt").write_text(SEED_ARTICLE.read_text(encoding="utf-8"))
    for i in range(7):
        (docs / f"note{i}.md").write_text(" ".join(f"Note {i} sentence {j} says crane {i * j} flew north." for j in range(40 * (i + 1))))
    (docs / "bad.pdf").write_bytes(b"%PDF-1.4 not really a pdf")
    (docs / "empty.txt").write_text("")
    (docs / "copy.txt").write_text((docs / "note1.md").read_text())  # same text, another path: its own document
    return docs


def _snapshot(rag: RAG) -> dict:
    store = rag.store
    ids = sorted(store.chunks)
    return {
        "docs": sorted((d.id, Path(d.source).name, d.chunks, d.chars) for d in store.documents()),
        "chunks": [(c.id, c.doc_id, c.text, c.start, c.end, c.page) for c in (store.chunks[i] for i in ids)],
        "vectors": store.vectors(ids),
    }


def test_a_grouped_executor_commits_the_same_index_as_the_local_step(make_rag, tmp_path):
    docs = _corpus(tmp_path)
    local = make_rag(index_dir=tmp_path / "local", max_file_chunks=15)
    local_events: list = []
    local_report = local.add([docs], on_event=local_events.append)

    driver_embedder, worker_embedder = FakeEmbedder(), FakeEmbedder()
    remote = make_rag(index_dir=tmp_path / "remote", max_file_chunks=15, embedder=driver_embedder)
    remote_events: list = []
    remote_report = remote.add([docs], on_event=remote_events.append, executor=GroupedExecutor(worker_embedder))

    assert worker_embedder.calls and not driver_embedder.calls  # the driver only wrote what workers embedded
    a, b = _snapshot(local), _snapshot(remote)
    assert a["docs"] == b["docs"] and len(a["docs"]) == 8  # seed, note0..5, copy
    assert a["chunks"] == b["chunks"]
    np.testing.assert_allclose(a["vectors"], b["vectors"], atol=1e-6)
    assert [(f.path, f.reason) for f in local_report.failed] == [(f.path, f.reason) for f in remote_report.failed]
    assert sorted(Path(f.path).name for f in remote_report.failed) == ["bad.pdf", "empty.txt", "note6.md"]
    assert any("max_file_chunks" in f.reason for f in remote_report.failed)
    strip = lambda evs: [(e.step, Path(e.path).name, e.done, e.total) for e in evs]  # noqa: E731
    assert strip(local_events) == strip(remote_events)

    calls = len(worker_embedder.calls)
    again = remote.add([docs], executor=GroupedExecutor(worker_embedder))
    assert len(again.unchanged) == 8 and not again.added and len(again.failed) == 3
    assert len(worker_embedder.calls) == calls  # unchanged files are not embedded again


def test_known_documents_are_not_chunked_or_embedded_by_workers(tmp_path):
    docs = _corpus(tmp_path)
    files = sorted(docs.iterdir())
    from rag.ingest import loading
    from rag.ingest.chunking import SentenceChunker

    embedder = FakeEmbedder()
    first = prepare_and_embed(files, loading.Limits.default(), SentenceChunker(160, 1), frozenset(), 10_000, embedder)
    known = frozenset(p.doc.id for p in first if p.doc is not None)
    second = prepare_and_embed(files, loading.Limits.default(), SentenceChunker(160, 1), known, 10_000, embedder)
    assert all(p.chunks == () and p.vectors is None for p in second if p.doc is not None)
    assert len(embedder.calls) == 1  # the second pass embedded nothing
    assert all(p.vectors.shape == (len(p.chunks), embedder.dim) for p in first if p.chunks)


def test_group_files_keeps_order_and_bounds_each_group(tmp_path):
    files = []
    for i, size in enumerate([10, 10, 300, 10, 10, 10, 10, 500, 10]):
        path = tmp_path / f"f{i}.txt"
        path.write_bytes(b"x" * size)
        files.append(path)
    files.append(tmp_path / "missing.txt")
    groups = group_files(files, max_files=3, max_bytes=320)
    assert [p for g in groups for p in g] == files
    assert all(1 <= len(g) <= 3 for g in groups)
    assert [len(g) for g in groups] == [3, 3, 1, 1, 2]  # 10+10+300 fits 320 B; 500 B goes alone


def test_ray_address_setting_names_the_valid_forms(settings):
    assert settings.with_(ray_address="127.0.0.1:6379").ray_address == "127.0.0.1:6379"
    assert settings.with_(ray_address="ray://head:10001").ray_address == "ray://head:10001"
    with pytest.raises(ConfigError, match=r"ray_address='head' .*host:port.*ray://host:port.*auto"):
        settings.with_(ray_address="head")


def test_without_ray_installed_the_error_names_the_extra(make_rag, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    rag = make_rag(ray_address="127.0.0.1:6379")
    with pytest.raises(ConfigError, match=r'needs Ray, which is not installed: pip install -e "\.\[scale\]"'):
        rag.add([SEED_ARTICLE])
    assert rag.documents() == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_address_is_one_line_naming_it(make_rag, settings):
    address = f"127.0.0.1:{_closed_port()}"
    with pytest.raises(ConfigError, match=rf"ray_address='{address}' cannot be reached"):
        check_reachable(address, timeout=2)
    rag = make_rag(ray_address=address)
    assert isinstance(rag.executor, RayExecutor)
    with pytest.raises(ConfigError, match=address):
        rag.add([SEED_ARTICLE])


def test_cli_ingest_with_an_unreachable_ray_address(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "_open", lambda s: RAG.open(settings=s, embedder=FakeEmbedder(), seed=False))
    address = f"127.0.0.1:{_closed_port()}"
    code = cli.main(["ingest", "--ray", address, str(SEED_ARTICLE), "--index", str(tmp_path / "idx")])
    err = capsys.readouterr().err.strip()
    assert code == cli.EXIT_ERROR
    assert err.startswith("error: ") and address in err and "\n" not in err


def _prepare_all(executor, files):
    from rag.ingest import loading
    from rag.ingest.chunking import SentenceChunker

    return list(executor.prepare(files, loading.Limits.default(), SentenceChunker(160, 1), frozenset(), 10_000))


def test_worker_processes_give_what_the_local_step_gives_in_file_order(tmp_path):
    from rag.ingest.executors import LocalExecutor, ProcessExecutor

    files = sorted(_corpus(tmp_path).iterdir())
    local, parallel = _prepare_all(LocalExecutor(), files), _prepare_all(ProcessExecutor(2), files)
    assert [p.path for p in parallel] == [str(f) for f in files]
    assert [(p.doc, p.chunks, p.failure) for p in parallel] == [(p.doc, p.chunks, p.failure) for p in local]
    assert any(p.failure for p in parallel) and any(p.chunks for p in parallel)


def test_a_worker_that_dies_is_a_named_failure_and_the_rest_are_read(tmp_path, monkeypatch):
    from rag.ingest import executors

    docs = _corpus(tmp_path)
    (docs / "0-poison.md").write_text("This file kills the process that reads it.")  # first: the rest queued behind it
    files = sorted(docs.iterdir())
    executor = executors.ProcessExecutor(2)
    monkeypatch.setattr(executors, "_prepare_in_worker", crashing_task.crash_on_poison)  # pickled by name: the workers run it
    got = _prepare_all(executor, files)
    assert [p.path for p in got] == [str(f) for f in files]
    (crash,) = [p for p in got if p.path.endswith("0-poison.md")]
    assert "the loader crashed on it (its worker process died" in crash.failure.reason
    rest = [f for f in files if f.name != "0-poison.md"]
    local = _prepare_all(executors.LocalExecutor(), rest)
    assert [(p.doc, p.chunks, p.failure) for p in got if p is not crash] == [(p.doc, p.chunks, p.failure) for p in local]


def test_an_interrupt_while_workers_read_keeps_the_files_read_before_it(make_rag, tmp_path, monkeypatch):
    from rag.ingest import executors

    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a.md", "b.md", "stop.md", "z.md"):
        (docs / name).write_text(f"The file {name} says cranes fly south.")
    rag = make_rag()
    monkeypatch.setattr(executors, "_prepare_in_worker", crashing_task.crash_on_poison)
    executor = executors.ProcessExecutor(2)
    with pytest.raises(KeyboardInterrupt):
        rag.add([docs], executor=executor)
    assert sorted(Path(d.source).name for d in rag.documents()) == ["a.md", "b.md"]


def test_load_workers_picks_in_process_or_worker_processes(settings):
    from rag.ingest.distributed import executor_for
    from rag.ingest.executors import LocalExecutor, ProcessExecutor

    assert isinstance(executor_for(settings.with_(load_workers=1)), LocalExecutor)
    three = executor_for(settings.with_(load_workers=3))
    assert isinstance(three, ProcessExecutor) and three.workers == 3
    with pytest.raises(ConfigError, match="load_workers"):
        settings.with_(load_workers=0)
