"""Several processes on one index directory (issue 12): `rag serve` while `rag ingest` runs elsewhere.

Real processes (forked by tests/store_worker.py, which imports the package once for the module),
real FAISS files, the hashing FakeEmbedder. Each test is bounded in time.
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rag.errors import IndexChangedError, StoreError
from rag.ingest import loading
from rag.ingest.chunking import SentenceChunker
from rag.store import faiss_index as store_mod
from rag.store.faiss_index import MANIFEST, IndexStore
from rag.types import Chunk
from tests.store_worker import EMB, expected_state, open_rag, snapshot

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the worker forks its processes (POSIX)")


class Worker:
    """The process server of tests/store_worker.py: send a command, get its JSON answer."""

    def __init__(self) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "store_worker.py")], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        assert self._answer(120) == "ready"

    def _pump(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("@@"):  # anything else is a child's stray print
                self.lines.put(line[2:].strip())
        self.lines.put("exited")

    def _answer(self, timeout: float) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"the worker gave no answer within {timeout} s")

    def call(self, timeout: float = 60, **command) -> object:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        answer = self._answer(timeout)
        if answer == "exited":
            pytest.fail("the worker process exited")
        answer = json.loads(answer)
        if "error" in answer:
            pytest.fail(answer["error"])
        return answer["ok"]

    def run(self, *roles: dict, timeout: float = 60) -> list[dict]:
        results = self.call(timeout=timeout, cmd="run", roles=list(roles))
        crashed = [r["crash"] for r in results if "crash" in r]
        assert not crashed, crashed[0]
        return results

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.close()


@pytest.fixture
def index(tmp_path: Path) -> Path:
    """An index holding one document, so every process opens an existing index."""
    (tmp_path / "docs").mkdir()
    first = tmp_path / "docs" / "first.txt"
    first.write_text("The first note is about lighthouses. Keepers climbed the stairs at dusk.", encoding="utf-8")
    open_rag(str(tmp_path / "index")).add([first])
    return tmp_path / "index"


def chunk_texts(source: str) -> list[str]:
    """The chunk texts the writer's file gives, chunked as the index is (20 words, overlap 1)."""
    return [c.text for c in SentenceChunker(20, 1).split(loading.load(Path(source)))]


def test_one_writer_and_readers_for_seconds_lose_nothing_and_see_no_error(worker, index):
    docs = index.parent / "docs"
    seconds = 4.0
    writer, opener, live, lister = worker.run(
        {"role": "writer", "index": str(index), "docs": str(docs), "seconds": seconds, "seed": 1, "prefix": "w"},
        {"role": "reader", "index": str(index), "seconds": seconds, "mode": "open", "seed": 2},
        {"role": "reader", "index": str(index), "seconds": seconds, "mode": "live", "seed": 3},
        {"role": "reader", "index": str(index), "seconds": seconds, "mode": "list", "seed": 4})
    print(f"\nwriter {writer['ops']}; readers open {opener['ops']}, live {live['ops']} "
          f"({live['generations_seen']} generations), list {lister['ops']}")
    for name, result in [("writer", writer), ("open", opener), ("live", live), ("list", lister)]:
        assert result["n_errors"] == 0, (name, result["errors"])
    assert sum(writer["ops"].values()) >= 10 and set(writer["ops"]) == {"add", "replace", "delete"}
    assert min(opener["ops"], live["ops"], lister["ops"]) >= 5
    assert live["generations_seen"] >= 3 and live["went_back"] == 0  # the live RAG followed the writer
    on_disk = snapshot(str(index))["docs"]
    first = str((docs / "first.txt").resolve())
    assert set(on_disk) == set(writer["model"]) | {first}
    for source, entry in writer["model"].items():
        assert on_disk[source] == chunk_texts(source), source
        assert Path(source).read_text(encoding="utf-8") == entry["text"]
    leftovers = sorted(p.name for p in index.iterdir() if p.name not in (MANIFEST, ".lock"))
    generation = snapshot(str(index))["generation"]
    assert leftovers == [f"records.{generation}.json", f"vectors.{generation}.faiss"]


def test_opening_while_a_save_is_in_flight_deletes_nothing(worker, index, monkeypatch):
    """The reported loss: a writer has written generation N+1 and is about to switch manifest.json;
    another process opens the index (it used to delete N+1's files as stale); the writer then removes
    N. Now both processes' views must survive and the new generation must be complete."""
    writer = IndexStore.open(index, EMB.name, EMB.dim)
    before = writer.manifest.generation
    first = writer.reserve_ids(1)
    text = "The second note is about harbours."
    chunk = Chunk(id=first, doc_id="second", source="/second.txt", text=text, start=0, end=len(text))
    writer.add("second", "/second.txt", len(text), [chunk], EMB.embed([text]))
    seen: dict = {}
    real = store_mod.write_atomic

    def pause_before_the_switch(path, data):
        if path.name == MANIFEST:  # data files of the new generation written; the manifest not yet
            assert (index / f"vectors.{before + 1}.faiss").exists()
            (seen["other process"],) = worker.run({"role": "snapshot", "index": str(index)})
            seen["other instance"] = snapshot(str(index))
            assert (index / f"vectors.{before + 1}.faiss").exists() and (index / f"records.{before + 1}.json").exists()
        real(path, data)

    monkeypatch.setattr(store_mod, "write_atomic", pause_before_the_switch)
    writer.save()
    monkeypatch.undo()
    for view in seen.values():  # readers during the save: the previous generation, whole
        assert view["generation"] == before and "/second.txt" not in view["docs"] and len(view["docs"]) == 1
    after = snapshot(str(index))
    assert after["generation"] == before + 1 and after["docs"]["/second.txt"] == [text] and len(after["docs"]) == 2
    assert not (index / f"vectors.{before}.faiss").exists()  # cleanup: the older generation only


