"""Answering: passages + question -> prompt -> LLM text -> checked sentences -> Answer with citations.

Nothing unverified is streamed. Each sentence of the model's reply is checked (support, then the
claim check) as soon as it is complete, that is once the model has begun the next one; generation
waits meanwhile (on 2 cores running both at once gains nothing; the order is what counts). A
sentence that passed is released as soon as the answer can no longer be refused, so the first
verified sentence comes before the rest is written; one that failed is never shown. A refused
answer yields no text at all, only the Answer (the refusal and its reason). The streamed text is
the Answer's text.

When the answer is sure to stand (`_Run.sure`): the refusal probability is read before generating
(it needs only the prompt); a supported sentence that passed the claim check rules out refusals 3
and 4 below, which need every sentence to fail; and the model's own refusal (`is_refusal`) reads
the first REFUSAL_HEAD characters of its reply, so it is settled once those are written
(`refusal_settled`) or the reply ends. The first release waits for all three, so a later sentence
never turns an answer whose start was shown into a refusal, and the outcome is exactly the one a
check of the whole reply would give.

The refusal is decided in four places, none of which trusts the model alone:
1. before generation, when no passage reaches `min_score` (the LLM is not even called);
2. when the model itself replies with the refusal (or says the passages do not hold the answer), or
   when its own probability of starting with the refusal reaches `refusal_prob`;
3. after generation, when no sentence of the answer is supported by any passage (names, numbers, words);
4. when no supported sentence passes the claim check (claims.py: does its passage state it as the
   answer to this question?) at `claim_threshold`.
A sentence failing 3 or 4 is left out of an answer that keeps others. Every signal is kept in
`Answer.signals` (the claim score of every sentence included), so an evaluation can re-decide at
other thresholds.
"""
from __future__ import annotations

import re
import time
from dataclasses import replace
from collections.abc import Generator, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.llms import LLM

from rag import prompts
from rag.answer.citations import (
    SemanticSupport,
    attribute,
    marked,
    markers_before_stops,
    strip_markers,
)
from rag.answer.claims import NOT_STATED, ClaimJudge, evidence
from rag.config import PROMPTS_DIR
from rag.text import content_words, split_sentences
from rag.types import Answer, AnswerSentence, Citation, Passage, RefusalSignals, short_source

REFUSAL = "Not in the documents."
SYSTEM_PROMPTS = {"sentence": "answer_system", "short": "answer_system_short"}
# Ways a model says the passages lack the answer without using the exact refusal.
_SAYS_NOT_THERE = re.compile(
    r"\b(?:passages?|documents?|text|article|context|sources?)\b[^.]{0,40}\b(?:do(?:es)?\s+not|don't|doesn't)\s+"
    r"(?:mention|contain|say|state|specify|provide|include|give|tell)"
    r"|\b(?:is|are|was|were)\s+not\s+(?:mentioned|stated|specified|provided|given|named)\b"
    r"|\bno\s+(?:information|mention)\b",
    re.IGNORECASE,
)


REFUSAL_HEAD = 160  # is_refusal reads this many characters of a reply (and whether it has any content word)


def _plain(text: str) -> str:
    return " ".join(strip_markers(text).lower().split())


def _refuses(plain: str) -> bool:
    head = plain[:80]
    return (head.startswith("not in the documents") or "not in the documents" in head[:40]
            or not content_words(plain) or _SAYS_NOT_THERE.search(plain[:REFUSAL_HEAD]) is not None)


def is_refusal(text: str) -> bool:
    return _refuses(_plain(text))


def refusal_settled(text: str) -> bool | None:
    """What `is_refusal` will say of any reply that begins with `text` (which the model is still
    writing), or None while its next words could change that: once the first REFUSAL_HEAD characters
    (to the last whole word) are written and hold a content word, nothing later can."""
    plain = _plain(text)
    whole = plain[: plain.rfind(" ")] if " " in plain else ""  # the last word may still grow, or be a marker
    if len(whole) < REFUSAL_HEAD or not content_words(whole):
        return None
    return _refuses(whole)


class RefusalProbe(Protocol):
    """The model's probability of starting its reply with the refusal, read before generating (from
    the prompt alone; the generation then starts from the evaluated prompt), and a way to ask again
    with the refusal banned."""

    def refusal_probability(self, prompt_messages: list[ChatMessage]) -> float | None: ...

    def without_refusal(self) -> AbstractContextManager[None]: ...


