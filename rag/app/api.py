"""An OpenAI-compatible HTTP API over the same `RAG` (no second pipeline), for chat front ends.

    GET  /v1/models              the caller's collections, default first (`model` names a collection)
    POST /v1/chat/completions    the last user message is the question, earlier user/assistant turns
                                 the history, both given to RAG.chat (the entry `rag ask` and the UI
                                 use too); `stream: true` for SSE; extra field `top_k` (passages to
                                 retrieve, default the setting; outside its bounds: 400)
  for admins (admin_users; anyone without a login), 403 for others:
    PUT    /v1/model             {"model": NAME}: switch the model everyone uses
    POST   /v1/collections       {"name": NAME}: create a shared collection
    DELETE /v1/collections/NAME  delete a shared collection

An answer is an ordinary chat completion whose content ends with a plain-text source list, so a client
that ignores extra fields still shows where it came from; the extra fields `citations` (Citation.to_json,
each with its `check`: supported, claim score), `abstained`, `refusal_reason` and `question` (the
standalone question searched) ride on the completion object (on the last chunk when streaming). A
refusal is the reply "Not in the documents." with no sources. A stream carries only checked sentences
(Answerer.stream): a refused answer streams nothing before the refusal.
Every reply (and the last chunk of a stream) also carries OpenAI's `usage` (rag/app/usage.py).
Errors are OpenAI's shape, {"error": {"message", "type", "code"}}: 400 bad input (a malformed body, JSON
nested too deep, or a RagError's message), 401 a missing or wrong key (rag/app/api_auth.py), 404 an
unknown collection (a name echoed in an error is cut to NAME_CHARS), 413 a body over its limit (counted
as it arrives, on every route of the app, the UI's mounted beside it too: `BodyLimit`), 503 when
`max_generations` answers are under way and another waited `queue_timeout` seconds (with Retry-After).

`rag serve` serves this app with the Gradio UI mounted on it at / (rag/app/server.py); `rag serve --api`
the API alone.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.concurrency import run_in_threadpool

from rag.answer.answerer import REFUSAL
from rag.answer.query_rewriting import Turn
from rag.app.api_auth import ApiAuth, Unauthorized
from rag.app.api_admin import add_admin_routes
from rag.app.api_errors import ApiError, error_body, parse_body, validation_message
from rag.app.limits import UPLOAD_PATHS, BodyLimit, Busy, GenerationSlots, Limits
from rag.app.render import INTERNAL_ERROR, highlight_spans
from rag.app.usage import usage
from rag.errors import InputError, RagError, shorten, shown
from rag.types import Answer, short_source

if TYPE_CHECKING:  # pragma: no cover
    from rag.config import Settings
    from rag.pipeline import RAG

log = logging.getLogger(__name__)

SOURCES_HEADING = "\n\nSources:\n"
QUOTE_CHARS = 300  # the quoted sentence(s) of a cited passage in the plain-text source list
OWNER = "rag-local"


class CollectionProvider(Protocol):
    """What the API (and the UI) need from "collections"; rag/collections.Collections implements it."""

    def names(self, user: str | None) -> list[str]: ...

    def open(self, name: str, user: str | None) -> "RAG": ...


class SingleCollection:
    """One RAG served under one name, to everyone (the server has no collections of its own yet)."""

    def __init__(self, rag: "RAG", name: str = "default") -> None:
        self.rag = rag
        self.name = name

    @property
    def settings(self) -> "Settings":
        return self.rag.settings

    def names(self, user: str | None) -> list[str]:
        return [self.name]

    def open(self, name: str, user: str | None) -> "RAG":
        if name != self.name:
            raise InputError(f"no collection {shown(name)}; yours: {self.name}")
        return self.rag


# --------------------------------------------------------------------------- the request

class TextPart(BaseModel):
    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls, ...: accepted and ignored
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # temperature, max_tokens, ...: accepted and ignored
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    top_k: Any = None  # ours, not OpenAI's: checked by RAG.chat, whose message names the bounds


def _text(message: Message, index: int) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    for part in message.content:
        if part.type != "text":
            raise ApiError(400, f"messages.{index}.content: only text parts are supported, not {part.type!r}",
                           "unsupported_content")
    return "\n".join(part.text or "" for part in message.content)


def _drop_sources(text: str) -> str:
    """An earlier answer of ours, as the client sends it back: its source list is not the answer."""
    return text.split(SOURCES_HEADING, 1)[0]


def conversation(messages: list[Message]) -> tuple[str, list[Turn]]:
    """(the question: the last user message, the history: the user/assistant turns before it).
    System messages are ignored: the answering prompt is fixed (prompts/). Their length is checked
    by RAG.chat, with the question."""
    texts = [(m.role, _text(m, i)) for i, m in enumerate(messages)]
    last = max((i for i, (role, _) in enumerate(texts) if role == "user"), default=None)
    if last is None:
        raise ApiError(400, "messages: no message has the role 'user'; the last user message is the question",
                       "no_user_message")
    history: list[Turn] = []
    for role, text in texts[:last]:
        if role == "user":
            history.append(Turn(text.strip(), ""))
        elif role == "assistant" and history and not history[-1].answer:
            history[-1] = Turn(history[-1].question, _drop_sources(text).strip())
    return texts[last][1], [t for t in history if t.question]


# --------------------------------------------------------------------------- the answer

def sources_text(answer: Answer) -> str:
    """The plain-text source list appended to an answer: [n] file p. 3: "the cited sentence(s)"."""
    if answer.abstained or not answer.citations:
        return ""
    lines = []
    for c in answer.citations:
        cited_by = [s.text for s in answer.sentences if c.n in s.citations]
        spans = highlight_spans(c.text, cited_by) or [(0, len(c.text))]
        quote = " ".join(" ".join(c.text[a:b].split()) for a, b in spans)
        if len(quote) > QUOTE_CHARS:
            quote = quote[:QUOTE_CHARS].rsplit(" ", 1)[0] + " ..."
        page = f" p. {c.page}" if c.page else ""
        lines.append(f'[{c.n}] {short_source(c.source)}{page}: "{quote}"')
    return SOURCES_HEADING + "\n".join(lines)


def extras(answer: Answer) -> dict[str, Any]:
    return {"citations": [c.to_json() for c in answer.citations], "abstained": answer.abstained,
            "refusal_reason": answer.refusal_reason, "question": answer.question}


def completion(model: str, answer: Answer, tokens: dict[str, int] | None = None) -> dict[str, Any]:
    content = REFUSAL if answer.abstained else answer.text + sources_text(answer)
    return {"id": _new_id(), "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            **({"usage": tokens} if tokens is not None else {}), **extras(answer)}


def _new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def final_delta(answer: Answer) -> str:
    """The content of the last chunk: the source list after an answer (whose verified sentences
    were streamed), or the refusal (nothing is streamed before a refusal: Answerer.stream yields only
    sentences that passed every check)."""
    return REFUSAL if answer.abstained else sources_text(answer)


# --------------------------------------------------------------------------- the app

def build_api(provider: CollectionProvider, auth: ApiAuth | None = None, limits: Limits | None = None) -> FastAPI:
    """The FastAPI app serving /v1 over `provider`'s collections; `rag serve` mounts the UI on it.
    `limits`: default, from the provider's settings."""
    auth = auth or ApiAuth()
    if limits is None:
        from rag.config import Settings

        limits = Limits.of(getattr(provider, "settings", None) or Settings())
    slots = GenerationSlots(limits.generations, limits.queue_timeout)
    app = FastAPI(title="rag-local OpenAI-compatible API", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.type, exc.code), status_code=exc.status,
                            headers=exc.headers or None)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(validation_message(exc.errors()), code="invalid_body"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(f"{request.method} {shorten(request.url.path)}: {exc.detail}"),
                            status_code=exc.status_code)

    app.add_middleware(BodyLimit, limit=limits.body_bytes, larger={p: limits.upload_bytes for p in UPLOAD_PATHS})

    def user_of(request: Request) -> str | None:
        try:
            return auth.user(request.headers.get("authorization"))
        except Unauthorized as exc:
            raise ApiError(401, str(exc), "invalid_api_key") from None

    def open_model(name: str, user: str | None) -> "RAG":
        try:
            return provider.open(name, user)
        except InputError as exc:
            raise ApiError(404, str(exc), "model_not_found") from None

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        names = provider.names(user_of(request))
        return {"object": "list", "data": [_model(n) for n in names]}

    @app.get("/v1/models/{name}")
    async def get_model(name: str, request: Request) -> dict[str, Any]:
        user = user_of(request)
        if name not in provider.names(user):
            open_model(name, user)  # raises the provider's own "no collection" message
        return _model(name)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> dict[str, Any] | StreamingResponse:
        user = user_of(request)  # before the body is read: a caller without a key learns nothing more
        body = parse_body(await request.body(), request.headers.get("content-type", ""), ChatRequest)
        rag = open_model(body.model, user)
        question, history = conversation(body.messages)
        try:
            await slots.acquire()  # until the answer (or its stream) is done
        except Busy as exc:
            raise ApiError(503, str(exc), "server_busy", "server_error", {"Retry-After": str(exc.retry_after)}) from None
        streaming = False
        try:
            reply = await run_in_threadpool(rag.chat, question, history, body.top_k)
            if not body.stream:
                answer = await run_in_threadpool(reply.answer)
                return completion(body.model, answer, await run_in_threadpool(usage, rag, answer))
            items = iter(reply)
            # The first item before the response starts: errors of the search become a 400, not a broken stream.
            first = await run_in_threadpool(next, items)
            events = slots.held(_events(body.model, items, first, lambda answer: usage(rag, answer)))
            streaming = True
        except RagError as exc:
            raise ApiError(400, str(exc), type(exc).__name__) from None
        finally:
            if not streaming:
                slots.release()
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    add_admin_routes(app, provider, user_of, _model)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error in the API", exc_info=exc)
        return JSONResponse(error_body(INTERNAL_ERROR, "server_error"), status_code=500)

    return app


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": OWNER}


