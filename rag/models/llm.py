"""The language model: `build_llm` turns `Settings.model` into a llama-index LLM.

`LlamaCPP` for bundled names (`rag.models.bundled`) and .gguf paths, rendering chat messages with the
model's OWN chat template from the GGUF metadata; `OpenAILike` for an http(s) URL. Loading takes seconds,
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


def _build_server_llm(settings: "Settings") -> "LLM":
    try:
        from llama_index.llms.openai_like import OpenAILike
    except ImportError as exc:
        raise ModelError(
            "using an OpenAI-compatible server needs the package llama-index-llms-openai-like: "
            "pip install llama-index-llms-openai-like"
        ) from exc
    try:
        return OpenAILike(
            api_base=settings.model,
            model=settings.server_model,
            api_key=settings.api_key,
            is_chat_model=True,
            context_window=settings.context_window,
            max_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
        )
    except Exception as exc:  # pydantic validation etc.
        raise ModelError(f"cannot set up the server model {settings.model}: {exc}") from exc


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
def loading_llama() -> Iterator[None]:
    """Hold while constructing any llama_cpp.Llama (directly or through LlamaCPP): one load at a time,
    with the AMX workaround when this build and CPU need it. bench/generate.py uses it too."""
    avoid_amx = _amx_compiled_in() and _cpu_has_amx()
    with _LOAD_LOCK, (_model_params_without_extra_buffers() if avoid_amx else contextlib.nullcontext()):
        yield


LLAMA_N_BATCH = 512


def build_llm(settings: "Settings", *, progress: Callable[[int, int], None] | None = None) -> "LLM":
    """A llama-index LLM for `settings.model`: a bundled name or .gguf path -> LlamaCPP (loaded now,
    seconds), an http(s) URL -> OpenAILike (no network contact until used). Not cached: keep the result."""
    if _is_url(settings.model):
        return _build_server_llm(settings)

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
                model_kwargs={"n_threads": settings.threads, "n_batch": LLAMA_N_BATCH, "verbose": False},
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

