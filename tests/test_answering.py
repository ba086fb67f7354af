"""The Answerer's refusal decisions and its hooks into the model's state, with fakes."""
from contextlib import contextmanager

from rag.answer.answerer import REFUSAL, Answerer, is_refusal
from rag.testing import FakeLLM
from rag.types import Chunk, Passage

TEXTS = ["Washington spent about $110 million on the base in northern Niger.", "Construction began years ago."]
PASSAGES = [Passage.of(Chunk(id=i, doc_id="d", source="/d.txt", text=t, start=0, end=len(t)), 0.8 - i / 10)
            for i, t in enumerate(TEXTS)]
QUESTION = "How much did the base cost?"


class FakeProbe:
    """A refusal probe with a fixed probability; records whether the refusal was banned."""

    def __init__(self, p):
        self.p = p
        self.banned = 0

    def refusal_probability(self, messages):
        return self.p

    @contextmanager
    def without_refusal(self):
        self.banned += 1
        yield


class RecordingState:
    def __init__(self):
        self.calls = []

    def restore(self, messages, question):
        self.calls.append(("restore", question))
        return True

    def save(self, messages, question):
        self.calls.append(("save", question))


def run(answerer, passages=PASSAGES):
    items = list(answerer.stream(QUESTION, passages, {}))
    return [i for i in items if isinstance(i, str)], items[-1]


def test_says_not_there_in_other_words_counts_as_a_refusal():
    assert is_refusal("Not in the documents.")
    assert is_refusal("The passages do not mention the cost of the base.")
    assert is_refusal("The name of the president is not stated [2].")
    assert is_refusal("[1]")
    assert not is_refusal("Washington spent $110 million [1].")
    assert not is_refusal("The junta did not renew the agreement [1].")


def test_a_refusal_is_never_streamed_and_the_model_text_is_kept():
    deltas, answer = run(Answerer(FakeLLM(["Not in the documents."]), min_score=0.3))
    assert deltas == [] and answer.abstained and answer.model_text == "Not in the documents."
    deltas, answer = run(Answerer(FakeLLM(["Washington spent $110 million [1]."]), min_score=0.3))
    assert "".join(deltas).startswith("Washington") and not answer.abstained


def test_an_unsure_refusal_is_asked_again_with_the_refusal_banned():
    probe = FakeProbe(0.3)
    llm = FakeLLM([REFUSAL, "Washington spent about $110 million on the base [1]."])
    deltas, answer = run(Answerer(llm, min_score=0.3, retry_below=0.5, probe=probe))
    assert probe.banned == 1 and answer.signals.retried and not answer.abstained
    assert "$110 million" in answer.text and answer.citations[0].n == 1
    assert REFUSAL in answer.model_text and "$110 million" in answer.model_text  # both drafts kept
    assert "".join(deltas).startswith("Washington")  # only the retry's text was streamed


def test_a_sure_refusal_is_not_asked_again_and_a_retry_must_still_be_supported():
    probe = FakeProbe(0.8)
    _, answer = run(Answerer(FakeLLM([REFUSAL, "unused"]), min_score=0.3, retry_below=0.5, probe=probe))
    assert probe.banned == 0 and answer.abstained and answer.signals.p_refusal == 0.8
    probe = FakeProbe(0.2)
    _, answer = run(Answerer(FakeLLM([REFUSAL, "Paris is the capital of France [1]."]), min_score=0.3,
                             retry_below=0.5, probe=probe))
    assert probe.banned == 1 and answer.abstained and "supported" in answer.refusal_reason


def test_refusal_prob_refuses_an_answer_the_model_nearly_refused():
    llm = FakeLLM(["Washington spent about $110 million on the base [1]."])
    _, answer = run(Answerer(llm, min_score=0.3, refusal_prob=0.4, probe=FakeProbe(0.45)))
    assert answer.abstained and "leaned towards refusing" in answer.refusal_reason
    assert answer.signals.to_json()["p_refusal"] == 0.45 and answer.model_text.startswith("Washington")


def test_the_prompt_state_is_restored_before_and_saved_after_generation():
    state = RecordingState()
    _, answer = run(Answerer(FakeLLM(["Washington spent $110 million [1]."]), min_score=0.3, prompt_state=state))
    assert state.calls == [("restore", QUESTION), ("save", QUESTION)]
    assert "restore_state" in answer.timings


def test_signals_record_the_gate_and_the_best_score():
    _, answer = run(Answerer(FakeLLM(["unused"]), min_score=0.9))
    s = answer.signals.to_json()
    assert answer.abstained and s["best_score"] == 0.8 and s["min_score"] == 0.9 and s["p_refusal"] is None
