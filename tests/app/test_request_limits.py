"""Bounded requests to `rag serve` (rag/app/limits.py), on a real uvicorn server on 127.0.0.1 started
and stopped by the tests: 200 MB chunked bodies refused as they arrive (413 at the limit, or 401 before a
byte is read for the UI without a login) while the server's memory grows < 100 MB; 16 clients at once
get an answer or a clean 503 with Retry-After, and the server answers afterwards. With fakes: JSON nested
too deep is a 400, names are cut short in errors, `usage` is in replies and in the last stream chunk."""
from __future__ import annotations

import json
import select
import socket
import threading
import time

import httpx
import psutil
import pytest
from starlette.testclient import TestClient

from rag.app import server
from rag.app.api import SingleCollection, build_api
from rag.app.usage import estimate_tokens
from tests.conftest import SEED_ARTICLE
from tests.loopback import served

QUESTION = "How much did Washington spend to establish the base in northern Niger?"
ANSWER = "Washington spent about $110 million to establish the base in northern Niger [1]."
KEY = "k-ann-5c1e"
MB = 2**20


def slow_answer(prompt: str) -> str:
    time.sleep(0.3)  # a generation that takes a while
    return ANSWER


@pytest.fixture
def live(make_rag, settings, monkeypatch):
    """`rag serve` (API + UI, a login for each) over a fake RAG whose model takes 0.3 s an answer;
    at most 2 answers under way, 1 s of waiting for a slot; uploads up to 1 MB."""
    import rag.pipeline

    fake = make_rag(slow_answer)
    fake.add([SEED_ARTICLE])
    app: dict = {}
    monkeypatch.setattr(rag.pipeline.RAG, "open", classmethod(lambda cls, **kw: fake))
    monkeypatch.setattr(server, "run_server", lambda a, host, port: app.update(app=a))
    server.serve(settings.with_(auth="ann:pw-ann", api_key=f"ann={KEY}", max_generations=2, queue_timeout=1.0,
                                max_upload_mb=1))
    with served(app["app"]) as port:
        yield port


def send_chunked(port: int, path: str, headers: dict[str, str], total: int, first: bytes = b"") -> tuple[int | None, int]:
    """POST `first`, then `total` bytes to `path` in 64 KB chunks (made once, sent again and again:
    nothing of the size is held here), stopping as soon as the server answers. (status, bytes sent)."""
    chunk = b"[" * 65536
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    conn = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": "127.0.0.1", "Transfer-Encoding": "chunked",
                                                "Content-Type": "application/json", **headers}.items())
    conn.sendall(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode())
    if first:
        conn.sendall(f"{len(first):x}\r\n".encode() + first + b"\r\n")
    sent = 0
    try:
        while sent < total and not select.select([conn], [], [], 0)[0]:
            conn.sendall(frame)
            sent += len(chunk)
        if sent >= total:
            conn.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed the connection mid-body
    reply = b""
    try:
        while b"\r\n" not in reply:
            part = conn.recv(65536)
            if not part:
                break
            reply += part
    except ConnectionResetError:
        pass
    conn.close()
    return (int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else None), sent


def rss() -> int:
    return psutil.Process().memory_info().rss


def login_cookies(port: int) -> str:
    r = httpx.post(f"http://127.0.0.1:{port}/login", data={"username": "ann", "password": "pw-ann"})
    assert r.status_code == 200, r.text
    return "; ".join(f"{name}={value}" for name, value in r.cookies.items())


