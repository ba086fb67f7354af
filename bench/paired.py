"""Paired sign test of two runs, each scored under given refusal gates.

`rag eval compare` pairs two runs as they were made. A calibration run (made with every gate open:
RAG_MIN_SCORE=0 RAG_REFUSAL_PROB=1 RAG_RETRY_BELOW=1) can stand for any setting of the gates, so this
pairs two runs item by item after deciding each item under the gates given for it
(`rag.evaluation.calibration.decided`), and prints the metrics of both and the exact two-sided sign test over the
items right in only one of them.

    python bench/paired.py OLD.json NEW.json --gates-a 0.30 1 1 --gates-b 0.30 1 0
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.evaluation.calibration import Gates, decided, gate_metrics  # noqa: E402
from rag.evaluation.metrics import sign_test  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--gates-a", nargs=3, type=float, default=[0.0, 1.0, 1.0],
                        metavar=("MIN_SCORE", "REFUSAL_PROB", "RETRY_BELOW"))
    parser.add_argument("--gates-b", nargs=3, type=float, default=[0.0, 1.0, 1.0],
                        metavar=("MIN_SCORE", "REFUSAL_PROB", "RETRY_BELOW"))
    args = parser.parse_args()
    a, b = (json.loads(p.read_text(encoding="utf-8")) for p in (args.a, args.b))
    ga, gb = Gates(*args.gates_a), Gates(*args.gates_b)
    items_a = {i["id"]: i for i in a["items"] if i.get("error") is None}
    items_b = {i["id"]: i for i in b["items"] if i.get("error") is None}
    both = [k for k in items_a if k in items_b]
    wins = sum(1 for k in both if decided(items_b[k], gb)[1] and not decided(items_a[k], ga)[1])
    losses = sum(1 for k in both if decided(items_a[k], ga)[1] and not decided(items_b[k], gb)[1])
    print("| run | gates (min_score, refusal_prob, retry_below) | contains | refusal recall | false refusals | correct |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, items, g in ((args.a.name, items_a, ga), (args.b.name, items_b, gb)):
        m = gate_metrics([items[k] for k in both], g)
        print(f"| {name} | ({g.min_score}, {g.refusal_prob}, {g.retry_below}) | {m['contains']:.3f} | "
              f"{m['refusal_recall']:.3f} | {m['false_refusal_rate']:.3f} | {m['correct']:.3f} |")
    p = sign_test(wins, losses)
    print(f"\nitems in both: {len(both)}; right in B only: {wins}; right in A only: {losses}; "
          f"sign test p = {p:.3f}" if p is not None else f"\nitems in both: {len(both)}; no item differs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
