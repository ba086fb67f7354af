"""Chunking: Document -> Chunks of whole sentences, with overlap and exact char offsets. The sentences
are the ground floor's (`rag.text.split_sentences`), exact spans into the document's text."""
from __future__ import annotations

import re
from bisect import bisect_right

from rag.text import Span, split_sentences
from rag.types import Chunk, Document

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
        section_starts = [start for start, _ in doc.sections]

        def where(offset: int) -> tuple[int | None, int]:  # (page, section index): a chunk stays in one
            return doc.page_at(offset), bisect_right(section_starts, offset)

        chunks: list[Chunk] = []
        i = 0
        while i < len(sentences):
            j, words = i, 0
            place = where(sentences[i].start)
            # A chunk never crosses a page break or a section (slide, table block, chapter, cell), so
            # its page number and location are exact.
            while j < len(sentences) and (j == i or (
                    words + _words(doc.text, sentences[j]) <= self.size and where(sentences[j].start) == place)):
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
                    page=place[0],
                    location=doc.sections[place[1] - 1][1] if place[1] else None,
                    ocr=place[0] is not None and place[0] in doc.ocr_pages,
                )
            )
            if j >= len(sentences):
                break
            i = max(j - self.overlap, i + 1)
            if where(sentences[i].start) != where(sentences[j].start):
                i = j  # no overlap across a page break or a section
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
