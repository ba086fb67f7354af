"""How well does the claim check's judge tell answers from near misses? Several judges, one run.

`collect` asks a test set through the normal pipeline with every refusal gate open (min_score 0,
refusal_prob 1, retry_below 1, claim_threshold 0: every answer is kept and judged), and scores each
supported answer sentence with every judge variant on the same KV state (each variant appends its own
question to the answer's prompt). It writes the `rag eval` JSON report (its `signals.claims` are the
first variant's, so `rag eval calibrate` reads it as is) and, per item, every variant's P(yes), P(no),
milliseconds and evaluated tokens.

`score` reads such files offline: per variant, the ROC AUC of telling answerable items from must-refuse
ones by the item's claim score (the best sentence's, as the answerer decides), and the refusal rate of
must-refuse items and the answer rate of answerable ones at each threshold; `--reports DIR` also writes,
per variant, a copy of each eval report whose claims are that variant's (for `rag eval calibrate`).

    python bench/claim_judge.py collect nearmiss-seed --docs seeds/000_a5055be445bd665f.txt \\
        --index /tmp/cj/seed --out /tmp/cj/nearmiss-seed.json
    python bench/claim_judge.py score /tmp/cj/nearmiss-*.json --json docs/ablations/claim-judge-nearmiss.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.answer.citations import content_words  # noqa: E402
from rag.models.llama_state import yes_score  # noqa: E402

# name -> (prompt file, restate tokens); each is scored both "normalised" and "yes" from the same logits.
VARIANTS: dict[str, tuple[str, int]] = {
    "current": ("claim_check", 0),
    "exact": ("claim_check_exact", 0),
    "restate": ("claim_check_restate", 24),
    "missing": ("claim_check_missing", 0),
}
QUESTION_WORDS = {"what", "which", "who", "whom", "whose", "when", "where", "why", "how", "name", "many", "much",
                  "did", "does", "do", "is", "was", "were", "are"}


@dataclass
class Judged:
    """One judged sentence: per variant, P(yes), P(no), milliseconds, evaluated tokens, restatement."""

    question: str
    sentence: str
    evidence: str
    scores: dict[str, dict[str, Any]]


class RecordingJudge:
    """A ClaimJudge that scores each sentence with every variant (LlamaClaimJudge instances on the same
    model) and records them all; the pipeline gets the first variant's normalised score."""

    def __init__(self, llm: Any, variants: Sequence[str]) -> None:
        from rag.models.llama_state import LlamaClaimJudge

        self.judges = {v: LlamaClaimJudge(llm, prompt=VARIANTS[v][0], restate=VARIANTS[v][1]) for v in variants}
        self.records: list[Judged] = []

    def score(self, messages: Any, question: str, sentence: str, cited: Sequence[int], evidence: str) -> float | None:
        scores: dict[str, dict[str, Any]] = {}
        for name, judge in self.judges.items():
            before = judge.evaluated
            began = time.perf_counter()
            judge.score(messages, question, sentence, cited, evidence)
            scores[name] = {"p_yes": judge.last[0] if judge.last else None,
                            "p_no": judge.last[1] if judge.last else None,
                            "ms": round((time.perf_counter() - began) * 1e3, 1),
                            "tokens": judge.evaluated - before, "restated": judge.restated}
        self.records.append(Judged(question, sentence, evidence, scores))
        first = scores[next(iter(self.judges))]
        if first["p_yes"] is None:
            return None
        return yes_score(first["p_yes"], first["p_no"], "normalised")


