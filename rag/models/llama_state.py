"""What the pipeline reads from, and keeps of, a loaded llama.cpp model (llama-index `LlamaCPP`).

`LlamaRefusalProbe`: the model's probability of starting its reply with the refusal, and a logit bias
that bans it for a second try. `LlamaClaimJudge`: the claim check (rag/answer/claims.py) read from
the model's probability of replying "yes" to a question appended to the answer's prompt. `PromptCache`: the KV state of a prompt saved next to the index, so the
first question after a restart skips the shared prefix. Both return None for servers and fakes, where
there is no llama.cpp state to read.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class LlamaRefusalProbe:
    """Reads, after a generation, the model's probability that its reply starts with the refusal.

    llama-cpp-python keeps no logits unless the model is loaded with logits_all (which costs memory
    and time on every token), so the probe re-evaluates the prompt's last token, whose KV entries are
    still cached, and reads the next-token distribution: one token of work. The cache then ends at the
    prompt, so the next question still reuses the shared prefix."""

    def __init__(self, llm: Any, refusal: str) -> None:
        self.llm = llm
        self.llama = llm._model
        first = self.llama.tokenize(refusal.encode("utf-8"), add_bos=False, special=False)
        self.refusal_token = first[0]

    @contextlib.contextmanager
    def without_refusal(self) -> Iterator[None]:
        """While held, the refusal's first token is banned (a logit bias), so the model must answer.
        LlamaCPP ignores per-call kwargs, hence its generate_kwargs; the caller holds the LLM lock."""
        kwargs = self.llm.generate_kwargs
        before = kwargs.get("logit_bias")
        kwargs["logit_bias"] = {**(before or {}), self.refusal_token: -100.0}
        try:
            yield
        finally:
            if before is None:
                kwargs.pop("logit_bias", None)
            else:
                kwargs["logit_bias"] = before

    def refusal_probability(self, messages: Sequence[Any]) -> float | None:
        import numpy as np

        llama = self.llama
        tokens = llama.tokenize(self.llm.messages_to_prompt(messages).encode("utf-8"), special=True)
        n = len(tokens)
        if n == 0 or llama.n_tokens < n or list(llama.input_ids[:n]) != tokens:
            return None  # the cache no longer holds this prompt
        llama.n_tokens = n - 1
        llama.eval([tokens[-1]])
        logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),)).astype(np.float64)
        top = logits.max()
        return float(np.exp(logits[self.refusal_token] - top) / np.exp(logits - top).sum())


def shared_prefix(cached: Sequence[int], tokens: Sequence[int]) -> int:
    """How many leading tokens two token lists share (what llama.cpp's KV cache can keep)."""
    n = 0
    for a, b in zip(cached, tokens):
        if a != b:
            break
        n += 1
    return n


def _first_tokens(llama: Any, words: Sequence[str]) -> list[int]:
    ids = [llama.tokenize(w.encode("utf-8"), add_bos=False, special=False)[0] for w in words]
    return list(dict.fromkeys(ids))


class LlamaClaimJudge:
    """The claim check on the answering model itself (rag/answer/claims.py): the judge's question is
    appended to the answer's own prompt (system prompt + passages + question), whose tokens llama.cpp
    has just evaluated, so only the question's few dozen tokens are new. The score is read from the
    logits of the reply's first token ("yes", "Yes", " yes", ... against "no", "No", ...):
    `scoring` "normalised" is P(yes) / (P(yes) + P(no)), "yes" is P(yes) alone. With `restate`
    (a number of tokens), the judge first writes, greedily, up to that many tokens (the prompt asks it
    to restate what the question asks for) and is scored on the first token after that line.
    Afterwards the cache still starts with the prompt's shared prefix, so the next question reuses it.
    `evaluated` counts the tokens the judge made llama.cpp evaluate (its cost)."""

    def __init__(self, llm: Any, prompts_dir: Path | None = None, prompt: str | None = None,
                 scoring: str = "normalised", restate: int = 0) -> None:
        from rag.answer.claims import CLAIM_PROMPT, SCORINGS
        from rag.config import PROMPTS_DIR
        from rag.errors import ConfigError

        if scoring not in SCORINGS:
            raise ConfigError(f"claim scoring {scoring!r} is not one of {sorted(SCORINGS)}")
        self.llm = llm
        self.llama = llm._model
        self.prompts_dir = prompts_dir or PROMPTS_DIR
        self.prompt = prompt or CLAIM_PROMPT
        self.scoring = scoring
        self.restate = restate
        self.yes = _first_tokens(self.llama, ["yes", "Yes", " yes", " Yes", "YES"])
        self.no = _first_tokens(self.llama, ["no", "No", " no", " No", "NO"])
        if set(self.yes) & set(self.no):
            raise ValueError("the tokenizer's first tokens of yes and no overlap")
        self.evaluated = 0
        self.restated = ""  # the last restatement written (restate > 0), for reports
        self.last: tuple[float, float] | None = None  # the last (P(yes), P(no)) read

    def _logits(self) -> Any:
        import numpy as np

        llama = self.llama
        return np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),)).astype(np.float64)

    def score(self, messages: Sequence[Any], question: str, sentence: str, cited: Sequence[int],
              evidence: str) -> float | None:
        import numpy as np

        from rag.answer.claims import judge_messages, yes_score

        llama = self.llama
        turns = judge_messages(messages, question, sentence, cited, evidence, self.prompts_dir, self.prompt)
        tokens = llama.tokenize(self.llm.messages_to_prompt(turns).encode("utf-8"), special=True)
        if not tokens or len(tokens) + self.restate + 1 > llama.n_ctx():
            return None
        # Reuse the cached prefix (at least the last token is evaluated, for its logits).
        keep = min(shared_prefix(llama.input_ids[: llama.n_tokens], tokens), len(tokens) - 1)
        llama.n_tokens = keep
        llama.eval(tokens[keep:])
        self.evaluated += len(tokens) - keep
        logits = self._logits()
        if self.restate:
            written: list[int] = []
            newline = set(llama.tokenize(b"\n", add_bos=False, special=False))
            for _ in range(self.restate):
                token = int(np.argmax(logits))
                if token == llama.token_eos():
                    break
                written.append(token)
                llama.eval([token])
                self.evaluated += 1
                logits = self._logits()
                if token in newline or "\n" in llama.detokenize([token]).decode("utf-8", "ignore"):
                    break
            self.restated = llama.detokenize(written).decode("utf-8", "ignore").strip()
        p = np.exp(logits - logits.max())
        p /= p.sum()
        self.last = (float(p[self.yes].sum()), float(p[self.no].sum()))
        return yes_score(*self.last, self.scoring)


