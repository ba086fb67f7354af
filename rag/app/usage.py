"""`usage` of an API reply (OpenAI's prompt_tokens, completion_tokens, total_tokens) for one Answer.

prompt_tokens: the answering prompt, rendered again from the answer's passages (the same text the model
was given, prompts/); completion_tokens: what the model said (`Answer.model_text`). Counted with the
model's own tokenizer where it is in this process (llama.cpp: the chat template's prompt, special tokens
included); for a model server or a fake, estimated as one token per 4 characters (English prose is
3.5-4.5 characters a token with BPE vocabularies), rounded up. An answer refused by the retrieval gate
asked no model: zero. The rewrite of a follow-up question (a short model call of its own) and the second
call of a retry (`retry_below`) are not counted.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rag.answer.answerer import Answerer
from rag.types import Answer

if TYPE_CHECKING:  # pragma: no cover
    from rag.pipeline import RAG

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def token_counter(llm: Any) -> tuple[Callable[[str], int], bool]:
    """(count(text) -> tokens, exact): the tokenizer of a llama.cpp model in this process, else the estimate."""
    tokenize = getattr(getattr(llm, "_model", None), "tokenize", None)
    if tokenize is None:
        return estimate_tokens, False
    return (lambda text: len(tokenize(text.encode("utf-8"), add_bos=False, special=True))), True


def usage(rag: "RAG", answer: Answer) -> dict[str, int]:
    """OpenAI's `usage` object for `answer`, given by `rag`."""
    if not answer.model_text and answer.abstained:  # refused before the model was asked
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    llm = rag.llm
    count, exact = token_counter(llm)
    messages = Answerer(llm, style=rag.settings.answer_style).messages(answer.question, answer.passages)
    render = getattr(llm, "messages_to_prompt", None)
    prompt = render(messages) if exact and callable(render) else "\n".join(str(m.content) for m in messages)
    prompt_tokens, completion_tokens = count(prompt), count(answer.model_text)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}
