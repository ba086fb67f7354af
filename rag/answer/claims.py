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

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from llama_index.core.base.llms.types import ChatMessage

from rag import prompts
from rag.answer.citations import content_words
from rag.config import PROMPTS_DIR
from rag.ingest.chunking import split_sentences

CLAIM_PROMPT = "claim_check"
# The refusal reason when every sentence the support check backed fails the claim check.
NOT_STATED = "the passages do not state this as the answer"
# How the judge's reply is scored: "normalised" P(yes) / (P(yes) + P(no)) of its first token, or
# "yes": P(yes) alone (mass on other tokens, e.g. a restatement or "The", counts against it).
SCORINGS = ("normalised", "yes")
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


# Words of a question that name what kind of answer it wants, not the fact asked about.
QUESTION_WORDS = frozenset("name named many much kind type sort year percentage number".split())


def missing_words(question: str, evidence: str) -> list[str]:
    """The question's content words (in its order, once each) that the evidence sentence does not use,
    compared as content_words compares them (stemmed): where a near miss's swapped term shows ("president"
    against a passage naming the prime minister), and a paraphrase too, which the judge is left to tell."""
    have = content_words(evidence)
    out: list[str] = []
    for word in re.findall(r"[\w][\w'’.-]*[\w]|\w", question):
        stems = content_words(word)
        if stems and not stems <= have and word.lower() not in QUESTION_WORDS and word not in out:
            out.append(word)
    return out


def yes_score(p_yes: float, p_no: float, scoring: str = "normalised") -> float | None:
    """The claim score from the probabilities of the judge's first reply token being yes and no
    (see SCORINGS); None when "normalised" has neither to go by."""
    if scoring == "yes":
        return p_yes
    if scoring == "normalised":
        return p_yes / (p_yes + p_no) if p_yes + p_no > 0 else None
    raise ValueError(f"claim scoring {scoring!r} is not one of {list(SCORINGS)}")


def judge_messages(messages: Sequence[ChatMessage], question: str, sentence: str, cited: Sequence[int],
                   evidence: str, prompts_dir: Path = PROMPTS_DIR, prompt: str = CLAIM_PROMPT) -> list[ChatMessage]:
    """The judge's conversation: the answer's prompt with the yes/no question (the template `prompt`)
    appended to its user turn (after the question), so it shares the prompt's evaluated prefix up to
    the question's end."""
    refs = " and ".join(f"[{n}]" for n in cited) or "the passages"
    missing = ", ".join(f'"{w}"' for w in missing_words(question, evidence)) or "none"
    ask = prompts.render(prompt, prompts_dir, question=question, sentence=sentence, passages=refs, missing=missing,
                         evidence=evidence.replace('"', "'"))
    *head, last = messages
    return [*head, ChatMessage(role=last.role, content=f"{last.content}\n\n{ask}")]

