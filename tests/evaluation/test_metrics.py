"""Metric functions against hand-computed cases. Pure functions: no index, no model."""
import pytest

from rag.evaluation import metrics as M
from rag.evaluation.scoring import ItemResult, compute_metrics, score_item
from rag.evaluation.testsets import TestItem
from rag.types import Answer, Chunk, Citation, Passage


def test_squad_normalisation():
    assert M.normalize_answer("The  $110 Million!") == "110 million"
    assert M.normalize_answer("An MQ-9 Reaper, a drone.") == "mq9 reaper drone"
    assert M.normalize_answer("Côte d'Ivoire") == "côte divoire"
    assert M.normalize_answer("theory") == "theory"  # "the" only as a whole word


def test_exact_match_is_max_over_golds():
    assert M.exact_match("the Agadez.", ["Niamey", "Agadez"]) == 1.0
    assert M.exact_match("Agadez base", ["Agadez"]) == 0.0
    assert M.exact_match("anything", []) == 0.0


def test_token_f1():
    # pred tokens [about, 110, million, dollars] vs gold [110, million]: P = 2/4, R = 2/2, F1 = 2/3
    assert M.f1_score("about $110 million dollars", ["110 million"]) == pytest.approx(2 / 3)
    # max over golds: against [about, 110, million], P = 3/4 and R = 1, so F1 = 6/7
    assert M.f1_score("about $110 million dollars", ["110 million", "about $110 million"]) == pytest.approx(6 / 7)
    assert M.f1_score("Niamey", ["Agadez"]) == 0.0
    assert M.f1_score("the", ["a"]) == 1.0  # both normalise to nothing, as in SQuAD's script
    assert M.f1_score("x", []) == 0.0
    # repeated tokens are counted with multiplicity: pred [no, no, no], gold [no]: P = 1/3, R = 1
    assert M.f1_score("no no no", ["no"]) == pytest.approx(0.5)


def test_contains_whole_tokens_after_normalisation():
    assert M.contains("Washington spent about $110 million to build it.", ["110 million"]) == 1.0
    assert M.contains("They came from Russia.", ["Russian"]) == 0.0
    assert M.contains("Russian instructors came.", ["Russia"]) == 0.0  # not a prefix match
    assert M.contains("It opened in 2019.", ["1"]) == 0.0
    assert M.contains("It opened in 2019.", ["9", "2019"]) == 1.0
    assert M.contains("roughly 1,100 troops", ["1100"]) == 1.0
    assert M.contains("anything", []) == 0.0
    assert M.contains("anything", ["the"]) == 0.0  # a gold that normalises to nothing matches nothing


def test_refusal_precision_recall_and_false_refusals():
    must = [True, True, False, False, False]
    refused = [True, False, True, False, False]
    s = M.refusal_scores(must, refused)
    assert s["refusal_precision"] == pytest.approx(1 / 2)
    assert s["refusal_recall"] == pytest.approx(1 / 2)
    assert s["false_refusal_rate"] == pytest.approx(1 / 3)


def test_refusal_scores_are_none_when_undefined():
    nothing_refused = M.refusal_scores([True, False], [False, False])
    assert nothing_refused["refusal_precision"] is None
    assert nothing_refused["refusal_recall"] == 0.0
    all_answerable = M.refusal_scores([False, False], [True, False])
    assert all_answerable["refusal_recall"] is None and all_answerable["refusal_precision"] == 0.0
    all_unanswerable = M.refusal_scores([True], [True])
    assert all_unanswerable["false_refusal_rate"] is None
    with pytest.raises(ValueError):
        M.refusal_scores([True], [])


def test_citation_precision_and_recall():
    cited = [[True, False], [False], [], [True]]
    answerable = [True, True, True, False]
    s = M.citation_scores(cited, answerable)
    assert s["citation_precision"] == pytest.approx(2 / 4)  # all cited passages, answerable or not
    assert s["citation_recall"] == pytest.approx(1 / 3)  # only item 0 of the 3 answerable ones
    none = M.citation_scores([[], []], [False, False])
    assert none == {"citation_precision": None, "citation_recall": None}


def test_hit_at_k_and_mrr():
    assert M.first_hit_rank([False, False, True, True]) == 3
    assert M.first_hit_rank([False, False]) is None
    assert M.first_hit_rank([]) is None
    s = M.retrieval_scores([1, 3, None, 2])
    assert s["hit_at_k"] == pytest.approx(0.75)
    assert s["mrr"] == pytest.approx((1 + 1 / 3 + 0 + 1 / 2) / 4)
    assert M.retrieval_scores([]) == {"hit_at_k": None, "mrr": None}


def test_percentiles_interpolate_like_numpy():
    values = [4.0, 1.0, 3.0, 2.0]
    assert M.percentile(values, 50) == pytest.approx(2.5)
    assert M.percentile(values, 95) == pytest.approx(3.85)  # pos 0.95 * 3 = 2.85 -> 3 + 0.85
    assert M.percentile(values, 0) == 1.0 and M.percentile(values, 100) == 4.0
    assert M.percentile([7.0], 95) == 7.0
    assert M.percentile([], 50) is None
    with pytest.raises(ValueError):
        M.percentile([1.0], 101)


