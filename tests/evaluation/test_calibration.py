"""The min_score trade-off computed from one run's items: hand-made reports, no model."""
import pytest

from rag.errors import InputError
from rag.evaluation import calibration as C
from rag.evaluation.runner import sample_items
from rag.evaluation.testsets import TestItem


def item(must_refuse, best, abstained=False, contains=None):
    f1 = None if contains is None else (0.8 if contains else 0.1)
    return {"must_refuse": must_refuse, "abstained": abstained, "contains": contains, "f1": f1, "error": None,
            "retrieved": [{"score": best}, {"score": best - 0.1}]}


REPORT = {"config": {"min_score": 0.0}, "items": [
    item(True, 0.10), item(True, 0.25), item(True, 0.50), item(True, 0.60, abstained=True),
    item(False, 0.20, contains=1.0), item(False, 0.45, contains=1.0), item(False, 0.55, contains=0.0),
    item(False, 0.70, abstained=True, contains=0.0),
]}


def test_curve_refuses_below_the_threshold_and_keeps_other_refusals():
    points = {p.threshold: p for p in C.refusal_curve(REPORT, [0.0, 0.3, 0.5])}
    assert points[0.0].refusal_recall == 0.25 and points[0.0].false_refusal_rate == 0.25
    assert points[0.3].refusal_recall == 0.75 and points[0.3].false_refusal_rate == 0.5
    assert points[0.3].contains == 0.25  # the 0.20 hit is now refused, the 0.45 hit stays
    assert points[0.3].f1 == round((0.8 + 0.1) / 4, 4)  # refused items (gated or abstained) score 0
    assert points[0.5].refusal_recall == 0.75 and points[0.5].false_refusal_rate == 0.75
    assert points[0.3].correct == (3 + 1) / 8


def test_thresholds_below_the_runs_min_score_cannot_be_simulated():
    report = {**REPORT, "config": {"min_score": 0.3}}
    assert [p.threshold for p in C.refusal_curve(report, [0.1, 0.3, 0.4])] == [0.3, 0.4]
    with pytest.raises(InputError, match="min_score=0.3"):
        C.refusal_curve(report, [0.1])


def test_choice_is_the_best_recall_within_the_false_refusal_budget():
    points = C.refusal_curve(REPORT, [0.0, 0.3, 0.5])
    assert C.choose_threshold(points, max_false_refusal=0.5).threshold == 0.3
    assert C.choose_threshold(points, max_false_refusal=0.25).threshold == 0.0
    # nothing within the budget: the best recall at the lowest false-refusal rate, lowest threshold on ties
    flat = [C.CurvePoint(t, rr, 0.3, 0.3, 0.1, 0.5) for t, rr in ((0.0, 0.4), (0.1, 0.5), (0.2, 0.5))]
    flat.append(C.CurvePoint(0.5, 0.9, 0.6, 0.1, 0.05, 0.5))
    assert C.choose_threshold(flat, max_false_refusal=0.15).threshold == 0.1


def test_curve_needs_both_kinds_of_items():
    with pytest.raises(InputError, match="both"):
        C.refusal_curve({"items": [item(True, 0.2)]})


def test_plot_and_table_are_written(tmp_path):
    points = C.refusal_curve(REPORT)
    chosen = C.choose_threshold(points)
    png = C.plot_refusal_curve({"run": points}, tmp_path / "curve.png", chosen)
    assert png.stat().st_size > 1000
    assert "(chosen)" in C.curve_table(points, chosen)


def test_sample_is_fixed_and_in_file_order():
    items = [TestItem(id=str(i), question=f"q{i}?", answers=("a",)) for i in range(100)]
    a, b = sample_items(items, 10), sample_items(items, 10)
    assert [i.id for i in a] == [i.id for i in b]
    assert [int(i.id) for i in a] == sorted(int(i.id) for i in a) and len({i.id for i in a}) == 10
    assert len(sample_items(items, 500)) == 100


def test_cli_refusal_curve_writes_table_and_plot(tmp_path, capsys):
    import json

    from rag.app.cli import main

    path = tmp_path / "squad-min0.json"
    path.write_text(json.dumps({**REPORT, "metrics": {}}))
    assert main(["eval", "curve", str(path), "--report", str(tmp_path / "curve.md")]) == 0
    out = capsys.readouterr().out
    assert "Chosen on squad-min0" in out and "(chosen)" in out
    assert (tmp_path / "curve.png").stat().st_size > 1000
    assert "![curve](curve.png)" in (tmp_path / "curve.md").read_text()


def full_item(id, must_refuse, best, abstained=False, contains=None):
    return {**item(must_refuse, best, abstained, contains), "id": id, "question": f"q{id}?", "answer": "a [1]",
            "gold_answers": [] if must_refuse else ["a"], "exact_match": 0.0 if contains is not None else None,
            "citations": [] if abstained else [{"n": 1, "supports": bool(contains)}],
            "first_hit_rank": None if must_refuse else 1, "timings": {"total": 1.0}}


def test_rescore_applies_the_gate_and_the_subset():
    report = {"config": {"min_score": 0.0}, "metrics": {}, "items": [
        full_item("r1", True, 0.10), full_item("r2", True, 0.50),
        full_item("a1", False, 0.20, contains=1.0), full_item("a2", False, 0.60, contains=1.0)]}
    m0 = C.rescore(report)
    assert (m0["refusal_recall"], m0["false_refusal_rate"], m0["contains"]) == (0.0, 0.0, 1.0)
    m = C.rescore(report, 0.3)
    assert (m["refusal_recall"], m["false_refusal_rate"], m["contains"]) == (0.5, 0.5, 0.5)
    assert m["citation_recall"] == 0.5  # the gated answer lost its citation
    sub = C.rescore(report, 0.3, ids={"r2", "a2"})
    assert sub["n_items"] == 2 and sub["refusal_recall"] == 0.0 and sub["contains"] == 1.0
    with pytest.raises(InputError):
        C.rescore({**report, "config": {"min_score": 0.4}}, 0.3)