class PromptState(Protocol):
    """Carries the model's cached prompt state across processes (rag.llama_state.PromptCache)."""

    def restore(self, messages: list[ChatMessage], question: str) -> bool: ...

    def save(self, messages: list[ChatMessage], question: str) -> None: ...


class Answerer:
    """Owns the prompt and the post-processing; receives its LLM (and, for llama.cpp, the probe of its
    first-token probabilities) from the wiring.

    `stream` takes the passages twice: `passages` in rank order (kept in the Answer, and read by the
    retrieval gate) and `shown` in the order the prompt numbers them ([n] = shown[n-1])."""

    def __init__(self, llm: LLM, min_score: float = 0.3, prompts_dir: Path = PROMPTS_DIR,
                 style: str = "sentence", semantic: SemanticSupport | None = None,
                 refusal_prob: float = 1.0, retry_below: float = 0.0,
                 probe: RefusalProbe | None = None, prompt_state: PromptState | None = None,
                 judge: ClaimJudge | None = None, claim_threshold: float = 0.5) -> None:
        self.llm = llm
        self.min_score = min_score
        self.prompts_dir = prompts_dir
        # "sentence": one or two cited sentences; "short": the answering words only (answer_system_short)
        self.system_prompt = SYSTEM_PROMPTS[style]
        self.semantic = semantic
        self.refusal_prob = refusal_prob
        # Small models refuse too readily. When the model refuses with a probability below
        # `retry_below`, it is asked again with the refusal banned; that answer must still pass the
        # support check, else the refusal stands.
        self.retry_below = retry_below
        self.probe = probe
        self.prompt_state = prompt_state
        # The claim check (None: off, or no judge for this model): a sentence whose score is below
        # `claim_threshold` is left out of the answer.
        self.judge = judge
        self.claim_threshold = claim_threshold

    def messages(self, question: str, passages: list[Passage]) -> list[ChatMessage]:
        # Consecutive passages of one file share one "From <file>:" line: with a whole corpus in the
        # prompt, a label per passage was a third of its tokens (a hashed file name tokenizes badly).
        pieces: list[str] = []
        source = None
        for i, p in enumerate(passages, start=1):
            if p.chunk.source != source:
                source = p.chunk.source
                pieces.append(prompts.render("source", self.prompts_dir, source=short_source(source)))
            # The quote marks delimit document text (answer_system: data, not instructions); a document
            # cannot close them early.
            quoted = p.text.replace('"""', '"')
            pieces.append(prompts.render("passage", self.prompts_dir, n=i, text=quoted) + "\n")
        blocks = "\n".join(pieces).rstrip()
        # System message and passages come first: when they repeat, llama.cpp reuses its KV cache.
        return [
            ChatMessage(role=MessageRole.SYSTEM, content=prompts.render(self.system_prompt, self.prompts_dir, refusal=REFUSAL)),
            ChatMessage(role=MessageRole.USER, content=prompts.render("answer_user", self.prompts_dir, passages=blocks, question=question)),
        ]

    def stream(self, question: str, passages: list[Passage], timings: dict[str, float],
               shown: list[Passage] | None = None) -> Iterator[str | Answer]:
        """Yield the answer's verified sentences (text deltas; their concatenation is the Answer's
        text), then the final Answer. A refusal yields only the Answer.

        Each sentence is checked as soon as the model has begun the next one (generation waits, on
        the same model, while it is judged), and released once it passed and the answer can no longer
        be refused (`_Run.sure`), so the first verified sentence need not wait for the whole reply."""
        shown = passages if shown is None else shown
        # The best cosine of any passage, not the first: a fused or diversified order need not put it first.
        best_score = max((p.score for p in passages), default=None)
        signals = RefusalSignals(best_score=best_score, min_score=self.min_score, refusal_prob=self.refusal_prob,
                                 retry_below=self.retry_below,
                                 claim_threshold=self.claim_threshold if self.judge is not None else None)
        if best_score is None or best_score < self.min_score:
            best = f"{best_score:.2f}" if best_score is not None else "none"
            yield self._refuse(question, passages, timings, signals,
                               f"no passage is relevant enough (best score {best} < {self.min_score})")
            return
        messages = self.messages(question, shown)
        start = time.perf_counter()
        if self.prompt_state is not None and self.prompt_state.restore(messages, question):
            timings["restore_state"] = time.perf_counter() - start
        # Read before generating (it only needs the prompt): an answer it refuses releases nothing, and
        # is not judged (a calibration run, with refusal_prob 1, judges every answer).
        if self.probe is not None:
            signals.p_refusal = self.probe.refusal_probability(messages)
        leaning = signals.p_refusal is not None and signals.p_refusal >= self.refusal_prob
        run = _Run(self, messages, question, shown, timings, start, judge=not leaning, release=not leaning)
        reply = yield from run.reply()
        raw, model_text = reply.raw, reply.raw
        if is_refusal(raw) and self.probe is not None and signals.p_refusal is not None \
                and signals.p_refusal < self.retry_below:
            with self.probe.without_refusal():
                retry = yield from run.reply()
            signals.retried = True
            if not is_refusal(retry.raw):
                reply = retry
            raw = reply.raw
            model_text = f"{model_text}\n[asked again without the refusal] {retry.raw}"
        timings["generate"] = run.generated - start - run.checking
        sentences = [] if is_refusal(raw) else reply.sentences
        signals.claims = [s.claim for s in sentences]
        if self.prompt_state is not None:
            self.prompt_state.save(messages, question)
        if is_refusal(raw):
            yield self._refuse(question, passages, timings, signals, "the model found no answer in the passages", model_text)
            return
        signals.supported = sum(s.supported for s in sentences) / len(sentences) if sentences else 0.0
        if not any(s.supported for s in sentences):
            yield self._refuse(question, passages, timings, signals,
                               "no sentence of the model's answer is supported by the passages", model_text)
            return
        if leaning:
            yield self._refuse(question, passages, timings, signals,
                               f"the model leaned towards refusing (p = {signals.p_refusal:.2f} >= {self.refusal_prob})",
                               model_text)
            return
        kept = [s for s in sentences if not s.dropped]
        if not kept:
            yield self._refuse(question, passages, timings, signals, NOT_STATED, model_text)
            return
        yield from run.release(kept)
        cited = sorted({n for s in kept for n in s.citations})
        citations = [_citation(n, shown[n - 1], [s.claim for s in kept if n in s.citations]) for n in cited]
        yield Answer(question=question, text=" ".join(marked(s) for s in kept), citations=citations, abstained=False,
                     sentences=sentences, timings=timings, passages=passages, model_text=model_text, signals=signals)

    def check(self, sentence: AnswerSentence, messages: list[ChatMessage], question: str, shown: list[Passage],
              timings: dict[str, float], judge: bool = True) -> AnswerSentence:
        """One attributed sentence with its claim check, and why it is left out ("" = kept)."""
        if not sentence.supported:
            return replace(sentence, dropped="no passage supports it")
        claim = None
        if self.judge is not None and judge:
            began = time.perf_counter()
            backing = evidence(sentence.text, [shown[n - 1].text for n in sentence.citations])
            claim = self.judge.score(messages, question, sentence.text, sentence.citations, backing)
            timings["claim_check"] = timings.get("claim_check", 0.0) + time.perf_counter() - began
        dropped = ""
        if claim is not None and claim < self.claim_threshold:
            dropped = f"the passages do not state it as the answer (claim {claim:.2f} < {self.claim_threshold})"
        return replace(sentence, claim=claim, dropped=dropped)

    @staticmethod
    def _refuse(question: str, passages: list[Passage], timings: dict[str, float], signals: RefusalSignals,
                reason: str, model_text: str = "") -> Answer:
        """A refusal: no sentence of the model's is kept (its draft is in model_text, its checks in signals)."""
        return Answer(question=question, text=REFUSAL, citations=[], abstained=True, timings=timings,
                      passages=passages, refusal_reason=reason, model_text=model_text, signals=signals)