def claim_judge_for(llm: Any) -> LlamaClaimJudge | None:
    """The claim judge for a llama-index LlamaCPP model; None for servers and fakes (no logits to read)."""
    llama = getattr(llm, "_model", None)
    if llama is None or not hasattr(llama, "tokenize") or not hasattr(llama, "_ctx") \
            or not hasattr(getattr(llm, "messages_to_prompt", None), "__call__"):
        return None
    try:
        return LlamaClaimJudge(llm)
    except Exception as exc:  # an exotic tokenizer: the answer just goes unjudged
        log.warning("no claim check for this model: %s", exc)
        return None


def refusal_probe_for(llm: Any, refusal: str) -> LlamaRefusalProbe | None:
    """The probe for a llama-index LlamaCPP model; None for servers and fakes (no logits to read)."""
    llama = getattr(llm, "_model", None)
    if llama is None or not hasattr(llama, "tokenize") or not hasattr(llama, "_ctx"):
        return None
    try:
        return LlamaRefusalProbe(llm, refusal)
    except Exception as exc:  # an exotic tokenizer: the refusal decision just lacks this signal
        log.warning("no refusal probability for this model: %s", exc)
        return None


class PromptCache:
    """llama.cpp's KV state for a prompt, saved next to the index, so that the first question after a
    restart skips evaluating the shared prefix (system prompt + the whole corpus) too.

    llama-cpp-python already reuses the longest common token prefix of consecutive prompts within a
    process; this only carries that state across processes. The file is named by a hash of the model
    file and the prompt's text before the question, so a changed corpus, prompt or model never loads a
    stale state: it just finds no file. Written to a temp file and renamed, so a crash leaves no torn
    file; older states in the folder are removed after a save."""

    def __init__(self, llm: Any, directory: Path) -> None:
        self.llm = llm
        self.llama = llm._model
        self.directory = Path(directory)
        model = Path(getattr(llm, "model_path", "") or "")
        try:
            self.model_id = f"{model.name}:{model.stat().st_size}"
        except OSError:
            self.model_id = model.name
        self._saved: set[str] = set()

    def _prompt(self, messages: Sequence[Any], question: str) -> tuple[list[int], str]:
        prompt = self.llm.messages_to_prompt(messages)
        prefix = prompt[: prompt.rfind(question)] if question in prompt else prompt
        key = hashlib.sha256(f"{self.model_id}\n{prefix}".encode("utf-8")).hexdigest()[:24]
        return self.llama.tokenize(prompt.encode("utf-8"), special=True), key

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.llama-state"

    def restore(self, messages: Sequence[Any], question: str) -> bool:
        """Load the saved state if the model's cache does not already hold this prompt's prefix."""
        import llama_cpp

        tokens, key = self._prompt(messages, question)
        llama = self.llama
        shared = 0
        for a, b in zip(llama.input_ids[: llama.n_tokens], tokens):
            if a != b:
                break
            shared += 1
        path = self._path(key)
        if shared >= len(tokens) // 2 or not path.is_file():
            return False
        n_ctx = llama.n_ctx()
        out = (llama_cpp.llama_token * n_ctx)()
        count = ctypes.c_size_t(0)
        if not llama_cpp.llama_state_load_file(llama._ctx.ctx, str(path).encode("utf-8"), out, n_ctx, ctypes.byref(count)):
            log.warning("could not load the saved prompt state %s; evaluating the prompt instead", path)
            llama.reset()
            return False
        n = count.value
        llama.input_ids[:n] = out[:n]
        llama.n_tokens = n
        llama._requires_eval = True  # the logits are not live: an exact match replays one token
        self._saved.add(key)
        return True

    def save(self, messages: Sequence[Any], question: str) -> None:
        """Save the model's state once per prompt prefix (the cache must hold this prompt)."""
        import llama_cpp

        tokens, key = self._prompt(messages, question)
        llama = self.llama
        if key in self._saved or self._path(key).is_file():
            self._saved.add(key)
            return
        n = llama.n_tokens
        if n < len(tokens) or list(llama.input_ids[: len(tokens)]) != tokens:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".tmp-{key}-{os.getpid()}"
        ids = (llama_cpp.llama_token * n)(*llama.input_ids[:n])
        try:
            if not llama_cpp.llama_state_save_file(llama._ctx.ctx, str(tmp).encode("utf-8"), ids, n):
                raise OSError("llama_state_save_file failed")
            os.replace(tmp, self._path(key))
        except OSError as exc:
            log.warning("could not save the prompt state in %s: %s", self.directory, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        self._saved.add(key)
        for old in self.directory.glob("*.llama-state"):
            if old.name != self._path(key).name:
                with contextlib.suppress(OSError):
                    old.unlink()


def prompt_cache_for(llm: Any, directory: Path) -> PromptCache | None:
    """A PromptCache for a llama-index LlamaCPP model; None for servers and fakes."""
    llama = getattr(llm, "_model", None)
    if llama is None or not hasattr(llama, "_ctx") or not hasattr(llama, "input_ids"):
        return None
    return PromptCache(llm, directory)


@dataclass(frozen=True)
class LlamaHelpers:
    """What the answerer reads from a llama.cpp model besides its text, made once per loaded model."""

    llm: Any
    probe: LlamaRefusalProbe | None
    prompt_state: PromptCache | None
    judge: Any  # a ClaimJudge: LlamaClaimJudge, or the one the caller passed


def llama_helpers_for(llm: Any, refusal: str, state_dir: Path, judge: Any = None) -> LlamaHelpers:
    """The refusal probe, the prompt-state cache (in `state_dir`) and the claim judge of `llm` (each None
    for servers and fakes); `judge`, when given, is used instead of the model's own."""
    return LlamaHelpers(llm, refusal_probe_for(llm, refusal), prompt_cache_for(llm, state_dir),
                        judge if judge is not None else claim_judge_for(llm))
