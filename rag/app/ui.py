"""The web UI: a Gradio app over the same `RAG` object the CLI uses (there is no second pipeline).

    build_app(collections) -> gr.Blocks   the page: a collection picker, Ask (chat + citations), Documents,
                                     Settings; plus the API endpoint /ask returning `Answer.to_json()`
                                     (a single RAG is served as the collection `default`); its events
                                     call the top-level handlers here and in rag/app/ui_chat.py
    launch(demo, host, port)         serve it alone (tests); `rag serve` mounts it on the API's app
                                     instead (rag/app/server.py)

Safety rules:
* every piece of document text, model output, file name and error message that goes into HTML is
  passed through `html.escape` first (`rag.app.render`); the Chatbot is told not to render Markdown,
  so what reaches the browser is exactly that HTML (and Gradio sanitises it once more);
* uploads land in `<index_dir>/uploads/` under a sanitised base name, never outside it
  (`rag.app.uploads`);
* every handler turns errors into a message on the page; unexpected ones are logged with their
  traceback on the server only;
* every handler takes the user from `gr.Request.username` on each call, never from a value the client
  sends; the collection the client names is opened for that user (rag/collections.py: another user's
  private collection is "no collection"), and uploads/deletes need write access to it;
* the global actions (switching the model, creating and deleting shared collections) are for admins
  (`admin_users`; anyone without a login): others see them disabled with the reason, and the handlers
  check again (rag/collections.py raises NotAllowed), since a client can send any event;
* all events that use the LLM share one queue slot (`concurrency_id="llm"`, limit 1), so the
  question rewrite and the answer of one user never overlap with another's.
"""
from __future__ import annotations

import functools
import inspect
import logging
from typing import Any

from rag.app.eval_html import EVAL_CSS
from rag.app.page_view import CSS as PAGE_CSS
from rag.app.page_view import PageView
from rag.app.render import CSS, citations_html, error_html, esc, timings_html, user_message
from rag.app.ui_chat import ChatHandler, api_ask, ask_endpoint, new_session, on_ask, on_clear, on_top_k  # noqa: F401 - ui.ChatHandler, ui.api_ask
from rag.app.ui_collections import admin_note, collection_outputs, upload_target, user_of
from rag.app.ui_collections import with_request as _with_request
from rag.app.ui_evaluate import build_evaluate_tab, build_feedback_row
from rag.app.uploads import (
    UPLOAD_DIRNAME,
    ingest_uploads,
    outcomes_html,
    remove_uploaded_copy,
)
from rag.collections import Collections
from rag.config import BUNDLED_MODELS, Settings
from rag.errors import ConfigError, shorten
from rag.ingest.loading import MAX_FILE_BYTES, SUPPORTED_EXTENSIONS
from rag.pipeline import RAG
from rag.types import short_source

log = logging.getLogger(__name__)

QUEUE_MAX_SIZE = 64
LLM_QUEUE = "llm"

# --------------------------------------------------------------------------- documents & models

def documents_rows(rag: RAG) -> list[list[Any]]:
    return [[short_source(d.source), d.chunks, d.chars, d.id] for d in rag.documents()]


def document_choices(rag: RAG) -> list[tuple[str, str]]:
    return [(f"{short_source(d.source)} ({d.chunks} chunks, {d.id})", d.id) for d in rag.documents()]


def model_choices(settings: Settings) -> list[str]:
    """Installed bundled models, plus the model in use if it is a path or a server URL."""
    try:
        from rag.models.bundled import describe_models

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


# --------------------------------------------------------------------------- the handlers
# Each takes the collections it serves first; build_app binds them (`_handler`). Gradio hands each the
# request (`_with_request` sets the parameter's annotation) and never a user the client chose.

