"""Prompt templates are files in prompts/, rendered with named {variables}.

Only `{identifier}` placeholders are substituted, so literal braces in a template are safe, and a
template that names a variable the caller did not give fails loudly instead of sending `{x}` to a model.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from rag.config import PROMPTS_DIR
from rag.errors import ConfigError

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
