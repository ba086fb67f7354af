"""Retrieval quality without the LLM: hit@k and MRR of retrieval settings over a test set.

A full `rag eval` run asks the model every question (minutes to an hour); retrieval alone takes
seconds, so this is where retrieval settings (dense/hybrid, MMR diversity, top-k) are swept before
the chosen ones get a full run. Matching is the one `rag eval` uses: a passage is a hit when it holds
a gold answer or evidence string (`rag.evaluation.metrics.text_contains`). Only answerable items count.

Two scores per row: hit@k and MRR of the retrieved chunks (`RAG.retrieve`), and of the passages as the
model is shown them (`RAG.context`: narrowed to the sentences near the question by `context = sentences`
or `auto`, or the whole corpus when it fits), which is what `rag eval`'s hit_at_k scores.

With `--embed-models A B`, every row runs for each embedding model, each on its own index (A's is `--index`,
B's is `--index` with `-B` appended), and each later model is paired with the first, item by item, with an
exact sign test over the items found (hit@k, as shown) by only one of them.

JSON: {"rows": [{"config", "embed_model", "hit_at_k", "mrr", "shown_hit_at_k", "shown_mrr", "retrieve_p50_ms",
"items", "ranks", "shown_ranks"}], "paired": [...], "testset", "index"}

    python bench/retrieval.py seeds/testset.jsonl --index index
    python bench/retrieval.py ../shared/datasets/covid-qa/covidqa-200423.json --limit 59 \
        --index /tmp/eval/covid-index --configs dense hybrid hybrid,diversity=0.3
    python bench/retrieval.py ../shared/datasets/squad-small/squad-v2-small.json --sample 150 --build \
        --index /tmp/ret/squad --configs hybrid dense --embed-models all-MiniLM-L6-v2 multilingual-e5-small
The index must already hold the test set's documents (a `rag eval` run with the same --index builds it), or
`--build` builds it (SQuAD: its contexts; JSONL: `--docs`), without the LLM.
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
from rag.evaluation.runner import open_rag_for, sample_items  # noqa: E402
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


def bench_config(spec: str, model: str, index: Path, embedder, items, k: int, shown: bool = True) -> dict:
    settings = Settings.load(**parse_config(spec), embed_model=model)  # environment, then this row's settings
    rag = RAG.open(index, settings, embedder=embedder, seed=False)
    ranks, shown_ranks, times = {}, {}, []
    for item in items:
        start = time.perf_counter()
        passages = rag.retrieve(item.question, k)
        times.append(time.perf_counter() - start)
        ranks[item.id] = M.first_hit_rank([M.text_contains(p.text, item.gold) for p in passages])
        if shown:
            passages, _ = rag.context(item.question, k)
            shown_ranks[item.id] = M.first_hit_rank([M.text_contains(p.text, item.gold) for p in passages[:k]])
    scores = M.retrieval_scores(list(ranks.values()))
    shown_scores = M.retrieval_scores(list(shown_ranks.values())) if shown else {"hit_at_k": None, "mrr": None}
    row = {"config": spec, "embed_model": model, "hit_at_k": round(scores["hit_at_k"], 3),
           "mrr": round(scores["mrr"], 3), "shown_hit_at_k": _round(shown_scores["hit_at_k"]),
           "shown_mrr": _round(shown_scores["mrr"]), "retrieve_p50_ms": round(M.percentile(times, 50) * 1000, 1),
           "items": len(items), "ranks": ranks, "shown_ranks": shown_ranks}
    log(f"{spec} {model}: hit@{k} {row['hit_at_k']}, mrr {row['mrr']}; as shown {row['shown_hit_at_k']}, "
        f"{row['shown_mrr']}")
    return row


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def paired(rows: list[dict], models: list[str]) -> list[dict]:
    """Each later model against the first, per config: items found (as shown, and retrieved) by only one."""
    out = []
    for row in rows:
        if row["embed_model"] == models[0]:
            continue
        base = next(r for r in rows if r["config"] == row["config"] and r["embed_model"] == models[0])
        for key in ("shown_ranks", "ranks"):
            if not row[key]:
                continue
            wins = sum(1 for i, r in row[key].items() if r is not None and base[key][i] is None)
            losses = sum(1 for i, r in row[key].items() if r is None and base[key][i] is not None)
            out.append({"config": row["config"], "a": models[0], "b": row["embed_model"],
                        "scored": "as shown" if key == "shown_ranks" else "retrieved",
                        "found_by_b_only": wins, "found_by_a_only": losses, "sign_test_p": M.sign_test(wins, losses)})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("testset", type=Path)
    ap.add_argument("--index", type=Path, required=True, help="an index that holds the test set's documents")
    ap.add_argument("--docs", type=Path, help="with --build: the documents of a JSONL test set")
    ap.add_argument("--build", action="store_true", help="build a missing index from the test set's documents")
    ap.add_argument("--limit", type=int, help="first N items")
    ap.add_argument("--sample", type=int, help="the fixed seeded sample of N items `rag eval --sample` uses")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--configs", nargs="+", default=["dense", "hybrid", "dense,diversity=0.3", "hybrid,diversity=0.3"],
                    help="retrieval[,setting=value...] per row, e.g. hybrid,diversity=0.3")
    ap.add_argument("--embed-models", nargs="+", help="run every row with each of these embedding models, "
                                                      "paired against the first (default: the configured one)")
    ap.add_argument("--retrieved-only", action="store_true",
                    help="score the retrieved chunks only, not the passages as shown (which embeds each question's "
                         "candidate sentences: slow with a slow embedder)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout (table to stderr)")
    args = ap.parse_args()

    testset = load_testset(args.testset)
    items = testset.items
    items = sample_items(items, args.sample) if args.sample else items[: args.limit]
    items = [i for i in items if not i.must_refuse]
    base = Settings.load()
    models = args.embed_models or [base.embed_model]
    before = load_average()
    rows = []
    for n, model in enumerate(models):
        index = args.index if n == 0 else args.index.with_name(f"{args.index.name}-{model}")
        settings = Settings.load(embed_model=model)
        embedder = build_embedder(settings)
        if not IndexStore.exists(index):
            if not args.build:
                ap.error(f"no index at {index}; build it with --build (or `rag eval {args.testset} --index {index}`)")
            started = time.perf_counter()
            open_rag_for(testset, settings.with_(index_dir=index), docs=args.docs, index=index, embedder=embedder)
            log(f"built {index} with {model} in {time.perf_counter() - started:.0f} s")
        rows += [bench_config(spec, model, index, embedder, items, args.top_k, not args.retrieved_only)
                 for spec in args.configs]
    keys = ["config", "embed_model", "hit_at_k", "mrr", "shown_hit_at_k", "shown_mrr", "retrieve_p50_ms", "items"]
    k = args.top_k
    text = table(["configuration", "embedding", f"hit@{k}", "MRR", f"hit@{k} as shown", "MRR as shown",
                  "retrieve p50 ms", "answerable items"], [["-" if r[key] is None else r[key] for key in keys]
                                                           for r in rows])
    pairs = paired(rows, models) if len(models) > 1 else []
    if pairs:
        text += "\n\n" + table(["configuration", "A", "B", "scored", "found by B only", "found by A only", "sign test p"],
                                [[p["config"], p["a"], p["b"], p["scored"], p["found_by_b_only"], p["found_by_a_only"],
                                  "-" if p["sign_test_p"] is None else round(p["sign_test_p"], 3)] for p in pairs])
    text += f"\n\n{args.testset.name}, index {args.index}; machine {machine()}"
    emit(text, {"rows": rows, "paired": pairs, "testset": str(args.testset), "index": str(args.index),
                "machine": machine()}, args.json, before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
