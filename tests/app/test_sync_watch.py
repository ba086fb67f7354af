"""`rag sync` and `rag sync --watch`: the real watchdog observer, a burst of changes, the log lines, Ctrl-C."""
import _thread
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from rag.app import cli
from rag.app.watch import watch
from rag.errors import RagError
from rag.ingest import loading
from rag.pipeline import RAG
from rag.store.faiss_index import IndexStore
from rag.testing import FakeEmbedder, FakeLLM

WORDS = ["alder", "birch", "cedar", "damson", "elder", "fir", "gorse", "hazel", "ilex", "juniper", "larch", "maple",
         "oak", "pine", "rowan", "yew"]


def text(n: int, version: int = 0) -> str:
    return f"Note {n} version {version} is about the {WORDS[n % len(WORDS)]} tree in plot {n * 7 + version}."


def wait_for(condition, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def on_disk(folder: Path) -> set[str]:
    return {str(p) for p in folder.rglob("*") if p.is_file()}


def test_a_burst_of_100_changes_is_synced_in_a_few_batches_with_one_line_each(make_rag, tmp_path):
    emb = FakeEmbedder()
    rag = make_rag(embedder=emb)
    folder = (tmp_path / "notes").resolve()
    folder.mkdir()
    for n in range(50):
        (folder / f"f{n:03d}.txt").write_text(text(n), encoding="utf-8")
    lines: list[str] = []
    reports = []
    stop = threading.Event()

    def on_event(event):
        line = cli.sync_line(event)
        if line is not None:
            lines.append(line)

    thread = threading.Thread(target=watch, args=(rag, [folder]),
                              kwargs={"on_event": on_event, "on_batch": reports.append, "quiet": 0.5, "stop": stop})
    thread.start()
    try:
        assert wait_for(lambda: len(reports) == 1), "the first sync did not finish"
        assert len(reports[0].added) == 50 and len(lines) == 50
        lines.clear()
        emb.calls.clear()
        # the burst: 50 creates, 25 edits, 25 deletes, plus an editor's temp file and a hidden swap file
        # that come and go within it
        for n in range(50, 100):
            (folder / f"n{n:03d}.txt").write_text(text(n), encoding="utf-8")
        for n in range(25):
            (folder / f"f{n:03d}.txt").write_text(text(n, 1), encoding="utf-8")
        for n in range(25, 50):
            (folder / f"f{n:03d}.txt").unlink()
        (folder / "4913").write_text("x")
        (folder / ".f000.txt.swp").write_text("swap")
        (folder / "4913").unlink()
        expected = on_disk(folder) - {str(folder / ".f000.txt.swp")}
        assert len(expected) == 75
        assert wait_for(lambda: {d.source for d in rag.documents()} == expected and len(lines) >= 100), lines
        time.sleep(1.0)  # nothing more comes
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    batches = reports[1:]
    assert 1 <= len(batches) <= 3, [len(r.added) + len(r.replaced) + len(r.removed) for r in batches]
    steps = Counter(line.split()[0] for line in lines)
    assert steps == {"added": 50, "changed": 25, "removed": 25}, lines
    assert sorted(lines) == sorted(
        [f"added     {folder / f'n{n:03d}.txt'} (1 chunks)" for n in range(50, 100)]
        + [f"changed   {folder / f'f{n:03d}.txt'} (1 chunks)" for n in range(25)]
        + [f"removed   {folder / f'f{n:03d}.txt'}" for n in range(25, 50)])
    # only what was created or edited was embedded, each once
    assert sorted(t for call in emb.calls for t in call) == sorted(
        [text(n) for n in range(50, 100)] + [text(n, 1) for n in range(25)])
    chunks = {c.source: c.text for c in rag.store.chunks.values()}
    assert all(chunks[str(folder / f"f{n:03d}.txt")] == text(n, 1) for n in range(25))


def test_a_move_in_a_watched_folder_is_one_moved_line(make_rag, tmp_path):
    emb = FakeEmbedder()
    rag = make_rag(embedder=emb)
    folder = (tmp_path / "notes").resolve()
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "x.txt").write_text(text(1), encoding="utf-8")
    lines, reports, stop = [], [], threading.Event()
    thread = threading.Thread(target=watch, args=(rag, [folder]), kwargs={
        "on_event": lambda e: lines.append(cli.sync_line(e)), "on_batch": reports.append, "quiet": 0.3, "stop": stop})
    thread.start()
    try:
        assert wait_for(lambda: len(reports) == 1)
        emb.calls.clear()
        lines.clear()
        (folder / "a").rename(folder / "b")  # a folder renamed: its files move
        assert wait_for(lambda: len(reports) >= 2)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert [x for x in lines if x] == [f"moved     {folder / 'a' / 'x.txt'} -> {folder / 'b' / 'x.txt'}"]
    assert emb.calls == [] and {d.source for d in rag.documents()} == {str(folder / "b" / "x.txt")}


