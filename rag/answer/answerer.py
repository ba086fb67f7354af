"""Answering: passages + question -> prompt -> LLM text -> checked sentences -> Answer with citations.

Nothing unverified is streamed: the model's reply is collected, each of its sentences is checked, and
only then are the sentences that passed every check yielded, one by one; a refused answer yields no
text at all, only the Answer (the refusal and its reason). The streamed text is the Answer's text.

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
from collections.abc import Iterator
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
    strip_markers,
)
from rag.answer.claims import NOT_STATED, ClaimJudge, evidence
from rag.config import PROMPTS_DIR
from rag.text import content_words
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


def is_refusal(text: str) -> bool:
    plain = " ".join(strip_markers(text).lower().split())
    head = plain[:80]
    return (head.startswith("not in the documents") or "not in the documents" in head[:40]
            or not content_words(plain) or _SAYS_NOT_THERE.search(plain[:160]) is not None)


class RefusalProbe(Protocol):
    """The model's probability of starting its reply with the refusal, read after a generation, and a
    way to ask again with the refusal banned."""

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
        text), then the final Answer. A refusal yields only the Answer."""
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
        raw = self._generate(messages, timings, start)
        if self.probe is not None:
            signals.p_refusal = self.probe.refusal_probability(messages)
        if self.prompt_state is not None:
            self.prompt_state.save(messages, question)
        if is_refusal(raw) and self.probe is not None and signals.p_refusal is not None \
                and signals.p_refusal < self.retry_below:
            first = raw
            with self.probe.without_refusal():
                retry = self._generate(messages, timings, start)
            signals.retried = True
            raw = retry if not is_refusal(retry) else first
            model_text = f"{first}\n[asked again without the refusal] {retry}"
        else:
            model_text = raw
        timings["generate"] = time.perf_counter() - start
        # After the probe and the saved state: the judge's question, appended to the prompt, reuses it.
        # An answer the refusal probability refuses anyway is not judged (a calibration run, with
        # refusal_prob 1, judges every answer).
        leaning = signals.p_refusal is not None and signals.p_refusal >= self.refusal_prob
        sentences = [] if is_refusal(raw) else self._check(messages, raw, question, shown, timings, judge=not leaning)
        signals.claims = [s.claim for s in sentences]
        if is_refusal(raw):
            yield self._refuse(question, passages, timings, signals, "the model found no answer in the passages", model_text)
            return
        signals.supported = sum(s.supported for s in sentences) / len(sentences) if sentences else 0.0
        if not any(s.supported for s in sentences):
            yield self._refuse(question, passages, timings, signals,
                               "no sentence of the model's answer is supported by the passages", model_text)
            return
        if signals.p_refusal is not None and signals.p_refusal >= self.refusal_prob:
            yield self._refuse(question, passages, timings, signals,
                               f"the model leaned towards refusing (p = {signals.p_refusal:.2f} >= {self.refusal_prob})",
                               model_text)
            return
        kept = [s for s in sentences if not s.dropped]
        if not kept:
            yield self._refuse(question, passages, timings, signals, NOT_STATED, model_text)
            return
        pieces = [marked(s) for s in kept]
        for i, piece in enumerate(pieces):
            timings.setdefault("first_verified", time.perf_counter() - start)
            yield piece if i == 0 else " " + piece
        cited = sorted({n for s in kept for n in s.citations})
        citations = [_citation(n, shown[n - 1], [s.claim for s in kept if n in s.citations]) for n in cited]
        yield Answer(question=question, text=" ".join(pieces), citations=citations, abstained=False,
                     sentences=sentences, timings=timings, passages=passages, model_text=model_text, signals=signals)

    def _check(self, messages: list[ChatMessage], raw: str, question: str, shown: list[Passage],
               timings: dict[str, float], judge: bool = True) -> list[AnswerSentence]:
        """Every sentence of the reply, with its support and claim checks, and why it is left out ("" = kept)."""
        _, sentences = attribute(raw, shown, question, semantic=self.semantic)
        checked = []
        for s in sentences:
            if not s.supported:
                checked.append(replace(s, dropped="no passage supports it"))
                continue
            claim = None
            if self.judge is not None and judge:
                began = time.perf_counter()
                backing = evidence(s.text, [shown[n - 1].text for n in s.citations])
                claim = self.judge.score(messages, question, s.text, s.citations, backing)
                timings["claim_check"] = timings.get("claim_check", 0.0) + time.perf_counter() - began
            dropped = ""
            if claim is not None and claim < self.claim_threshold:
                dropped = f"the passages do not state it as the answer (claim {claim:.2f} < {self.claim_threshold})"
            checked.append(replace(s, claim=claim, dropped=dropped))
        return checked

    def _generate(self, messages: list[ChatMessage], timings: dict[str, float], start: float) -> str:
        """The model's whole reply (nothing is shown before it is checked); the first delta sets first_token."""
        parts: list[str] = []
        for response in self.llm.stream_chat(messages):
            delta = response.delta or ""
            if delta:
                timings.setdefault("first_token", time.perf_counter() - start)
                parts.append(delta)
        return "".join(parts).strip()

    @staticmethod
    def _refuse(question: str, passages: list[Passage], timings: dict[str, float], signals: RefusalSignals,
                reason: str, model_text: str = "") -> Answer:
        """A refusal: no sentence of the model's is kept (its draft is in model_text, its checks in signals)."""
        return Answer(question=question, text=REFUSAL, citations=[], abstained=True, timings=timings,
                      passages=passages, refusal_reason=reason, model_text=model_text, signals=signals)


def _citation(n: int, p: Passage, claims: list[float | None]) -> Citation:
    judged = [c for c in claims if c is not None]
    return Citation(n=n, text=p.text, source=p.chunk.source, page=p.chunk.page, start=p.start, end=p.end,
                    score=p.score, doc_id=p.chunk.doc_id, ocr=p.chunk.ocr, location=p.chunk.location,
                    supported=True, claim=min(judged) if judged else None)
