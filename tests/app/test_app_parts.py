"""The small parts of rag/app/ on their own, with fakes: the API's error bodies and body parsing
(api_errors), its admin routes (api_admin) on a bare FastAPI app, the generation slots (limits), the
Evaluate tab's HTML (eval_html) and the UI's collection helpers (ui_collections). Through whole requests:
tests/app/test_api.py, test_request_limits.py, test_roles.py, test_evaluate_ui.py, test_ui_collections.py."""
from __future__ import annotations

import asyncio
import time

import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.testclient import TestClient

from rag.app.api_admin import add_admin_routes
from rag.app.api_errors import ApiError, error_body, parse_body
from rag.app.eval_html import item_matches, items_html, metrics_html
from rag.app.limits import Busy, GenerationSlots
from rag.app.ui_collections import user_of
from rag.collections import NotAllowed
from rag.errors import InputError


class Ask(BaseModel):
    model: str
    messages: list[dict]


def test_error_body_has_openais_shape_and_a_401_asks_for_a_bearer_key():
    assert error_body("no", code="x") == {"error": {"message": "no", "type": "invalid_request_error", "code": "x"}}
    assert ApiError(401, "who?").headers == {"WWW-Authenticate": "Bearer"}
    assert ApiError(503, "busy", headers={"Retry-After": "2"}).headers == {"Retry-After": "2"}


@pytest.mark.parametrize("raw, content_type, message", [
    (b"{not json", "application/json", "not valid JSON"),
    (b"", "application/json", "the request body is missing"),
    (b"[1, 2]", "application/json", "must be a JSON object"),
    (b'{"model": "m", "messages": "hi"}', "application/json", "messages: "),
    (b'{"model": "m"}', "text/plain", "Content-Type: application/json"),
    (b"[" * 100_000, "application/json", "not valid JSON"),  # nested too deep for the parser
])
def test_parse_body_turns_every_bad_body_into_a_400_naming_it(raw, content_type, message):
    with pytest.raises(ApiError) as err:
        parse_body(raw, content_type, Ask)
    assert err.value.status == 400 and message in err.value.message


def test_parse_body_returns_the_model():
    got = parse_body(b'{"model": "m", "messages": [{"role": "user"}]}', "application/json", Ask)
    assert got == Ask(model="m", messages=[{"role": "user"}])


class Provider:
    """Collections as the admin routes see them: ann is the admin."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def use_model(self, model: str, user: str | None) -> None:
        if user != "ann":
            raise NotAllowed("only an admin may switch the model")
        if model == "nope":
            raise InputError("unknown model 'nope'")
        self.calls.append(("use_model", model, user))


def test_admin_routes_map_refusals_to_403_bad_input_to_400_and_a_missing_action_to_404():
    app, provider = FastAPI(), Provider()

    @app.exception_handler(ApiError)
    async def as_json(request, exc: ApiError):
        from fastapi.responses import JSONResponse
        return JSONResponse(error_body(exc.message, exc.type, exc.code), status_code=exc.status)

    add_admin_routes(app, provider, lambda request: request.headers.get("x-user"), lambda name: {"id": name})
    with TestClient(app) as client:
        ok = client.put("/v1/model", json={"model": "qwen2.5-0.5b"}, headers={"x-user": "ann"})
        assert ok.status_code == 200 and ok.json() == {"object": "model_change", "model": "qwen2.5-0.5b"}
        assert provider.calls == [("use_model", "qwen2.5-0.5b", "ann")]
        bob = client.put("/v1/model", json={"model": "x"}, headers={"x-user": "bob"})
        assert bob.status_code == 403 and "only an admin" in bob.json()["error"]["message"]
        bad = client.put("/v1/model", json={"model": "nope"}, headers={"x-user": "ann"})
        assert bad.status_code == 400 and "unknown model 'nope'" in bad.json()["error"]["message"]
        none = client.post("/v1/collections", json={"name": "team"}, headers={"x-user": "ann"})
        assert none.status_code == 404 and "create_shared" in none.json()["error"]["message"]


def test_generation_slots_let_size_through_and_refuse_the_next_after_the_timeout():
    async def run() -> tuple[float, Busy]:
        slots = GenerationSlots(2, 0.2)
        await slots.acquire()
        await slots.acquire()
        start = time.monotonic()
        with pytest.raises(Busy) as err:
            await slots.acquire()
        waited = time.monotonic() - start
        slots.release()
        await asyncio.wait_for(slots.acquire(), 1)  # a released slot is taken again
        return waited, err.value

    waited, busy = asyncio.run(run())
    assert waited >= 0.19 and busy.retry_after == 1
    assert "2 answer(s) under way" in str(busy) and "max_generations" in str(busy)


ITEMS = [{"id": "a", "correct": True, "abstained": False, "signals": {"supported": 1.0}},
         {"id": "b", "correct": False, "abstained": True, "verdict": "false refusal"},
         {"id": "c", "correct": False, "abstained": False, "signals": {"supported": 0.5}}]


@pytest.mark.parametrize("which, ids", [("all", "abc"), ("wrong", "bc"), ("refused", "b"),
                                        ("false refusal", "b"), ("unsupported", "c")])
def test_item_filters(which, ids):
    assert "".join(i["id"] for i in ITEMS if item_matches(i, which)) == ids


def test_a_bad_filter_names_the_choices_and_html_is_escaped():
    with pytest.raises(InputError, match="bad filter 'odd'; choose one of: all, wrong"):
        item_matches(ITEMS[0], "odd")
    html = metrics_html({"contains": 0.5}, partial=True)
    assert 'id="rag-eval-metrics"' in html and "Partial run" in html and "0.5" in html
    hostile = items_html({"items": [{"id": "<script>x</script>", "question": "<b>q</b>", "correct": False}]}, "wrong")
    assert "<script>" not in hostile and "&lt;script&gt;x&lt;/script&gt;" in hostile and "1 item(s) (wrong)" in hostile


def test_user_of_fails_closed_without_a_request():
    class Request:
        username = "alice"

    assert user_of(Request()) == "alice"
    with pytest.raises(RuntimeError, match="no gr.Request"):
        user_of(None)
