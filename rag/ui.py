"""The web UI: a Gradio app over the same `RAG` object the CLI uses (there is no second pipeline).

    build_app(rag) -> gr.Blocks      the page: Ask (chat + citations), Documents, Settings; plus the
                                     API endpoint /ask returning `Answer.to_json()`
    serve(settings, host, port)      open the index (seeded from seeds/ on first use) and launch

Safety rules kept here:
* every piece of document text, model output, file name and error message that goes into HTML is
  passed through `html.escape` first; the Chatbot is told not to render Markdown, so what reaches
  the browser is exactly the HTML built here (and Gradio sanitises it once more);
* uploads land in `<index_dir>/uploads/` under a sanitised base name, never outside it;
* every handler turns errors into a message on the page; unexpected ones are logged with their
  traceback on the server only;
* all events that use the LLM share one queue slot (`concurrency_id="llm"`, limit 1), so the
  question rewrite and the answer of one user never overlap with another's.
"""
from __future__ import annotations

import html
import logging
import os
import re
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.answering import REFUSAL
from rag.chunking import split_sentences
from rag.citations import content_words, parse_markers, strip_markers
from rag.config import BUNDLED_MODELS, Settings
from rag.conversation import Turn
from rag.errors import ConfigError, InputError, RagError
from rag.loading import MAX_FILE_BYTES, SUPPORTED_EXTENSIONS
from rag.pipeline import RAG
from rag.types import Answer, AnswerSentence, Citation, IngestReport, short_source

log = logging.getLogger(__name__)

UPLOAD_DIRNAME = "uploads"
QUEUE_MAX_SIZE = 64
LLM_QUEUE = "llm"
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


# --------------------------------------------------------------------------- escaping & rendering

def esc(value: object) -> str:
    """HTML-escape anything (quotes too) for text and attribute positions."""
    return html.escape(str(value), quote=True)


def _text_html(text: str) -> str:
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
    return body


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
        body = " ".join(_sentence_html(s, link) for s in answer.sentences)
    else:  # an Answer built without sentences: link the markers found in its text
        def repl(m: re.Match[str]) -> str:
            return _marker_links(parse_markers(m.group(0)), link)
        body = re.sub(r"\[\d+(?:\s*,\s*\d+)*\]", repl, esc(answer.text))
    unsupported = len(answer.unsupported)
    note = ""
    if unsupported:
        note = (f'<div class="rag-muted">&#9888; {unsupported} sentence{"s" if unsupported > 1 else ""} '
                "not supported by the documents (flagged above).</div>")
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


def _source_line(source: str, page: int | None, score: float) -> str:
    page_part = f" &middot; page {int(page)}" if page else ""
    return (f'<span class="rag-cite-src">{esc(short_source(source))}</span>'
            f'<span class="rag-cite-meta">{page_part} &middot; score {float(score):.2f}</span>')


def citation_html(citation: Citation, answer: Answer) -> str:
    cited_by = [s.text for s in answer.sentences if citation.n in s.citations]
    return (f'<div class="rag-cite" id="cite-{int(citation.n)}">'
            f'<div class="rag-cite-head"><span class="rag-cite-n">[{int(citation.n)}]</span>'
            f'{_source_line(citation.source, citation.page, citation.score)}</div>'
            f'<blockquote class="rag-passage">{highlighted_passage_html(citation.text, cited_by)}</blockquote></div>')


def citations_html(answer: Answer | None) -> str:
    if answer is None:
        return '<div class="rag-muted">Citations of the answer appear here.</div>'
    if answer.abstained:
        html_ = '<div class="rag-cites-title">No citations: the question was refused.</div>'
        if answer.passages:
            closest = "".join(
                f'<div class="rag-cite"><div class="rag-cite-head">{_source_line(p.chunk.source, p.chunk.page, p.score)}</div>'
                f'<blockquote class="rag-passage">{esc(p.text)}</blockquote></div>'
                for p in answer.passages[:3])
            html_ += f"<details><summary>Closest passages searched (not cited)</summary>{closest}</details>"
        return html_
    if not answer.citations:
        return '<div class="rag-muted">This answer has no citations.</div>'
    items = "".join(citation_html(c, answer) for c in answer.citations)
    return f'<div class="rag-cites-title">Citations</div>{items}'