def test_ablation_table_pairs_each_run_with_the_default(tmp_path, capsys):
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("ablation_table", Path(__file__).resolve().parents[2] / "bench" / "ablation_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)

    def run(name, items, **config):
        for i in items:
            i["correct"] = bool(i["abstained"]) if i["must_refuse"] else i["contains"] == 1.0
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"config": {"min_score": 0.0, "retrieval": "hybrid", "context": "chunk",
                                               "answer_style": "sentence", **config}, "metrics": {}, "items": items}))
        return str(path)

    default = run("default", [full_item("r1", True, 0.10), full_item("a1", False, 0.60, contains=0.0),
                              full_item("a2", False, 0.60, contains=1.0)])
    other = run("other", [full_item("r1", True, 0.50), full_item("a1", False, 0.60, contains=1.0),
                          full_item("a2", False, 0.20, contains=1.0)], support="embedding")
    assert table.main(["0.30", default, other]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[2].startswith("| default |") and rows[2].endswith("| default |")
    # r1: refused by the gate in default only; a1: right in other only; a2: gated in other only
    assert "support=embedding" in rows[3] and rows[3].endswith("| 1 / 2 (1.00) |")


def _item(i, must_refuse, abstained, contains, best, p, retried=False):
    return {"id": str(i), "must_refuse": must_refuse, "abstained": abstained, "contains": contains,
            "signals": {"best_score": best, "p_refusal": p, "retried": retried}, "error": None}


CAL_CONFIG = {"min_score": 0.0, "refusal_prob": 1.0, "retry_below": 1.0}


def test_decided_applies_each_gate_from_the_recorded_signals():
    from rag.evaluation.calibration import Gates, decided

    answered = _item(1, False, False, 1.0, 0.5, 0.3)
    assert decided(answered, Gates(0.0, 1.0, 1.0)) == (False, True)
    assert decided(answered, Gates(0.6, 1.0, 1.0)) == (True, False)  # below the retrieval gate
    assert decided(answered, Gates(0.0, 0.25, 1.0)) == (True, False)  # the model nearly refused
    retried = _item(2, False, False, 1.0, 0.5, 0.4, retried=True)  # right only thanks to the retry
    assert decided(retried, Gates(0.0, 1.0, 0.5)) == (False, True)
    assert decided(retried, Gates(0.0, 1.0, 0.3)) == (True, False)  # no retry: the refusal stands
    unanswerable = _item(3, True, False, None, 0.2, 0.1)
    assert decided(unanswerable, Gates(0.3, 1.0, 1.0)) == (True, True)


def test_decided_applies_the_claim_threshold_to_the_best_judged_sentence():
    from rag.evaluation.calibration import Gates, decided

    near_miss = _item(4, True, False, None, 0.6, 0.1)
    near_miss["signals"]["claims"] = [0.3, None]
    assert decided(near_miss, Gates(0.0, 1.0, 1.0)) == (False, False)  # claim check off: answered, wrongly
    assert decided(near_miss, Gates(0.0, 1.0, 1.0, 0.5)) == (True, True)
    assert decided(near_miss, Gates(0.0, 1.0, 1.0, 0.2)) == (False, False)
    right = _item(5, False, False, 1.0, 0.6, 0.1)
    right["signals"]["claims"] = [0.3, 0.9]  # one sentence is enough
    assert decided(right, Gates(0.0, 1.0, 1.0, 0.5)) == (False, True)
    unjudged = _item(6, False, False, 1.0, 0.6, 0.1)  # no judge (a server): the claim gate cannot refuse
    assert decided(unjudged, Gates(0.0, 1.0, 1.0, 0.8)) == (False, True)


def test_gates_are_chosen_with_held_out_folds_on_every_set():
    from rag.evaluation.calibration import cross_validate_gates

    # In both sets unanswerable items score low and answerable ones high: a gate near 0.3 separates them.
    def report(n):
        items = [_item(i, i % 3 == 0, False, None if i % 3 == 0 else 1.0, 0.15 if i % 3 == 0 else 0.6, 0.1)
                 for i in range(n)]
        return {"config": CAL_CONFIG, "items": items}

    result = cross_validate_gates({"a": report(30), "b": report(45)}, folds=5)
    assert result["chosen"]["min_score"] in (0.2, 0.3, 0.4)
    for m in result["held_out"].values():
        assert m["refusal_recall"] == 1.0 and m["false_refusal_rate"] == 0.0 and m["correct"] == 1.0
    assert len(result["fold_gates"]) == 5


def test_calibration_needs_runs_that_recorded_every_signal():
    from rag.evaluation.calibration import cross_validate_gates

    with pytest.raises(InputError, match="RAG_MIN_SCORE=0"):
        cross_validate_gates({"a": {"config": {"min_score": 0.3}, "items": []}})
    with pytest.raises(InputError, match="RAG_CLAIM_THRESHOLD=0"):
        cross_validate_gates({"a": {"config": {**CAL_CONFIG, "claim_check": True, "claim_threshold": 0.5}, "items": []}})
