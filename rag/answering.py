"""Answering: passages + question -> prompt -> streamed LLM text -> Answer with verified citations.

The refusal is decided in three places, none of which trusts the model alone:
1. before generation, when no passage reaches `min_score` (the LLM is not even called);
2. when the model itself replies with the refusal;
3. after generation, when no sentence of the answer is supported by any passage.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.llms import LLM

from rag import prompts
from rag.citations import SemanticSupport, attribute, content_words
from rag.config import PROMPTS_DIR
from rag.types import Answer, Citation, Passage, short_source

REFUSAL = "Not in the documents."
SYSTEM_PROMPTS = {"sentence": "answer_system", "short": "answer_system_short"}


def is_refusal(text: str) -> bool:
    head = " ".join(text.lower().split())[:80]
    return head.startswith("not in the documents") or "not in the documents" in head[:40] or not content_words(text)


class Answerer:
    """Owns the prompt and the post-processing; receives its LLM from the wiring."""

    def __init__(self, llm: LLM, min_score: float = 0.3, prompts_dir: Path = PROMPTS_DIR,
                 style: str = "sentence", semantic: SemanticSupport | None = None,
                 best_last: bool = False) -> None:
        self.llm = llm
        self.min_score = min_score
        self.prompts_dir = prompts_dir
        # "sentence": one or two cited sentences; "short": the answering words only (answer_system_short)
        self.system_prompt = SYSTEM_PROMPTS[style]
        self.semantic = semantic
        # Small models weigh the text nearest the question most; best_last puts the top passage there.
        self.best_last = best_last

    def messages(self, question: str, passages: list[Passage]) -> list[ChatMessage]:
        blocks = "\n\n".join(
            prompts.render("passage", self.prompts_dir, n=i, source=short_source(p.chunk.source), text=p.text)
            for i, p in enumerate(passages, start=1)
        )
        # The system message never changes, so llama.cpp reuses its KV cache between questions.
        return [
            ChatMessage(role=MessageRole.SYSTEM, content=prompts.render(self.system_prompt, self.prompts_dir, refusal=REFUSAL)),
            ChatMessage(role=MessageRole.USER, content=prompts.render("answer_user", self.prompts_dir, passages=blocks, question=question)),
        ]

    def stream(self, question: str, passages: list[Passage], timings: dict[str, float]) -> Iterator[str | Answer]:
        """Yield text deltas as the model produces them, then the final Answer."""
        # The best cosine of any passage, not the first: a fused or diversified order need not put it first.
        best_score = max((p.score for p in passages), default=None)
        if best_score is None or best_score < self.min_score:
            best = f"{best_score:.2f}" if best_score is not None else "none"
            yield self._refuse(question, passages, timings, f"no passage is relevant enough (best score {best} < {self.min_score})")
            return
        # `shown` is the prompt's numbering ([n] = shown[n-1]); Answer.passages keeps the retrieval rank.
        shown = passages[::-1] if self.best_last else passages
        start = time.perf_counter()
        parts: list[str] = []
        for response in self.llm.stream_chat(self.messages(question, shown)):
            delta = response.delta or ""
            if not delta:
                continue
            if not parts:
                timings["first_token"] = time.perf_counter() - start
            parts.append(delta)
            yield delta
        timings["generate"] = time.perf_counter() - start
        raw = "".join(parts).strip()
        if is_refusal(raw):
            yield self._refuse(question, passages, timings, "the model found no answer in the passages", raw)
            return
        text, sentences = attribute(raw, shown, question, semantic=self.semantic)
        if not any(s.supported for s in sentences):
            yield self._refuse(question, passages, timings, "no sentence of the model's answer is supported by the passages", raw)
            return
        cited = sorted({n for s in sentences for n in s.citations})
        citations = [_citation(n, shown[n - 1]) for n in cited]
        yield Answer(question=question, text=text, citations=citations, abstained=False,
                     sentences=sentences, timings=timings, passages=passages, model_text=raw)

    @staticmethod
    def _refuse(question: str, passages: list[Passage], timings: dict[str, float], reason: str,
                model_text: str = "") -> Answer:
        return Answer(question=question, text=REFUSAL, citations=[], abstained=True, timings=timings,
                      passages=passages, refusal_reason=reason, model_text=model_text)


def _citation(n: int, p: Passage) -> Citation:
    return Citation(n=n, text=p.text, source=p.chunk.source, page=p.chunk.page, start=p.start, end=p.end,
                    score=p.score, doc_id=p.chunk.doc_id)