def timings_html(timings: dict[str, float] | None) -> str:
    if not timings:
        return '<div class="rag-muted">Timings of the last answer appear here.</div>'
    order = ["rewrite", "retrieve", "first_token", "generate", "total"]
    labels = {"rewrite": "rewrite follow-up", "retrieve": "retrieve", "first_token": "first token",
              "generate": "generate", "total": "total"}
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


# --------------------------------------------------------------------------- uploads

_UNSAFE = re.compile(r"[^\w.\-]+")


def safe_filename(name: str) -> str:
    """A base name that is safe to create inside the upload area: directory parts dropped (either
    slash), only letters, digits, `_ . -`, no leading dot, bounded length, lower-case extension."""
    base = re.split(r"[\\/]", unicodedata.normalize("NFKC", str(name)).replace("\x00", ""))[-1]
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    stem = _UNSAFE.sub("_", stem).strip("._-")[:120] or "upload"
    ext = _UNSAFE.sub("", ext).lower()[:12]
    return f"{stem}.{ext}" if ext else stem


def upload_refusal(path: str | Path, name: str) -> str | None:
    """Why an uploaded file is refused before indexing (type or size), or None if it may go on."""
    ext = Path(safe_filename(name)).suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        return (f"file type {ext or '(none)'} is not accepted; accepted types: "
                f"{', '.join(SUPPORTED_EXTENSIONS)}")
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        return f"cannot read the uploaded file: {exc.strerror or exc}"
    if size > MAX_FILE_BYTES:
        return f"file is {size / 2**20:.1f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB"
    if size == 0:
        return "file is empty"
    return None


def store_upload(src: str | Path, name: str, upload_dir: Path) -> Path:
    """Copy an uploaded file into `upload_dir` under its sanitised name (atomically); the result is
    always directly inside `upload_dir`, whatever `name` holds."""
    upload_dir.mkdir(parents=True, exist_ok=True)
    root = upload_dir.resolve()
    dest = (root / safe_filename(name)).resolve()
    if dest.parent != root:  # cannot happen after safe_filename; kept as the last line of defence
        raise InputError(f"refused file name {name!r}")
    fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=root)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


@dataclass
class FileOutcome:
    name: str
    ok: bool
    message: str


def ingest_uploads(rag: RAG, files: Sequence[Any], upload_dir: Path,
                   progress: Callable[..., Any] | None = None) -> list[FileOutcome]:
    """Check, copy and index uploaded files one by one; every file gets an outcome line."""
    outcomes: list[FileOutcome] = []
    paths = [_upload_path(f) for f in files or [] if f is not None]
    for i, path in enumerate(paths):
        name = Path(path).name
        if progress is not None:
            progress((i, len(paths)), desc=f"Indexing {safe_filename(name)} ({i + 1}/{len(paths)})")
        refusal = upload_refusal(path, name)
        if refusal:
            outcomes.append(FileOutcome(name, False, refusal))
            continue
        existed = (upload_dir / safe_filename(name)).exists()
        dest: Path | None = None
        try:
            dest = store_upload(path, name, upload_dir)
            report = rag.add([dest], progress=True)
        except Exception as exc:  # noqa: BLE001 - one file's failure must not stop the others
            outcomes.append(FileOutcome(name, False, user_message(exc)))
            if dest is not None and not existed:
                dest.unlink(missing_ok=True)
            continue
        outcomes.append(_outcome(name, dest, report, existed, rag))
    if progress is not None and paths:
        progress((len(paths), len(paths)), desc="Done")
    return outcomes


def _upload_path(item: Any) -> str:
    if isinstance(item, (str, Path)):
        return str(item)
    path = getattr(item, "path", None) or getattr(item, "name", None)
    if path is None and isinstance(item, dict):
        path = item.get("path") or item.get("name")
    if path is None:
        raise InputError("unrecognised upload")
    return str(path)


