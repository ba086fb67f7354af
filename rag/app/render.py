"""HTML for the web UI: answers with their marked sentences, citations with the cited sentences
highlighted, timings and errors. Every piece of document text, model output, file name and error
message is passed through `html.escape` here before it reaches the page."""
from __future__ import annotations

import html
import logging
import re
from collections.abc import Sequence

from rag.answer.answerer import REFUSAL
from rag.answer.citations import parse_markers, strip_markers
from rag.errors import RagError
from rag.text import content_words, split_sentences
from rag.types import Answer, AnswerSentence, Citation, short_source

log = logging.getLogger(__name__)

INTERNAL_ERROR = "Something went wrong on the server; the details are in the server log."

CSS = """
.rag-answer { line-height: 1.55; }
.rag-cite-link { text-decoration: none; font-weight: 600; font-size: 0.85em; vertical-align: super; margin-left: 1px; }
.rag-unsupported { background: rgba(245, 158, 11, 0.18); border-bottom: 2px dotted #d97706; }
.rag-flag { font-size: 0.75em; font-weight: 600; color: #b45309; margin-left: 4px; white-space: nowrap; }
.rag-refusal { border-left: 4px solid #dc2626; background: rgba(220, 38, 38, 0.08); padding: 8px 12px; border-radius: 4px; }
.rag-refusal-title { font-weight: 700; color: #dc2626; }
.rag-refusal-reason { font-size: 0.9em; opacity: 0.85; margin-top: 4px; }
.rag-error { border-left: 4px solid #dc2626; padding: 6px 10px; color: #b91c1c; background: rgba(220, 38, 38, 0.06); }
.rag-rewrite { font-size: 0.85em; opacity: 0.8; font-style: italic; margin-bottom: 6px; }
.rag-streaming { white-space: pre-wrap; }
.rag-cites-title { font-weight: 700; margin: 4px 0 8px 0; }
.rag-cite { border: 1px solid var(--border-color-primary, #ddd); border-radius: 6px; padding: 8px 10px; margin-bottom: 10px; scroll-margin-top: 12px; }
.rag-cite:target { outline: 3px solid #2563eb; }
.rag-cite-head { font-size: 0.9em; margin-bottom: 6px; }
.rag-cite-n { font-weight: 700; margin-right: 6px; }
.rag-cite-src { font-family: var(--font-mono, monospace); }
.rag-cite-meta { opacity: 0.7; }
.rag-passage { white-space: pre-wrap; margin: 0; font-size: 0.92em; line-height: 1.5; }
.rag-hl { background: #fde047; color: #111; padding: 0 1px; border-radius: 2px; }
.rag-muted { opacity: 0.7; font-size: 0.9em; }
.rag-report ul { margin: 4px 0 4px 18px; }
.rag-report .rag-ok { color: #15803d; }
.rag-report .rag-bad { color: #b91c1c; }
.rag-timings { border-collapse: collapse; }
.rag-timings td, .rag-timings th { padding: 2px 14px 2px 0; text-align: left; border: none; border-bottom: 1px solid var(--border-color-primary, #ddd); }
"""

def esc(value: object) -> str:
    """HTML-escape anything (quotes too) for text and attribute positions."""
    return html.escape(str(value), quote=True)


def text_html(text: str) -> str:
    """Escaped text with line breaks kept (the Chatbot gets HTML, not Markdown)."""
    return esc(text).replace("\n", "<br>")


def _marker_links(numbers: Sequence[int], link: bool) -> str:
    if not numbers:
        return ""
    if link:
        return "".join(f'<a class="rag-cite-link" href="#cite-{n}">[{n}]</a>' for n in numbers)
    return "".join(f'<span class="rag-cite-link">[{n}]</span>' for n in numbers)


def _sentence_html(sentence: AnswerSentence, link: bool) -> str:
    text = sentence.text
    marks = _marker_links(sentence.citations, link)
    if text and text[-1] in ".!?" and marks:
        body = esc(text[:-1]) + marks + esc(text[-1])
    else:
        body = esc(text) + marks
    if not sentence.supported:
        return (f'<span class="rag-unsupported" title="No passage supports this sentence">{body}'
                f'<span class="rag-flag">&#9888; unsupported</span></span>')
    return f'<span class="rag-sentence" title="{esc(check_title(sentence))}">{body}</span>'


def check_title(sentence: AnswerSentence) -> str:
    """What a sentence's hover says: the passages that back it and its claim-check score."""
    refs = ", ".join(f"[{n}]" for n in sentence.citations)
    backed = f"Backed by passage{'s' if len(sentence.citations) > 1 else ''} {refs}"
    claim = ("claim check: not run" if sentence.claim is None
             else f"claim check: {sentence.claim:.2f} that the passage states it as the answer")
    return f"{backed}; {claim}"


def refusal_html(answer: Answer) -> str:
    reason = answer.refusal_reason or "the documents do not contain the answer"
    return ('<div class="rag-refusal" role="status"><span class="rag-refusal-title">&#128683; Refused: '
            f'{esc(answer.text or REFUSAL)}</span>'
            f'<div class="rag-refusal-reason">Why: {esc(reason)}</div></div>')


