"""rag/models/llama_state.py without a model: the shared token prefix, and no llama.cpp helpers for a model
that is not llama.cpp (the fakes, an OpenAI-compatible server). With the real model: tests/test_integration.py."""
from __future__ import annotations

from rag.models.llama_state import claim_judge_for, llama_helpers_for, prompt_cache_for, refusal_probe_for, shared_prefix
from rag.testing import FakeLLM


def test_shared_prefix_counts_leading_equal_tokens():
    assert shared_prefix([1, 2, 3, 4], [1, 2, 9, 4]) == 2
    assert shared_prefix([1, 2], [1, 2, 3]) == 2
    assert shared_prefix([], [1]) == 0 and shared_prefix([5], [6]) == 0


def test_a_model_without_llama_cpp_gets_no_helpers(tmp_path):
    llm = FakeLLM(["Not in the documents."])
    assert claim_judge_for(llm) is None
    assert refusal_probe_for(llm, "Not in the documents.") is None
    assert prompt_cache_for(llm, tmp_path) is None
    helpers = llama_helpers_for(llm, "Not in the documents.", tmp_path)
    assert helpers.llm is llm and (helpers.probe, helpers.prompt_state, helpers.judge) == (None, None, None)
    judge = object()
    assert llama_helpers_for(llm, "Not in the documents.", tmp_path, judge=judge).judge is judge
