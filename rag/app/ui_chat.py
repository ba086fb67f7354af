"""The web UI's chat: one question of a conversation through `RAG.chat` (rag/asker.py, the entry `rag
ask` and /v1 use too), streamed into the Chatbot and rendered with its citations; and /ask, the UI's
one public endpoint (`Answer.to_json()`). The handlers take the collections first; rag/app/ui.py binds
them in `build_app`."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from rag.answer.query_rewriting import Turn
from rag.app.page_view import PageView
from rag.app.render import (
    answer_html,
    citations_html,
    error_html,
    esc,
    rewrite_html,
    text_html,
    timings_html,
    user_message,
)
from rag.app.ui_collections import open_for
from rag.collections import Collections
from rag.pipeline import RAG
from rag.types import Answer, short_source

log = logging.getLogger(__name__)

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

    def __init__(self, rag: RAG, pages: PageView | None = None) -> None:
        self.rag = rag
        self.pages = pages  # cited PDF pages as pictures with the sentence marked

    def __call__(self, question: str, session: dict[str, Any] | None, top_k: float | None,
                 documents: list[str] | None = None) -> Iterator[tuple[Any, ...]]:
        """`documents`: the doc ids chosen to search in (empty or None: all)."""
        session = session or new_session()
        messages: list[dict[str, Any]] = [dict(m) for m in session.get("messages", [])]
        turns: list[dict[str, Any]] = [dict(t) for t in session.get("turns", [])]
        question = (question or "").strip()
        if not question:
            yield (list(messages), question, _SKIP, _SKIP, _SKIP, session)
            return
        _delink_previous(messages, turns)
        messages.append({"role": "user", "content": text_html(question)})
        messages.append({"role": "assistant", "content": '<span class="rag-muted">Searching the documents&hellip;</span>'})
        index = len(messages) - 1
        state = {"messages": messages, "turns": turns}
        yield (list(messages), "", "", citations_html(None), _SKIP, state)

        standalone = question
        try:
            history = [Turn(t["standalone"], t["answer"]) for t in turns]
            # the one conversation entry (rag/asker.py): the question checked, a follow-up rewritten
            reply = self.rag.chat(question, history, int(top_k) if top_k else None, documents or None)
            standalone = reply.standalone
            if history:
                head = rewrite_html(standalone) if reply.rewritten else ""
                messages[index] = {"role": "assistant", "content": head + '<span class="rag-muted">Searching the documents&hellip;</span>'}
                yield (list(messages), "", _rewritten_status(question, standalone), _SKIP, _SKIP, state)
            head = rewrite_html(standalone) if reply.rewritten else ""
            text = ""
            answer: Answer | None = None
            for item in reply:
                if isinstance(item, Answer):
                    answer = item
                    break
                text += item
                messages[index] = {"role": "assistant",
                                   "content": f'{head}<div class="rag-streaming">{esc(text)}&#9613;</div>'}
                yield (list(messages), "", _SKIP, _SKIP, _SKIP, state)
            if answer is None:
                raise RuntimeError("RAG.chat's reply ended without an Answer")
        except Exception as exc:  # noqa: BLE001 - shown on the page, logged if unexpected
            messages[index] = {"role": "assistant", "content": error_html(user_message(exc))}
            yield (list(messages), question, _SKIP, citations_html(None), _SKIP, state)
            return
        shown_standalone = standalone if standalone != question else None
        messages[index] = {"role": "assistant", "content": answer_html(answer, standalone=shown_standalone)}
        turns.append({"question": question, "standalone": standalone, "answer": answer.text,
                      "message_index": index, "abstained": answer.abstained,
                      "citations": [{"n": c.n, "source": short_source(c.source), "page": c.page,
                                     "location": c.location, "text": c.text} for c in answer.citations],
                      "plain_html": answer_html(answer, link=False, standalone=shown_standalone)})
        yield (list(messages), "", _rewritten_status(question, standalone), citations_html(answer, self.pages),
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


def api_ask(rag: RAG, question: str, top_k: int | None = None, documents: list[str] | None = None) -> dict[str, Any]:
    """The structured answer (`Answer.to_json()`) for one standalone question; with `documents` (doc
    ids or path globs), answered from those documents only."""
    answer = rag.chat(question, (), int(top_k) if top_k else None, documents or None).answer()
    data = answer.to_json()
    data["question"] = answer.question
    return data



# --------------------------------------------------------------------------- the handlers

def on_ask(collections: Collections, page_views: dict[int, PageView], question: str, session: dict[str, Any],
           top_k: float, documents: list[str] | None, chosen: str | None, request=None):
    """The chat: one question of the conversation in collection `chosen`, streamed (ChatHandler)."""
    try:
        rag, _ = open_for(collections, chosen, request)
    except Exception as exc:  # noqa: BLE001 - e.g. a collection this user may not see
        messages = [*(session or new_session()).get("messages", []),
                    {"role": "assistant", "content": error_html(user_message(exc))}]
        yield _gradio_outputs((messages, question, _SKIP, citations_html(None), _SKIP, session))
        return
    if id(rag) not in page_views:  # one per collection's RAG: its OCR engine, its rendered pages
        page_views[id(rag)] = PageView(getattr(rag, "ocr", None))
    for values in ChatHandler(rag, page_views[id(rag)])(question, session, top_k, documents):
        yield _gradio_outputs(values)


def on_clear():
    return [], "", "", citations_html(None), new_session()


def on_top_k(collections: Collections, chosen: str | None = None, request=None):
    """The slider's value at page load: the passages the user's collection retrieves by default."""
    import gradio as gr

    try:
        rag, _ = open_for(collections, chosen, request)
    except Exception:  # noqa: BLE001 - the picker's own refresh shows the reason
        return gr.skip()
    return rag.top_k


def ask_endpoint(collections: Collections, question: str, top_k: int | None = None, documents: list[str] | None = None,
                 collection: str | None = None, request=None) -> dict:
    """Answer one standalone question; returns the answer, its citations and timings. `top_k`: the
    passages to retrieve (default: the collection's own); `documents`: doc ids or path globs to answer
    from (default: all documents); `collection`: the collection to ask (default: the first one yours,
    `default`)."""
    import gradio as gr

    try:
        rag, _ = open_for(collections, collection, request)
        return api_ask(rag, question, top_k, documents)
    except Exception as exc:  # noqa: BLE001
        raise gr.Error(user_message(exc)) from None