def test_a_reader_whose_generation_was_removed_loads_the_newer_one(index, monkeypatch):
    """A reader read manifest.json (generation N); before it opened N's files, two saves elsewhere
    moved the index on and cleanup removed them. It follows the manifest instead of failing."""
    from rag.store import generations

    other = IndexStore.open(index, EMB.name, EMB.dim)
    stale = generations.read_manifest(index)
    real = generations.read_manifest
    calls = []

    def first_call_stale(directory):
        calls.append(directory)
        return stale if len(calls) == 1 else real(directory)

    other.save()
    other.save()  # generation N+2; N's files are gone
    assert not (index / f"records.{stale.generation}.json").exists()
    monkeypatch.setattr(generations, "read_manifest", first_call_stale)
    store = IndexStore.open(index, EMB.name, EMB.dim)
    assert store.manifest.generation == stale.generation + 2 and len(store.docs) == 1


def test_saving_a_store_another_process_moved_on_is_refused_not_lost(index):
    a = IndexStore.open(index, EMB.name, EMB.dim)
    b = IndexStore.open(index, EMB.name, EMB.dim)
    a.save()
    with pytest.raises(IndexChangedError, match="generation"):
        b.save()
    with b.writing():  # the way to write: reload under the lock, then change and save
        assert b.manifest.generation == a.manifest.generation
        b.save()


def test_two_writer_processes_add_concurrently_and_both_sets_remain(worker, index):
    docs = str(index.parent / "docs")
    a, b = worker.run({"role": "adder", "index": str(index), "docs": docs, "count": 12, "prefix": "a", "seed": 1},
                      {"role": "adder", "index": str(index), "docs": docs, "count": 12, "prefix": "b", "seed": 2})
    assert a["n_errors"] == 0 and b["n_errors"] == 0, (a["errors"], b["errors"])
    on_disk = snapshot(str(index))["docs"]
    assert set(a["added"]) | set(b["added"]) <= set(on_disk) and len(on_disk) == 1 + 12 + 12
    for source in list(a["added"]) + list(b["added"]):
        assert on_disk[source] == chunk_texts(source)


@pytest.mark.parametrize("changes", [{}, {"retrieval": "hybrid"}, {"context": "auto"}], ids=["dense", "hybrid", "whole-corpus"])
def test_a_long_lived_rag_serves_what_another_process_saved(worker, index, changes):
    rag = open_rag(str(index), **changes)
    rag.ask("What did the keepers climb?")  # warm every cache on the first generation
    docs = str(index.parent / "docs")
    (added,) = worker.run({"role": "adder", "index": str(index), "docs": docs, "count": 1, "prefix": "new", "seed": 7})
    (source,) = added["added"]
    assert source in {d.source for d in rag.documents()}
    text = Path(source).read_text(encoding="utf-8")
    top = rag.retrieve(text, top_k=1)[0]
    assert top.chunk.source == source
    rag.ask(text)
    assert "Note new0 begins here" in rag._llm.prompts[-1]  # the model was shown the new document
    passages, _ = rag.context(text)
    assert source in {p.chunk.source for p in passages}


def test_kill_9_during_saves_leaves_a_whole_generation(worker, tmp_path):
    trials = worker.call(timeout=90, cmd="kill_trials", index=str(tmp_path / "index"), trials=8, seed=12)["trials"]
    print("\n" + "\n".join(json.dumps(t) for t in trials))
    for t in trials:
        assert "crash" not in t, t["crash"]
        assert t["killed"] and t["exact"] and t["not_older"] and t["searchable"], t
        assert t["lock_wait"] < 1.0, t  # the OS released the killed writer's lock
    assert trials[-1]["generation"] > trials[0]["generation"] > 0  # the trials did save between kills
    assert expected_state(trials[-1]["generation"]) == snapshot(str(tmp_path / "index"))["docs"]


def test_a_writer_that_waits_too_long_for_the_lock_says_which_lock(index):
    from filelock import FileLock

    store = IndexStore.open(index, EMB.name, EMB.dim)
    store._lock.timeout = 0.2
    with FileLock(index / store_mod.LOCK):  # another writer holds the directory
        with pytest.raises(StoreError, match=r"held the index lock .*\.lock for more than 0.2 s"):
            store.save()
    store.save()  # and once it is free, the save goes through
