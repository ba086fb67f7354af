"""The language model: `build_llm` turns `Settings.model` into a llama-index LLM.

`LlamaCPP` for bundled names (`rag.models.bundled`) and .gguf paths, rendering chat messages with the
model's OWN chat template from the GGUF metadata; `OpenAILike` for an http(s) URL (a `ServerPool`
of them for several URLs, in turn). Loading takes seconds,
so nothing here is cached globally: the caller keeps the object. Heavy imports (llama_cpp, llama_index)
happen inside `build_llm` only.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from rag.errors import ModelError
from rag.models.bundled import model_path

if TYPE_CHECKING:  # pragma: no cover
    from llama_index.core.llms import LLM

    from rag.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatTemplate:
    """Renders llama-index chat messages with a model's own Jinja chat template (from its GGUF)."""

    formatter: Any  # llama_cpp.llama_chat_format.Jinja2ChatFormatter
    strip_bos: str  # removed from the rendered start: llama.cpp adds BOS itself when the model wants one
    stop: tuple[str, ...]

    def messages_to_prompt(self, messages: Sequence[Any]) -> str:
        msgs = [_message_dict(m) for m in messages]
        prompt = self.formatter(messages=msgs).prompt
        if self.strip_bos and prompt.startswith(self.strip_bos):
            prompt = prompt[len(self.strip_bos) :]
        return prompt

    def completion_to_prompt(self, completion: str) -> str:
        return self.messages_to_prompt([{"role": "user", "content": completion}])


def _message_dict(message: Any) -> dict[str, str]:
    if isinstance(message, Mapping):
        return {"role": str(message["role"]), "content": str(message.get("content") or "")}
    role = getattr(message.role, "value", message.role)
    return {"role": str(role), "content": message.content or ""}


