"""Verified streaming: each sentence is checked as soon as it is complete, while the rest of the reply
waits, and released once the answer can no longer be refused. Fakes record the order of events."""
import pytest

from rag.answer.answerer import REFUSAL_HEAD, Answerer, refusal_settled
from rag.testing import FakeClaimJudge, FakeLLM
from rag.types import Chunk, Passage

TEXTS = ["Washington spent about $110 million on the base in northern Niger, which was built between 2016 and 2019 "
         "near the city of Agadez so that surveillance drones could fly over the Sahel region of West Africa.",
         "Construction began years ago, long before the coup."]
PASSAGES = [Passage.of(Chunk(id=i, doc_id="d", source="/d.txt", text=t, start=0, end=len(t)), 0.8 - i / 10)
            for i, t in enumerate(TEXTS)]
QUESTION = "How much did the base cost?"
LONG = ("Washington spent about $110 million on the base in northern Niger, which was built between 2016 and 2019 "
        "near the city of Agadez so that surveillance drones could fly over the Sahel region of West Africa [1].")
SECOND = "Construction began years ago, long before the coup [2]."


class TracingLLM:
    """Wraps a FakeLLM and logs each delta when the answerer pulls it: the model 'writes' a token
    only when asked for the next one, as llama.cpp does in a stream."""

    def __init__(self, reply, log):
        self.llm = FakeLLM([reply])
        self.log = log

    def stream_chat(self, messages):
        for response in self.llm.stream_chat(messages):
            self.log.append(("generate", response.delta))
            yield response


class TracingJudge(FakeClaimJudge):
    def __init__(self, log, scores=None, default=0.9):
        super().__init__(scores, default)
        self.log = log

    def score(self, messages, question, sentence, cited, evidence):
        self.log.append(("judge", sentence))
        return super().score(messages, question, sentence, cited, evidence)


def traced(reply, scores=None, default=0.9, **kwargs):
    log = []
    answerer = Answerer(TracingLLM(reply, log), min_score=0.3, judge=TracingJudge(log, scores, default), **kwargs)
    items = []
    for item in answerer.stream(QUESTION, PASSAGES, {}):
        log.append(("yield", item if isinstance(item, str) else "ANSWER"))
        items.append(item)
    return log, [i for i in items if isinstance(i, str)], items[-1]


def at(log, event):
    return log.index(event)


def test_sentence_one_is_judged_and_yielded_before_sentence_two_is_written():
    assert len(LONG) > REFUSAL_HEAD  # the model's own refusal could only hide in its first characters
    log, deltas, answer = traced(f"{LONG} {SECOND}")
    first = "Washington spent about $110 million on the base in northern Niger, which was built between 2016 and " \
            "2019 near the city of Agadez so that surveillance drones could fly over the Sahel region of West Africa."
    # Sentence 1 is complete when the model has begun sentence 2 ("Construction "): it is judged and
    # shown then, and only afterwards does the model write the rest of sentence 2.
    assert at(log, ("generate", "Construction ")) < at(log, ("judge", first)) < at(log, ("yield", deltas[0]))
    assert at(log, ("yield", deltas[0])) < at(log, ("generate", "began "))
    assert at(log, ("generate", "[2]."))  < at(log, ("judge", "Construction began years ago, long before the coup.")) \
        < at(log, ("yield", deltas[1])) < at(log, ("yield", "ANSWER"))
    assert deltas == [LONG, " " + SECOND] and "".join(deltas) == answer.text and not answer.abstained
    assert answer.signals.claims == [0.9, 0.9]


def test_a_sentence_that_fails_is_never_shown_and_a_later_one_still_streams_early():
    third = "The drones flew from Agadez [1]."
    log, deltas, answer = traced(f"{LONG} {SECOND} {third}", scores={"Construction": 0.1})
    assert deltas == [LONG, " " + third] and "".join(deltas) == answer.text
    assert "Construction" not in answer.text and answer.signals.claims == [0.9, 0.1, 0.9]
    assert at(log, ("yield", LONG)) < at(log, ("generate", "began "))  # released before sentence 2 was written
    assert at(log, ("judge", "Construction began years ago, long before the coup.")) < at(log, ("generate", "flew "))


def test_a_failing_first_sentence_delays_nothing_but_itself():
    log, deltas, answer = traced(f"{LONG} {SECOND}", scores={"Washington": 0.2})
    assert deltas == [SECOND] and answer.text == SECOND and [c.n for c in answer.citations] == [2]
    assert "claim 0.20" in answer.sentences[0].dropped


