"""Support-check rules compared offline: the model's recorded drafts re-checked under other rules.

An eval report keeps every item's draft (`model_text`). The support check is deterministic given the
draft and the passages the model was shown, so other rules can be scored without asking the model
again: the passages are rebuilt from the same index with `RAG.context`, the draft (the retry's, when
one was made) is re-attributed, and the item is scored as `rag eval` would. Items refused before
generation, or refused by the model, stay refused. A paired sign test against the first rule set
says whether a difference is more than noise.

    python bench/support_ablation.py docs/ablations/seed2-N-1.5b-corpus-gate0.json --index /tmp/eval/seed-new-idx
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.answer.answerer import is_refusal  # noqa: E402
from rag.answer.citations import SupportRules, attribute, strip_markers  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.evaluation import metrics as M  # noqa: E402
from rag.pipeline import RAG  # noqa: E402

RULES = {
    "current": SupportRules(),
    "whole>=0.5": SupportRules(whole_share=0.5),
    "names-cited": SupportRules(question_names="cited"),
    "whole>=0.5+names-cited": SupportRules(whole_share=0.5, question_names="cited"),
    "whole-enough 0.75": SupportRules(whole_enough=0.75),
    "whole-enough 0.8": SupportRules(whole_enough=0.8),
    "names-cited+whole-enough 0.75": SupportRules(question_names="cited", whole_enough=0.75),
}
RETRY_MARK = "\n[asked again without the refusal] "


def rescore(report: dict, rag: RAG, rules: SupportRules) -> list[dict]:
    out = []
    for item in report["items"]:
        draft = item.get("model_text") or ""
        if RETRY_MARK in draft:
            first, retry = draft.split(RETRY_MARK, 1)
            draft = retry if not is_refusal(retry) else first
        refused, text, cites = True, "", []
        if draft and not is_refusal(draft):
            _, shown = rag.context(item["question"])
            text, sentences = attribute(draft, shown, item["question"], rules)
            if any(s.supported for s in sentences):
                refused = False
                gold = list(item.get("gold_answers") or []) + list(item.get("evidence") or [])
                ns = sorted({n for s in sentences for n in s.citations})
                cites = [M.text_contains(shown[n - 1].text, gold or ["\0"]) for n in ns]
        ok = refused if item["must_refuse"] else (not refused and M.contains(strip_markers(text), item["gold_answers"]) > 0)
        out.append({"id": item["id"], "must_refuse": item["must_refuse"], "refused": refused, "correct": ok,
                    "contains": (not item["must_refuse"]) and ok, "cites": cites})
    return out


def summary(rows: list[dict]) -> dict:
    ans = [r for r in rows if not r["must_refuse"]]
    ref = [r for r in rows if r["must_refuse"]]
    cites = [c for r in rows if not r["refused"] for c in r["cites"]]
    return {"contains": sum(r["contains"] for r in ans) / len(ans),
            "refusal_recall": sum(r["refused"] for r in ref) / max(1, len(ref)),
            "false_refusal_rate": sum(r["refused"] for r in ans) / len(ans),
            "citation_precision": sum(cites) / max(1, len(cites))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--index", type=Path, required=True, help="the index the run used")
    args = parser.parse_args()
    report = json.loads(args.report.read_text(encoding="utf-8"))
    keys = ("context", "corpus_max_words", "top_k", "retrieval", "passage_order", "context_words", "diversity",
            "query_rewrite", "embed_backend")
    config = {k: v for k, v in report["config"].items() if k in keys}
    rag = RAG.open(settings=Settings.load(index_dir=args.index, **config))
    base = None
    print("| rules | contains | refusal recall | false refusals | citation precision | vs current (B only / A only, p) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, rules in RULES.items():
        rows = rescore(report, rag, rules)
        s = summary(rows)
        if base is None:
            base, paired = rows, ""
        else:
            wins = sum(1 for a, b in zip(base, rows) if b["correct"] and not a["correct"])
            losses = sum(1 for a, b in zip(base, rows) if a["correct"] and not b["correct"])
            p = M.sign_test(wins, losses)
            paired = f"{wins} / {losses}, p = {p:.2f}" if p is not None else f"{wins} / {losses}"
        print(f"| {name} | {s['contains']:.3f} | {s['refusal_recall']:.3f} | {s['false_refusal_rate']:.3f} "
              f"| {s['citation_precision']:.3f} | {paired} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