def docs_outputs(collections: Collections, chosen: str | None, selected: list[str] | None, user: str | None):
    """The picker, the documents table, the delete pick, the count, and the "Search in" choices
    (the chosen documents that are still indexed stay chosen), all of the collection `chosen`."""
    import gradio as gr

    names, name, note = collection_outputs(collections, chosen, user)
    rag = collections.open(name, user)
    rows = documents_rows(rag)
    choices = document_choices(rag)
    ids = {doc_id for _, doc_id in choices}
    return (gr.update(choices=names, value=name), rows, gr.update(choices=choices, value=None),
            f"{len(rows)} document(s) in {name}{note}",
            gr.update(choices=choices, value=[d for d in selected or [] if d in ids]))


def on_upload(collections: Collections, files, chosen: str | None, selected: list[str] | None, request=None,
              progress: Any = None):
    import gradio as gr

    user = user_of(request)
    target = chosen
    try:
        target = upload_target(collections, chosen, user)
        rag = collections.open(target, user)
        outcomes = ingest_uploads(rag, files or [], collections.directory(target) / UPLOAD_DIRNAME, progress)
        report = outcomes_html(outcomes)
        if target != chosen and chosen:
            report = (f'<div class="rag-muted">You cannot add to {esc(shorten(chosen))}; the files went to your own '
                      f"collection {esc(target)}.</div>") + report
        if any(not o.ok for o in outcomes):
            gr.Warning("Some files were not indexed; see the report.")
    except Exception as exc:  # noqa: BLE001
        report = error_html(user_message(exc))
    return report, None, *docs_outputs(collections, target, selected if target == chosen else [], user)


def on_refresh(collections: Collections, chosen: str | None = None, selected: list[str] | None = None, request=None):
    import gradio as gr

    try:
        return docs_outputs(collections, chosen, selected, user_of(request))
    except Exception as exc:  # noqa: BLE001
        gr.Warning(user_message(exc))
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()


def on_delete(collections: Collections, doc_id: str | None, chosen: str | None, selected: list[str] | None,
              request=None):
    user = user_of(request)
    if not doc_id:
        return error_html("Choose a document to delete first."), *docs_outputs(collections, chosen, selected, user)
    try:
        name = collections.writable(chosen or collections.names(user)[0], user)
        info = collections.open(name, user).delete(doc_id)
    except Exception as exc:  # noqa: BLE001
        return error_html(user_message(exc)), *docs_outputs(collections, chosen, selected, user)
    remove_uploaded_copy(info.source, collections.directory(name) / UPLOAD_DIRNAME)
    msg = f'<div class="rag-report rag-ok">Deleted {esc(short_source(info.source))} ({info.chunks} chunks).</div>'
    return msg, *docs_outputs(collections, chosen, selected, user)


def on_model(collections: Collections, name: str, request=None):
    if not name or name == collections.settings.model:
        return f'<div class="rag-muted">Model in use: {esc(collections.settings.model)}</div>'
    try:
        collections.use_model(name, user_of(request))  # admins only (NotAllowed otherwise)
    except Exception as exc:  # noqa: BLE001
        return error_html(user_message(exc))
    return (f'<div class="rag-muted">Model switched to {esc(name)}; it loads with the next question '
            "(a few seconds). This applies to everyone using this server.</div>")


def on_roles(collections: Collections, request=None):
    """The global controls (model, shared collections) as this user may use them: disabled, with
    the reason, for a user who is not an admin."""
    import gradio as gr

    admin, note = admin_note(collections, user_of(request))
    model_note = f'<div class="rag-muted">Model in use: {esc(collections.settings.model)}</div>'
    return gr.update(interactive=admin), model_note + note, *[gr.update(interactive=admin)] * 3


def on_create_collection(collections: Collections, name: str | None, request=None):
    import gradio as gr

    user = user_of(request)
    name = (name or "").strip()
    try:
        collections.create_shared(name, user)
    except Exception as exc:  # noqa: BLE001 - NotAllowed for a non-admin, InputError for a bad name
        return error_html(user_message(exc)), gr.skip(), *docs_outputs(collections, None, [], user)
    return (f'<div class="rag-report rag-ok">Created the shared collection {esc(name)}; every user sees it.</div>',
            "", *docs_outputs(collections, name, [], user))


