"""Query rewriting for retrieval (setting `query_rewrite = hyde`): search with a hypothetical answer.

A question and the passage that answers it are worded differently ("Which unit arrested the
president?" / "...was detained by members of the presidential guard"). HyDE (Gao et al., 2022) lets
the model write a short made-up answer and searches with the question plus that text, which looks
more like the documents. The made-up text is never shown or cited: it only moves the search, and the
passages are scored against the question as typed, so the refusal gate reads the same scale.
It costs one short LLM call per question, before the answer's own.
"""
from __future__ import annotations

import logging
from pathlib import Path

from llama_index.core.llms import LLM

from rag import prompts
from rag.config import PROMPTS_DIR
from rag.llm import complete_until

log = logging.getLogger(__name__)


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
