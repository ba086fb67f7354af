"""Retrieval quality without the LLM: hit@k and MRR of retrieval settings over a test set.

A full `rag eval` run asks the model every question (minutes to an hour); retrieval alone takes
seconds, so this is where retrieval settings (dense/hybrid, MMR diversity, top-k) are swept before
the chosen ones get a full run. Matching is the one `rag eval` uses: a passage is a hit when it holds
a gold answer or evidence string (`rag.evaluation.metrics.text_contains`). Only answerable items count.

JSON: {"rows": [{"config", "hit_at_k", "mrr", "retrieve_p50_ms", "items"}], "testset", "index"}

    python bench/retrieval.py seeds/testset.jsonl --index index
    python bench/retrieval.py ../shared/datasets/covid-qa/covidqa-200423.json --limit 59 \
        --index /tmp/eval/covid-index --configs dense hybrid hybrid,diversity=0.3
The index must already hold the test set's documents (a `rag eval` run with the same --index builds it).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, load_average, log, machine, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.config import Settings  # noqa: E402
from rag.evaluation import metrics as M  # noqa: E402
from rag.evaluation.runner import sample_items  # noqa: E402
from rag.evaluation.testsets import load_testset  # noqa: E402
from rag.models.embedding import build_embedder  # noqa: E402
from rag.pipeline import RAG  # noqa: E402
from rag.store.faiss_index import IndexStore  # noqa: E402


def parse_config(spec: str) -> dict[str, object]:
    """'hybrid,diversity=0.3' -> {'retrieval': 'hybrid', 'diversity': '0.3'} (Settings coerces)."""
    out: dict[str, object] = {}
    for part in [p for p in spec.split(",") if p]:
        key, _, value = part.partition("=")
        if value:
            out[key] = value
        else:
            out["retrieval"] = key
    return out


def bench_config(spec: str, base: Settings, index: Path, embedder, items, k: int) -> dict:
    settings = Settings.load(**parse_config(spec))  # environment, then this row's settings
    rag = RAG.open(index, settings, embedder=embedder, seed=False)
    ranks, times = [], []
    for item in items:
        start = time.perf_counter()
        passages = rag.retrieve(item.question, k)
        times.append(time.perf_counter() - start)
        ranks.append(M.first_hit_rank([M.text_contains(p.text, item.gold) for p in passages]))
    scores = M.retrieval_scores(ranks)
    row = {"config": spec, "hit_at_k": round(scores["hit_at_k"], 3), "mrr": round(scores["mrr"], 3),
           "retrieve_p50_ms": round(M.percentile(times, 50) * 1000, 1), "items": len(items)}
    log(f"{spec}: hit@{k} {row['hit_at_k']}, mrr {row['mrr']}")
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("testset", type=Path)
    ap.add_argument("--index", type=Path, required=True, help="an index that holds the test set's documents")
    ap.add_argument("--limit", type=int, help="first N items")
    ap.add_argument("--sample", type=int, help="the fixed seeded sample of N items `rag eval --sample` uses")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--configs", nargs="+", default=["dense", "hybrid", "dense,diversity=0.3", "hybrid,diversity=0.3"],
                    help="retrieval[,setting=value...] per row, e.g. hybrid,diversity=0.3")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout (table to stderr)")
    args = ap.parse_args()

    if not IndexStore.exists(args.index):
        ap.error(f"no index at {args.index}; build it with `rag eval {args.testset} --index {args.index}` first")
    items = load_testset(args.testset).items
    items = sample_items(items, args.sample) if args.sample else items[: args.limit]
    items = [i for i in items if not i.must_refuse]
    base = Settings.load()
    embedder = build_embedder(base)
    before = load_average()
    rows = [bench_config(spec, base, args.index, embedder, items, args.top_k) for spec in args.configs]
    keys = ["config", "hit_at_k", "mrr", "retrieve_p50_ms", "items"]
    text = table(["configuration", f"hit@{args.top_k}", "MRR", "retrieve p50 ms", "answerable items"],
                 [[r[k] for k in keys] for r in rows])
    text += f"\n\n{args.testset.name}, index {args.index}; machine {machine()}"
    emit(text, {"rows": rows, "testset": str(args.testset), "index": str(args.index), "machine": machine()},
         args.json, before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
