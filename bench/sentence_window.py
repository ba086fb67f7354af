"""Sentence-window retrieval, measured before it is built: match the question on single sentences, show each
best sentence with its neighbours, and score hit@k of those windows as `rag eval` scores passages.

Every sentence of the test set's documents (`split_sentences`, the project's splitter) is embedded; the k best
sentences for a question (cosine, `embed_query`) each become a window of `--window` sentences either side,
within its document (a sentence already inside a better window is skipped). Paired with the passages as shown
today (`bench/retrieval.py --json`: one row's `shown_ranks`), item by item, with an exact sign test.

    python bench/retrieval.py SET.json --build --index /tmp/ret/squad --configs hybrid --json > /tmp/ret/squad.json
    python bench/sentence_window.py SET.json --sample 150 --against /tmp/ret/squad.json --config hybrid
JSON (with --json): {"rows": [{"window", "hit_at_k", "mrr", "mean_words", "items", "paired"}], ...}
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

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
from rag.text import split_sentences  # noqa: E402
from rag.models.embedding import build_embedder  # noqa: E402


def windows_for(qv: np.ndarray, vectors: np.ndarray, where: list[tuple[int, int]], sentences: list[list[str]],
                k: int, width: int) -> list[str]:
    """The k windows around the best sentences, best first."""
    taken: set[tuple[int, int]] = set()
    out = []
    for i in np.argsort(-(vectors @ qv)):
        doc, n = where[int(i)]
        if (doc, n) in taken:
            continue
        lo, hi = max(0, n - width), min(len(sentences[doc]), n + width + 1)
        taken.update((doc, j) for j in range(lo, hi))
        out.append(" ".join(sentences[doc][lo:hi]))
        if len(out) == k:
            break
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("testset", type=Path)
    ap.add_argument("--docs", type=Path, help="the document(s) of a JSONL test set (files)", nargs="*")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--sample", type=int)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--windows", type=int, nargs="+", default=[1], help="sentences either side of the match")
    ap.add_argument("--against", type=Path, help="bench/retrieval.py --json output to pair with")
    ap.add_argument("--config", default="hybrid", help="its row (configuration) to pair with")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    testset = load_testset(args.testset)
    texts = [t for _, t in testset.documents] or [p.read_text(encoding="utf-8") for p in args.docs or []]
    sentences = [[t[s.start:s.end] for s in split_sentences(t)] for t in texts]
    where = [(d, n) for d, ss in enumerate(sentences) for n in range(len(ss))]
    items = sample_items(testset.items, args.sample) if args.sample else testset.items[: args.limit]
    items = [i for i in items if not i.must_refuse]
    settings = Settings.load()
    embedder = build_embedder(settings)
    before = load_average()
    log(f"embedding {len(where)} sentences with {embedder.name}")
    vectors = embedder.embed([sentences[d][n] for d, n in where], progress=True)
    queries = embedder.embed_query([i.question for i in items])
    against = None
    if args.against:
        rows = json.loads(args.against.read_text(encoding="utf-8"))["rows"]
        against = next(r for r in rows if r["config"] == args.config and r["embed_model"] == embedder.name)
    out = []
    for width in args.windows:
        ranks, words = {}, []
        for item, qv in zip(items, queries):
            shown = windows_for(qv, vectors, where, sentences, args.top_k, width)
            words += [len(w.split()) for w in shown]
            ranks[item.id] = M.first_hit_rank([M.text_contains(w, item.gold) for w in shown])
        scores = M.retrieval_scores(list(ranks.values()))
        row = {"window": width, "hit_at_k": round(scores["hit_at_k"], 3), "mrr": round(scores["mrr"], 3),
               "mean_words": round(float(np.mean(words)), 1), "items": len(items), "ranks": ranks}
        if against is not None:
            base = against["shown_ranks"]
            wins = sum(1 for i, r in ranks.items() if r is not None and base[i] is None)
            losses = sum(1 for i, r in ranks.items() if r is None and base[i] is not None)
            row["paired"] = {"against": f"{args.against} {args.config} as shown", "base_hit_at_k": against["shown_hit_at_k"],
                             "found_by_windows_only": wins, "found_by_base_only": losses,
                             "sign_test_p": M.sign_test(wins, losses)}
        log(f"window ±{width}: hit@{args.top_k} {row['hit_at_k']}, mrr {row['mrr']}, {row['mean_words']} words")
        out.append(row)
    headers = ["window (sentences either side)", f"hit@{args.top_k}", "MRR", "mean words per window", "items",
               "today as shown", "windows only / today only", "sign test p"]
    text = table(headers, [[r["window"], r["hit_at_k"], r["mrr"], r["mean_words"], r["items"],
                            r.get("paired", {}).get("base_hit_at_k", "-"),
                            f"{r['paired']['found_by_windows_only']} / {r['paired']['found_by_base_only']}" if "paired" in r else "-",
                            "-" if r.get("paired", {}).get("sign_test_p") is None else round(r["paired"]["sign_test_p"], 3)]
                           for r in out])
    text += f"\n\n{args.testset.name}, {embedder.name}, {len(where)} sentences; machine {machine()}"
    emit(text, {"rows": out, "testset": str(args.testset), "embed_model": embedder.name, "machine": machine()},
         args.json, before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