_LETTER = re.compile(r"[^\W\d_]")


class _Reply:
    """One reply of the model as it is written: its text, and its sentences checked so far."""

    def __init__(self) -> None:
        self.text = ""
        self.done = 0  # offset (in `markers_before_stops(text)`) up to which sentences were taken
        self.sentences: list[AnswerSentence] = []
        self.finished = False

    @property
    def raw(self) -> str:
        return self.text.strip()

    def complete(self) -> list[str]:
        """The sentences written in full since the last call: those the model has begun a next one
        after (a next sentence with a letter, so a marker after the stop still joins its sentence);
        at the end, everything left."""
        text = markers_before_stops(self.text)
        if self.finished:
            rest, self.done = text[self.done:], len(text)
            return [rest] if rest.strip() else []
        spans = [s for s in split_sentences(text) if s.start >= self.done]
        opened = [i for i, s in enumerate(spans) if _LETTER.search(strip_markers(text[s.start:s.end]))]
        if not opened or opened[-1] == 0:
            return []
        ready = spans[: opened[-1]]
        self.done = spans[opened[-1]].start
        return [text[s.start:s.end] for s in ready]


class _Run:
    """The generations of one answer: deltas in, sentences checked as soon as they are complete,
    and the kept ones released as soon as the answer is sure to stand (`sure`)."""

    def __init__(self, answerer: Answerer, messages: list[ChatMessage], question: str, shown: list[Passage],
                 timings: dict[str, float], start: float, judge: bool, release: bool) -> None:
        self.answerer = answerer
        self.messages = messages
        self.question = question
        self.shown = shown
        self.timings = timings
        self.start = start
        self.judge = judge
        self.may_release = release
        self.released = 0  # kept sentences yielded so far (of the current reply)
        self.generated = start  # when the last generation ended
        self.checking = 0.0  # seconds spent checking sentences while a generation waited

    def reply(self) -> Generator[str, None, _Reply]:
        """Generate one reply, checking each sentence once complete; yield the kept ones once sure."""
        reply = _Reply()
        self.released = 0
        for response in self.answerer.llm.stream_chat(self.messages):
            delta = response.delta or ""
            if not delta:
                continue
            self.timings.setdefault("first_token", time.perf_counter() - self.start)
            reply.text += delta
            sentences = reply.complete()
            if sentences:
                began = time.perf_counter()
                self._check(reply, sentences)
                self.checking += time.perf_counter() - began
            # Also between sentences: a passed one waits only for the reply's first characters.
            kept = [s for s in reply.sentences if not s.dropped]
            if len(kept) > self.released and self.sure(reply):
                yield from self.release(kept)
        self.generated = time.perf_counter()
        reply.finished = True
        self._check(reply, reply.complete())
        if self.sure(reply):
            yield from self.release([s for s in reply.sentences if not s.dropped])
        return reply

    def _check(self, reply: _Reply, pieces: list[str]) -> None:
        if (is_refusal(reply.raw) if reply.finished else refusal_settled(reply.text)) is True:
            return  # a refusal: its sentences are never shown, so not worth checking
        answerer = self.answerer
        for piece in pieces:
            for s in attribute(piece, self.shown, self.question, semantic=answerer.semantic)[1]:
                reply.sentences.append(answerer.check(s, self.messages, self.question, self.shown, self.timings,
                                                      judge=self.judge))

    def sure(self, reply: _Reply) -> bool:
        """True once no later words can turn this reply into a refusal: the refusal probability did not
        refuse it, `is_refusal` is settled false, and a sentence passed every check (the remaining
        reasons to refuse need every sentence to fail)."""
        settled = is_refusal(reply.raw) if reply.finished else refusal_settled(reply.text)
        return self.may_release and settled is False and any(not s.dropped for s in reply.sentences)

    def release(self, kept: list[AnswerSentence]) -> Iterator[str]:
        """Yield the kept sentences not yet yielded, as the reader sees them."""
        for s in kept[self.released:]:
            self.timings.setdefault("first_verified", time.perf_counter() - self.start)
            yield marked(s) if self.released == 0 else " " + marked(s)
            self.released += 1


def _citation(n: int, p: Passage, claims: list[float | None]) -> Citation:
    judged = [c for c in claims if c is not None]
    return Citation(n=n, text=p.text, source=p.chunk.source, page=p.chunk.page, start=p.start, end=p.end,
                    score=p.score, doc_id=p.chunk.doc_id, ocr=p.chunk.ocr, location=p.chunk.location,
                    supported=True, claim=min(judged) if judged else None)
