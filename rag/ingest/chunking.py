"""Chunking: Document -> Chunks of whole sentences, with overlap and exact char offsets.

We split sentences ourselves (rather than llama-index's SentenceSplitter) because every chunk must
carry its exact start/end in the source text; the splitter recovers offsets with `str.find`,
which points at the wrong place when a passage repeats.
"""
from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass

from rag.types import Chunk, Document

# A sentence ends at . ! ? (optionally followed by quotes/brackets) before whitespace and a capital, digit
# or opening quote, or at a blank line. A period that ends an abbreviation, an initial or a list number
# is not an end (`_false_stop`). Why our own splitter rather than llama-index's SentenceSplitter or
# pysbd: every span must be an exact char offset into the source (theirs are recovered with str.find
# or rebuilt from cleaned text), and this runs on every chunk, passage and answer sentence.
_SENTENCE_END = re.compile(
    r"(?<=[.!?])[\"')\]\u201d\u2019]*\s+(?=[\"'(\[\u201c\u2018]?[A-Z0-9])"
    r"|(?<=[.!?])[ \t]*\n\s*(?=(?:\d{1,3}|[ivxlcdm]{1,5}|[a-z])[.)]\s)"  # a lower-case list item on a new line
    r"|\n\s*\n")
# Words that take a period but seldom end a sentence, compared as written: titles, months and days
# only capitalised ("the sun. Then" ends a sentence, "Sun. 5 May" does not), a few forms also lower-case.
ABBREVIATIONS = frozenset("""
    Mr Mrs Ms Dr Gen Col Sgt Lt Capt Maj Adm Cmdr Cpl Pvt Sen Rep Gov Pres Prof Jr Sr Rev Hon Messrs Mme
    St Mt Ft Ave Blvd Rd Dept Univ No Nos Fig Figs Eq Eqs Vol Vols Ch Chap Sec Art Para Ref Refs Ed Eds
    Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec Mon Tue Tues Wed Thu Thur Thurs Fri Sat Sun
    fig figs eq eqs vol vols pp ch chap para approx cf al vs viz
""".split())
_CLOSERS = "\"')]\u201d\u2019"
_DOTTED = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")  # U.S, e.g, a.m (the final period is outside)
_LIST_NUMBER = re.compile(r"\d{1,3}|[ivxlcdm]{1,5}|[A-Za-z]", re.IGNORECASE)


@dataclass(frozen=True)
class Span:
    start: int
    end: int


def _false_stop(text: str, stop: int) -> bool:
    """True if the period at `stop` ends an abbreviation ("Sen.", "Jan.", "U.S."), an initial ("J.",
    "U. S."), or a list number at the start of a line ("1.", "iv.") rather than a sentence."""
    if text[stop] != ".":
        return False
    start = stop
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    word = text[start:stop].lstrip("\"'([{\u201c\u2018")
    if not word or word.endswith("."):  # an ellipsis or "?." ends the sentence
        return False
    if word in ABBREVIATIONS or _DOTTED.fullmatch(word) or (len(word) == 1 and word.isalpha()):
        return True
    line_start = not text[text.rfind("\n", 0, start) + 1:start].strip()
    return line_start and _LIST_NUMBER.fullmatch(word) is not None


def split_sentences(text: str, offset: int = 0) -> list[Span]:
    """Sentence spans (stripped of surrounding whitespace) as char offsets into `text` (+offset)."""
    spans: list[Span] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        gap = match.group()
        closing = len(gap) - len(gap.lstrip(_CLOSERS))
        stop = match.start() - 1  # the . ! or ? (the blank-line alternative has none)
        paragraph = re.search(r"\n[ \t]*\n", gap) is not None
        if not paragraph and stop >= 0 and _false_stop(text, stop):
            continue
        _append(spans, text, start, match.start() + closing, offset)
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
