"""Evaluation: test sets, metrics, scoring a run, reports, and calibrating the refusal gates.

    from rag.evaluation import evaluate, load_testset
    report = evaluate(rag, load_testset("seeds/testset.jsonl"))
"""
from rag.evaluation.report import Report, compare_reports, load_report
from rag.evaluation.runner import evaluate, open_rag_for
from rag.evaluation.testsets import TestItem, TestSet, load_testset

__all__ = ["Report", "TestItem", "TestSet", "compare_reports", "evaluate", "load_report", "load_testset",
           "open_rag_for"]
