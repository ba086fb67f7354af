"""The claim check: does the cited passage state this sentence *as the answer to this question*?

The support check (citations.py) compares words, names and numbers, so an answer that copies the
right words into the wrong relation passes it: "Niger's ousted president is Ali Lamine Zeine [2]",
where the passage names Zeine as the prime minister, or a code a document told the model to reply
with. The claim check takes the sentence of the cited passages that backs the answer sentence (the
one sharing most of its content words: `evidence`) and asks a judge whether that passage sentence
answers the question: a short yes/no question (prompts/claim_check.txt) scored by the probability of
"yes". For llama.cpp the judge is the answering model itself (rag.models.llama_state.LlamaClaimJudge):
the question is appended to the answer's own prompt, whose evaluated state it reuses. Asking about
the passage's sentence, not the model's, matters: a 1.5B model asked whether its own answer is right
says yes to its near misses (0.78 for the ousted-president answer above), while "does this sentence
of the passage answer the question?" separates them. A sentence scoring below the threshold is left
out of the answer.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from llama_index.core.base.llms.types import ChatMessage

from rag.prompts import CLAIM_PROMPT, judge_messages  # noqa: F401  (the judge's turn: rag/prompts.py)
from rag.text import content_words, split_sentences

# The refusal reason when every sentence the support check backed fails the claim check.
NOT_STATED = "the passages do not state this as the answer"
EVIDENCE_CHARS = 400  # a passage sentence longer than this is cut (what the judge reads costs prompt time)


class ClaimJudge(Protocol):
    """Scores one answer sentence: the probability (0..1) that its passages state it as the answer to
    the question; None when it cannot tell (the caller then keeps the sentence).

    `messages` is the answer's prompt (system, passages, question), so a judge on the same model can
    reuse its evaluated state; `cited` are the passage numbers ([n] in the prompt) the sentence rests
    on and `evidence` the sentence of those passages that backs it (`evidence`)."""

    def score(self, messages: Sequence[ChatMessage], question: str, sentence: str, cited: Sequence[int],
              evidence: str) -> float | None: ...


def evidence(sentence: str, passage_texts: Sequence[str]) -> str:
    """The passage sentence that shares most content words with the answer sentence (the first on a tie)."""
    target = content_words(sentence)
    best, shared = "", -1
    for text in passage_texts:
        for span in split_sentences(text):
            candidate = text[span.start:span.end]
            k = len(target & content_words(candidate))
            if k > shared:
                best, shared = candidate, k
    best = " ".join(best.split())
    return best if len(best) <= EVIDENCE_CHARS else best[:EVIDENCE_CHARS].rsplit(" ", 1)[0] + " ..."