def on_remove_collection(collections: Collections, chosen: str | None, request=None):
    user = user_of(request)
    try:
        collections.remove(chosen or "", user)
    except Exception as exc:  # noqa: BLE001
        return error_html(user_message(exc)), *docs_outputs(collections, chosen, [], user)
    return (f'<div class="rag-report rag-ok">Deleted the shared collection {esc(shorten(chosen))}.</div>',
            *docs_outputs(collections, None, [], user))


def _handler(fn, *bound: Any, **defaults: Any):
    """`fn` with its first arguments `bound`, as Gradio reads a handler: `fn`'s name and docstring, the
    signature of the remaining parameters (with `defaults` replacing theirs, e.g. a gr.Progress), a
    generator if `fn` is one (Gradio streams those), and the request's annotation (`_with_request`)."""
    signature = inspect.signature(fn)
    params = [p.replace(default=defaults[p.name]) if p.name in defaults else p
              for p in list(signature.parameters.values())[len(bound):]]
    shown = signature.replace(parameters=params)

    def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        call = shown.bind(*args, **kwargs)
        call.apply_defaults()
        return call.arguments

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def handler(*args: Any, **kwargs: Any):
            yield from fn(*bound, **arguments(args, kwargs))
    else:
        @functools.wraps(fn)
        def handler(*args: Any, **kwargs: Any):
            return fn(*bound, **arguments(args, kwargs))
    handler.__signature__ = shown  # type: ignore[attr-defined]
    handler.__annotations__ = {k: v for k, v in fn.__annotations__.items()
                               if k in shown.parameters or k == "return"}
    return _with_request(handler) if "request" in shown.parameters else handler


# --------------------------------------------------------------------------- the app

