"""Several processes on one PostgreSQL index (rag/store/postgres.py): two writers and a live reader at
once lose nothing and see no error; a writer killed with SIGKILL mid-change leaves every document
complete or absent. Real processes (tests/store_worker.py's roles with RAG_STORE set; tests/pg_worker.py),
a real PostgreSQL + pgvector server, the hashing FakeEmbedder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.store.postgres import PgStore
from tests.store_worker import EMB, open_rag
from tests.store.test_store_concurrency import Worker, chunk_texts

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the workers fork their processes (POSIX)")


@pytest.fixture
def pg_worker(pg_uri, monkeypatch):
    monkeypatch.setenv("RAG_STORE", pg_uri)  # every RAG the worker's processes open uses the database
    w = Worker()
    yield w
    w.close()


def test_two_writers_and_a_live_reader_lose_nothing(pg_worker, pg_uri, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    first = docs / "first.txt"
    first.write_text("The first note is about lighthouses. Keepers climbed the stairs at dusk.", encoding="utf-8")
    open_rag(str(tmp_path / "index"), store=pg_uri).add([first])
    seconds = 5.0
    one, two, live = pg_worker.run(
        {"role": "writer", "index": str(tmp_path / "index"), "docs": str(docs), "seconds": seconds, "seed": 1, "prefix": "a"},
        {"role": "writer", "index": str(tmp_path / "index"), "docs": str(docs), "seconds": seconds, "seed": 2, "prefix": "b"},
        {"role": "reader", "index": str(tmp_path / "index"), "seconds": seconds, "mode": "live", "seed": 3},
        timeout=120)
    print(f"\nwriters {one['ops']} {two['ops']}; live reader {live['ops']} ({live['generations_seen']} generations)")
    for name, result in [("writer a", one), ("writer b", two), ("reader", live)]:
        assert result["n_errors"] == 0, (name, result["errors"])
    assert min(sum(one["ops"].values()), sum(two["ops"].values())) >= 5
    assert live["ops"] >= 5 and live["generations_seen"] >= 3 and live["went_back"] == 0
    store = PgStore.connect(pg_uri, EMB.name, EMB.dim, 20, 1, tmp_path)
    expected = {source: entry["id"] for model in (one["model"], two["model"]) for source, entry in model.items()}
    expected[str(first.resolve())] = next(d.id for d in store.docs.values() if d.source == str(first.resolve()))
    assert {d.source: d.id for d in store.docs.values()} == expected  # every write of both, nothing else
    for source in expected:
        assert [store.chunks[i].text for i in sorted(store.docs[expected[source]].chunk_ids)] == chunk_texts(source)
    ids = [i for d in store.docs.values() for i in d.chunk_ids]
    assert len(ids) == len(set(ids)) and store.manifest.next_id > max(ids)  # no id handed out twice
    store.close()


def test_a_writer_killed_mid_change_leaves_the_previous_state(pg_uri):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "pg_worker.py"), pg_uri, "6", "7"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=240)
    lines = [line[2:] for line in out.stdout.splitlines() if line.startswith("@@")]
    assert lines, out.stderr[-2000:]
    trials = json.loads(lines[0])
    print("\n" + "\n".join(json.dumps(t) for t in trials))
    for t in trials:
        assert t["killed"] and t["exact"] and t["not_older"] and t["searchable"] and t["lock_free"] and t["counted"], t
    assert trials[-1]["generation"] > 6  # the saver got on between the kills