def test_a_short_first_sentence_waits_until_the_model_can_no_longer_refuse():
    """The model's refusal in other words ("The passages do not mention ...") counts within its first
    REFUSAL_HEAD characters, so a first sentence shorter than that is judged at once but shown only
    when they are written: here the second sentence turns the answer into a refusal, which must
    stream nothing."""
    short = "Washington spent about $110 million on the base in northern Niger [1]."
    log, deltas, answer = traced(f"{short} The passages do not mention when construction began.")
    assert deltas == [] and answer.abstained and answer.refusal_reason == "the model found no answer in the passages"
    assert ("judge", short[:-5] + ".") in log  # judged while the model wrote on, but never shown
    assert answer.signals.claims == []  # a refusal's sentences are not kept, as before
    # the same first sentence followed by a real one is shown once the reply ends
    log, deltas, answer = traced(f"{short} {SECOND}")
    assert deltas == [short, " " + SECOND] and not answer.abstained
    # or, if the second one is long, as soon as the reply's first REFUSAL_HEAD characters are written
    log, deltas, answer = traced(f"{short} {LONG}")
    assert deltas == [short, " " + LONG] and not answer.abstained
    shown = at(log, ("yield", short))
    written = "".join(e[1] for e in log[:shown] if e[0] == "generate")
    assert REFUSAL_HEAD < len(written) < len(short) + len(LONG) - 20  # mid-way through sentence 2


def test_a_refusal_settled_in_the_first_characters_is_not_judged_and_streams_nothing():
    reply = "The passages do not mention the cost of the base. " + LONG
    log, deltas, answer = traced(reply)
    assert deltas == [] and answer.abstained and not [e for e in log if e[0] == "judge"]


def test_a_refusal_probability_that_refuses_holds_everything_back():
    class Probe:
        def refusal_probability(self, messages):
            return 0.9

        def without_refusal(self):  # pragma: no cover - not asked again
            raise AssertionError

    log, deltas, answer = traced(f"{LONG} {SECOND}", probe=Probe(), refusal_prob=0.5)
    assert deltas == [] and answer.abstained and "leaned towards refusing" in answer.refusal_reason
    assert not [e for e in log if e[0] == "judge"]


def test_the_probe_is_read_before_generation_and_the_state_saved_after_the_last_release():
    events = []

    class Probe:
        def refusal_probability(self, messages):
            events.append("probe")
            return 0.01

        def without_refusal(self):  # pragma: no cover
            raise AssertionError

    class State:
        def restore(self, messages, question):
            events.append("restore")
            return False

        def save(self, messages, question):
            events.append("save")

    log = []
    answerer = Answerer(TracingLLM(f"{LONG} {SECOND}", log), min_score=0.3, probe=Probe(), prompt_state=State())
    for item in answerer.stream(QUESTION, PASSAGES, {}):
        events.append("yield" if isinstance(item, str) else "ANSWER")
        if not log:
            pytest.fail("a sentence was yielded before the model wrote anything")
    assert events == ["restore", "probe", "yield", "yield", "save", "ANSWER"]


@pytest.mark.parametrize("text, settled", [
    ("Washington spent", None),  # too short to tell
    (LONG, False),
    (LONG[:REFUSAL_HEAD - 20], None),
    ("Not in the documents. " + LONG, True),
    ("Washington spent $110 million [1]. The passages do not mention the year it was built, nor who " + LONG, True),
    ("[1] [2] " * 40, None),  # no content word yet: a later word decides
])
def test_refusal_settled_agrees_with_is_refusal_on_every_longer_reply(text, settled):
    from rag.answer.answerer import is_refusal

    assert refusal_settled(text) is settled
    if settled is not None:
        for more in ("", " Not in the documents.", " The passages do not mention it.", " [3]"):
            assert is_refusal(text + more) is settled


def test_first_verified_is_set_when_the_first_sentence_is_released():
    timings = {}
    items = list(Answerer(FakeLLM([f"{LONG} {SECOND}"]), min_score=0.3, judge=FakeClaimJudge())
                 .stream(QUESTION, PASSAGES, timings))
    assert not items[-1].abstained
    assert 0 <= timings["first_token"] <= timings["first_verified"]
    assert timings["generate"] >= 0 and "claim_check" in timings


@pytest.mark.integration
def test_judging_mid_generation_leaves_the_real_models_answer_as_it_was(real_rag):
    """The claim judge runs on the answering llama.cpp model while its generation waits: in a second
    sequence of the KV cache, so the answer's state and llama-cpp-python's bookkeeping are untouched
    and the reply is the same, token for token, as without the pause."""
    from rag.models.llama_state import LlamaClaimJudge

    llm = real_rag.llm
    llama = llm._model
    question = "What did the base in northern Niger cost, when was it built, where, and what for?"
    messages = Answerer(llm, min_score=0.3).messages(question, PASSAGES)
    judge = LlamaClaimJudge(llm)
    args = (messages, question, "Washington spent about $110 million on the base.", (1,), TEXTS[0])

    def reply(pause_at=None):
        text, scores = "", []
        for i, response in enumerate(llm.stream_chat(messages)):
            text += response.delta or ""
            if i == pause_at:
                before = (llama.n_tokens, list(llama.input_ids[: llama.n_tokens]))
                scores.append(judge.score(*args))
                assert (llama.n_tokens, list(llama.input_ids[: llama.n_tokens])) == before
        return text, scores

    plain, _ = reply()
    paused, [aside] = reply(pause_at=3)
    assert paused == plain and len(plain.split()) > 8 and judge.restored == 0
    judge._room_aside = lambda n_new: False  # the fallback: judge in the answer's sequence, then restore it
    again, [in_place] = reply(pause_at=3)
    assert again == plain and judge.restored > 0
    # the same question on the same tokens; only where llama.cpp put them in the cache differs
    assert abs(aside - in_place) < 0.05 and aside > 0.5
