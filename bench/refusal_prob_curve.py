"""The refusal trade-off of the model's own first-token refusal probability (`refusal_prob`), from runs.

A run records, per item, `signals.p_refusal`: the model's probability of starting its reply with the
refusal. Refusing every answered item whose probability reaches t leaves the other items as they
were, so one run gives the whole curve. Items refused before generation have no probability and
stay refused.

    python bench/refusal_prob_curve.py docs/ablations/seed2-N-1.5b-corpus-gate0.json [MORE.json ...]
"""
from __future__ import annotations

import json
import sys


def curve(report: dict, thresholds: list[float]) -> list[tuple[float, float, float, float]]:
    items = [i for i in report["items"] if i.get("error") is None]
    refuse = [i for i in items if i["must_refuse"]]
    answerable = [i for i in items if not i["must_refuse"]]
    rows = []
    for t in thresholds:
        def refused(i: dict) -> bool:
            p = (i.get("signals") or {}).get("p_refusal")
            return bool(i["abstained"]) or (p is not None and p >= t)

        rr = sum(map(refused, refuse)) / max(1, len(refuse))
        frr = sum(map(refused, answerable)) / max(1, len(answerable))
        contains = sum(1 for i in answerable if not refused(i) and i.get("contains")) / max(1, len(answerable))
        rows.append((t, rr, frr, contains))
    return rows


def main() -> int:
    thresholds = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 1.0]
    for path in sys.argv[1:]:
        print(f"## {path}\n\n| refusal_prob | refusal recall | false-refusal rate | contains |\n| --- | --- | --- | --- |")
        for t, rr, frr, c in curve(json.load(open(path, encoding="utf-8")), thresholds):
            print(f"| {t:.2f} | {rr:.3f} | {frr:.3f} | {c:.3f} |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
