"""The API's global actions, for admins only (`admin_users`; anyone without a login), 403 for others;
the provider (rag/collections.py) decides who is an admin and raises NotAllowed:

    PUT    /v1/model             {"model": NAME}: switch the model everyone uses
    POST   /v1/collections       {"name": NAME}: create a shared collection
    DELETE /v1/collections/NAME  delete a shared collection
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from rag.app.api_errors import ApiError, parse_body
from rag.errors import NotAllowed, RagError


class ModelChange(BaseModel):
    model: str = Field(max_length=4096)


class NewCollection(BaseModel):
    name: str = Field(max_length=4096)


def add_admin_routes(app: FastAPI, provider: Any, user_of: Callable[[Request], str | None],
                     describe: Callable[[str], dict[str, Any]]) -> None:
    """The global actions on `app`, for admins only (`provider`, the API's collections, decides who is one);
    `describe`: a collection as the API lists it."""

    def admin(action: str) -> Callable[..., Any]:
        method = getattr(provider, action, None)
        if method is None:
            raise ApiError(404, f"this server has no collections to change ({action})", "not_supported")
        return method

    async def run(action: str, *args: Any) -> None:
        try:
            await run_in_threadpool(admin(action), *args)
        except NotAllowed as exc:
            raise ApiError(403, str(exc), "permission_denied") from None
        except RagError as exc:
            raise ApiError(400, str(exc), type(exc).__name__) from None

    @app.put("/v1/model")
    async def switch_model(request: Request) -> dict[str, Any]:
        user = user_of(request)
        change = parse_body(await request.body(), request.headers.get("content-type", ""), ModelChange)
        await run("use_model", change.model, user)
        return {"object": "model_change", "model": change.model}

    @app.post("/v1/collections", status_code=201)
    async def create_collection(request: Request) -> dict[str, Any]:
        user = user_of(request)
        new = parse_body(await request.body(), request.headers.get("content-type", ""), NewCollection)
        await run("create_shared", new.name, user)
        return describe(new.name)

    @app.delete("/v1/collections/{name}")
    async def delete_collection(name: str, request: Request) -> dict[str, Any]:
        user = user_of(request)
        await run("remove", name, user)
        return {"id": name, "object": "model", "deleted": True}
