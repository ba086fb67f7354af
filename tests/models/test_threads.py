"""Threads fitted to the free cores (rag/models/threads.py): fake /proc/stat readings, no timing."""
from __future__ import annotations

from pathlib import Path

from rag.config import Settings
from rag.models.threads import fit_llama_threads, free_threads, own_running, procs_running
from rag.testing import FakeLLM


def ONE() -> int:  # this process runs only the reader
    return 1


def readings(*values):
    it = iter(values)
    return lambda: next(it)


def test_free_threads_leaves_a_core_per_other_running_task():
    assert free_threads(2, cores=2, running=readings(1, 1, 1), own=ONE) == 2  # only this reader runs
    assert free_threads(2, cores=2, running=readings(2, 2, 2), own=ONE) == 1  # one other process
    assert free_threads(2, cores=2, running=readings(6, 5, 7), own=ONE) == 1  # never below 1
    assert free_threads(4, cores=8, running=readings(3, 3, 3), own=ONE) == 4  # never above the setting


def test_free_threads_takes_the_least_of_its_reads_and_copes_with_no_reading():
    assert free_threads(2, cores=2, running=readings(3, 1, 2), own=ONE) == 2  # a task that ran for a moment
    assert free_threads(2, cores=2, running=readings(None, None, None), own=ONE) == 2


def test_this_process_own_running_threads_are_not_counted_as_others():
    # 3 tasks running, 2 of them this process's (the reader and a spinning worker thread): one other
    assert free_threads(2, cores=2, running=readings(3, 3, 3), own=lambda: 2) == 1
    # idle but for this process's own threads: all the threads wanted
    assert free_threads(2, cores=2, running=readings(3, 3, 3), own=lambda: 3) == 2


def test_own_running_counts_the_tasks_in_state_r(tmp_path: Path):
    for tid, state in (("10", "R"), ("11", "S"), ("12", "R")):
        (tmp_path / tid).mkdir()
        (tmp_path / tid / "stat").write_text(f"{tid} (python (x)) {state} 1 2 3\n", encoding="ascii")
    assert own_running(str(tmp_path)) == 2
    assert own_running(str(tmp_path / "missing")) == 1
    assert own_running() >= 1  # this very thread runs


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
    assert fit_llama_threads(llm, 2, running=lambda: 2, own=ONE) == 1
    assert fit_llama_threads(llm, 2, running=lambda: 2, own=ONE) == 1
    assert fit_llama_threads(llm, 2, running=lambda: 1, own=ONE) == 2
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