def collect(args: argparse.Namespace) -> None:
    from rag.config import Settings
    from rag.evaluation.runner import evaluate, open_rag_for
    from rag.evaluation.testsets import load_testset

    from _common import machine, load_average  # noqa: E402  (bench/ is on sys.path when run as a script)

    settings = Settings(min_score=0.0, refusal_prob=1.0, retry_below=1.0, claim_threshold=0.0, claim_check=True)
    testset = load_testset(args.testset)
    rag = open_rag_for(testset, settings, docs=args.docs, index=args.index, progress=False)
    judge = RecordingJudge(rag.llm, args.variants)
    rag.claim_judge = judge  # the judge the pipeline's llama helpers are made with
    rag._helpers = None
    load_before = load_average()
    report = evaluate(rag, testset, limit=args.limit, sample=args.sample, progress=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report.write_json(out.with_suffix(".report.json"))
    by_question: dict[str, list[dict[str, Any]]] = {}
    for r in judge.records:
        by_question.setdefault(r.question, []).append(
            {"sentence": r.sentence, "evidence": r.evidence, "scores": r.scores})
    data = json.loads(out.with_suffix(".report.json").read_text())
    items = []
    for item in data["items"]:
        items.append({"id": item["id"], "question": item["question"], "must_refuse": item["must_refuse"],
                      "contains": item.get("contains"), "answer": item["answer"], "abstained": item["abstained"],
                      "error": item.get("error"), "judged": by_question.get(item["question"], [])})
    out.write_text(json.dumps({"testset": str(args.testset), "variants": list(args.variants),
                               "report": str(out.with_suffix(".report.json")), "machine": machine(),
                               "load_before": load_before, "load_after": load_average(),
                               "items": items}, indent=1), encoding="utf-8")
    print(f"{len(items)} items, {len(judge.records)} judged sentences -> {out}")


def question_coverage(question: str, evidence: str) -> float:
    """The share of the question's content words (question words left out) found in the evidence
    sentence: a near miss swaps one of them for a term the passage does not use there."""
    words = content_words(question) - QUESTION_WORDS
    return len(words & content_words(evidence)) / len(words) if words else 1.0


def sentence_score(judged: dict[str, Any], variant: str) -> float | None:
    """A sentence's score under `variant` ("NAME", "NAME:yes", "NAME*coverage", "coverage")."""
    name, _, mod = variant.partition("*")
    base, _, scoring = name.partition(":")
    if base == "coverage":
        return question_coverage(judged["question"], judged["evidence"])
    s = judged["scores"].get(base)
    if s is None or s["p_yes"] is None:
        return None
    value = yes_score(s["p_yes"], s["p_no"], scoring or "normalised")
    if value is not None and mod == "coverage":
        value *= question_coverage(judged["question"], judged["evidence"])
    return value


def item_score(item: dict[str, Any], variant: str) -> float | None:
    """The best sentence's score (the answerer refuses when no sentence reaches the threshold); None
    when nothing was judged (a refusal or no supported sentence: not the judge's decision)."""
    values = [v for j in item["judged"] if (v := sentence_score({**j, "question": item["question"]}, variant)) is not None]
    return max(values) if values else None


def roc_auc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """P(a positive scores above a negative), ties half (the Mann-Whitney form of the ROC AUC)."""
    if not positive or not negative:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


THRESHOLDS = [round(0.05 * k, 2) for k in range(1, 20)]


def score_variant(items: Sequence[dict[str, Any]], variant: str) -> dict[str, Any]:
    """AUC and, per threshold, the share of must-refuse items refused and of answerable items answered
    (only items whose answer was judged: the judge cannot decide the others)."""
    rows = [(i["must_refuse"], s) for i in items if (s := item_score(i, variant)) is not None]
    neg = [s for m, s in rows if m]
    pos = [s for m, s in rows if not m]
    curve = [{"threshold": t, "refused": round(sum(s < t for s in neg) / len(neg), 3) if neg else None,
              "answered": round(sum(s >= t for s in pos) / len(pos), 3) if pos else None} for t in THRESHOLDS]
    auc = roc_auc(pos, neg)
    return {"variant": variant, "n_refuse": len(neg), "n_answer": len(pos),
            "auc": round(auc, 3) if auc is not None else None, "curve": curve}


def costs(items: Sequence[dict[str, Any]], variant: str) -> tuple[float | None, float | None]:
    import numpy as np

    ms = [j["scores"][variant]["ms"] for i in items for j in i["judged"] if variant in j["scores"]]
    tok = [j["scores"][variant]["tokens"] for i in items for j in i["judged"] if variant in j["scores"]]
    return (float(np.median(ms)) if ms else None, float(np.median(tok)) if tok else None)


def score(args: argparse.Namespace) -> None:
    sets = {Path(p).stem: json.loads(Path(p).read_text()) for p in args.caches}
    names = list(dict.fromkeys(v for d in sets.values() for v in d["variants"]))
    variants = [*names, *(f"{n}:yes" for n in names), *(f"{n}*coverage" for n in names), "coverage"]
    out: dict[str, Any] = {"sets": {}, "variants": variants}
    pooled = [i for d in sets.values() for i in d["items"] if i.get("error") is None]
    for label, items in [*((k, [i for i in d["items"] if i.get("error") is None]) for k, d in sets.items()),
                         ("all", pooled)]:
        out["sets"][label] = [score_variant(items, v) for v in variants]
    out["cost"] = {n: dict(zip(("ms_p50", "tokens_p50"), costs(pooled, n))) for n in names}
    print("| variant | " + " | ".join(f"AUC {k}" for k in out["sets"]) + " |")
    print("| --- |" + " ---: |" * len(out["sets"]))
    for k, v in enumerate(variants):
        print(f"| {v} | " + " | ".join(str(out["sets"][s][k]["auc"]) for s in out["sets"]) + " |")
    print("\njudge cost per sentence (p50 ms, p50 evaluated tokens):",
          {n: (c["ms_p50"], c["tokens_p50"]) for n, c in out["cost"].items()})
    for k, v in enumerate(variants):
        curve = out["sets"]["all"][k]["curve"]
        print(f"\n{v} (all sets; n refuse {out['sets']['all'][k]['n_refuse']}, answer {out['sets']['all'][k]['n_answer']}):",
              " ".join(f"{c['threshold']}:{c['refused']}/{c['answered']}" for c in curve))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1), encoding="utf-8")
    if args.reports:
        write_variant_reports(sets, names, Path(args.reports))