def answer_html(answer: Answer, *, link: bool = True, standalone: str | None = None) -> str:
    """The answer as chat HTML: `[n]` markers link to `#cite-n`, unsupported sentences flagged,
    a refusal styled as one. `link=False` renders the markers as plain text (for older turns)."""
    head = rewrite_html(standalone) if standalone else ""
    if answer.abstained:
        return head + refusal_html(answer)
    if answer.sentences:
        body = " ".join(_sentence_html(s, link) for s in answer.shown)
    else:  # an Answer built without sentences: link the markers found in its text
        def repl(m: re.Match[str]) -> str:
            return _marker_links(parse_markers(m.group(0)), link)
        body = re.sub(r"\[\d+(?:\s*,\s*\d+)*\]", repl, esc(answer.text))
    unsupported = sum(1 for s in answer.shown if not s.supported)  # only in an Answer built by hand
    left_out = len(answer.sentences) - len(answer.shown)
    note = ""
    if unsupported:
        note = (f'<div class="rag-muted">&#9888; {unsupported} sentence{"s" if unsupported > 1 else ""} '
                "not supported by the documents (flagged above).</div>")
    if left_out:
        note += (f'<div class="rag-muted">{left_out} sentence{"s" if left_out > 1 else ""} of the model\'s answer '
                 "left out: not backed by the documents.</div>")
    return f'{head}<div class="rag-answer">{body}</div>{note}'


def rewrite_html(standalone: str) -> str:
    return f'<div class="rag-rewrite">Searched for: &ldquo;{esc(standalone)}&rdquo;</div>'


def highlight_spans(passage_text: str, sentences: Sequence[str]) -> list[tuple[int, int]]:
    """Char spans of the passage sentences that best match each answer sentence (most shared
    content words; ties go to the earlier sentence; at least one shared word)."""
    spans = split_sentences(passage_text)
    words = [content_words(passage_text[s.start:s.end]) for s in spans]
    chosen: set[int] = set()
    for sentence in sentences:
        target = content_words(strip_markers(sentence))
        best, best_shared = None, 0
        for i, w in enumerate(words):
            shared = len(target & w)
            if shared > best_shared:
                best, best_shared = i, shared
        if best is not None:
            chosen.add(best)
    return [(spans[i].start, spans[i].end) for i in sorted(chosen)]


def highlighted_passage_html(passage_text: str, sentences: Sequence[str]) -> str:
    out, pos = [], 0
    for start, end in highlight_spans(passage_text, sentences):
        out.append(esc(passage_text[pos:start]))
        out.append(f'<mark class="rag-hl">{esc(passage_text[start:end])}</mark>')
        pos = end
    out.append(esc(passage_text[pos:]))
    return "".join(out)


def _source_line(source: str, page: int | None, score: float, ocr: bool = False, location: str | None = None) -> str:
    page_part = (f" &middot; page {int(page)}" if page else "") + (" (text from OCR)" if ocr else "")
    page_part += f" &middot; {esc(location)}" if location else ""  # "slide 3", "sheet Sales, rows 2-41", ...
    return (f'<span class="rag-cite-src">{esc(short_source(source))}</span>'
            f'<span class="rag-cite-meta">{page_part} &middot; score {float(score):.2f}</span>')


def citation_html(citation: Citation, answer: Answer, pages=None) -> str:
    """One citation: its passage with the cited sentences marked, and for a PDF, when `pages` (a
    rag.app.page_view.PageView) is given, the page itself with those sentences' boxes marked."""
    cited_by = [s.text for s in answer.sentences if citation.n in s.citations]
    page = ""
    if pages is not None:
        spans = highlight_spans(citation.text, cited_by)
        page = pages.html(citation, [citation.text[a:b] for a, b in spans] or [citation.text])
    return (f'<div class="rag-cite" id="cite-{int(citation.n)}">'
            f'<div class="rag-cite-head"><span class="rag-cite-n">[{int(citation.n)}]</span>'
            f'{_source_line(citation.source, citation.page, citation.score, citation.ocr, citation.location)}</div>'
            f'<blockquote class="rag-passage">{highlighted_passage_html(citation.text, cited_by)}</blockquote>'
            f'{page}</div>')


def citations_html(answer: Answer | None, pages=None) -> str:
    if answer is None:
        return '<div class="rag-muted">Citations of the answer appear here.</div>'
    if answer.abstained:
        html_ = '<div class="rag-cites-title">No citations: the question was refused.</div>'
        if answer.passages:
            closest = "".join(
                f'<div class="rag-cite"><div class="rag-cite-head">{_source_line(p.chunk.source, p.chunk.page, p.score, p.chunk.ocr, p.chunk.location)}</div>'
                f'<blockquote class="rag-passage">{esc(p.text)}</blockquote></div>'
                for p in answer.passages[:3])
            html_ += f"<details><summary>Closest passages searched (not cited)</summary>{closest}</details>"
        return html_
    if not answer.citations:
        return '<div class="rag-muted">This answer has no citations.</div>'
    items = "".join(citation_html(c, answer, pages) for c in answer.citations)
    return f'<div class="rag-cites-title">Citations</div>{items}'


def timings_html(timings: dict[str, float] | None) -> str:
    if not timings:
        return '<div class="rag-muted">Timings of the last answer appear here.</div>'
    order = ["rewrite", "retrieve", "first_token", "first_verified", "generate", "claim_check", "total"]
    labels = {"rewrite": "rewrite follow-up", "retrieve": "retrieve", "first_token": "first token",
              "first_verified": "first verified sentence", "generate": "generate", "claim_check": "claim check",
              "total": "total"}
    keys = [k for k in order if k in timings] + sorted(k for k in timings if k not in order)
    rows = "".join(f"<tr><td>{esc(labels.get(k, k))}</td><td>{float(timings[k]):.2f} s</td></tr>" for k in keys)
    return f'<table class="rag-timings"><tr><th>stage</th><th>time</th></tr>{rows}</table>'


def error_html(message: str) -> str:
    return f'<div class="rag-error" role="alert">&#9888; {esc(message)}</div>'


def user_message(exc: BaseException) -> str:
    """What a person sees for an exception: our own errors verbatim, anything else generic."""
    if isinstance(exc, RagError):
        return str(exc)
    log.error("unexpected error in the web UI", exc_info=exc)
    return INTERNAL_ERROR
