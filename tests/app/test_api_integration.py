"""The OpenAI-compatible API really served (uvicorn on 127.0.0.1) over the real seed index (MiniLM, FAISS,
the default bundled GGUF model), called with the official `openai` client and with raw httpx."""
from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from rag.app.api import SingleCollection, build_api
from rag.app.api_auth import ApiAuth
from tests.conftest import SEED_ARTICLE

pytestmark = pytest.mark.integration
openai = pytest.importorskip("openai")

KEY = "test-key-7f3a"
QUESTION = "How much did Washington spend to establish the base in northern Niger?"


@pytest.fixture(scope="module")
def base_url(real_rag):
    """The API over the real RAG (loaded once for the session), served by uvicorn in a thread on a free
    port of 127.0.0.1; stopped at the end of the module."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = build_api(SingleCollection(real_rag), ApiAuth.of(KEY, None))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive()


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=600)


def test_models_lists_the_collection(client):
    assert [m.id for m in client.models.list().data] == ["default"]


def test_answer_with_citations_of_the_seed_article(client):
    completion = client.chat.completions.create(model="default", messages=[{"role": "user", "content": QUESTION}])
    content = completion.choices[0].message.content
    extra = completion.model_extra
    assert extra["abstained"] is False, content
    answer, sources = content.split("\n\nSources:\n")
    assert "110 million" in answer
    assert "000_a5055be445bd665f.txt" in sources and "$110 million" in sources
    assert extra["citations"] and all(c["source"] == str(SEED_ARTICLE.resolve()) for c in extra["citations"])
    assert any("$110 million" in c["text"] for c in extra["citations"])
    text = SEED_ARTICLE.read_text(encoding="utf-8")
    assert all(text[c["start"]:c["end"]] == c["text"] for c in extra["citations"])
    usage = completion.usage  # counted with the model's own tokenizer (rag/app/usage.py)
    assert 200 < usage.prompt_tokens < 4096 and 5 < usage.completion_tokens <= 200
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_usage_counts_with_the_models_tokenizer(real_rag):
    from rag.app.usage import token_counter, usage

    count, exact = token_counter(real_rag.llm)
    assert exact and count("Hello, world!") == len(real_rag.llm._model.tokenize(b"Hello, world!", add_bos=False))
    answer = real_rag.ask(QUESTION)
    spent = usage(real_rag, answer)
    assert spent["completion_tokens"] == count(answer.model_text)
    assert spent["prompt_tokens"] > count(" ".join(p.text for p in answer.passages))  # the passages and more


def test_streamed_answer_with_citations_on_the_last_chunk(client):
    stream = client.chat.completions.create(model="default", stream=True,
                                            messages=[{"role": "user", "content": QUESTION}])
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert len(chunks) >= 3 and chunks[-1].choices[0].finish_reason == "stop"
    last = chunks[-1].model_extra
    assert last["abstained"] is False and "110 million" in content.split("\n\nSources:\n")[0]
    assert "\n\nSources:\n[" in content and any("$110 million" in c["text"] for c in last["citations"])
    # only checked sentences were streamed: the text before the sources is the final answer
    assert content.split("\n\nSources:\n")[0] == last["answer"]
    assert all(c["check"]["supported"] for c in last["citations"])


def test_an_out_of_corpus_question_streams_nothing_but_the_refusal(client):
    """The article does not give Niger's population: the model's draft from memory is never shown."""
    stream = client.chat.completions.create(model="default", stream=True,
                                            messages=[{"role": "user", "content": "What is the population of Niger?"}])
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert content == "Not in the documents.", content
    assert chunks[-1].model_extra["abstained"] is True and chunks[-1].model_extra["refusal_reason"]


def test_follow_up_uses_the_history(client):
    messages = [
        {"role": "user", "content": "Where did Washington build a base for flying surveillance drones?"},
        {"role": "assistant", "content": "Washington built a base in northern Niger for flying surveillance drones."},
        {"role": "user", "content": "How much did it spend to establish that base?"},
    ]
    completion = client.chat.completions.create(model="default", messages=messages)
    extra = completion.model_extra
    assert extra["question"] != messages[-1]["content"]  # rewritten into a standalone question
    assert extra["abstained"] is False and "110 million" in completion.choices[0].message.content, extra


def test_refusal(client):
    completion = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "What is the capital of Australia?"}])
    assert completion.choices[0].message.content == "Not in the documents."
    assert completion.model_extra["abstained"] is True and completion.model_extra["citations"] == []


def test_wrong_key_is_an_authentication_error(base_url):
    wrong = openai.OpenAI(base_url=base_url, api_key="not-the-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        wrong.chat.completions.create(model="default", messages=[{"role": "user", "content": QUESTION}])
    assert err.value.status_code == 401 and "wrong API key" in err.value.message


def test_unknown_model_and_malformed_body(base_url, client):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": QUESTION}])
    assert "no collection 'nope'; yours: default" in err.value.message
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    r = httpx.post(f"{base_url}/chat/completions", content=b'{"model": "default", "messages": [', headers=headers)
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = httpx.post(f"{base_url}/chat/completions", json={"model": "default", "messages": [{"role": "user"}]},
                   headers=headers)
    assert r.status_code == 400 and r.json()["error"]["message"] == "the question is empty"