def chat_template_for(llama: Any) -> ChatTemplate | None:
    """Build the chat template of a loaded `llama_cpp.Llama` from its GGUF metadata (None if it has none)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = (getattr(llama, "metadata", None) or {}).get("tokenizer.chat_template")
    if not template:
        return None
    eos_id, bos_id = llama.token_eos(), llama.token_bos()
    eos = llama._model.token_get_text(eos_id) if eos_id != -1 else ""
    bos = llama._model.token_get_text(bos_id) if bos_id != -1 else ""
    formatter = Jinja2ChatFormatter(
        template=template,
        eos_token=eos,
        bos_token=bos,
        add_generation_prompt=True,
        stop_token_ids=[eos_id] if eos_id != -1 else None,
    )
    # The formatter's stop strings (its eos) plus the eos text itself; llama.cpp also stops on any
    # end-of-generation token of the vocabulary.
    probe = formatter(messages=[{"role": "user", "content": "x"}])
    stop = tuple(dict.fromkeys(s for s in [*(probe.stop or []), eos] if s))
    add_bos = bool(llama._model.add_bos_token())
    return ChatTemplate(formatter=formatter, strip_bos=bos if (add_bos and bos) else "", stop=stop)


def _is_url(model: str) -> bool:
    return model.startswith(("http://", "https://"))


def _build_server_llm(settings: "Settings") -> "ServerPool":
    from rag.config import reveal

    try:
        from llama_index.llms.openai_like import OpenAILike
    except ImportError as exc:
        raise ModelError(
            "using an OpenAI-compatible server needs the package llama-index-llms-openai-like: "
            "pip install llama-index-llms-openai-like"
        ) from exc
    clients = []
    for url in settings.server_urls:
        try:
            clients.append(OpenAILike(
                api_base=url,
                model=settings.server_model,
                # its own key (RAG_LLM_API_KEY), never the API's serving keys (RAG_API_KEY)
                api_key=reveal(settings.llm_api_key) or "not-needed",
                is_chat_model=True,
                context_window=settings.context_window,
                max_tokens=settings.max_new_tokens,
                temperature=settings.temperature,
                # No retries: a server that is down fails at once (and a pool moves on to the next);
                # llama-index's own retries and the OpenAI client's would otherwise wait ~10 s first.
                max_retries=0,
                timeout=settings.server_timeout,
            ))
        except Exception as exc:  # pydantic validation etc.
            raise ModelError(f"cannot set up the server model {url}: {exc}") from exc
    return ServerPool(settings.server_urls, clients, settings.server_timeout, secret=reveal(settings.llm_api_key))


class ServerUnreachable(ModelError):
    """A model server refused or dropped the connection before answering (a pool tries the next one)."""


def server_error(url: str, exc: BaseException, timeout: float) -> ModelError:
    """One line for what went wrong talking to the server at `url`."""
    import httpx
    import openai

    if isinstance(exc, ModelError):
        return exc
    if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException)):
        return ModelError(f"the model server {url} did not answer within {timeout:g} s "
                          "(setting server_timeout); it may be overloaded, or raise server_timeout")
    if isinstance(exc, (openai.APIConnectionError, httpx.TransportError)):
        cause = exc.__cause__ or exc
        return ServerUnreachable(f"the model server {url} is not reachable ({_first_line(cause)}); "
                                 "is it running, and is the URL right?")
    if isinstance(exc, openai.APIStatusError):
        hint = " (the key sent is the setting llm_api_key, RAG_LLM_API_KEY)" if exc.status_code in (401, 403) else ""
        return ModelError(f"the model server {url} answered with an error: {exc.status_code} {_first_line(exc)}{hint}")
    return ModelError(f"the model server {url} failed: {type(exc).__name__}: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


class ServerPool:
    """One or several OpenAI-compatible servers behind the llama-index LLM calls the pipeline makes
    (chat, stream_chat, complete, stream_complete, metadata).

    Each call goes to the next server in turn (round robin), so one UI serving many users spreads its
    questions; a server that cannot be reached is skipped for that call (the next one is asked), a slow
    or failing one is reported. Every failure becomes a ModelError naming the server's URL. Not a
    llama-index LLM subclass: the in-process helpers (refusal probability, saved prompt state) find no
    llama.cpp model in it and stay off."""

    def __init__(self, urls: Sequence[str], clients: Sequence[Any], timeout: float, *,
                 secret: str | None = None) -> None:
        """`secret`: the key sent to the servers, cut out of any error a server's reply might echo it in."""
        if not clients or len(urls) != len(clients):
            raise ValueError("ServerPool needs one client per URL")
        self.urls = tuple(urls)
        self._clients = list(clients)
        self.timeout = timeout
        self._secret = secret
        self._next = 0
        self._lock = threading.Lock()

    @property
    def metadata(self) -> Any:
        return self._clients[0].metadata

    def _order(self) -> list[int]:
        with self._lock:
            start = self._next
            self._next = (start + 1) % len(self._clients)
        return [(start + i) % len(self._clients) for i in range(len(self._clients))]

    def _error(self, url: str, exc: BaseException) -> ModelError:
        error = server_error(url, exc, self.timeout)
        if self._secret and self._secret in str(error):
            error = type(error)(str(error).replace(self._secret, "***"))
        return error

    def _all_down(self, errors: list[ModelError]) -> ModelError:
        if len(errors) == 1:
            return errors[0]
        return ServerUnreachable("none of the model servers is reachable: " + "; ".join(str(e) for e in errors))

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        errors: list[ModelError] = []
        for i in self._order():
            try:
                return getattr(self._clients[i], method)(*args, **kwargs)
            except Exception as exc:
                error = self._error(self.urls[i], exc)
                if not isinstance(error, ServerUnreachable):
                    raise error from exc
                errors.append(error)
        raise self._all_down(errors)

    def _stream(self, method: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        errors: list[ModelError] = []
        for i in self._order():
            url = self.urls[i]
            try:
                stream = iter(getattr(self._clients[i], method)(*args, **kwargs))
                first = next(stream)
            except StopIteration:
                return
            except Exception as exc:
                error = self._error(url, exc)
                if not isinstance(error, ServerUnreachable):
                    raise error from exc
                errors.append(error)
                continue
            yield first
            try:
                yield from stream
            except Exception as exc:  # mid-reply: too late to ask another server
                raise self._error(url, exc) from exc
            return
        raise self._all_down(errors)

    def chat(self, messages: Sequence[Any], **kwargs: Any) -> Any:
        return self._call("chat", messages, **kwargs)

    def complete(self, prompt: str, **kwargs: Any) -> Any:
        return self._call("complete", prompt, **kwargs)

    def stream_chat(self, messages: Sequence[Any], **kwargs: Any) -> Iterator[Any]:
        return self._stream("stream_chat", messages, **kwargs)

    def stream_complete(self, prompt: str, **kwargs: Any) -> Iterator[Any]:
        return self._stream("stream_complete", prompt, **kwargs)

    def __repr__(self) -> str:
        return f"ServerPool({', '.join(self.urls)})"


_LOAD_LOCK = threading.Lock()


def _amx_compiled_in() -> bool:
    """True if this llama.cpp build uses AMX on this CPU (it then puts weights in an AMX buffer).

    ggml's AMX matmul crashes (SIGSEGV/GPF at `ldtilecfg`, llama.cpp issue #20824; fix pending in
    PR #26954): a prebuilt/`-march=native` wheel on a Sapphire-Rapids-class CPU dies on the first
    multi-token prompt. When the build has AMX we load models without the "extra" weight buffer
    types (AMX and CPU repack); a wheel built with GGML_NATIVE=OFF and no AMX keeps repacking.
    """
    import llama_cpp

    try:
        info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    except Exception:  # pragma: no cover - very old or exotic builds
        return False
    return "AMX_INT8 = 1" in info


def _cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_int8" in line.split()
    except OSError:
        pass
    return True  # cannot tell: stay safe


@contextlib.contextmanager
def _model_params_without_extra_buffers() -> Iterator[None]:
    """While loading, make llama_cpp.Llama start from model params with use_extra_bufts=False
    (Llama has no argument for it; it calls llama_cpp.llama_cpp.llama_model_default_params())."""
    import llama_cpp.llama_cpp as lc

    original = lc.llama_model_default_params

    def defaults():  # type: ignore[no-untyped-def]
        params = original()
        params.use_extra_bufts = False
        return params

    lc.llama_model_default_params = defaults
    try:
        yield
    finally:
        lc.llama_model_default_params = original


def complete_until(llm: Any, prompt: str, enough: Callable[[str], bool]) -> str:
    """Stream a completion and stop as soon as `enough(text so far)` holds, closing the stream so the
    model stops generating. For short helper calls (follow-up condensing, HyDE) whose useful part is
    their first line or paragraph."""
    text = ""
    stream = llm.stream_complete(prompt)
    try:
        for response in stream:
            text += response.delta or ""
            if enough(text):
                break
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return text


@contextlib.contextmanager
def _context_params_with_side_sequence() -> Iterator[None]:
    """While loading, make llama_cpp.Llama start from context params with a second sequence in a
    unified KV cache (llama_state.side_sequence_params: where the claim judge evaluates while an
    answer is mid-generation). Llama has no argument for either."""
    import llama_cpp.llama_cpp as lc

    from rag.models.llama_state import side_sequence_params

    original = lc.llama_context_default_params

    def defaults():  # type: ignore[no-untyped-def]
        return side_sequence_params(original())

    lc.llama_context_default_params = defaults
    try:
        yield
    finally:
        lc.llama_context_default_params = original


@contextlib.contextmanager
def loading_llama() -> Iterator[None]:
    """Hold while constructing any llama_cpp.Llama (directly or through LlamaCPP): one load at a time,
    with the AMX workaround when this build and CPU need it, and room for the claim judge's sequence.
    bench/generate.py uses it too."""
    avoid_amx = _amx_compiled_in() and _cpu_has_amx()
    with _LOAD_LOCK, (_model_params_without_extra_buffers() if avoid_amx else contextlib.nullcontext()), \
            _context_params_with_side_sequence():
        yield


LLAMA_N_BATCH = 512


def build_llm(settings: "Settings", *, progress: Callable[[int, int], None] | None = None) -> "LLM":
    """A llama-index LLM for `settings.model`: a bundled name or .gguf path -> LlamaCPP (loaded now,
    seconds), one or several http(s) URLs -> a ServerPool of OpenAILike clients (no network contact
    until used; it has the LLM calls the pipeline makes). Not cached: keep the result."""
    if _is_url(settings.model):
        return _build_server_llm(settings)  # type: ignore[return-value]

    path = model_path(settings.model, settings.cache_dir, progress=progress)
    try:
        from llama_index.llms.llama_cpp import LlamaCPP
    except ImportError as exc:
        raise ModelError(
            "running a local model needs llama-index-llms-llama-cpp and llama-cpp-python: "
            "pip install llama-index-llms-llama-cpp"
        ) from exc

    try:
        with loading_llama():
            llm = LlamaCPP(
                model_path=str(path),
                temperature=settings.temperature,
                max_new_tokens=settings.max_new_tokens,
                context_window=settings.context_window,
                # threads for the prompt (n_threads_batch) too: llama-cpp-python's default there is every core
                model_kwargs={"n_threads": settings.threads, "n_threads_batch": settings.threads,
                              "n_batch": LLAMA_N_BATCH, "verbose": False},
                verbose=False,
            )
    except Exception as exc:
        raise ModelError(f"cannot load model {str(path)!r}: {exc}") from exc

    try:
        template = chat_template_for(llm._model)
    except Exception as exc:  # a broken template in the GGUF
        raise ModelError(f"model {str(path)!r} has an unusable chat template: {exc}") from exc
    if template is None:
        log.warning("%s has no chat template in its metadata; using a generic prompt format", path)
    else:
        # LlamaCPP.chat/stream_chat call messages_to_prompt; complete() without formatted=True calls
        # completion_to_prompt. It ignores per-call kwargs, so stop strings go into generate_kwargs.
        llm.messages_to_prompt = template.messages_to_prompt
        llm.completion_to_prompt = template.completion_to_prompt
        llm.generate_kwargs["stop"] = list(template.stop)
    return llm

