"""kill -9 trials for the PostgreSQL store (tests/store/test_store_postgres_concurrency.py).

`python tests/pg_worker.py URI TRIALS SEED`: forks a saver that commits one step per generation (the steps
of tests/store_worker.py, whose contents are a pure function of the generation) until it is killed with
SIGKILL at a random moment, then checks in a new connection that the database holds exactly the state of
the generation it names, and that the writers' lock was released with the killed process. Prints one
line "@@" + JSON. This process holds no connection while it forks.
"""
from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rag.store.postgres import LOCK_KEY, PgStore  # noqa: E402
from tests.store_worker import EMB, expected_state, save_steps_forever  # noqa: E402

HERE = Path(__file__).resolve().parent


def connect(uri: str) -> PgStore:
    return PgStore.connect(uri, EMB.name, EMB.dim, 20, 1, HERE)


def saver(uri: str) -> None:
    save_steps_forever(connect(uri))


def contents(store: PgStore) -> dict[str, list[str]]:
    return {r.source: [store.chunks[i].text for i in sorted(r.chunk_ids)] for r in store.docs.values()}


def verify(uri: str, previous: int) -> dict:
    store = connect(uri)
    try:
        g = store.manifest.generation
        state = contents(store)
        searchable = all(store.search(EMB.embed([texts[0]])[0], 1)[0][1] > 0.999 for texts in state.values())
        deadline, free = time.monotonic() + 5, False
        while not free and time.monotonic() < deadline:  # the server drops a killed client's backend
            with store.conn.transaction():  # and its advisory lock as soon as it reads the closed socket
                free = store.conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_KEY,)).fetchone()[0]
            time.sleep(0 if free else 0.05)
        counted = store.conn.execute("SELECT count(*) FROM rag_chunks").fetchone()[0] == len(store.chunks)
        return {"generation": g, "exact": state == expected_state(g), "not_older": g >= previous,
                "searchable": searchable, "lock_free": free, "counted": counted, "docs": len(state)}
    finally:
        store.close()


def main(uri: str, trials: int, seed: int) -> None:
    rng = random.Random(seed)
    store = connect(uri)
    store.save()  # generation 1: the empty index, as in store_worker's trials
    store.close()
    outcomes, last = [], 1
    for _ in range(trials):
        pid = os.fork()
        if pid == 0:
            try:
                saver(uri)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.2, 0.8))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        outcome = {"killed": os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL}
        outcome.update(verify(uri, last))
        last = outcome["generation"]
        outcomes.append(outcome)
    print("@@" + json.dumps(outcomes), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
