"""Two users through a really served API (uvicorn on 127.0.0.1) over real `Collections` whose default is the
session's real RAG (MiniLM, the default bundled GGUF model; no second model is loaded), called with the
official `openai` client: alice's private fact answers alice, and bob is refused and never shown it."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from rag.app.api import build_api
from rag.app.api_auth import ApiAuth
from rag.collections import Collections

pytestmark = pytest.mark.integration
openai = pytest.importorskip("openai")

FACT = ("Quenby harbour keeps its spare lighthouse lamps in the Zorblax vault. "
        "The code of the Zorblax vault is 4417.")
QUESTION = "What is the code of the Zorblax vault?"


@pytest.fixture(scope="module")
def served(real_rag, tmp_path_factory):
    """Collections over the real RAG (as `rag serve` builds them), alice's fact in private-alice, the API
    with RAG_API_KEY=alice=k1,bob=k2 served on a free port of 127.0.0.1; stopped at the end."""
    import uvicorn

    root = tmp_path_factory.mktemp("two-users")
    collections = Collections(real_rag.settings.with_(collections_dir=root / "collections"), default=real_rag)
    secret = root / "alice" / "vault.txt"
    secret.parent.mkdir()
    secret.write_text(FACT, encoding="utf-8")
    collections.create("private-alice", "alice").add([secret])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(build_api(collections, ApiAuth.of("alice=k1,bob=k2", None)),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # a guard against a hang, not a speed goal
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1", secret
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive()


def client(base_url: str, key: str):
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=600)


def test_alice_is_answered_from_her_private_fact_and_bob_is_refused(served):
    base_url, secret = served
    alice, bob = client(base_url, "k1"), client(base_url, "k2")
    assert [m.id for m in alice.models.list().data] == ["default", "private-alice"]
    assert [m.id for m in bob.models.list().data] == ["default", "private-bob"]

    reply = alice.chat.completions.create(model="private-alice", messages=[{"role": "user", "content": QUESTION}])
    extra = reply.model_extra
    assert extra["abstained"] is False and "4417" in reply.choices[0].message.content, reply
    assert [c["source"] for c in extra["citations"]] == [str(secret.resolve())]

    with pytest.raises(openai.NotFoundError) as err:
        bob.chat.completions.create(model="private-alice", messages=[{"role": "user", "content": QUESTION}])
    assert err.value.status_code == 404 and "no collection 'private-alice'; yours: default, private-bob" in err.value.message
    for model in ("default", "private-bob"):
        answer = bob.chat.completions.create(model=model, messages=[{"role": "user", "content": QUESTION}])
        content = answer.choices[0].message.content
        assert answer.model_extra["abstained"] is True and content == "Not in the documents.", (model, content)
        assert answer.model_extra["citations"] == [] and "4417" not in content