def write_variant_reports(sets: dict[str, Any], names: Sequence[str], directory: Path) -> None:
    """For each variant (normalised and :yes), a copy of each eval report whose signals.claims are that
    variant's scores, for `rag eval calibrate`."""
    directory.mkdir(parents=True, exist_ok=True)
    for stem, data in sets.items():
        report = json.loads(Path(data["report"]).read_text())
        judged = {i["question"]: i["judged"] for i in data["items"]}
        for variant in [*names, *(f"{n}:yes" for n in names)]:
            for item in report["items"]:
                signals = item.get("signals") or {}
                claims = signals.get("claims") or []
                values = iter(sentence_score({**j, "question": item["question"]}, variant)
                              for j in judged.get(item["question"], []))
                signals["claims"] = [next(values, None) if c is not None else None for c in claims]
            path = directory / f"{stem}.{variant.replace(':', '-')}.json"
            path.write_text(json.dumps(report), encoding="utf-8")
    print(f"variant reports in {directory}")


def parse_gates(text: str) -> "Any":
    """"MIN,REFUSAL_PROB,RETRY_BELOW,CLAIM" -> Gates."""
    from rag.evaluation.calibration import Gates

    values = [float(v) for v in text.split(",")]
    if len(values) != 4:
        raise SystemExit(f"--gates {text!r}: give min_score,refusal_prob,retry_below,claim_threshold")
    return Gates(*values)


def gates(args: argparse.Namespace) -> None:
    """Each open-gate report decided under gates A (with its claims) and B (with the claims of
    --b-reports' variant copies, if given), paired item by item with an exact sign test."""
    from rag.evaluation.calibration import decided, gate_metrics
    from rag.evaluation.metrics import sign_test

    a_gates, b_gates = parse_gates(args.a), parse_gates(args.b)
    rows = []
    for a_path, b_path in zip(args.a_reports, args.b_reports or args.a_reports):
        a_items = [i for i in json.loads(Path(a_path).read_text())["items"] if i.get("error") is None]
        b_items = {i["id"]: i for i in json.loads(Path(b_path).read_text())["items"] if i.get("error") is None}
        pairs = [(i, b_items[i["id"]]) for i in a_items if i["id"] in b_items]
        ma = gate_metrics([a for a, _ in pairs], a_gates)
        mb = gate_metrics([b for _, b in pairs], b_gates)
        right_a = [decided(a, a_gates)[1] for a, _ in pairs]
        right_b = [decided(b, b_gates)[1] for _, b in pairs]
        wins = sum(b and not a for a, b in zip(right_a, right_b))
        losses = sum(a and not b for a, b in zip(right_a, right_b))
        p = sign_test(wins, losses)
        rows.append((Path(b_path).stem, len(pairs), ma, mb, wins, losses, p))
    print(f"A = {a_gates}\nB = {b_gates}")
    print("| run | n | refusal recall A → B | false refusals A → B | contains A → B | B only / A only | p |")
    print("| --- | ---: | --- | --- | --- | --- | ---: |")
    fmt = lambda v: "-" if v != v else f"{v:.3f}"  # noqa: E731  (nan: nothing to count)
    for name, n, ma, mb, wins, losses, p in rows:
        print(f"| {name} | {n} | {fmt(ma['refusal_recall'])} → {fmt(mb['refusal_recall'])} | "
              f"{fmt(ma['false_refusal_rate'])} → {fmt(mb['false_refusal_rate'])} | "
              f"{fmt(ma['contains'])} → {fmt(mb['contains'])} | {wins} / {losses} | "
              f"{'-' if p is None else f'{p:.3f}'} |")


