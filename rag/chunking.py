"""Chunking: Document -> Chunks of whole sentences, with overlap and exact char offsets.

We split sentences ourselves (rather than llama-index's SentenceSplitter) because every chunk must
carry its exact start/end in the source text; the splitter recovers offsets with `str.find`,
which points at the wrong place when a passage repeats.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from rag.types import Chunk, Document

# A sentence ends at . ! ? (optionally followed by quotes/brackets) before whitespace, or at a blank line.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*\n")
_ABBREVIATIONS = ("Mr.", "Mrs.", "Ms.", "Dr.", "Gen.", "Col.", "Sgt.", "Lt.", "St.", "U.S.", "U.N.", "e.g.", "i.e.", "vs.", "No.", "Jr.", "Sr.", "Prof.")


@dataclass(frozen=True)
class Span:
    start: int
    end: int


def split_sentences(text: str, offset: int = 0) -> list[Span]:
    """Sentence spans (stripped of surrounding whitespace) as char offsets into `text` (+offset)."""
    spans: list[Span] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        head = text[start:match.start() + 1].rstrip()
        if head.endswith(_ABBREVIATIONS) and "\n" not in match.group():
            continue
        _append(spans, text, start, match.start() + (len(match.group()) - len(match.group().lstrip("\"')]"))), offset)
        start = match.end()
    _append(spans, text, start, len(text), offset)
    return spans


def _append(spans: list[Span], text: str, start: int, end: int, offset: int) -> None:
    piece = text[start:end]
    lead = len(piece) - len(piece.lstrip())
    trail = len(piece) - len(piece.rstrip())
    if end - trail > start + lead:
        spans.append(Span(offset + start + lead, offset + end - trail))


class SentenceChunker:
    """Groups consecutive sentences into chunks of about `size` words, sharing `overlap` sentences.

    A single sentence longer than `size` becomes its own chunk (cut at word boundaries)."""

    def __init__(self, size: int = 160, overlap: int = 1) -> None:
        if size < 1 or overlap < 0:
            raise ValueError(f"chunk size must be >= 1 and overlap >= 0, got size={size} overlap={overlap}")
        self.size = size
        self.overlap = overlap

    def split(self, doc: Document, first_id: int = 0) -> list[Chunk]:
        sentences = [s for sp in split_sentences(doc.text) for s in self._cut_long(doc.text, sp)]
        chunks: list[Chunk] = []
        i = 0
        while i < len(sentences):
            j, words = i, 0
            page = doc.page_at(sentences[i].start)
            # A chunk never crosses a page break, so its page number is exact.
            while j < len(sentences) and (j == i or (
                    words + _words(doc.text, sentences[j]) <= self.size and doc.page_at(sentences[j].start) == page)):
                words += _words(doc.text, sentences[j])
                j += 1
            start, end = sentences[i].start, sentences[j - 1].end
            chunks.append(
                Chunk(
                    id=first_id + len(chunks),
                    doc_id=doc.id,
                    source=doc.source,
                    text=doc.text[start:end],
                    start=start,
                    end=end,
                    page=page,
                )
            )
            if j >= len(sentences):
                break
            i = max(j - self.overlap, i + 1)
            if doc.page_at(sentences[i].start) != doc.page_at(sentences[j].start):
                i = j  # no overlap across a page break
        return chunks

    def _cut_long(self, text: str, span: Span) -> list[Span]:
        if _words(text, span) <= self.size:
            return [span]
        out: list[Span] = []
        words = list(re.finditer(r"\S+", text[span.start:span.end]))
        for k in range(0, len(words), self.size):
            group = words[k:k + self.size]
            out.append(Span(span.start + group[0].start(), span.start + group[-1].end()))
        return out


def _words(text: str, span: Span) -> int:
    return len(text[span.start:span.end].split())