@pytest.mark.parametrize("path, login, status", [
    ("/v1/chat/completions", "key", 413),          # a caller with a key: counted, refused at the limit
    ("/v1/chat/completions", None, 401),            # no key: refused before the body is read
    ("/gradio_api/queue/join", None, 401),          # the UI without its login: refused before the body
    ("/gradio_api/queue/join", "cookie", 413),      # the UI with its login: counted like the API
    ("/gradio_api/upload", "cookie", 413),          # an upload: counted against max_upload_mb (1 MB here)
])
@pytest.mark.integration  # a real uvicorn server on 127.0.0.1, with fakes
def test_a_200_mb_chunked_body_is_refused_as_it_arrives(live, path, login, status):
    headers = {"Authorization": f"Bearer {KEY}"} if login == "key" else {}
    if login == "cookie":
        headers["Cookie"] = login_cookies(live)
    first = b""
    if "upload" in path:  # a well-formed upload of one endless file
        headers["Content-Type"] = "multipart/form-data; boundary=xyz"
        first = (b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="big.txt"\r\n'
                 b"Content-Type: text/plain\r\n\r\n")
    send_chunked(live, "/v1/chat/completions", headers, 2 * MB)  # warm up every code path first
    before = rss()
    got, sent = send_chunked(live, path, headers, 200 * MB, first)
    grown = rss() - before
    assert got == status
    assert sent < 20 * MB, f"{sent / MB:.0f} MB were sent before the server answered"
    assert grown < 100 * MB, f"the server's memory grew by {grown / MB:.0f} MB"
    r = httpx.get(f"http://127.0.0.1:{live}/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200  # and it still answers


@pytest.mark.integration  # a real uvicorn server on 127.0.0.1, with fakes
def test_sixteen_clients_at_once_get_an_answer_or_a_clean_503(live):
    url = f"http://127.0.0.1:{live}/v1/chat/completions"
    body = {"model": "default", "messages": [{"role": "user", "content": QUESTION}]}
    results: list[httpx.Response | BaseException] = []
    threads_before, before = threading.active_count(), rss()

    def client(stream: bool) -> None:
        try:
            results.append(httpx.post(url, json={**body, "stream": stream}, timeout=60,
                                      headers={"Authorization": f"Bearer {KEY}"}))
        except BaseException as exc:  # noqa: BLE001 - recorded and failed below
            results.append(exc)

    clients = [threading.Thread(target=client, args=(i % 2 == 1,)) for i in range(16)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(timeout=120)
    assert len(results) == 16 and all(isinstance(r, httpx.Response) for r in results), results
    answered = [r for r in results if r.status_code == 200]
    busy = [r for r in results if r.status_code == 503]
    assert len(answered) + len(busy) == 16, [r.status_code for r in results]
    assert answered and busy  # 16 answers of 0.3 s each cannot all fit in 1 s of waiting
    for r in answered:
        assert "110 million" in r.text and '"usage"' in r.text
    for r in busy:
        assert r.headers["Retry-After"] == "1"
        assert r.json()["error"]["code"] == "server_busy" and "max_generations" in r.json()["error"]["message"]
    assert threading.active_count() - threads_before < 10  # waiting requests hold no thread
    assert rss() - before < 100 * MB
    after = httpx.post(url, json=body, timeout=60, headers={"Authorization": f"Bearer {KEY}"})
    assert after.status_code == 200 and "110 million" in after.text


# --------------------------------------------------------------------------- with fakes, in process


@pytest.mark.parametrize("body", [
    "[" * 100_000,
    '{"model": "default", "messages": [{"role": "user", "content": "hi?"}], "x": ' + "[" * 5000 + "]" * 5000 + "}",
    '{"model": "default", "messages": [{"role": "user", "content": "hi?"}], "x": ' + '{"a":' * 50_000 + "1" + "}" * 50_000 + "}",
])
def test_json_nested_too_deep_is_a_400(make_rag, body):
    client = TestClient(build_api(SingleCollection(make_rag())), raise_server_exceptions=False)
    r = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_body"


def test_names_are_cut_short_in_errors(make_rag):
    client = TestClient(build_api(SingleCollection(make_rag())))
    name = "c" * 20_000
    for r in (client.post("/v1/chat/completions", json={"model": name, "messages": [{"role": "user", "content": "hi?"}]}),
              client.get(f"/v1/models/{name}"), client.get(f"/v1/{name}")):
        assert r.status_code == 404
        message = r.json()["error"]["message"]
        assert "c" * 50 in message and "c…" in message and len(message) < 300, message[:400]


def test_usage_is_in_replies_and_in_the_last_stream_chunk(make_rag):
    rag = make_rag(ANSWER)
    rag.add([SEED_ARTICLE])
    client = TestClient(build_api(SingleCollection(rag)))
    body = {"model": "default", "messages": [{"role": "user", "content": QUESTION}]}
    reply = client.post("/v1/chat/completions", json=body).json()
    usage = reply["usage"]
    prompt = "\n".join(str(m.content) for m in rag.llm.messages_seen[-1])  # what the fake model was given
    assert usage == {"prompt_tokens": estimate_tokens(prompt), "completion_tokens": estimate_tokens(ANSWER),
                     "total_tokens": estimate_tokens(prompt) + estimate_tokens(ANSWER)}
    text = client.post("/v1/chat/completions", json={**body, "stream": True}).text
    chunks = [json.loads(e[len("data: "):]) for e in text.split("\n\n") if e.startswith("data: {")]
    assert chunks[-1]["usage"] == usage and all("usage" not in c for c in chunks[:-1])
    refused = client.post("/v1/chat/completions", json={**body, "messages": [
        {"role": "user", "content": "zebra quantum marmalade?"}]}).json()  # nothing near it: no model call
    assert refused["abstained"] and refused["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