def _outcome(name: str, dest: Path, report: IngestReport, existed: bool, rag: RAG) -> FileOutcome:
    shown = dest.name
    if report.failed:
        if not existed:
            dest.unlink(missing_ok=True)
        return FileOutcome(name, False, "; ".join(f.reason for f in report.failed))
    if report.added:
        info = report.added[0]
        return FileOutcome(name, True, f"indexed as {shown}: {info.chunks} chunks")
    if report.replaced:
        info = report.replaced[0]
        return FileOutcome(name, True, f"replaced the earlier {shown}: {info.chunks} chunks")
    # unchanged: the same bytes are already indexed (maybe under another name)
    if not existed and not any(d.source == str(dest) for d in rag.documents()):
        dest.unlink(missing_ok=True)
    return FileOutcome(name, True, "already indexed (same content); nothing to do")


def outcomes_html(outcomes: Sequence[FileOutcome]) -> str:
    if not outcomes:
        return '<div class="rag-muted">No file was given.</div>'
    items = "".join(
        f'<li class="{"rag-ok" if o.ok else "rag-bad"}">{"&#10003;" if o.ok else "&#10007; refused:"} '
        f"<b>{esc(o.name)}</b> &mdash; {esc(o.message)}</li>" for o in outcomes)
    bad = sum(not o.ok for o in outcomes)
    summary = (f"{len(outcomes) - bad} file(s) indexed" + (f", {bad} refused or failed" if bad else ""))
    return f'<div class="rag-report"><div>{esc(summary)}</div><ul>{items}</ul></div>'


# --------------------------------------------------------------------------- documents & models

def documents_rows(rag: RAG) -> list[list[Any]]:
    return [[short_source(d.source), d.chunks, d.chars, d.id] for d in rag.documents()]


def document_choices(rag: RAG) -> list[tuple[str, str]]:
    return [(f"{short_source(d.source)} ({d.chunks} chunks, {d.id})", d.id) for d in rag.documents()]


def model_choices(settings: Settings) -> list[str]:
    """Installed bundled models, plus the model in use if it is a path or a server URL."""
    try:
        from rag.llm import describe_models

        names = [m.name for m in describe_models(settings.cache_dir) if m.installed]
    except Exception:  # noqa: BLE001 - the dropdown degrades to the configured model
        log.warning("cannot list the bundled models", exc_info=True)
        names = []
    if settings.model not in names:
        names.append(settings.model)
    return [n for n in BUNDLED_MODELS if n in names] + [n for n in names if n not in BUNDLED_MODELS]


def parse_auth(value: str | None) -> list[tuple[str, str]] | None:
    """`RAG_AUTH=user:password` (several pairs separated by commas) -> Gradio's `auth`."""
    if value is None or not value.strip():
        return None
    pairs = []
    for item in value.split(","):
        user, sep, password = item.strip().partition(":")
        if not sep or not user.strip() or not password:
            raise ConfigError("RAG_AUTH must look like user:password (several separated by commas)")
        pairs.append((user.strip(), password))
    return pairs


# --------------------------------------------------------------------------- chat

def new_session() -> dict[str, Any]:
    return {"messages": [], "turns": []}


def _delink_previous(messages: list[dict[str, Any]], turns: list[dict[str, Any]]) -> None:
    """Older answers keep their markers but lose the links: `#cite-n` points at the newest answer."""
    for turn in turns:
        index = turn.get("message_index")
        if index is not None and index < len(messages) and turn.get("plain_html"):
            messages[index]["content"] = turn["plain_html"]


