"""First token, cold and warm: what the whole-corpus context buys on the seed article.

Over a new index of the seed article, a model is loaded (not timed) and the seed test set's
questions are asked in order. The first question pays for the prompt's shared prefix (system prompt
+ the corpus, or the retrieved passages): "cold". Later questions reuse llama.cpp's KV cache for
whatever prefix they share with the previous prompt: "warm". Then a second model instance over the
same index, as after a restart, asks the first question again: with the whole corpus in the prompt
it loads the prompt state saved with the index ("restart"). Time to first token is measured from the
start of generation (`Answer.timings["first_token"]`, which includes loading a saved state);
questions refused before generation are left out.

JSON: {"rows": [{"model", "context", "cold_first_token_s", "warm_first_token_p50_s",
                 "warm_first_token_p95_s", "restart_first_token_s", "questions"}]}

    python bench/first_token.py                                    # default model, auto and chunk
    python bench/first_token.py --models qwen2.5-0.5b --contexts chunk --json
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, load_average, log, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from rag.config import DEFAULT_MODEL, SEEDS_DIR, Settings  # noqa: E402
from rag.evaluation.testsets import load_testset  # noqa: E402
from rag.pipeline import RAG  # noqa: E402


def measure(model: str, context: str, questions: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.load(model=model, context=context, min_score=0.0, index_dir=Path(tmp) / "index")
        rag = RAG.open(settings=settings, seed=True)
        t = time.perf_counter()
        rag.llm  # load, not timed
        log(f"{model} loaded in {time.perf_counter() - t:.1f} s")
        firsts = []
        for q in questions:
            answer = rag.ask(q)
            if "first_token" in answer.timings:
                firsts.append(answer.timings["first_token"])
        warm = firsts[1:]
        embedder = rag.embedder
        del rag
        again = RAG.open(settings=settings, embedder=embedder)
        again.llm  # load, not timed
        restart = again.ask(questions[0]).timings.get("first_token", float("nan"))
        return {"model": model, "context": context, "cold_first_token_s": round(firsts[0], 3),
                "warm_first_token_p50_s": round(float(np.percentile(warm, 50)), 3),
                "warm_first_token_p95_s": round(float(np.percentile(warm, 95)), 3),
                "restart_first_token_s": round(restart, 3), "questions": len(firsts)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[DEFAULT_MODEL])
    parser.add_argument("--contexts", nargs="+", default=["auto", "chunk"])
    parser.add_argument("--limit", type=int, default=20, help="questions asked per row (default 20)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    questions = [i.question for i in load_testset(SEEDS_DIR / "testset.jsonl").items][: args.limit]
    before = load_average()
    rows = [measure(m, c, questions) for m in args.models for c in args.contexts]
    keys = list(rows[0])
    emit(table(keys, [[r[k] for k in keys] for r in rows]), {"rows": rows}, args.json, before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
