"""The API's errors, in OpenAI's shape {"error": {"message", "type", "code"}}, and reading a request body
into a pydantic model with a 400 that names the problem (rag/app/api.py, rag/app/api_admin.py)."""
from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError


def error_body(message: str, type_: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": type_, "code": code}}


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None,
                 type_: str = "invalid_request_error", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.type = status, message, code, type_
        self.headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        self.headers.update(headers or {})


def parse_body(raw: bytes, content_type: str, kind: type[BaseModel]) -> Any:
    """The request body as a `kind` (a pydantic model); a 400 naming the problem otherwise. Undecodable
    JSON, JSON nested too deep for the parser (RecursionError), or a body of the wrong shape: all 400."""
    hint = "" if "json" in content_type else " (send it with the header Content-Type: application/json)"
    try:
        data = json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        raise ApiError(400, validation_message([{"type": "json_invalid", "loc": ("body",)}]) + hint,
                       "invalid_body") from None
    if data is None:
        raise ApiError(400, validation_message([{"type": "missing", "loc": ("body",)}]) + hint, "invalid_body")
    try:
        return kind.model_validate(data)
    except RecursionError:
        raise ApiError(400, "the request body is nested too deep" + hint, "invalid_body") from None
    except ValidationError as exc:
        raise ApiError(400, validation_message(exc.errors()) + hint, "invalid_body") from None


def validation_message(errors: Any) -> str:
    """FastAPI's validation errors as one line naming each bad field."""
    parts = []
    for err in list(errors)[:3]:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        kind = err.get("type", "")
        if kind == "json_invalid":
            return "the request body is not valid JSON; send a JSON object with 'model' and 'messages'"
        if not loc and kind == "missing":
            return "the request body is missing; send a JSON object with 'model' and 'messages'"
        if not loc and kind in ("model_type", "model_attributes_type", "dict_type"):
            return "the request body must be a JSON object with 'model' and 'messages'"
        msg = err.get("msg", "invalid")
        if kind == "too_short" and loc == ["messages"]:
            msg = "must hold at least one message"
        parts.append(f"{'.'.join(loc) or 'body'}: {msg}")
    more = len(errors) - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
