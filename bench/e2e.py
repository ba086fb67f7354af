"""End to end: what a person waits for, per bundled model, over the seed test set.

For every question, `RAG.stream` is timed from the call (so retrieval, sentence selection and
prompt evaluation are included) to the first piece of answer text, and to the final `Answer`.
An answer refused before generation (no passage reaches min_score) appears all at once: its
first-text time is its total time. One warm-up question per model is not counted (model load).

JSON: {"rows": [{"model", "ttft_p50_s", "ttft_p95_s", "total_p50_s", "total_p95_s",
                 "generated_ttft_p50_s", "questions", "refused_before_generation"}]}

    python bench/e2e.py                                # all installed bundled models
    python bench/e2e.py --models qwen2.5-0.5b --json
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, load_average, log, machine, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.config import SEEDS_DIR, Settings  # noqa: E402
from rag.evaluation.metrics import percentile  # noqa: E402
from rag.evaluation.testsets import load_testset  # noqa: E402
from rag.models.bundled import REGISTRY, describe_models  # noqa: E402
from rag.pipeline import RAG  # noqa: E402
from rag.types import Answer  # noqa: E402


def time_question(rag: RAG, question: str) -> tuple[float, float, Answer]:
    start = time.perf_counter()
    first = None
    answer = None
    for item in rag.stream(question):
        if isinstance(item, Answer):
            answer = item
        elif first is None and item.strip():
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    assert answer is not None
    return (first if first is not None else total), total, answer


def bench_model(name: str, base: Settings, index_dir: Path, questions: list[str]) -> dict:
    rag = RAG.open(settings=base.with_(model=name, index_dir=index_dir), seed=True)
    log(f"[{name}] warm-up (loads the model)")
    time_question(rag, questions[0])
    ttft, total, generated_ttft, gate = [], [], [], 0
    for i, q in enumerate(questions):
        first, end, answer = time_question(rag, q)
        ttft.append(first)
        total.append(end)
        if "first_token" in answer.timings:
            generated_ttft.append(first)
        else:
            gate += 1
        log(f"[{name}] {i + 1}/{len(questions)} first text {first:.2f}s, total {end:.2f}s, "
            f"{'refused' if answer.abstained else 'answered'}")
    p = lambda xs, q: round(percentile(xs, q), 3) if xs else None  # noqa: E731
    return {"model": name, "ttft_p50_s": p(ttft, 50), "ttft_p95_s": p(ttft, 95), "total_p50_s": p(total, 50),
            "total_p95_s": p(total, 95), "generated_ttft_p50_s": p(generated_ttft, 50), "questions": len(questions),
            "refused_before_generation": gate}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    installed = [m.name for m in describe_models(Settings().cache_dir) if m.installed]
    ap.add_argument("--models", default=",".join(installed), help=f"comma-separated, of {', '.join(REGISTRY)}")
    ap.add_argument("--testset", type=Path, default=SEEDS_DIR / "testset.jsonl")
    ap.add_argument("--limit", type=int, help="first N questions only")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout (table to stderr)")
    args = ap.parse_args()

    base = Settings.load()
    questions = [item.question for item in load_testset(args.testset).items][: args.limit]
    before = load_average()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in [m for m in args.models.split(",") if m]:
            rows.append(bench_model(name, base, Path(tmp) / name, questions))
    keys = ["model", "ttft_p50_s", "ttft_p95_s", "total_p50_s", "total_p95_s", "generated_ttft_p50_s",
            "questions", "refused_before_generation"]
    text = table(["model", "first text p50 s", "p95 s", "total p50 s", "p95 s", "first text p50 s (generated only)",
                  "questions", "refused before generation"], [[r[k] for k in keys] for r in rows])
    text += (f"\n\n{args.testset.name}; context={base.context}, retrieval={base.retrieval}, top_k={base.top_k}, "
             f"threads={base.threads}; machine {machine()}")
    emit(text, {"rows": rows, "machine": machine(),
                "settings": {"context": base.context, "retrieval": base.retrieval, "top_k": base.top_k}},
         args.json, before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
