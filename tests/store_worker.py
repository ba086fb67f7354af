"""Processes for tests/store/test_store_concurrency.py: writers, readers and killed savers over one index.

Run as `python tests/store_worker.py`: a server that imports the package once (~3 s on a loaded
machine) and then, for each JSON command read from stdin, forks real processes (own memory, own file
descriptors, own directory lock) that run the roles below, and answers with one line
"@@" + JSON. Forking is safe here: after the imports this process has one thread and has run no
FAISS code (OMP_NUM_THREADS=1 besides); it costs milliseconds where a fresh interpreter per role
would cost seconds.
"""
from __future__ import annotations

import json
import os
import random
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from itertools import pairwise
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rag.config import Settings  # noqa: E402
from rag.pipeline import RAG  # noqa: E402
from rag.store.faiss_index import IndexStore  # noqa: E402
from rag.testing import FakeEmbedder, FakeLLM  # noqa: E402
from rag.types import Chunk  # noqa: E402

EMB = FakeEmbedder(dim=32)
WORDS = ("river bridge tower garden lantern harbour meadow orchard castle valley glacier canyon "
         "falcon otter badger heron maple cedar willow copper silver marble amber violet").split()


def open_rag(index: str, **changes) -> RAG:
    settings = Settings(index_dir=Path(index), cache_dir=Path(index).parent / "cache", min_score=0.1,
                        context="chunk", passage_order="best_first", chunk_size=20, chunk_overlap=1)
    return RAG.open(settings=settings.with_(**changes), embedder=FakeEmbedder(dim=32), llm=FakeLLM(), seed=False)


def make_text(rng: random.Random, tag: str) -> str:
    """3-6 sentences (2-3 chunks of 20 words), with `tag` so that no two documents share an id."""
    sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 10))).capitalize() + "."
                 for _ in range(rng.randint(3, 6))]
    return f"Note {tag} begins here. " + " ".join(sentences)


# -- roles (each runs in its own forked process) -----------------------------------------------
def writer(index: str, docs: str, seconds: float, seed: int, prefix: str) -> dict:
    """Adds, replaces (same file, new text) and deletes documents at random through RAG, and keeps
    its own model of what exists: {source: {"id", "text"}}."""
    rng = random.Random(seed)
    rag = open_rag(index)
    model: dict[str, dict] = {}
    ops: Counter = Counter()
    errors: list[str] = []
    n = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        op = "add" if len(model) < 3 or rng.random() < 0.4 else rng.choice(["replace", "delete"])
        try:
            if op == "delete":
                source = rng.choice(sorted(model))
                info = rag.delete(model[source]["id"])
                assert info.source == source, (info, source)
                Path(source).unlink()
                del model[source]
            else:
                n += 1
                path = Path(docs) / f"{prefix}{n}.txt" if op == "add" else Path(rng.choice(sorted(model)))
                text = make_text(rng, f"{prefix}{n}")
                path.write_text(text, encoding="utf-8")
                report = rag.add([path])
                done = report.added if op == "add" else report.replaced
                assert len(done) == 1 and not report.failed, report
                model[done[0].source] = {"id": done[0].id, "text": text}
            ops[op] += 1
        except Exception as exc:  # counted, not raised: the test wants every error, not the first
            errors.append(f"{op}: {type(exc).__name__}: {exc}")
    return {"ops": dict(ops), "errors": errors[:10], "n_errors": len(errors), "model": model}


def adder(index: str, docs: str, count: int, prefix: str, seed: int) -> dict:
    """Adds `count` documents, one RAG.add (one save) each, through one RAG opened at the start."""
    rng = random.Random(seed)
    rag = open_rag(index)
    added, errors = {}, []
    for i in range(count):
        path = Path(docs) / f"{prefix}{i}.txt"
        path.write_text(make_text(rng, f"{prefix}{i}"), encoding="utf-8")
        try:
            (info,) = rag.add([path]).added
            added[info.source] = info.id
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    return {"added": added, "errors": errors[:10], "n_errors": len(errors)}


def reader(index: str, seconds: float, mode: str, seed: int) -> dict:
    """mode "open": a fresh RAG per round (a CLI command); "live": one RAG kept open (the web UI);
    "list": IndexStore.open and its document list (what `rag list --index` does)."""
    rng = random.Random(seed)
    live = open_rag(index) if mode == "live" else None
    ops, errors, generations = 0, [], []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if mode == "list":
                store = IndexStore.open(Path(index), EMB.name, EMB.dim)
                docs = store.documents()
                assert sum(d.chunks for d in docs) == len(store.chunks)
                generations.append(store.manifest.generation)
            else:
                rag = live or open_rag(index)
                docs = rag.documents()
                assert sum(d.chunks for d in docs) >= 1
                passages = rag.retrieve(" ".join(rng.sample(WORDS, 4)), top_k=3)
                # documents() and retrieve() may see two generations; one retrieval sees one, whole
                assert all(p.chunk.doc_id in rag.store.docs for p in passages), "a passage of no document"
                if mode == "live" and rng.random() < 0.2:
                    rag.ask(" ".join(rng.sample(WORDS, 4)))
                generations.append(rag.store.manifest.generation)
            ops += 1
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    return {"ops": ops, "errors": errors[:10], "n_errors": len(errors), "generations_seen": len(set(generations)),
            "went_back": sum(1 for a, b in pairwise(generations) if b < a)}


def snapshot(index: str) -> dict:
    """What a new process finds: generation and {source: [chunk texts in order]}."""
    store = IndexStore.open(Path(index), EMB.name, EMB.dim)
    return {"generation": store.manifest.generation, "docs": _contents(store)}