class ChatHandler:
    """One question of a conversation: rewrite the follow-up, retrieve, stream, render."""

    def __init__(self, rag: RAG) -> None:
        self.rag = rag

    def __call__(self, question: str, session: dict[str, Any] | None, top_k: float | None
                 ) -> Iterator[tuple[Any, ...]]:
        session = session or new_session()
        messages: list[dict[str, Any]] = [dict(m) for m in session.get("messages", [])]
        turns: list[dict[str, Any]] = [dict(t) for t in session.get("turns", [])]
        question = (question or "").strip()
        if not question:
            yield (list(messages), question, _SKIP, _SKIP, _SKIP, session)
            return
        _delink_previous(messages, turns)
        messages.append({"role": "user", "content": _text_html(question)})
        messages.append({"role": "assistant", "content": '<span class="rag-muted">Searching the documents&hellip;</span>'})
        index = len(messages) - 1
        state = {"messages": messages, "turns": turns}
        yield (list(messages), "", "", citations_html(None), _SKIP, state)

        timings: dict[str, float] = {}
        standalone = question
        try:
            if turns:
                start = time.perf_counter()
                history = [Turn(t["standalone"], t["answer"]) for t in turns]
                standalone = self.rag.condense(question, history)
                timings["rewrite"] = time.perf_counter() - start
                head = rewrite_html(standalone) if standalone != question else ""
                messages[index] = {"role": "assistant", "content": head + '<span class="rag-muted">Searching the documents&hellip;</span>'}
                yield (list(messages), "", _rewritten_status(question, standalone), _SKIP, _SKIP, state)
            head = rewrite_html(standalone) if standalone != question else ""
            text = ""
            answer: Answer | None = None
            for item in self.rag.stream(standalone, int(top_k) if top_k else None):
                if isinstance(item, Answer):
                    answer = item
                    break
                text += item
                messages[index] = {"role": "assistant",
                                   "content": f'{head}<div class="rag-streaming">{esc(text)}&#9613;</div>'}
                yield (list(messages), "", _SKIP, _SKIP, _SKIP, state)
            if answer is None:
                raise RuntimeError("RAG.stream ended without an Answer")
        except Exception as exc:  # noqa: BLE001 - shown on the page, logged if unexpected
            messages[index] = {"role": "assistant", "content": error_html(user_message(exc))}
            yield (list(messages), question, _SKIP, citations_html(None), _SKIP, state)
            return
        answer.timings.update({k: v for k, v in timings.items() if k not in answer.timings})
        if "rewrite" in timings:
            answer.timings["total"] = answer.timings.get("total", 0.0) + timings["rewrite"]
        shown_standalone = standalone if standalone != question else None
        messages[index] = {"role": "assistant", "content": answer_html(answer, standalone=shown_standalone)}
        turns.append({"question": question, "standalone": standalone, "answer": answer.text,
                      "message_index": index,
                      "plain_html": answer_html(answer, link=False, standalone=shown_standalone)})
        yield (list(messages), "", _rewritten_status(question, standalone), citations_html(answer),
               timings_html(answer.timings), state)


def _rewritten_status(question: str, standalone: str) -> str:
    if standalone == question:
        return ""
    return (f'<div class="rag-rewrite" id="rag-rewritten">Follow-up rewritten as: '
            f'&ldquo;{esc(standalone)}&rdquo;</div>')


class _Skip:
    """Placeholder for "leave this output as it is" (gr.skip() at run time)."""


_SKIP: Any = _Skip()


def _gradio_outputs(values: tuple[Any, ...]) -> tuple[Any, ...]:
    import gradio as gr

    return tuple(gr.skip() if v is _SKIP else v for v in values)


def api_ask(rag: RAG, question: str, top_k: int | None = None) -> dict[str, Any]:
    """The structured answer (`Answer.to_json()`) for one standalone question."""
    answer = rag.ask(question, int(top_k) if top_k else None)
    data = answer.to_json()
    data["question"] = answer.question
    return data


# --------------------------------------------------------------------------- the app

