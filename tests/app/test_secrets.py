"""The model server's key and the serving keys are two settings: a fake OpenAI-compatible model server
(a real HTTP server on 127.0.0.1, run and stopped by the test) sees `Bearer <RAG_LLM_API_KEY>` on every
call and never a key or login of `rag serve` (RAG_API_KEY, RAG_AUTH), which come from the environment
through Settings like every other setting."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from starlette.testclient import TestClient

from rag.app import server
from rag.config import Settings
from rag.errors import ModelError
from rag.models import llm as rllm
from rag.testing import FakeEmbedder, FakeLLM
from tests.conftest import SEED_ARTICLE

UPSTREAM_KEY = "sk-upstream-3f9c1a"
SERVING = {"alice": "k-alice-77e2", "bob": "k-bob-1d04"}
LOGIN = ("carol", "pw-carol-b5a8")
REPLY = "Washington spent about $110 million to establish the base in northern Niger [1]."
QUESTION = "How much did Washington spend to establish the base in northern Niger?"


class Upstream:
    """A fake OpenAI-compatible model server: records each request's headers and body, answers REPLY
    (as one JSON reply or as server-sent events), or 401 when told to."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], str]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                outer.requests.append((dict(self.headers), body))
                if outer.status != 200:
                    self._send(outer.status, "application/json", json.dumps(
                        {"error": {"message": f"Incorrect API key provided: {self.headers.get('authorization')}"}}))
                    return
                base = {"id": "x", "created": 0, "model": "m"}
                if json.loads(body).get("stream"):
                    events = [{**base, "object": "chat.completion.chunk",
                               "choices": [{"index": 0, "delta": {"role": "assistant", "content": word},
                                            "finish_reason": None}]} for word in REPLY.split(" ")[:1]]
                    events += [{**base, "object": "chat.completion.chunk",
                                "choices": [{"index": 0, "delta": {"content": " " + word}, "finish_reason": None}]}
                               for word in REPLY.split(" ")[1:]]
                    text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
                    self._send(200, "text/event-stream", text)
                else:
                    self._send(200, "application/json", json.dumps(
                        {**base, "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": REPLY}}]}))

            def _send(self, status: int, kind: str, text: str) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def __enter__(self) -> "Upstream":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def upstream():
    with Upstream() as fake:
        yield fake


@pytest.mark.integration  # a fake model server over HTTP on 127.0.0.1
def test_the_model_server_gets_its_own_key_and_never_a_serving_key(upstream, settings, monkeypatch):
    """`rag serve` as a user runs it: every secret from the environment, a model server as the model."""
    import rag.pipeline

    monkeypatch.setenv("RAG_MODEL", upstream.url)
    monkeypatch.setenv("RAG_LLM_API_KEY", UPSTREAM_KEY)
    monkeypatch.setenv("RAG_API_KEY", ",".join(f"{user}={key}" for user, key in SERVING.items()))
    monkeypatch.setenv("RAG_AUTH", ":".join(LOGIN))
    loaded = Settings.load(index_dir=settings.index_dir, cache_dir=settings.cache_dir,
                           collections_dir=settings.collections_dir, min_score=0.1, context="chunk")
    rag.pipeline.RAG.open(settings=loaded, embedder=FakeEmbedder(), llm=FakeLLM(), seed=False).add([SEED_ARTICLE])
    real_open = rag.pipeline.RAG.open.__func__
    monkeypatch.setattr(rag.pipeline.RAG, "open", classmethod(
        lambda cls, *a, **kw: real_open(cls, *a, **{**kw, "embedder": kw.get("embedder") or FakeEmbedder()})))
    seen: dict = {}
    monkeypatch.setattr(server, "run_server", lambda app, host, port: seen.update(app=app))
    server.serve(loaded, api_only=True)

    with TestClient(seen["app"]) as client:
        for user, key in SERVING.items():
            for stream in (False, True):
                r = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                json={"model": "default", "stream": stream,
                                      "messages": [{"role": "user", "content": QUESTION}]})
                assert r.status_code == 200, r.text
                assert "110 million" in r.text  # the model server's reply came back through the pipeline
        assert client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {UPSTREAM_KEY}"},
                           json={"model": "default", "messages": [{"role": "user", "content": QUESTION}]}
                           ).status_code == 401  # and the model server's key opens nothing here
    assert len(upstream.requests) == 4
    assert {headers.get("Authorization") for headers, _ in upstream.requests} == {f"Bearer {UPSTREAM_KEY}"}
    everything = json.dumps(upstream.requests)
    for secret in [*SERVING.values(), LOGIN[1]]:
        assert secret not in everything


@pytest.mark.integration  # a fake model server over HTTP on 127.0.0.1
def test_a_refused_key_is_named_as_the_setting_and_never_echoed(upstream, settings):
    upstream.status = 401  # the server echoes the key it got, as OpenAI's own error does
    llm = rllm.build_llm(settings.with_(model=upstream.url, llm_api_key=UPSTREAM_KEY))
    with pytest.raises(ModelError) as err:
        llm.complete("hello")
    message = str(err.value)
    assert "401" in message and "llm_api_key" in message and "RAG_LLM_API_KEY" in message
    assert UPSTREAM_KEY not in message
    assert {headers.get("Authorization") for headers, _ in upstream.requests} == {f"Bearer {UPSTREAM_KEY}"}