_END = object()


async def _events(model: str, items: Iterator[str | Answer], first: str | Answer,
                  tokens: Callable[[Answer], dict[str, int]]) -> AsyncIterator[str]:
    """OpenAI's SSE framing: a role chunk, a chunk per text delta, a last chunk with the source list,
    finish_reason, `usage` (`tokens`) and the extra fields, then `data: [DONE]`. The generator holds the model's lock, so it
    is closed however the stream ends (a client that goes away stops the generation)."""
    cid, created = _new_id(), int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        return _sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

    try:
        yield chunk({"role": "assistant", "content": ""})
        item: object = first
        while not isinstance(item, Answer):
            if item is _END:
                raise RuntimeError("RAG.chat's reply ended without an Answer")
            yield chunk({"content": item})
            item = await run_in_threadpool(next, items, _END)
        spent = await run_in_threadpool(tokens, item)
        yield chunk({"content": final_delta(item)}, "stop", usage=spent, **extras(item), answer=item.text)
        yield _sse("[DONE]")
    except Exception as exc:  # noqa: BLE001 - the status is sent; the error goes in the stream
        message = str(exc) if isinstance(exc, RagError) else INTERNAL_ERROR
        if not isinstance(exc, RagError):
            log.error("unexpected error while streaming an answer", exc_info=exc)
        yield _sse(error_body(message, "server_error"))
        yield _sse("[DONE]")
    finally:
        items.close()  # type: ignore[attr-defined]
