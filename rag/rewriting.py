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
from collections.abc import Callable
from pathlib import Path

from llama_index.core.llms import LLM

from rag import prompts
from rag.config import PROMPTS_DIR

log = logging.getLogger(__name__)


class HydeRewriter:
    """question -> question + a short hypothetical passage (at most `max_words` words of it)."""

    def __init__(self, llm: LLM, *, prompts_dir: Path = PROMPTS_DIR, max_words: int = 60) -> None:
        self.llm = llm
        self.prompts_dir = prompts_dir
        self.max_words = max_words

    def expand(self, question: str) -> str:
        text = ""
        stream = self.llm.stream_complete(prompts.render("hyde", self.prompts_dir, question=" ".join(question.split())))
        try:
            for response in stream:
                text += response.delta or ""
                if len(text.split()) > self.max_words or "\n\n" in text.strip():
                    break
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        words = " ".join(text.split()).split(" ")[: self.max_words]
        hypothetical = " ".join(w for w in words if w)
        log.debug("hyde: %r -> %r", question, hypothetical)
        return f"{question}\n{hypothetical}" if hypothetical else question


Rewrite = Callable[[str], str]
