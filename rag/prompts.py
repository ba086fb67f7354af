"""Prompt templates are files in prompts/, rendered with named {variables}.

Only `{identifier}` placeholders are substituted, so literal braces in a template are safe, and a
template that names a variable the caller did not give fails loudly instead of sending `{x}` to a model.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from rag.config import PROMPTS_DIR
from rag.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from llama_index.core.base.llms.types import ChatMessage

CLAIM_PROMPT = "claim_check"
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@lru_cache(maxsize=None)
def _read(directory: Path, name: str) -> str:
    path = directory / f"{name}.txt"
    try:
        return path.read_text(encoding="utf-8").rstrip("\n")
    except FileNotFoundError as exc:
        available = sorted(p.stem for p in directory.glob("*.txt"))
        raise ConfigError(f"prompt {name!r} not found in {directory}; available: {available}") from exc


def variables(name: str, directory: Path = PROMPTS_DIR) -> set[str]:
    return set(_PLACEHOLDER.findall(_read(directory, name)))


def render(name: str, directory: Path = PROMPTS_DIR, **values: object) -> str:
    template = _read(directory, name)
    missing = variables(name, directory) - values.keys()
    if missing:
        raise ConfigError(f"prompt {name!r} needs {sorted(missing)}; given {sorted(values)}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


def available(directory: Path = PROMPTS_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.txt"))


def judge_messages(messages: Sequence["ChatMessage"], question: str, sentence: str, cited: Sequence[int],
                   evidence: str, prompts_dir: Path = PROMPTS_DIR, prompt: str = CLAIM_PROMPT) -> list["ChatMessage"]:
    """The claim check's conversation (rag/answer/claims.py; asked by rag/models/llama_state.py): the
    answer's prompt with the yes/no question (the template `prompt`) appended to its user turn (after
    the question), so it shares the prompt's evaluated prefix up to the question's end."""
    from llama_index.core.base.llms.types import ChatMessage

    from rag.text import missing_words

    refs = " and ".join(f"[{n}]" for n in cited) or "the passages"
    missing = ", ".join(f'"{w}"' for w in missing_words(question, evidence)) or "none"
    ask = render(prompt, prompts_dir, question=question, sentence=sentence, passages=refs, missing=missing,
                 evidence=evidence.replace('"', "'"))
    *head, last = messages
    return [*head, ChatMessage(role=last.role, content=f"{last.content}\n\n{ask}")]
