"""One way in: `rag ask`, the web UI's chat and /v1 all answer through `RAG.chat`, which checks the
question once, resolves top_k once (the setting, or one call's) and rewrites a follow-up once per
turn; none of the faces calls `condense` itself. Fakes only."""
from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

import rag.asker as asker_module
from rag.answer.query_rewriting import QuestionCondenser, Turn
from rag.app import cli, ui
from rag.app.ui_chat import ChatHandler
from rag.app.api import SingleCollection, build_api
from rag.errors import InputError
from rag.pipeline import RAG
from tests.conftest import SEED_ARTICLE
from tests.app.test_ui import copy_sentence

QUESTION = "How much did Washington spend to establish the base in northern Niger?"
FOLLOW_UP = "and when did that happen?"


@pytest.fixture
def recorded(make_rag, monkeypatch):
    """A seeded RAG whose chat entry, condenser, question check and retrieval are recorded, and whose
    `condense` must not be called by any face."""
    rag = make_rag(copy_sentence(r"\$110 million"))
    rag.add([SEED_ARTICLE])
    calls: dict[str, list] = {"chat": [], "condense": [], "check": [], "k": []}
    real_chat, real_condense, real_check = rag.chat, QuestionCondenser.condense, asker_module.check_question
    retriever = rag.retriever
    real_retrieve = retriever.retrieve

    def chat(question, history=(), top_k=None, documents=None):
        calls["chat"].append((question, list(history), top_k, documents))
        return real_chat(question, history, top_k, documents)

    def condense(self, question, history):
        calls["condense"].append((question, list(history)))
        return real_condense(self, question, history)

    def check(question, max_chars, what="the question"):
        calls["check"].append(what)
        return real_check(question, max_chars, what)

    def retrieve(question, k, within=None):
        calls["k"].append(k)
        return real_retrieve(question, k, within)

    def face_condensed(*args, **kwargs):
        raise AssertionError("a face called RAG.condense itself")

    monkeypatch.setattr(rag, "chat", chat)
    monkeypatch.setattr(rag, "condense", face_condensed)
    monkeypatch.setattr(QuestionCondenser, "condense", condense)
    monkeypatch.setattr(asker_module, "check_question", check)
    monkeypatch.setattr(retriever, "retrieve", retrieve)
    return rag, calls


def test_rag_ask_answers_through_chat(recorded, monkeypatch, capsys):
    rag, calls = recorded
    monkeypatch.setattr(cli, "_open", lambda settings: rag)
    assert cli.main(["ask", "--json", "--top-k", "2", QUESTION]) == cli.EXIT_OK
    assert "$110 million" in json.loads(capsys.readouterr().out)["answer"]
    assert calls["chat"] == [(QUESTION, [], 2, None)] and calls["k"] == [2]
    assert calls["check"] == ["the question"] and calls["condense"] == []


def test_the_ui_chat_answers_through_chat_and_condenses_once_per_follow_up(recorded):
    rag, calls = recorded
    handler = ChatHandler(rag)
    *_, (messages, _, _, _, _, session) = list(handler(QUESTION, None, 3))
    assert "$110 million" in messages[-1]["content"]
    *_, (messages, _, rewritten, _, timings, session) = list(handler(FOLLOW_UP, session, 4))
    assert [c[0] for c in calls["chat"]] == [QUESTION, FOLLOW_UP]
    assert calls["chat"][1][1] == [Turn(QUESTION, session["turns"][0]["answer"])]
    assert calls["condense"] == [(FOLLOW_UP, [Turn(QUESTION, session["turns"][0]["answer"])])]  # once, in chat
    assert calls["k"] == [3, 4] and "rewritten as" in rewritten and "rewrite" in timings
    # the question once per turn, and each question of the history once
    assert calls["check"] == ["the question", "the question", "question 1 of the history"]


def test_v1_answers_through_chat_with_its_history_and_top_k(recorded):
    rag, calls = recorded
    client = TestClient(build_api(SingleCollection(rag)))
    messages = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "About $110 million [1]."},
                {"role": "user", "content": FOLLOW_UP}]
    for stream in (False, True):
        r = client.post("/v1/chat/completions", json={"model": "default", "messages": messages, "top_k": 2,
                                                      "stream": stream})
        assert r.status_code == 200, r.text
    assert [c[0] for c in calls["chat"]] == [FOLLOW_UP, FOLLOW_UP]
    assert all(c[1] == [Turn(QUESTION, "About $110 million [1].")] and c[2] == 2 for c in calls["chat"])
    assert len(calls["condense"]) == 2 and calls["k"] == [2, 2]  # one rewrite per request
    r = client.post("/v1/chat/completions", json={"model": "default", "messages": messages[:1]})
    assert r.status_code == 200 and calls["k"][-1] == rag.settings.top_k == rag.top_k  # no top_k: the setting


@pytest.mark.parametrize("bad", [0, 51, -3, "five", 2.5, True])
def test_v1_refuses_a_bad_top_k_naming_the_value_and_the_range(recorded, bad):
    rag, calls = recorded
    client = TestClient(build_api(SingleCollection(rag)))
    r = client.post("/v1/chat/completions", json={"model": "default", "top_k": bad,
                                                  "messages": [{"role": "user", "content": QUESTION}]})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["message"] == f"top_k must be a whole number from 1 to 50, not {bad!r}"
    assert set(error) == {"message", "type", "code"} and calls["k"] == []


def test_the_question_is_checked_once_with_a_clear_error(make_rag):
    rag = make_rag(max_question_chars=20)
    rag.add([SEED_ARTICLE])
    with pytest.raises(InputError, match=r"^the question is empty$"):
        rag.chat("   ")
    with pytest.raises(InputError, match=r"^the question is 21 characters; the limit is 20 \(RAG_MAX_QUESTION_CHARS\)$"):
        rag.chat("x" * 21)
    with pytest.raises(InputError, match=r"^question 2 of the history is 21 characters"):
        rag.chat("and then?", [Turn("short?", "A."), Turn("y" * 21, "B.")])
    with pytest.raises(InputError, match=r"top_k must be a whole number from 1 to 50, not 0"):
        rag.chat("short?", top_k=0)
    assert rag.llm.prompts == []  # all refused before the model was asked anything


def test_the_answer_is_the_same_through_chat_and_ask(make_rag):
    rag: RAG = make_rag(copy_sentence(r"\$110 million"))
    rag.add([SEED_ARTICLE])
    reply = rag.chat(QUESTION, top_k=2)
    assert reply.standalone == QUESTION and not reply.rewritten
    through_chat = reply.answer()
    through_ask = rag.ask(QUESTION, top_k=2)
    assert through_chat.text == through_ask.text and "$110 million" in through_chat.text
    assert [p.chunk.id for p in through_chat.passages] == [p.chunk.id for p in through_ask.passages]
    assert len(through_chat.passages) <= 2
