"""The Evaluate tab and the chat's feedback, with fakes: the model lock's priorities, the collection's own
test set, kept runs and their history, the background job (progress, cancel, a chat question between two
items), the tab's handler functions, and privacy as two logged-in users (alice's runs and marks never
appear for bob, whatever he sends)."""
from __future__ import annotations

import json
import threading
import time

import pytest
from pydantic import PrivateAttr

from rag.answer.answerer import REFUSAL
from rag.collections import DEFAULT, Collections, private_name
from rag.errors import InputError
from rag.evaluation import feedback as F
from rag.evaluation import history as H
from rag.evaluation.jobs import CANCELLED, DONE, EvalJobs
from rag.evaluation.runner import evaluate
from rag.evaluation.testsets import TestItem, TestSet, load_testset
from rag.models.model_lock import ModelLock
from rag.testing import FakeEmbedder, FakeLLM
from tests.conftest import SEED_ARTICLE
from tests.app.test_ui import copy_sentence

QUESTION = "How much did Washington spend to establish the base in northern Niger?"
GOLD = "$110 million"


def write_testset(path, n=3):
    items = [{"id": "q1", "question": QUESTION, "answers": [GOLD]},
             {"id": "q2", "question": "What is the capital of Mars?", "answers": []},
             {"id": "q3", "question": "Who built the Zorblax lighthouse?", "answers": ["Mara Velde"]}]
    path.write_text("".join(json.dumps(i) + "\n" for i in items[:n]), encoding="utf-8")
    return path


def mars_refused(prompt: str) -> str:
    """Refuses the question about Mars, copies the sentence about millions for the others."""
    return REFUSAL if "capital of Mars" in prompt else copy_sentence("million")(prompt)


@pytest.fixture
def collections(settings):
    c = Collections(settings.with_(admin_users="root"), embedder=FakeEmbedder(), llm=FakeLLM([mars_refused]))
    c.open(DEFAULT).add([SEED_ARTICLE])
    return c


# --------------------------------------------------------------------------- the model lock

def test_a_foreground_caller_goes_before_a_waiting_background_one():
    lock = ModelLock()
    order: list[str] = []
    waits: list[bool] = []
    lock.acquire()  # someone is generating

    def background():
        with lock.background(waits.append):
            with lock:
                order.append("eval")

    def foreground():
        with lock:
            order.append("chat")

    b = threading.Thread(target=background)
    b.start()
    time.sleep(0.1)
    f = threading.Thread(target=foreground)
    f.start()
    time.sleep(0.1)
    lock.release()
    b.join(5)
    f.join(5)
    assert order == ["chat", "eval"]
    assert waits == [True, False]
    assert not lock.locked()


def test_model_lock_is_not_reentrant_and_release_checks():
    lock = ModelLock()
    assert lock.acquire()
    assert not lock.acquire(blocking=False)
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


# --------------------------------------------------------------------------- the collection's own test set

def test_feedback_records_the_three_marks_in_the_format_eval_reads(tmp_path):
    F.record(tmp_path, QUESTION, f"It spent {GOLD} [1].", [{"n": 1, "source": "a.txt"}], "right")
    F.record(tmp_path, "What is the capital of Mars?", "Paris.", [], "should_refuse")
    wrong = F.record(tmp_path, "Who runs the base?", "Nobody [1].", [], "wrong")
    testset = load_testset(F.feedback_path(tmp_path))
    assert [(i.question, i.answers) for i in testset.items] == [
        (QUESTION, (f"It spent {GOLD}.",)), ("What is the capital of Mars?", ())]
    own = F.load_feedback_testset(tmp_path)
    assert len(own.items) == 2
    assert [(p.item_id, p.message) for p in own.problems] == [(wrong["id"], F.NEEDS_GOLD)]
    F.set_gold(tmp_path, wrong["id"], ["the army", " "])
    own = F.load_feedback_testset(tmp_path)
    assert not own.problems and own.items[-1].answers == ("the army",)
    # the same question marked again replaces its item
    F.record(tmp_path, QUESTION.lower(), "Not in the documents.", [], "should_refuse")
    assert len(F.load_items(tmp_path)) == 3
    F.delete(tmp_path, wrong["id"])
    assert [r["feedback"] for r in F.load_items(tmp_path)] == ["should_refuse", "should_refuse"]
    with pytest.raises(InputError, match="no item 'nope'"):
        F.delete(tmp_path, "nope")
    with pytest.raises(InputError, match="bad feedback 'meh'.*right, wrong, should_refuse"):
        F.record(tmp_path, QUESTION, "x", [], "meh")