def _contents(store: IndexStore) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for record in store.docs.values():
        out[record.source] = [store.chunks[i].text for i in sorted(record.chunk_ids)]
    return out


# -- kill -9 trials ----------------------------------------------------------------------------
def expected_state(generation: int) -> dict[str, list[str]]:
    """The documents at `generation` (1 is the empty index; kill_saver's step j makes generation j):
    a pure function of the generation, so whatever generation the manifest names, its exact
    contents are known."""
    state: dict[str, list[str]] = {}
    for j in range(2, generation + 1):
        for source, texts in _step(j, state):
            if texts is None:
                state.pop(source, None)
            else:
                state[source] = texts
    return state


def _step(j: int, state: dict) -> list[tuple[str, list[str] | None]]:
    changes: list[tuple[str, list[str] | None]] = [
        (f"/s{j}.txt", [f"part {k} of source {j} first version" for k in range(1 + j % 3)])]
    if j % 3 == 0 and f"/s{j - 1}.txt" in state:
        changes.append((f"/s{j - 1}.txt", None))
    if j % 4 == 0 and f"/s{j - 2}.txt" in state:
        changes.append((f"/s{j - 2}.txt", [f"part {k} of source {j - 2} replaced at step {j}" for k in range(2)]))
    return changes


def kill_saver(index: str) -> None:
    """Save forever, one step per generation, until killed."""
    save_steps_forever(IndexStore.open(Path(index), EMB.name, EMB.dim))


def save_steps_forever(store) -> None:
    """Commit one `_step` per generation, through any store (FAISS here, PostgreSQL in pg_worker.py), until killed."""
    while True:
        with store.writing():
            j = store.manifest.generation + 1
            for source, texts in _step(j, {d.source: True for d in store.docs.values()}):
                old = store.doc_for_source(source)
                if old is not None:
                    store.remove(old)
                if texts is not None:
                    first = store.reserve_ids(len(texts))
                    chunks = [Chunk(id=first + k, doc_id=f"d{j}-{source}", source=source, text=t, start=0, end=len(t))
                              for k, t in enumerate(texts)]
                    store.add(f"d{j}-{source}", source, sum(map(len, texts)), chunks, EMB.embed(texts))
            store.save()


def kill_trials(index: str, trials: int, seed: int) -> dict:
    rng = random.Random(seed)
    _run_child(_create, {"index": index})
    outcomes = []
    last = 0
    for _ in range(trials):
        pid = _fork(kill_saver, {"index": index}, None)
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        outcome = {"killed": os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL,
                   "leftovers": sorted(p.name for p in Path(index).iterdir() if p.name.startswith(".tmp-"))}
        # verified in a child too: this process runs no FAISS code, so that it can go on forking
        outcome.update(_run_child(_verify_kill, {"index": index, "previous": last}))
        last = outcome.get("generation", last)
        outcomes.append(outcome)
    return {"trials": outcomes}


def _create(index: str) -> dict:
    IndexStore.create(Path(index), EMB.name, EMB.dim, 20, 1).save()
    return {}


def _verify_kill(index: str, previous: int) -> dict:
    store = IndexStore.open(Path(index), EMB.name, EMB.dim)
    g = store.manifest.generation
    contents = _contents(store)
    # each document's first chunk is found with cosine 1 (by score: 32 hashed dimensions collide)
    searchable = all(store.search(EMB.embed([texts[0]])[0], 1)[0][1] > 0.999 for texts in contents.values())
    store._lock.timeout = 5  # a killed writer's lock must be free: the OS drops it with the process
    t = time.monotonic()
    with store.writing():
        waited = time.monotonic() - t
    return {"generation": g, "exact": contents == expected_state(g), "not_older": g >= previous,
            "searchable": searchable, "lock_wait": waited, "docs": len(contents)}


# -- the server --------------------------------------------------------------------------------
def _fork(fn, kwargs: dict, out: str | None) -> int:
    pid = os.fork()
    if pid == 0:  # the child: run, write the result, leave without running the parent's cleanup
        try:
            result = fn(**kwargs)
        except BaseException:
            result = {"crash": traceback.format_exc()}
        try:
            if out is not None:
                Path(out).write_text(json.dumps(result), encoding="utf-8")
        finally:
            os._exit(0)
    return pid


def _run_children(calls: list[tuple[object, dict]]) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        outs = [str(Path(tmp) / f"{i}.json") for i in range(len(calls))]
        pids = [_fork(fn, kwargs, out) for (fn, kwargs), out in zip(calls, outs)]
        for pid in pids:
            os.waitpid(pid, 0)
        return [json.loads(Path(out).read_text(encoding="utf-8")) if Path(out).exists() else {"crash": "no result"}
                for out in outs]


def _run_child(fn, kwargs: dict) -> dict:
    return _run_children([(fn, kwargs)])[0]


ROLES = {"writer": writer, "adder": adder, "reader": reader, "snapshot": snapshot}


def handle(command: dict) -> object:
    if command["cmd"] == "run":  # roles at once, each its own process; their results in order
        return _run_children([(ROLES[r.pop("role")], r) for r in command["roles"]])
    if command["cmd"] == "kill_trials":
        return kill_trials(command["index"], command["trials"], command["seed"])
    raise ValueError(f"unknown command {command['cmd']!r}")


def main() -> None:
    print("@@ready", flush=True)
    for line in sys.stdin:
        try:
            answer = {"ok": handle(json.loads(line))}
        except Exception:
            answer = {"error": traceback.format_exc()}
        print("@@" + json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
