"""Evaluation: test sets, metrics, scoring a run, reports, and calibrating the refusal gates.

    from rag.evaluation import evaluate, load_testset
    report = evaluate(rag, load_testset("seeds/testset.jsonl"))

May import: the ground floor, rag.models, rag.ingest, rag.store, rag.answer and rag.pipeline. Not
rag.collections (beside it on its floor) nor rag.app; it prints nothing (tests/test_layout.py).
"""
from rag.evaluation.report import Report, compare_reports, load_report
from rag.evaluation.runner import evaluate, open_rag_for
from rag.evaluation.testsets import TestItem, TestSet, load_testset

__all__ = ["Report", "TestItem", "TestSet", "compare_reports", "evaluate", "load_report", "load_testset",
           "open_rag_for"]