def test_no_own_test_set_yet_says_how_to_grow_one(tmp_path):
    with pytest.raises(InputError, match="mark answers in the chat"):
        F.load_feedback_testset(tmp_path)


# --------------------------------------------------------------------------- kept runs and the runner's hooks

def test_runs_are_kept_listed_and_loaded(make_rag, tmp_path):
    rag = make_rag(copy_sentence("million"))
    rag.add([SEED_ARTICLE])
    seen: list[int] = []
    report = evaluate(rag, load_testset(write_testset(tmp_path / "t.jsonl")), on_item=lambda r: seen.append(len(r)))
    assert seen == [1, 2, 3]
    first = H.save_run(tmp_path, report, "20260101-000000-aaaa")
    second = H.save_run(tmp_path, report)
    assert H.list_ids(tmp_path) == [first, second]
    runs = H.list_runs(tmp_path)
    assert runs[0].n_items == 3 and runs[0].metrics["contains"] == report.metrics["contains"]
    assert H.load_run(tmp_path, first)["config"]["run_id"] == first
    assert (tmp_path / H.RUNS_DIR / first / "report-metrics.png").is_file()
    with pytest.raises(InputError, match="bad run id '../x'"):
        H.load_run(tmp_path, "../x")


def test_stop_ends_a_run_with_a_partial_report(make_rag, tmp_path):
    rag = make_rag(copy_sentence("million"))
    rag.add([SEED_ARTICLE])
    done: list[int] = []
    report = evaluate(rag, load_testset(write_testset(tmp_path / "t.jsonl")), on_item=lambda r: done.append(len(r)),
                      stop=lambda: len(done) >= 1)
    assert report.partial and len(report.items) == 1


# --------------------------------------------------------------------------- the background job

class SlowLLM(FakeLLM):
    """Takes `delay` seconds per answer, so a test can act while a run is in the middle."""

    _delay: float = PrivateAttr(default=0.0)

    def __init__(self, replies, delay: float) -> None:
        super().__init__(replies)
        self._delay = delay

    def _next(self, prompt: str) -> str:
        time.sleep(self._delay)
        return super()._next(prompt)


def test_a_chat_question_asked_during_a_run_is_answered_before_it_ends(settings, tmp_path):
    llm = SlowLLM([copy_sentence("million")], delay=0.3)
    collections = Collections(settings, embedder=FakeEmbedder(), llm=llm)
    rag = collections.open(DEFAULT)
    rag.add([SEED_ARTICLE])
    items = [TestItem(id=f"q{i}", question=QUESTION, answers=(GOLD,)) for i in range(8)]
    jobs = EvalJobs()
    job = jobs.start("", DEFAULT, rag, TestSet(None, "items", items), collections.directory(DEFAULT),
                     collections.llm_lock)
    while job.snapshot().done < 1:
        time.sleep(0.05)
    answer = rag.ask(QUESTION)  # the chat: foreground
    done_when_answered = job.snapshot().done
    assert GOLD in answer.text
    assert done_when_answered < len(items), "the chat question waited for the whole run"
    with collections.llm_lock:  # a chat answer in progress: the run waits, and the page says so
        deadline = time.monotonic() + 10
        while not job.snapshot().waiting and time.monotonic() < deadline:
            time.sleep(0.05)
        from rag.app.ui_evaluate import progress_html

        assert "waiting for the model" in progress_html(job.snapshot())
    assert job.wait(30) and job.state == DONE
    assert job.snapshot().done == len(items) and job.snapshot().right == len(items)
    assert H.list_ids(collections.directory(DEFAULT)) == [job.run_id]


def test_a_job_can_be_cancelled_and_one_runs_per_owner(settings):
    llm = SlowLLM([copy_sentence("million")], delay=0.2)
    collections = Collections(settings, embedder=FakeEmbedder(), llm=llm)
    rag = collections.open(DEFAULT)
    rag.add([SEED_ARTICLE])
    testset = TestSet(None, "items", [TestItem(id=f"q{i}", question=QUESTION, answers=(GOLD,)) for i in range(20)])
    jobs = EvalJobs()
    job = jobs.start("alice", DEFAULT, rag, testset, collections.directory(DEFAULT), collections.llm_lock)
    with pytest.raises(InputError, match="still running"):
        jobs.start("alice", DEFAULT, rag, testset, collections.directory(DEFAULT), collections.llm_lock)
    while job.snapshot().done < 1:
        time.sleep(0.05)
    assert jobs.cancel("alice")
    assert job.wait(30) and job.state == CANCELLED
    assert job.snapshot().done < 20
    report = H.load_run(collections.directory(DEFAULT), job.run_id)
    assert report["partial"] is True