@pytest.fixture
def fake_open(monkeypatch, tmp_path):
    def _open(settings):
        return RAG.open(settings=settings, embedder=FakeEmbedder(), llm=FakeLLM(), seed=False)

    monkeypatch.setattr(cli, "_open", _open)
    return tmp_path / "idx"


def test_rag_sync_prints_each_change_and_a_summary(fake_open, tmp_path, capsys):
    folder = (tmp_path / "docs").resolve()
    folder.mkdir()
    (folder / "a.txt").write_text(text(1), encoding="utf-8")
    (folder / "b.txt").write_text(text(2), encoding="utf-8")
    assert cli.main(["sync", str(folder), "--index", str(fake_open)]) == cli.EXIT_OK
    (folder / "a.txt").rename(folder / "c.txt")
    (folder / "b.txt").unlink()
    (folder / "bad.xyz").write_text("?")
    capsys.readouterr()
    assert cli.main(["sync", str(folder), "--index", str(fake_open)]) == cli.EXIT_PARTIAL
    out = capsys.readouterr().out.splitlines()
    assert out == [f"moved     {folder / 'a.txt'} -> {folder / 'c.txt'}",
                   f"removed   {folder / 'b.txt'}",
                   (f"failed    {folder / 'bad.xyz'}: unsupported file type '.xyz'; supported: "
                    + ", ".join(loading.SUPPORTED_EXTENSIONS)),
                   "0 added, 0 changed, 1 removed, 1 moved, 0 unchanged, 1 failed"]
    assert cli.main(["sync", str(tmp_path / "nope"), "--index", str(fake_open)]) == cli.EXIT_ERROR
    assert capsys.readouterr().err.strip() == f"error: folder to sync does not exist: {tmp_path / 'nope'}"
    assert cli.main(["sync", str(folder), "--watch", "--quiet", "0", "--index", str(fake_open)]) == cli.EXIT_ERROR
    assert "--quiet must be a number of seconds above 0, not 0" in capsys.readouterr().err


def test_rag_sync_watch_logs_changes_and_stops_cleanly_on_ctrl_c(fake_open, tmp_path, capsys):
    # Ctrl-C as a terminal sends it: SIGINT raising KeyboardInterrupt. A shell starts background jobs with
    # SIGINT ignored, and then interrupt_main() does nothing (seen in CI run from a script with `&`).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _watch_and_interrupt(fake_open, tmp_path, capsys)
    finally:
        signal.signal(signal.SIGINT, previous)


def _watch_and_interrupt(fake_open, tmp_path, capsys):
    folder = (tmp_path / "docs").resolve()
    folder.mkdir()
    late = folder / "late.txt"
    threads_before = set(threading.enumerate())

    def indexed() -> set[str]:  # what another process (rag serve) would see
        if not IndexStore.exists(fake_open):
            return set()
        try:
            return {d.source for d in IndexStore.open(fake_open, "fake-embedder", 64).documents()}
        except (RagError, OSError):  # a generation replaced while it was being read: look again
            return set()

    seen = []

    def user():
        try:
            time.sleep(1.0)  # the first sync and the observer start
            late.write_text(text(3), encoding="utf-8")
            seen.append(wait_for(lambda: str(late) in indexed(), timeout=60))
            time.sleep(0.2)
        finally:  # whatever happened here, Ctrl-C, so the watch never waits forever
            _thread.interrupt_main()

    helper = threading.Thread(target=user)
    helper.start()
    code = cli.main(["sync", str(folder), "--watch", "--quiet", "0.3", "--index", str(fake_open)])
    helper.join()
    out, err = capsys.readouterr()
    assert seen == [True], (out, err)  # the watch synced the file made after it started
    assert code == cli.EXIT_OK
    assert [line[9:] for line in out.splitlines()] == [f"added     {late} (1 chunks)"]  # after HH:MM:SS
    assert err.splitlines() == [f"watching {folder}; Ctrl-C to stop",
                                "stopped watching; every change printed above is saved in the index"]
    assert wait_for(lambda: set(threading.enumerate()) <= threads_before, timeout=10)  # the observer is gone
