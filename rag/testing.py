"""Fakes that behave, for fast unit tests: a scripted LLM that records prompts, a hashing embedder.

Integration tests use the real MiniLM and a real GGUF model; these exist so the logic around them
can be tested in milliseconds.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from llama_index.core.base.llms.types import (
    ChatMessage,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.llms.custom import CustomLLM
from pydantic import PrivateAttr

_WORD = re.compile(r"[a-z0-9]+")


class FakeEmbedder:
    """Bag-of-words vectors: each word hashes to a dimension, so texts sharing words are similar.

    Deterministic and distinct per text, unlike a constant vector, so retrieval order is meaningful."""

    def __init__(self, dim: int = 64, name: str = "fake-embedder") -> None:
        self.dim = dim
        self.name = name
        self.calls: list[list[str]] = []

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
            norm = np.linalg.norm(out[row])
            if norm == 0:
                out[row, 0] = 1.0
            else:
                out[row] /= norm
        return out

    def embed_query(self, texts: list[str]) -> np.ndarray:
        return self.embed(texts)


Reply = str | Callable[[str], str]


class FakeLLM(CustomLLM):
    """Replays scripted replies in order (the last one repeats) and records every prompt it got.

    A reply may be a callable of the rendered prompt, to answer from the passages it was shown."""

    _replies: list[Reply] = PrivateAttr(default_factory=list)
    _prompts: list[str] = PrivateAttr(default_factory=list)
    _messages: list[list[ChatMessage]] = PrivateAttr(default_factory=list)

    def __init__(self, replies: Sequence[Reply] = ("Not in the documents.",), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._replies = list(replies)

    @property
    def prompts(self) -> list[str]:
        return self._prompts

    @property
    def messages_seen(self) -> list[list[ChatMessage]]:
        return self._messages

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=4096, num_output=256, model_name="fake-llm", is_chat_model=False)

    def _next(self, prompt: str) -> str:
        self._prompts.append(prompt)
        index = min(len(self._prompts) - 1, len(self._replies) - 1)
        reply = self._replies[index]
        return reply(prompt) if callable(reply) else reply

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any):  # type: ignore[override]
        self._messages.append(list(messages))
        return super().stream_chat(messages, **kwargs)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._next(prompt))

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = self._next(prompt)

        def gen() -> CompletionResponseGen:
            so_far = ""
            for token in re.findall(r"\S+\s*", text):
                so_far += token
                yield CompletionResponse(text=so_far, delta=token)

        return gen()


class FakeClaimJudge:
    """A claim judge (rag/answer/claims.py) that scores by a rule: `scores` maps a substring of the
    sentence to its score (the first that matches wins), else `default`. Records every call as
    (question, sentence, cited, evidence)."""

    def __init__(self, scores: dict[str, float] | None = None, default: float | None = 0.9) -> None:
        self.scores = dict(scores or {})
        self.default = default
        self.calls: list[tuple[str, str, tuple[int, ...], str]] = []

    def score(self, messages: Sequence[ChatMessage], question: str, sentence: str, cited: Sequence[int],
              evidence: str) -> float | None:
        self.calls.append((question, sentence, tuple(cited), evidence))
        for part, value in self.scores.items():
            if part in sentence:
                return value
        return self.default