# --------------------------------------------------------------------------- the tab's handlers, as two users

def test_evaluate_handlers_show_a_run_compare_and_filter(collections, tmp_path):
    from rag.app import ui_evaluate as E

    jobs = EvalJobs()
    path = write_testset(tmp_path / "t.jsonl")
    ids = []
    for _ in range(2):
        job = E.start_run(collections, jobs, DEFAULT, None, E.UPLOADED, str(path))
        assert job.wait(30) and job.state == DONE
        ids.append(job.run_id)
    progress = E.progress_html(job.snapshot())
    assert "3 / 3 items done" in progress and "Finished" in progress
    metrics, plots, items, files = E.run_view(collections, DEFAULT, None, ids[1], "all")
    assert "contains" in metrics and len(plots) == 2
    assert items.count('class="rag-eval-item"') == 3 and "model draft" in items
    assert sorted(p.rsplit("/", 1)[1] for p in files)[:2] == ["report-latency.png", "report-metrics.png"]
    assert any(p.endswith("report.json") for p in files) and any(p.endswith("report.md") for p in files)
    wrong = E.run_view(collections, DEFAULT, None, ids[1], "wrong")[2]
    assert wrong.count('class="rag-eval-item"') == sum(
        1 for i in H.load_run(collections.directory(DEFAULT), ids[1])["items"] if i["correct"] is False)
    refused = E.run_view(collections, DEFAULT, None, ids[1], "refused")[2]
    assert 'data-id="q2"' in refused and 'data-id="q1"' not in refused
    compared = E.compare_html(collections, DEFAULT, None, ids[0], ids[1])
    assert "items in both: 3" in compared and "contains" in compared
    assert [r[0] for r in E.history_rows(collections, DEFAULT, None)] == ids
    assert E.history_plot(collections, DEFAULT, None).endswith(".png")
    with pytest.raises(InputError, match="bad filter 'odd'"):
        E.items_html({"items": [{"id": "x"}]}, "odd")


def ask_session(collections, name, user):
    from rag.app.ui import ChatHandler

    rag = collections.open(name, user)
    return list(ChatHandler(rag)(QUESTION, None, 3))[-1][-1]


def test_marks_grow_the_collections_own_set_which_a_run_scores(collections):
    from rag.app import ui_evaluate as E

    session = ask_session(collections, DEFAULT, None)
    status = E.mark_answer(collections, DEFAULT, None, session, "right")
    assert "gold answer" in status
    rows = E.feedback_rows(collections, DEFAULT, None)
    assert rows[0][1] == "Right" and GOLD in rows[0][3]
    saved = F.load_items(collections.directory(DEFAULT))[0]
    assert saved["citations"] and saved["citations"][0]["source"].endswith(".txt")
    jobs = EvalJobs()
    job = E.start_run(collections, jobs, DEFAULT, None, E.OWN_SET, None)
    assert job.wait(30) and job.state == DONE
    assert job.snapshot().right == 1 and job.snapshot().total == 1
    E.fix_gold(collections, DEFAULT, None, rows[0][0], "")
    assert E.feedback_rows(collections, DEFAULT, None)[0][3] == "(must refuse)"
    E.delete_feedback_item(collections, DEFAULT, None, rows[0][0])
    assert E.feedback_rows(collections, DEFAULT, None) == []
    with pytest.raises(InputError, match="ask a question first"):
        E.mark_answer(collections, DEFAULT, None, None, "wrong")


