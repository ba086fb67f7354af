"""What one request to `rag serve` may take, enforced before and while it is read (rag/app/api.py
installs these on the API's app, which the UI is mounted on; rag/app/server.py adds `LoginFirst`):

    BodyLimit        every request body counted as its bytes arrive (Content-Length or chunked), on every
                     route: 413 the moment it passes the limit (settings max_body_kb; max_upload_mb for
                     the UI's uploads), the connection closed, so no more than the limit is ever held
    LoginFirst       with UI logins: a UI request carrying a body without a session is 401 before a byte
                     of the body is read
    GenerationSlots  at most max_generations API answers under way; others wait up to queue_timeout
                     seconds, then `Busy` (the API's 503 with Retry-After)
"""
from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse

from rag.app.api_errors import error_body

if TYPE_CHECKING:  # pragma: no cover
    from rag.config import Settings


UPLOAD_PATHS = ("/gradio_api/upload", "/upload")  # the UI's file uploads: limit max_upload_mb, not max_body_kb


class Busy(Exception):
    """No generation slot came free in time; `retry_after`: seconds to tell the client."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Limits:
    """What one request may take (settings max_body_kb, max_upload_mb, max_generations, queue_timeout)."""

    body_bytes: int
    upload_bytes: int
    generations: int
    queue_timeout: float

    @classmethod
    def of(cls, settings: "Settings") -> "Limits":
        return cls(settings.max_body_kb * 1000, settings.max_upload_mb * 2**20, settings.max_generations,
                   settings.queue_timeout)




class GenerationSlots:
    """At most `size` answers under way at once; a request beyond waits up to `timeout` seconds for a
    slot, then is refused with 503 and Retry-After. A waiting request holds no thread (only the answers
    under way run in the thread pool), and a slot is released when its answer, or its stream, ends."""

    def __init__(self, size: int, timeout: float) -> None:
        self.size, self.timeout = size, timeout
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _get(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:  # one per event loop (tests start several)
            self._semaphore, self._loop = asyncio.Semaphore(self.size), loop
        return self._semaphore

    async def acquire(self) -> None:
        try:
            await asyncio.wait_for(self._get().acquire(), self.timeout)
        except TimeoutError:
            retry = max(1, math.ceil(self.timeout))
            raise Busy(f"the server is busy: {self.size} answer(s) under way and this request waited "
                       f"{self.timeout:g} s (settings max_generations, queue_timeout); try again in {retry} s",
                       retry) from None

    def release(self) -> None:
        self._get().release()

    async def held(self, events: AsyncIterator[str]) -> AsyncIterator[str]:
        """`events`, releasing the slot however the stream ends."""
        try:
            async for event in events:
                yield event
        finally:
            self.release()


_BODY_HEADERS = (b"content-length", b"transfer-encoding")


class BodyLimit:
    """Counts every request body as its bytes arrive, whatever its framing (Content-Length or chunked),
    on every route (the UI mounted beside the API too): past `limit` (`larger` for paths under those
    prefixes) it answers 413 at once, closes the connection, and the app reads the end of the body (a
    disconnect), so no more than the limit is ever held. Plain ASGI (no BaseHTTPMiddleware), so the
    streams of the API and of the UI pass as they are. A reply sent before the body was all read (a 401
    before the body, say) also closes the connection, so the rest of the body is never read."""

    def __init__(self, app: Any, limit: int, larger: dict[str, int] | None = None) -> None:
        self.app, self.limit, self.larger = app, limit, dict(larger or {})

    def limit_for(self, path: str) -> int:
        return next((n for prefix, n in self.larger.items() if path.startswith(prefix)), self.limit)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            await too_large(limit)(scope, receive, send)
            return
        state = {"read": 0, "more": any(h in headers for h in _BODY_HEADERS) and length != b"0",
                 "refused": False, "started": False}

        async def counted() -> dict[str, Any]:
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                state["more"] = message.get("more_body", False)
                if state["read"] > limit:
                    state["refused"] = True
                    if not state["started"]:
                        state["started"] = True
                        await too_large(limit)(scope, _no_body, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: dict[str, Any]) -> None:
            if state["refused"]:
                return  # the 413 was the reply
            if message["type"] == "http.response.start":
                state["started"] = True
                if state["more"]:  # replied before the body was read: never read the rest
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not state["refused"]:
                raise


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def too_large(limit: int) -> JSONResponse:
    return JSONResponse(error_body(f"the request body is over the limit of {limit:,} bytes (settings max_body_kb; "
                                   "max_upload_mb for uploads)", code="body_too_large"),
                        status_code=413, headers={"Connection": "close"})


class LoginFirst:
    """With UI logins: a request to the UI that carries a body (anything but the login form) and no
    session of the UI (Gradio's access-token cookie, as Gradio checks it) is answered 401 before a byte
    of its body is read, and its connection closed. The API (/v1) checks its own keys the same way,
    before reading a body (rag/app/api.py)."""

    def __init__(self, app: Any, ui: Any) -> None:
        self.app, self.ui = app, ui  # ui: the mounted gradio.routes.App (its tokens and cookie id)

    def _logged_in(self, headers: dict[bytes, bytes]) -> bool:
        from starlette.requests import cookie_parser

        cookies = cookie_parser(headers.get(b"cookie", b"").decode("latin-1"))
        cookie_id = self.ui.cookie_id
        token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
        return token is not None and token in self.ui.tokens

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/v1/") and scope["path"].rstrip("/") != "/login":
            headers = dict(scope["headers"])
            body = headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers
            if body and not self._logged_in(headers):
                response = JSONResponse({"detail": "Not authenticated: log in first (POST /login)"}, status_code=401,
                                        headers={"Connection": "close"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
