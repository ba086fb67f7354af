"""First token, cold and warm: what the whole-corpus context buys on the seed article.

Over a new index of the seed article, a model is loaded (not timed) and the seed test set's
questions are asked in order. The first question pays for the prompt's shared prefix (system prompt
+ the corpus, or the retrieved passages): "cold". Later questions reuse llama.cpp's KV cache for
whatever prefix they share with the previous prompt: "warm". Then a second model instance over the
same index, as after a restart, asks the first question again: with the whole corpus in the prompt
it loads the prompt state saved with the index ("restart"). Time to first token is measured from the
start of generation (`Answer.timings["first_token"]`, which includes loading a saved state);
questions refused before generation are left out.

Nothing is shown before it is checked, so the reader's first text is the first verified sentence
(`Answer.timings["first_verified"]`, answered questions only): its support check and claim check
(`timings["claim_check"]`) run as soon as the model has begun the next sentence, and it is shown once
the answer can no longer be refused (rag/answer/answerer.py), so for a one-sentence reply after the
whole reply, for a longer one before the rest is written. `--claim-check on off` runs each row with and
without it, to see what it adds to the answer time (`answer_p50_s`: total time of answered questions).
The machine's raw llama.cpp prompt rate (tokens/s evaluating 256 tokens from an empty cache) is
printed beside the rows: the CPU kind changes between sessions and decides every number here.

JSON: {"rows": [{"model", "context", "claim_check", "cold_first_token_s", "warm_first_token_p50_s",
                 "warm_first_token_p95_s", "warm_first_verified_p50_s", "warm_first_verified_p95_s",
                 "claim_check_p50_s", "judge_tokens_per_answer", "answer_p50_s", "restart_first_token_s",
                 "questions", "answered"}], "prompt_tokens_per_s"}

    python bench/first_token.py                                    # default model, auto and chunk
    python bench/first_token.py --contexts auto --claim-check on off --limit 10
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


from rag.config import DEFAULT_MODEL, SEEDS_DIR, Settings  # noqa: E402
from rag.evaluation.metrics import percentile  # noqa: E402
from rag.evaluation.testsets import load_testset  # noqa: E402
from rag.pipeline import RAG  # noqa: E402


def _p(values: list[float], q: int) -> float | None:
    value = percentile(values, q)
    return None if value is None else round(value, 3)


def measure(model: str, context: str, questions: list[str], claim_check: bool = True) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.load(model=model, context=context, min_score=0.0, index_dir=Path(tmp) / "index",
                                 claim_check=claim_check)
        rag = RAG.open(settings=settings, seed=True)
        t = time.perf_counter()
        rag.llm  # load, not timed
        log(f"{model} loaded in {time.perf_counter() - t:.1f} s")
        judge = rag.llama_helpers(rag.llm).judge
        firsts, verified, claims, totals = [], [], [], []
        for q in questions:
            answer = rag.ask(q)
            if "first_token" in answer.timings:
                firsts.append(answer.timings["first_token"])
            if "first_verified" in answer.timings:
                verified.append(answer.timings["first_verified"])
                totals.append(answer.timings["total"])
            if "claim_check" in answer.timings:
                claims.append(answer.timings["claim_check"])
            log(f"  {answer.timings.get('first_token', float('nan')):.2f}s first token, "
                f"{answer.timings.get('first_verified', float('nan')):.2f}s first verified, "
                f"{answer.timings.get('claim_check', 0.0):.2f}s claim check: {q[:60]!r} -> {answer.text[:60]!r}")
        warm = firsts[1:]
        judged = getattr(judge, "evaluated", None) if claim_check else None
        embedder = rag.embedder
        del rag
        again = RAG.open(settings=settings, embedder=embedder)
        again.llm  # load, not timed
        restart = again.ask(questions[0]).timings.get("first_token", float("nan"))
        return {"model": model, "context": context, "claim_check": claim_check,
                "cold_first_token_s": round(firsts[0], 3),
                "warm_first_token_p50_s": _p(warm, 50), "warm_first_token_p95_s": _p(warm, 95),
                "warm_first_verified_p50_s": _p(verified[1:], 50), "warm_first_verified_p95_s": _p(verified[1:], 95),
                "claim_check_p50_s": _p(claims, 50),
                "judge_tokens_per_answer": round(judged / len(claims), 1) if judged and claims else None,
                "answer_p50_s": _p(totals, 50),
                "restart_first_token_s": round(restart, 3), "questions": len(firsts), "answered": len(verified)}


def prompt_rate(model: str, n: int = 256) -> float:
    """llama.cpp's raw prompt evaluation rate on this machine (tokens/s), from an empty cache."""
    from rag.models.llm import build_llm

    llm = build_llm(Settings.load(model=model))
    llama = llm._model
    tokens = llama.tokenize(("The quick brown fox jumps over the lazy dog. " * 40).encode("utf-8"))[:n]
    llama.reset()
    t = time.perf_counter()
    llama.eval(tokens)
    return round(len(tokens) / (time.perf_counter() - t), 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[DEFAULT_MODEL])
    parser.add_argument("--contexts", nargs="+", default=["auto", "chunk"])
    parser.add_argument("--limit", type=int, default=20, help="questions asked per row (default 20)")
    parser.add_argument("--claim-check", nargs="+", choices=["on", "off"], default=["on"],
                        help="run each row with the claim check on and/or off (default on)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    questions = [i.question for i in load_testset(SEEDS_DIR / "testset.jsonl").items][: args.limit]
    before = load_average()
    rows = [measure(m, c, questions, cc == "on") for m in args.models for c in args.contexts
            for cc in args.claim_check]
    rate = {m: prompt_rate(m) for m in args.models}
    log("raw llama.cpp prompt rate: " + ", ".join(f"{m} {r} tokens/s" for m, r in rate.items()))
    keys = list(rows[0])
    emit(table(keys, [[r[k] for k in keys] for r in rows]) + "\nraw llama.cpp prompt rate (tokens/s): "
         + ", ".join(f"{m} {r}" for m, r in rate.items()), {"rows": rows, "prompt_tokens_per_s": rate},
         args.json, before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
