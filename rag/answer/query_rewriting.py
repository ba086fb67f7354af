"""Query rewriting: the question as typed -> the text retrieval searches with.

1. Follow-ups (`QuestionCondenser`): rewrite a follow-up question into a standalone one before retrieval.

"and when did that happen?" retrieves nothing useful on its own; with the conversation it becomes
"When did the U.S. withdrawal from Niger happen?". The rewrite is one short LLM call with the prompt
file `prompts/condense.txt`. It is only made when there is history, and its output is checked: an
empty, runaway or content-free rewrite falls back to the question as the user typed it.

`RAG.chat` (rag/asker.py) serialises it with the other LLM calls (and the web UI runs every LLM event in one
queue of concurrency 1), so this module takes no lock of its own.

2. HyDE (`HydeRewriter`, setting `query_rewrite = hyde`): search with a hypothetical answer.

A question and the passage that answers it are worded differently ("Which unit arrested the
president?" / "...was detained by members of the presidential guard"). HyDE (Gao et al., 2022) lets
the model write a short made-up answer and searches with the question plus that text, which looks
more like the documents. The made-up text is never shown or cited: it only moves the search, and the
passages are scored against the question as typed, so the refusal gate reads the same scale.
It costs one short LLM call per question, before the answer's own.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llama_index.core.llms import LLM

from rag import prompts
from rag.answer.answerer import is_refusal
from rag.answer.citations import strip_markers
from rag.config import PROMPTS_DIR
from rag.models.llm import complete_until
from rag.text import content_words

log = logging.getLogger(__name__)

# Labels a small model likes to echo before its answer.
_PREFIX = re.compile(r"^\s*(?:standalone\s+question|rewritten\s+question|question|last\s+question)\s*:\s*", re.I)
_QUOTES = "\"'`“”‘’«»"


@dataclass(frozen=True)
class Turn:
    """One exchange of the conversation: the question (as searched) and the answer text."""

    question: str
    answer: str


class QuestionCondenser:
    """Turns a follow-up into a standalone question using the conversation so far."""

    def __init__(self, llm: LLM, *, prompts_dir: Path = PROMPTS_DIR, max_turns: int = 3,
                 max_answer_chars: int = 400, max_words: int = 60) -> None:
        self.llm = llm
        self.prompts_dir = prompts_dir
        self.max_turns = max_turns
        self.max_answer_chars = max_answer_chars
        self.max_words = max_words

    def history_text(self, history: Sequence[Turn]) -> str:
        lines = []
        for turn in list(history)[-self.max_turns:]:
            answer = " ".join(strip_markers(turn.answer).split())
            if len(answer) > self.max_answer_chars:
                answer = answer[: self.max_answer_chars].rsplit(" ", 1)[0] + " ..."
            lines.append(f"User: {' '.join(turn.question.split())}")
            lines.append(f"Assistant: {answer}")
        return "\n".join(lines)

    def prompt(self, question: str, history: Sequence[Turn]) -> str:
        return prompts.render("condense", self.prompts_dir, history=self.history_text(history),
                              question=" ".join(question.split()))

    def condense(self, question: str, history: Sequence[Turn]) -> str:
        """The standalone question; the original when there is no history or the rewrite is unusable."""
        question = question.strip()
        if not history or not question:
            return question
        raw = self._generate(self.prompt(question, history))
        rewrite = self.clean(raw)
        if not self.acceptable(rewrite, question):
            log.info("condense: rewrite %r rejected; using the question as typed", raw[:200])
            return question
        return rewrite

    def _generate(self, prompt: str) -> str:
        """Stream the completion and stop at the end of its first non-empty line (the question)."""
        def enough(text: str) -> bool:
            stripped = text.lstrip()
            return "\n" in stripped or len(stripped.split()) > self.max_words

        return complete_until(self.llm, prompt, enough)

    @staticmethod
    def clean(raw: str) -> str:
        lines = [line.strip() for line in raw.strip().splitlines() if line.strip()]
        if not lines:
            return ""
        text = _PREFIX.sub("", lines[0]).strip().strip(_QUOTES).strip()
        return " ".join(text.split())

    def acceptable(self, rewrite: str, question: str) -> bool:
        if not rewrite or not content_words(rewrite):
            return False
        if is_refusal(rewrite):
            return False
        if len(rewrite.split()) > self.max_words or len(rewrite) > max(4 * len(question), 400):
            return False
        return True


class HydeRewriter:
    """question -> question + a short hypothetical passage (at most `max_words` words of it)."""

    def __init__(self, llm: LLM, *, prompts_dir: Path = PROMPTS_DIR, max_words: int = 60) -> None:
        self.llm = llm
        self.prompts_dir = prompts_dir
        self.max_words = max_words

    def expand(self, question: str) -> str:
        prompt = prompts.render("hyde", self.prompts_dir, question=" ".join(question.split()))
        text = complete_until(self.llm, prompt,
                              lambda t: len(t.split()) > self.max_words or "\n\n" in t.strip())
        hypothetical = " ".join(text.split()[: self.max_words])
        log.debug("hyde: %r -> %r", question, hypothetical)
        return f"{question}\n{hypothetical}" if hypothetical else question