def build_app(source: RAG | Collections, collection: str | None = None) -> "gr.Blocks":  # noqa: F821 - gradio is imported lazily
    """`source`: the collections to serve (or one RAG, served as the collection `default`);
    `collection`: the one chosen first where the user may see it. The page's events call the
    handlers above, bound to these collections; the one public endpoint is /ask (`ask_endpoint`)."""
    import gradio as gr

    collections = source if isinstance(source, Collections) else Collections(source.settings, default=source)
    settings = collections.settings
    page_views: dict[int, PageView] = {}  # one per collection's RAG: its OCR engine, its rendered pages

    def bound(fn, *more: Any, **defaults: Any):
        return _handler(fn, collections, *more, **defaults)

    with gr.Blocks(title="Ask your documents", analytics_enabled=False) as demo:
        session = gr.State(new_session())
        gr.Markdown("## Ask your documents\nAnswers come only from the indexed documents, with numbered citations you can check.")
        picker = gr.Dropdown(label="Collection", choices=[collection] if collection else [], value=collection,
                             elem_id="rag-collection", allow_custom_value=False)
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
                        build_feedback_row(collections, picker, session)
                    with gr.Column(scale=2):
                        search_in = gr.Dropdown(label="Search in (empty: all documents)", choices=[], value=[],
                                                multiselect=True, elem_id="rag-search-in")
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
                # its value is set at page load from the collection's own default (on_top_k)
                top_k = gr.Slider(1, max(20, settings.top_k), value=settings.top_k, step=1,
                                  label="Passages to retrieve (top-k)", elem_id="rag-topk")
                model = gr.Dropdown(model_choices(settings), value=settings.model, label="Model",
                                    elem_id="rag-model", allow_custom_value=False)
                model_status = gr.HTML(f'<div class="rag-muted">Model in use: {esc(settings.model)}</div>',
                                       js_on_load=None, elem_id="rag-model-status")
                gr.Markdown("**Shared collections** (every user reads them; admins only)")
                with gr.Row():
                    new_collection = gr.Textbox(placeholder="name of a new shared collection", show_label=False,
                                                scale=3, max_length=64, elem_id="rag-new-collection")
                    create_collection = gr.Button("Create", scale=1, elem_id="rag-create-collection")
                    remove_collection = gr.Button("Delete the chosen collection", variant="stop", scale=1,
                                                  elem_id="rag-remove-collection")
                admin_report = gr.HTML("", elem_id="rag-admin-report", js_on_load=None)
                gr.Markdown("**Timings of the last answer**")
                timings = gr.HTML(timings_html(None), elem_id="rag-timings", js_on_load=None)
            build_evaluate_tab(collections, picker, demo)

        chat_outputs = [chatbot, question, rewritten, cites, timings, session]
        for trigger in (ask_btn.click, question.submit):
            trigger(bound(on_ask, page_views), [question, session, top_k, search_in, picker], chat_outputs,
                    api_visibility="private", concurrency_id=LLM_QUEUE, concurrency_limit=1, show_progress="minimal")
        clear_btn.click(on_clear, None, [chatbot, question, rewritten, cites, session], api_visibility="private",
                        queue=False)
        chatbot.clear(on_clear, None, [chatbot, question, rewritten, cites, session], api_visibility="private",
                      queue=False)
        docs = [picker, docs_table, doc_pick, doc_count, search_in]
        upload_btn.click(bound(on_upload, progress=gr.Progress(track_tqdm=True)), [files, picker, search_in],
                         [upload_report, files, *docs], api_visibility="private", concurrency_id="write",
                         concurrency_limit=1)
        delete_btn.click(bound(on_delete), [doc_pick, picker, search_in], [delete_report, *docs],
                         api_visibility="private", concurrency_id="write", concurrency_limit=1)
        model.change(bound(on_model), [model], [model_status], api_visibility="private",
                     concurrency_id=LLM_QUEUE, concurrency_limit=1)
        create_collection.click(bound(on_create_collection), [new_collection], [admin_report, new_collection, *docs],
                                api_visibility="private", concurrency_id="write", concurrency_limit=1)
        remove_collection.click(bound(on_remove_collection), [picker], [admin_report, *docs],
                                api_visibility="private", concurrency_id="write", concurrency_limit=1)
        demo.load(bound(on_roles), None, [model, model_status, new_collection, create_collection, remove_collection],
                  api_visibility="private", queue=False)
        demo.load(bound(on_refresh), [picker, search_in], docs, api_visibility="private", queue=False)
        demo.load(bound(on_top_k), [picker], [top_k], api_visibility="private", queue=False)
        picker.input(bound(on_refresh), [picker], docs, api_visibility="private", queue=False)
        gr.api(bound(ask_endpoint), api_name="ask", concurrency_id=LLM_QUEUE, concurrency_limit=1)
    return demo


def served(demo: "gr.Blocks", auth: list[tuple[str, str]] | None) -> dict[str, Any]:  # noqa: F821
    """Queue `demo` (one LLM job at a time, others wait their turn) and return the options every way of
    serving it shares (`launch` here, `server.mount_ui` for `rag serve`): limits, login, look."""
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_MAX_SIZE)
    return dict(auth=auth, show_error=False, max_file_size=MAX_FILE_BYTES, ssr_mode=False, css=CSS + PAGE_CSS + EVAL_CSS,
                footer_links=["api"], enable_monitoring=False,
                auth_message="Log in to ask questions about the documents." if auth else None)


def launch(demo: "gr.Blocks", host: str = "127.0.0.1", port: int | None = 7860, *,  # noqa: F821
           auth: list[tuple[str, str]] | None = None, block: bool = True, quiet: bool = False):
    """Start Gradio's own server for `demo` (tests; `rag serve` mounts it on the API's app instead)."""
    return demo.launch(server_name=host, server_port=port, quiet=quiet, prevent_thread_lock=not block,
                       inbrowser=False, share=False, **served(demo, auth))