def claim_curve(args: argparse.Namespace) -> None:
    """The claim threshold's trade-off with the other gates fixed: per report, refusal recall, false
    refusals and contains at each threshold (a Markdown table; --png also plots it)."""
    from dataclasses import replace

    from rag.evaluation.calibration import gate_metrics

    base = parse_gates(args.gates)
    reports = {Path(p).stem.split(".")[0]: [i for i in json.loads(Path(p).read_text())["items"] if i.get("error") is None]
               for p in args.reports}
    thresholds = [0.0, *THRESHOLDS]
    rows = {name: [gate_metrics(items, replace(base, claim_threshold=t)) for t in thresholds]
            for name, items in reports.items()}
    fmt = lambda v: "-" if v != v else f"{v:.2f}"  # noqa: E731
    print(f"other gates: min_score {base.min_score}, refusal_prob {base.refusal_prob}, retry_below {base.retry_below}")
    print("| claim threshold | " + " | ".join(f"{n}: recall / false ref. / contains" for n in rows) + " |")
    print("| ---: |" + " --- |" * len(rows))
    for k, t in enumerate(thresholds):
        print(f"| {t:.2f} | " + " | ".join(f"{fmt(m[k]['refusal_recall'])} / {fmt(m[k]['false_refusal_rate'])} / "
                                         f"{fmt(m[k]['contains'])}" for m in rows.values()) + " |")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, ms in rows.items():
            recall = [m["refusal_recall"] for m in ms]
            false = [m["false_refusal_rate"] for m in ms]
            if all(r != r for r in recall):
                ax.plot(thresholds, false, "--", label=f"{name}: false refusals")
                continue
            line, = ax.plot(thresholds, recall, "-", label=f"{name}: refusal recall")
            ax.plot(thresholds, false, "--", color=line.get_color(), label=f"{name}: false refusals")
        ax.set_xlabel("claim threshold")
        ax.set_ylabel("share")
        ax.set_title("claim threshold, other gates fixed")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
        print(f"plot: {args.png}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="answer a test set with every gate open; judge each sentence with every variant")
    c.add_argument("testset")
    c.add_argument("--docs", type=Path)
    c.add_argument("--index", type=Path)
    c.add_argument("--limit", type=int)
    c.add_argument("--sample", type=int)
    c.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    c.add_argument("--out", required=True)
    s = sub.add_parser("score", help="AUC and rates per threshold, offline, from collect's files")
    s.add_argument("caches", nargs="+")
    s.add_argument("--json")
    s.add_argument("--reports", help="folder for per-variant copies of the eval reports (for rag eval calibrate)")
    g = sub.add_parser("gates", help="open-gate reports decided under two gate settings, paired (sign test)")
    g.add_argument("a_reports", nargs="+", help="open-gate eval reports (collect's *.report.json)")
    g.add_argument("--b-reports", nargs="+", help="the same runs with another judge's claims (score --reports)")
    g.add_argument("--a", required=True, help="gates A: min_score,refusal_prob,retry_below,claim_threshold")
    g.add_argument("--b", required=True, help="gates B, the same form")
    k = sub.add_parser("curve", help="the claim threshold's trade-off per report, other gates fixed")
    k.add_argument("reports", nargs="+")
    k.add_argument("--gates", required=True, help="min_score,refusal_prob,retry_below,claim_threshold (the last is varied)")
    k.add_argument("--png")
    args = parser.parse_args(argv)
    {"collect": collect, "score": score, "gates": gates, "curve": claim_curve}[args.command](args)


if __name__ == "__main__":
    main()