def test_mean_and_ratio_none_when_empty():
    assert M.mean([]) is None and M.mean([1.0, 0.0]) == 0.5
    assert M.ratio(1, 0) is None and M.ratio(1, 4) == 0.25


# -- scoring one item and aggregating ----------------------------------------------------------

def _passage(text: str, score: float = 0.8, cid: int = 0) -> Passage:
    return Passage.of(Chunk(id=cid, doc_id="d", source="/x/a.md", text=text, start=0, end=len(text)), score)


def _cite(n: int, p: Passage) -> Citation:
    return Citation(n=n, text=p.text, source=p.chunk.source, page=None, start=p.start, end=p.end, score=p.score)


def test_score_item_strips_markers_and_scores_citations_and_retrieval():
    item = TestItem(id="q", question="How much?", answers=("$110 million", "110 million"),
                    evidence=("spent about $110 million to establish the base",))
    miss = _passage("Construction began in 2016.", cid=1)
    hit = _passage("Washington spent about $110 million to establish the base in northern Niger.", cid=2)
    answer = Answer(question="How much?", text="Washington spent about $110 million [2].",
                    citations=[_cite(1, miss), _cite(2, hit)], abstained=False, passages=[miss, hit],
                    timings={"retrieve": 0.01, "first_token": 0.2, "total": 1.0})
    r = score_item(item, answer)
    assert r.contains == 1.0 and r.exact_match == 0.0
    # pred [washington, spent, about, 110, million] vs gold [110, million]: P 2/5, R 1 -> 4/7
    assert r.f1 == pytest.approx(4 / 7)
    assert [c["supports"] for c in r.citations] == [False, True]
    assert r.first_hit_rank == 2 and r.correct is True and r.verdict == "correct"


def test_score_item_refusal_of_answerable_is_wrong():
    item = TestItem(id="q", question="How much?", answers=("110 million",))
    answer = Answer(question="How much?", text="Not in the documents.", citations=[], abstained=True,
                    passages=[_passage("110 million dollars")], timings={"retrieve": 0.01, "total": 0.02})
    r = score_item(item, answer)
    assert (r.exact_match, r.f1, r.contains) == (0.0, 0.0, 0.0)
    assert r.first_hit_rank == 1  # retrieval is scored even when the answer was refused
    assert r.verdict == "false refusal" and r.correct is False


def _result(must_refuse: bool, abstained: bool, contains: float | None = None, cites=(), rank=None,
            total=1.0, ttft=None, error=None) -> ItemResult:
    timings = {"retrieve": 0.01, "total": total} | ({"first_token": ttft} if ttft is not None else {})
    return ItemResult(id=str(id(object())), question="q", must_refuse=must_refuse, gold_answers=[] if must_refuse else ["g"],
                      answer="a", abstained=abstained, citations=[{"supports": s} for s in cites],
                      exact_match=None if must_refuse else 0.0, f1=None if must_refuse else contains,
                      contains=contains, first_hit_rank=rank, timings=timings, error=error)


def test_compute_metrics_by_hand():
    results = [
        _result(False, False, 1.0, cites=[True], rank=1, total=1.0, ttft=0.1),
        _result(False, False, 0.0, cites=[False, True], rank=2, total=2.0, ttft=0.3),
        _result(False, True, 0.0, rank=None, total=0.5),
        _result(True, True, total=0.5),
        _result(True, False, cites=[False], total=3.0, ttft=0.2),
        _result(False, False, error="ValueError: boom"),
    ]
    m = compute_metrics(results)
    assert m["n_items"] == 6 and m["n_errors"] == 1 and m["n_answerable"] == 3 and m["n_must_refuse"] == 2
    assert m["contains"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["refusal_precision"] == 0.5 and m["refusal_recall"] == 0.5
    assert m["false_refusal_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["citation_precision"] == 0.5  # 2 of the 4 cited passages
    assert m["citation_recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["hit_at_k"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["mrr"] == pytest.approx(0.5, abs=1e-4)  # (1 + 1/2 + 0) / 3
    assert m["latency_p50_s"] == 1.0  # totals 1, 2, .5, .5, 3 -> median 1
    assert m["ttft_p50_s"] == 0.2  # only where present


def test_compute_metrics_undefined_are_none_not_zero():
    m = compute_metrics([_result(False, False, 1.0, cites=[True], rank=1)])
    assert m["refusal_recall"] is None and m["refusal_precision"] is None
    assert m["ttft_p50_s"] is None
    assert m["contains"] == 1.0
    only_refuse = compute_metrics([_result(True, True)])
    for key in ("exact_match", "f1", "contains", "false_refusal_rate", "citation_recall", "hit_at_k", "mrr",
                "citation_precision"):
        assert only_refuse[key] is None, key
    assert only_refuse["refusal_recall"] == 1.0
    empty = compute_metrics([])
    assert empty["latency_p50_s"] is None and empty["n_items"] == 0


def test_sign_test_exact_values():
    from rag.evaluation.metrics import sign_test

    assert sign_test(0, 0) is None
    assert sign_test(1, 0) == 1.0
    assert sign_test(6, 10) == pytest.approx(0.4545, abs=1e-4)  # 2 * P(X <= 6), X ~ Bin(16, 1/2)
    assert sign_test(10, 6) == sign_test(6, 10)
    assert sign_test(0, 10) == pytest.approx(2 / 1024)
