"""Threads fitted to the free cores (rag/models/threads.py): fake /proc/stat readings, no timing."""
from __future__ import annotations

from pathlib import Path

from rag.config import Settings
from rag.models.threads import fit_llama_threads, free_threads, procs_running
from rag.testing import FakeLLM


def readings(*values):
    it = iter(values)
    return lambda: next(it)


def test_free_threads_leaves_a_core_per_other_running_task():
    assert free_threads(2, cores=2, running=readings(1, 1, 1)) == 2  # only this reader runs
    assert free_threads(2, cores=2, running=readings(2, 2, 2)) == 1  # one other process
    assert free_threads(2, cores=2, running=readings(6, 5, 7)) == 1  # never below 1
    assert free_threads(4, cores=8, running=readings(3, 3, 3)) == 4  # never above the setting


def test_free_threads_takes_the_least_of_its_reads_and_copes_with_no_reading():
    assert free_threads(2, cores=2, running=readings(3, 1, 2)) == 2  # a task that ran for a moment
    assert free_threads(2, cores=2, running=readings(None, None, None)) == 2


def test_procs_running_reads_proc_stat(tmp_path: Path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3\nprocs_running 3\nprocs_blocked 0\n", encoding="ascii")
    assert procs_running(str(stat)) == 3
    assert procs_running(str(tmp_path / "missing")) is None


def test_fit_llama_threads_is_none_without_a_llama_context():
    assert fit_llama_threads(FakeLLM(), 2) is None


def test_fit_llama_threads_sets_the_count_once_per_change(monkeypatch):
    import llama_cpp

    calls = []
    monkeypatch.setattr(llama_cpp, "llama_set_n_threads", lambda ctx, n, nb: calls.append((ctx, n, nb)))

    class Ctx:
        ctx = object()

    class Model:
        _ctx = Ctx()

    class Llm:
        _model = Model()

    llm = Llm()
    assert fit_llama_threads(llm, 2, running=lambda: 2) == 1
    assert fit_llama_threads(llm, 2, running=lambda: 2) == 1
    assert fit_llama_threads(llm, 2, running=lambda: 1) == 2
    assert [n for _, n, _ in calls] == [1, 2] and all(n == nb for _, n, nb in calls)


def test_adapt_threads_is_a_setting_on_by_default():
    assert Settings().adapt_threads is True
    assert Settings(adapt_threads=False).adapt_threads is False


def test_llama_helpers_fit_threads_only_when_the_setting_is_on(monkeypatch):
    from rag.models import threads
    from rag.models.llama_state import LlamaHelpers

    seen = []
    monkeypatch.setattr(threads, "fit_llama_threads", lambda llm, wanted: seen.append(wanted) or 1)
    helpers = LlamaHelpers(FakeLLM(), None, None, None)
    assert helpers.fit_threads(Settings(adapt_threads=False, threads=2)) is None and seen == []
    assert helpers.fit_threads(Settings(threads=2)) == 1 and seen == [2]
