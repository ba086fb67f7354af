"""The ablation tables of docs/evaluation.md: runs rescored at one gate, each paired with the default run.

    python bench/ablation_table.py 0.30 docs/ablations/seed-C-hybrid-chunk-sentence.json docs/ablations/seed-*.json

The first report is the default configuration. Each run made with `RAG_MIN_SCORE=0` is rescored at the
gate (rag.calibration.rescore, as `rag eval rescore` does). The last column counts the items right
only in that run and only in the default run ("right": a right answer, or a refusal where one is due,
after the gate) and gives the exact two-sided sign test over them.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.evaluation.calibration import gated, rescore  # noqa: E402
from rag.evaluation.metrics import sign_test  # noqa: E402

KEYS = ["contains", "f1", "refusal_recall", "false_refusal_rate", "citation_precision", "citation_recall",
        "hit_at_k", "mrr", "ttft_p50_s"]
DEFAULTS = {"model": "qwen2.5-0.5b", "support": "lexical", "diversity": 0.0, "passage_order": "best_first",
            "query_rewrite": "off", "embed_backend": "torch"}


def right_after_gate(report: dict, gate: float) -> dict[str, bool]:
    out = {}
    for i in report["items"]:
        refused_by_gate = gated(i, gate)
        out[i["id"]] = (bool(i["abstained"]) or refused_by_gate) if i["must_refuse"] else bool(i["correct"]) and not refused_by_gate
    return out


def other_settings(config: dict) -> str:
    """The settings that differ from the defaults, besides retrieval/context/answer style."""
    changed = [f"{k}={config[k]}" for k, v in DEFAULTS.items() if k in config and config[k] != v]
    return ", ".join(changed) or "-"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    gate, paths = float(argv[0]), argv[1:]
    base = right_after_gate(json.loads(Path(paths[0]).read_text()), gate)
    print("| run | retrieval | context | answer style | other | " + " | ".join(KEYS)
          + " | right only here / only in default (sign test p) |")
    print("| --- | --- | --- | --- | --- | " + " | ".join("---:" for _ in KEYS) + " | ---: |")
    for i, path in enumerate(paths):
        report = json.loads(Path(path).read_text())
        c, m = report["config"], rescore(report, gate)
        right = right_after_gate(report, gate)
        wins = sum(1 for k, ok in right.items() if ok and k in base and not base[k])
        losses = sum(1 for k, ok in right.items() if not ok and base.get(k))
        p = sign_test(wins, losses)
        vs = "default" if i == 0 else f"{wins} / {losses} ({'-' if p is None else f'{p:.2f}'})"
        context = c.get("context") if c.get("context") == "chunk" else f"{c.get('context')} ({c.get('context_words')} words)"
        cells = ["-" if m.get(k) is None else f"{m[k]:.1f}" if k == "ttft_p50_s" else f"{m[k]:.3f}" for k in KEYS]
        print(f"| {Path(path).stem} | {c.get('retrieval')} | {context} | {c.get('answer_style')} | {other_settings(c)} | "
              + " | ".join(cells) + f" | {vs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