def build_app(rag: RAG) -> "gr.Blocks":  # noqa: F821 - gradio is imported lazily
    import gradio as gr

    settings = rag.settings
    upload_dir = Path(settings.index_dir) / UPLOAD_DIRNAME
    chat = ChatHandler(rag)

    def on_ask(question: str, session: dict[str, Any], top_k: float):
        for values in chat(question, session, top_k):
            yield _gradio_outputs(values)

    def on_clear():
        return [], "", "", citations_html(None), new_session()

    def on_upload(files, progress=gr.Progress(track_tqdm=True)):
        try:
            outcomes = ingest_uploads(rag, files or [], upload_dir, progress)
            report = outcomes_html(outcomes)
            if any(not o.ok for o in outcomes):
                gr.Warning("Some files were not indexed; see the report.")
        except Exception as exc:  # noqa: BLE001
            report = error_html(user_message(exc))
        return report, None, *_docs_outputs()

    def _docs_outputs():
        rows = documents_rows(rag)
        choices = document_choices(rag)
        return rows, gr.update(choices=choices, value=None), f"{len(rows)} document(s) indexed"

    def on_refresh():
        try:
            return _docs_outputs()
        except Exception as exc:  # noqa: BLE001
            gr.Warning(user_message(exc))
            return gr.skip(), gr.skip(), gr.skip()

    def on_delete(doc_id: str | None):
        if not doc_id:
            return error_html("Choose a document to delete first."), *_docs_outputs()
        try:
            info = rag.delete(doc_id)
        except Exception as exc:  # noqa: BLE001
            return error_html(user_message(exc)), *_docs_outputs()
        _remove_uploaded_copy(info.source, upload_dir)
        msg = f'<div class="rag-report rag-ok">Deleted {esc(short_source(info.source))} ({info.chunks} chunks).</div>'
        return msg, *_docs_outputs()

    def on_model(name: str):
        if not name or name == rag.settings.model:
            return f'<div class="rag-muted">Model in use: {esc(rag.settings.model)}</div>'
        try:
            rag.use_model(name)
        except Exception as exc:  # noqa: BLE001
            return error_html(user_message(exc))
        return (f'<div class="rag-muted">Model switched to {esc(name)}; it loads with the next question '
                "(a few seconds). This applies to everyone using this server.</div>")

    def ask_endpoint(question: str, top_k: int = settings.top_k) -> dict:
        """Answer one standalone question; returns the answer, its citations and timings."""
        try:
            return api_ask(rag, question, top_k)
        except Exception as exc:  # noqa: BLE001
            raise gr.Error(user_message(exc)) from None

    with gr.Blocks(title="Ask your documents", analytics_enabled=False) as demo:
        session = gr.State(new_session())
        gr.Markdown("## Ask your documents\nAnswers come only from the indexed documents, with numbered citations you can check.")
        with gr.Tabs():
            with gr.Tab("Ask", id="ask"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        chatbot = gr.Chatbot(label="Conversation", show_label=False, elem_id="rag-chat",
                                             height=460, render_markdown=False, sanitize_html=True,
                                             autoscroll=True, feedback_options=None,
                                             group_consecutive_messages=False, buttons=[])
                        rewritten = gr.HTML("", elem_id="rag-rewritten-box")
                        with gr.Row():
                            question = gr.Textbox(placeholder="Ask a question about your documents", show_label=False,
                                                  scale=5, lines=1, max_lines=4, elem_id="rag-question",
                                                  max_length=settings.max_question_chars, submit_btn=False)
                            ask_btn = gr.Button("Ask", variant="primary", scale=1, elem_id="rag-ask")
                        clear_btn = gr.Button("New conversation", size="sm", elem_id="rag-clear")
                    with gr.Column(scale=2):
                        cites = gr.HTML(citations_html(None), elem_id="rag-citations", js_on_load=None)
            with gr.Tab("Documents", id="documents"):
                files = gr.File(label=f"Add documents ({', '.join(SUPPORTED_EXTENSIONS)}; up to "
                                      f"{MAX_FILE_BYTES // 2**20} MB each)", file_count="multiple",
                                file_types=list(SUPPORTED_EXTENSIONS), type="filepath", elem_id="rag-upload")
                upload_btn = gr.Button("Index these files", variant="primary", elem_id="rag-upload-btn")
                upload_report = gr.HTML("", elem_id="rag-upload-report", js_on_load=None)
                doc_count = gr.Markdown("", elem_id="rag-doc-count")
                docs_table = gr.Dataframe(headers=["File", "Chunks", "Characters", "Id"],
                                          datatype=["str", "number", "number", "str"],
                                          interactive=False, elem_id="rag-docs", wrap=True)
                with gr.Row():
                    doc_pick = gr.Dropdown(label="Document to delete", choices=[], elem_id="rag-doc-pick", scale=4)
                    delete_btn = gr.Button("Delete", variant="stop", scale=1, elem_id="rag-delete")
                delete_report = gr.HTML("", elem_id="rag-delete-report", js_on_load=None)
            with gr.Tab("Settings", id="settings"):
                top_k = gr.Slider(1, 20, value=settings.top_k, step=1, label="Passages to retrieve (top-k)",
                                  elem_id="rag-topk")
                model = gr.Dropdown(model_choices(settings), value=settings.model, label="Model",
                                    elem_id="rag-model", allow_custom_value=False)
                model_status = gr.HTML(f'<div class="rag-muted">Model in use: {esc(settings.model)}</div>',
                                       js_on_load=None)
                gr.Markdown("**Timings of the last answer**")
                timings = gr.HTML(timings_html(None), elem_id="rag-timings", js_on_load=None)

        chat_outputs = [chatbot, question, rewritten, cites, timings, session]
        for trigger in (ask_btn.click, question.submit):
            trigger(on_ask, [question, session, top_k], chat_outputs, api_visibility="private",
                    concurrency_id=LLM_QUEUE, concurrency_limit=1, show_progress="minimal")
        clear_btn.click(on_clear, None, [chatbot, question, rewritten, cites, session], api_visibility="private",
                        queue=False)
        chatbot.clear(on_clear, None, [chatbot, question, rewritten, cites, session], api_visibility="private",
                      queue=False)
        upload_btn.click(on_upload, [files], [upload_report, files, docs_table, doc_pick, doc_count],
                         api_visibility="private", concurrency_id="write", concurrency_limit=1)
        delete_btn.click(on_delete, [doc_pick], [delete_report, docs_table, doc_pick, doc_count],
                         api_visibility="private", concurrency_id="write", concurrency_limit=1)
        model.change(on_model, [model], [model_status], api_visibility="private",
                     concurrency_id=LLM_QUEUE, concurrency_limit=1)
        demo.load(on_refresh, None, [docs_table, doc_pick, doc_count], api_visibility="private", queue=False)
        gr.api(ask_endpoint, api_name="ask", concurrency_id=LLM_QUEUE, concurrency_limit=1)
    return demo


def _remove_uploaded_copy(source: str, upload_dir: Path) -> None:
    """After deleting a document, delete its file too when it lives in the upload area."""
    try:
        path = Path(source).resolve()
        if path.parent == upload_dir.resolve() and path.is_file():
            path.unlink()
    except OSError:
        log.warning("cannot remove %s", source, exc_info=True)


def launch(demo: "gr.Blocks", host: str = "127.0.0.1", port: int | None = 7860, *,  # noqa: F821
           auth: list[tuple[str, str]] | None = None, block: bool = True, quiet: bool = False):
    """Queue (one LLM job at a time, others wait their turn) and start the server."""
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_MAX_SIZE)
    return demo.launch(
        server_name=host, server_port=port, auth=auth, show_error=False, quiet=quiet,
        prevent_thread_lock=not block, max_file_size=MAX_FILE_BYTES, ssr_mode=False,
        css=CSS, footer_links=["api"], inbrowser=False, share=False, enable_monitoring=False,
        auth_message="Log in to ask questions about the documents." if auth else None,
    )


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Open the index (the default one is built from seeds/ on first use) and serve the UI."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    auth = parse_auth(os.environ.get("RAG_AUTH"))
    rag = RAG.open(settings=settings)
    demo = build_app(rag)
    if host not in ("127.0.0.1", "localhost", "::1") and not auth:
        log.warning("serving on %s without a login; set RAG_AUTH=user:password to require one", host)
    log.info("serving on http://%s:%d (model %s, index %s)", host, port, settings.model, settings.index_dir)
    launch(demo, host, port, auth=auth, block=True)