def test_alices_runs_and_marks_never_appear_for_bob(collections, tmp_path):
    from rag.app import ui_evaluate as E

    alice = private_name("alice")
    collections.open(alice, "alice").add([SEED_ARTICLE])
    session = ask_session(collections, alice, "alice")
    E.mark_answer(collections, alice, "alice", session, "right")
    jobs = EvalJobs()
    job = E.start_run(collections, jobs, alice, "alice", E.UPLOADED, str(write_testset(tmp_path / "t.jsonl", 1)))
    assert job.wait(30) and job.state == DONE
    assert len(E.history_rows(collections, alice, "alice")) == 1
    assert len(E.feedback_rows(collections, alice, "alice")) == 1
    # bob: nothing of alice's through any handler, even naming her collection and her run
    for call in (lambda: E.history_rows(collections, alice, "bob"),
                 lambda: E.feedback_rows(collections, alice, "bob"),
                 lambda: E.runs_choices(collections, alice, "bob"),
                 lambda: E.run_view(collections, alice, "bob", job.run_id),
                 lambda: E.compare_html(collections, alice, "bob", job.run_id, job.run_id),
                 lambda: E.start_run(collections, jobs, alice, "bob", E.OWN_SET, None),
                 lambda: E.mark_answer(collections, alice, "bob", session, "wrong"),
                 lambda: E.fix_gold(collections, alice, "bob", F.load_items(collections.directory(alice))[0]["id"], "x"),
                 lambda: E.delete_feedback_item(collections, alice, "bob", "fb-x")):
        with pytest.raises(InputError, match=f"no collection '{alice}'"):
            call()
    bob = private_name("bob")
    assert E.history_rows(collections, bob, "bob") == [] and E.feedback_rows(collections, bob, "bob") == []
    assert E.history_rows(collections, None, "bob") == []  # his default view: the shared default, no runs
    # a shared collection: visible to bob, but only an admin may run or mark there
    with pytest.raises(InputError, match="read-only for you"):
        E.start_run(collections, jobs, DEFAULT, "bob", E.UPLOADED, str(tmp_path / "t.jsonl"))
    with pytest.raises(InputError, match="read-only for you"):
        E.mark_answer(collections, DEFAULT, "bob", session, "right")
    job = E.start_run(collections, jobs, DEFAULT, "root", E.UPLOADED, str(tmp_path / "t.jsonl"))
    assert job.wait(30) and job.state == DONE
    assert len(E.history_rows(collections, DEFAULT, "bob")) == 1  # shared runs are seen by who sees the collection


def test_the_app_mounts_the_tab_and_its_handlers_take_the_user_from_the_request(collections, tmp_path):
    gr = pytest.importorskip("gradio")
    from rag.app import ui

    demo = ui.build_app(collections)
    handlers = {}
    for f in demo.fns.values():
        handlers.setdefault(f.fn.__name__, f.fn)
    for name in ("on_eval_run", "on_eval_cancel", "on_eval_refresh", "on_mark_right", "on_mark_wrong",
                 "on_mark_should_refuse", "on_save_gold", "on_delete_item"):
        assert name in handlers
    path = write_testset(tmp_path / "t.jsonl", 1)
    refused = list(handlers["on_eval_run"](None, "The uploaded file", str(path), "all", gr.Request(username="alice")))
    assert "read-only for you" in refused[-1][0]  # her first collection is the shared default
    outputs = list(handlers["on_eval_run"](private_name("alice"), "The uploaded file", str(path), "all",
                                           gr.Request(username="alice")))
    assert 'data-state="done"' in outputs[-1][0] and private_name("alice") in outputs[-1][0]
    assert outputs[-1][1]["choices"]  # her run is listed for her
    refreshed = handlers["on_eval_refresh"](None, None, "all", gr.Request(username="bob"))
    assert refreshed[0]["choices"] == []
    with pytest.raises(RuntimeError, match="no gr.Request"):
        handlers["on_eval_cancel"](None)


# --------------------------------------------------------------------------- rag eval run --collection NAME

def test_eval_run_with_a_collection_and_no_file_runs_its_own_set(settings, tmp_path):
    from rag.app.cli import parse_args
    from rag.app.eval_commands import run_cli
    from tests.evaluation.test_evaluation import cli_args

    args = parse_args(["eval", "--collection", "default"])
    assert args.eval_command == "run" and args.testset is None and args.collection == "default"
    rag = Collections(settings, embedder=FakeEmbedder(), llm=FakeLLM([mars_refused])).open(DEFAULT)
    rag.add([SEED_ARTICLE])
    F.record(settings.index_dir, QUESTION, rag.ask(QUESTION).text, [], "right")  # as the chat's "Right" does
    F.record(settings.index_dir, "What is the capital of Mars?", "Olympus.", [], "should_refuse")
    F.record(settings.index_dir, "Who runs it?", "Nobody.", [], "wrong")
    with pytest.raises(InputError, match="--collection NAME"):
        run_cli(cli_args(None), settings, embedder=FakeEmbedder(), llm=FakeLLM([mars_refused]))
    out = tmp_path / "r.json"
    code = run_cli(cli_args(None, collection=DEFAULT, index=settings.index_dir, json_out=out), settings,
                   embedder=FakeEmbedder(), llm=FakeLLM([mars_refused]))
    assert code == 3  # the item still waiting for its gold answer is skipped, as a problem
    report = json.loads(out.read_text())
    assert [i["verdict"] for i in report["items"]] == ["correct", "refused (right)"]
    assert report["problems"] and F.NEEDS_GOLD in report["problems"][0]
    assert H.list_runs(settings.index_dir)[0].n_items == 2
