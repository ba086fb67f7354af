"""The claim check: does the cited passage state this sentence *as the answer to this question*?

The support check (citations.py) compares words, names and numbers, so an answer that copies the
right words into the wrong relation passes it: "Niger's ousted president is Ali Lamine Zeine [2]",
where the passage names Zeine as the prime minister, or a code a document told the model to reply
with. The claim check asks a judge (for llama.cpp, the answering model itself, reading its own
next-token probabilities: rag.models.llama_state.LlamaClaimJudge) a short yes/no question about one
sentence, its passages and the question (prompts/claim_check.txt), and scores it by the probability
of "yes". A sentence scoring below the threshold is left out of the answer.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from llama_index.core.base.llms.types import ChatMessage, MessageRole

from rag import prompts
from rag.config import PROMPTS_DIR

CLAIM_PROMPT = "claim_check"
# The refusal reason when every sentence the support check backed fails the claim check.
NOT_STATED = "the passages do not state this as the answer"


class ClaimJudge(Protocol):
    """Scores one answer sentence: the probability (0..1) that the passages it cites state it as the
    answer to the question; None when it cannot tell (the caller then keeps the sentence).

    `messages` is the answer's prompt (system, passages, question) and `answer` the model's reply to
    it, so a judge on the same model can reuse their evaluated state; `cited` are the passage
    numbers ([n] in the prompt) the sentence rests on."""

    def score(self, messages: Sequence[ChatMessage], answer: str, question: str, sentence: str,
              cited: Sequence[int]) -> float | None: ...


def judge_messages(messages: Sequence[ChatMessage], answer: str, question: str, sentence: str,
                   cited: Sequence[int], prompts_dir: Path = PROMPTS_DIR) -> list[ChatMessage]:
    """The judge's conversation: the answer's prompt, the answer as the assistant's turn, then the
    yes/no question as a new user turn. Everything before the new turn is what the model just
    evaluated, so llama.cpp evaluates only the question's few tokens."""
    refs = " and ".join(f"[{n}]" for n in cited) or "the passages"
    ask = prompts.render(CLAIM_PROMPT, prompts_dir, question=question, sentence=sentence, passages=refs)
    return [*messages, ChatMessage(role=MessageRole.ASSISTANT, content=answer),
            ChatMessage(role=MessageRole.USER, content=ask)]
