"""`rag serve`: the OpenAI-compatible API (rag/app/api.py) with the Gradio UI (rag/app/ui.py) mounted on
its app at /, in one uvicorn server; `rag serve --api` serves the API alone.

Logins: the setting auth (RAG_AUTH, user:password pairs) is the UI's login, and the API's too unless
api_key (RAG_API_KEY, the serving keys) is set (rag/app/api_auth.py); both are read through Settings
like every other setting, and neither is ever sent to a model server (that one's key is llm_api_key). It binds 127.0.0.1 by default; another address only with a login for each face
it serves.
"""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from rag.app.api import build_api
from rag.app.api_auth import ApiAuth, check_bind
from rag.app.limits import Limits, LoginFirst
from rag.app.ui import build_app, parse_auth, served
from rag.config import reveal

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI

    from rag.config import Settings

log = logging.getLogger(__name__)


def mount_ui(app: FastAPI, demo: Any, auth: list[tuple[str, str]] | None) -> FastAPI:
    """The Gradio UI at / of the API's app, with the same queue, limits and login as `ui.launch`; with a
    login, a request to the UI with a body and no session is refused before its body is read."""
    import gradio as gr
    from starlette.routing import Mount

    app = gr.mount_gradio_app(app, demo, path="/", **served(demo, auth))
    if auth:
        ui = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == "")
        app.add_middleware(LoginFirst, ui=ui)  # rag/app/limits.py
    return app


def run_server(app: FastAPI, host: str, port: int) -> None:  # pragma: no cover - blocks; tests run uvicorn themselves
    import uvicorn

    # a browser's open UI stream (Gradio's heartbeat) would otherwise hold Ctrl-C until the tab closes
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)


def serve(settings: "Settings", host: str = "127.0.0.1", port: int = 7860, *, api_only: bool = False,
          collection: str | None = None) -> None:
    """`rag serve`: the API with the UI at / (or the API alone) over the collections (the default one is
    built from seeds/ on first use); the logins from settings.auth and settings.api_key; an address other than
    this machine's only with a login for each face served. `collection`: the one the UI shows first."""
    from rag.collections import Collections
    from rag.pipeline import RAG

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    logins = parse_auth(reveal(settings.auth))
    auth = ApiAuth.of(reveal(settings.api_key), logins)
    check_bind(host, bool(logins), auth, with_ui=not api_only)
    collections = Collections(settings, default=RAG.open(settings=settings))
    if collection is not None:
        collections.open(collection)  # an unknown name fails here, naming the existing ones
    app = build_api(collections, auth, Limits.of(settings))
    if not api_only:
        mount_ui(app, build_app(collections, collection), logins)
    log.info("serving %s on http://%s:%d (API at /v1, model %s, index %s)", "the API" if api_only else "the UI and API",
             host, port, settings.model, settings.index_dir)
    run_server(app, host, port)
