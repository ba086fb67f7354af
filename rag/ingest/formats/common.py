"""What every reader shares: its input (`Source`), its output (`Extracted`) and the joining of
labelled parts into one text with sections, counted against the character limit as it goes."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rag.errors import LoadError

PART_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Source:
    """One file to read, with the limits and the helpers of loading.py that readers reuse."""

    name: str  # the path as the user gave it, for messages
    path: Path
    data: bytes  # the file's bytes (already bounded by the file-size limit)
    max_chars: int
    table_words: int  # a block of table rows, header included, fits one chunk of this many words
    html_text: Callable[[str, str, int], str]  # loading._html_text(html, name, max_chars)
    decode: Callable[[str, bytes], str]  # loading._decode(name, data): UTF-8 or a BOM'd UTF-16/32

    def fail(self, reason: str) -> LoadError:
        return LoadError(self.name, reason)


@dataclass(frozen=True)
class Extracted:
    """A document's text and its sorted (char offset, label) sections."""

    text: str
    sections: tuple[tuple[int, str], ...]


class Parts:
    """Labelled parts joined by a blank line, each a section; empty parts are dropped. Counting as
    parts are added stops a huge file at the character limit instead of after extracting it all."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.texts: list[str] = []
        self.sections: list[tuple[int, str]] = []
        self.chars = 0

    def add(self, label: str, text: str) -> None:
        text = text.strip()
        if not text:
            return
        if self.texts:
            self.texts.append(PART_SEPARATOR)
            self.chars += len(PART_SEPARATOR)
        self.sections.append((self.chars, label))
        self.texts.append(text)
        self.chars += len(text)
        self.check()

    def check(self, extra: int = 0) -> None:
        if self.chars + extra > self.source.max_chars:
            raise self.source.fail(f"has more than {self.source.max_chars:,} characters of text, more than the "
                                   "limit (setting max_file_chars)")

    def result(self) -> Extracted:
        return Extracted(text="".join(self.texts), sections=tuple(self.sections))


def clean(text: str) -> str:
    """Runs of spaces and tabs as one space, blank lines as one, ends stripped."""
    text = re.sub(r"[^\S\n]+", " ", text.replace("\r\n", "\n").replace("\r", "\n"))
    return re.sub(r"\s*\n\s*\n\s*", "\n\n", text).strip()
