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
    """Reads, before a generation, the model's probability that its reply starts with the refusal.

    llama-cpp-python keeps no logits unless the model is loaded with logits_all (which costs memory
    and time on every token), so the probe evaluates the prompt itself (what llama.cpp does not
    already hold of it, at least its last token) and reads the next-token distribution. The
    generation that follows finds the whole prompt evaluated and starts sampling at once, so the
    probe costs nothing. Called after a generation instead, it re-evaluates the prompt's last token,
    whose KV entries are still cached: one token of work."""

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
        if n == 0 or n > llama.n_ctx():
            return None
        keep = min(shared_prefix(llama.input_ids[: llama.n_tokens], tokens), n - 1)
        llama.n_tokens = keep
        llama.eval(tokens[keep:])
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


JUDGE_SEQ = 1  # the llama.cpp sequence the claim judge evaluates in (the answer is sequence 0)


def side_sequence_params(params: Any) -> Any:
    """llama.cpp context params with room for a second sequence in one unified KV cache (same size):
    the claim judge evaluates in it while the answer waits in sequence 0 (LlamaClaimJudge)."""
    params.n_seq_max = max(int(params.n_seq_max), JUDGE_SEQ + 1)
    params.kv_unified = True
    return params


# How the judge's reply is scored: "normalised" P(yes) / (P(yes) + P(no)) of its first token, or
# "yes": P(yes) alone (mass on other tokens, e.g. a restatement or "The", counts against it).
SCORINGS = ("normalised", "yes")


def yes_score(p_yes: float, p_no: float, scoring: str = "normalised") -> float | None:
    """The claim score from the probabilities of the judge's first reply token being yes and no
    (see SCORINGS); None when "normalised" has neither to go by."""
    if scoring == "yes":
        return p_yes
    if scoring == "normalised":
        return p_yes / (p_yes + p_no) if p_yes + p_no > 0 else None
    raise ValueError(f"claim scoring {scoring!r} is not one of {list(SCORINGS)}")


class LlamaClaimJudge:
    """The claim check on the answering model itself (rag/answer/claims.py): the judge's question is
    appended to the answer's own prompt (system prompt + passages + question), whose tokens llama.cpp
    has already evaluated, so only the question's few dozen tokens are new. The score is read from the
    logits of the reply's first token ("yes", "Yes", " yes", ... against "no", "No", ...): `scoring`
    "normalised" is P(yes) / (P(yes) + P(no)), "yes" is P(yes) alone. With `restate` (a number of
    tokens), the judge first writes, greedily, up to that many tokens (the prompt asks it to restate
    what the question asks for) and is scored on the first token after that line. `prompt` names the
    judge's prompt file (prompts/claim_check*.txt). `evaluated` counts the tokens the judge made
    llama.cpp evaluate (its cost).

    The answer may be mid-generation (the answerer judges each sentence as soon as it is complete),
    so its KV state must survive: the judge's tokens go into a second sequence of the same KV cache
    that shares the prompt's cells (`_eval_aside`, no copy, nothing re-evaluated) and is dropped
    afterwards; the answer's sequence and llama-cpp-python's bookkeeping of it are untouched. Where
    the context has no second sequence or no room for the judge's tokens, the judge evaluates in the
    answer's sequence and then re-evaluates what it overwrote (`_eval_in_place`)."""

    def __init__(self, llm: Any, prompts_dir: Path | None = None, prompt: str | None = None,
                 scoring: str = "normalised", restate: int = 0) -> None:
        from rag.config import PROMPTS_DIR
        from rag.errors import ConfigError
        from rag.prompts import CLAIM_PROMPT

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
        self.restored = 0  # tokens of the answer re-evaluated after judging in place
        self.restated = ""  # the last restatement written (restate > 0), for reports
        self.last: tuple[float, float] | None = None  # the last (P(yes), P(no)) read

    def score(self, messages: Sequence[Any], question: str, sentence: str, cited: Sequence[int],
              evidence: str) -> float | None:
        import numpy as np

        from rag.prompts import judge_messages

        llama = self.llama
        turns = judge_messages(messages, question, sentence, cited, evidence, self.prompts_dir, self.prompt)
        tokens = llama.tokenize(self.llm.messages_to_prompt(turns).encode("utf-8"), special=True)
        if not tokens or len(tokens) + self.restate + 1 > llama.n_ctx():
            return None
        # Reuse the cached prefix (at least the last token is evaluated, for its logits).
        keep = min(shared_prefix(llama.input_ids[: llama.n_tokens], tokens), len(tokens) - 1)
        new = tokens[keep:]
        logits = self._eval_aside(keep, new) if self._room_aside(len(new) + self.restate) else None
        if logits is None:
            logits = self._eval_in_place(keep, new)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        self.last = (float(p[self.yes].sum()), float(p[self.no].sum()))
        return yes_score(*self.last, self.scoring)

    def _restated(self, logits: Any, step: Any) -> Any:
        """With `restate`, write greedily up to that many tokens, each evaluated by `step(token)` (which
        returns the next logits), stopping after a line; the logits after the restatement."""
        import numpy as np

        llama = self.llama
        written: list[int] = []
        newline = set(llama.tokenize(b"\n", add_bos=False, special=False)) if self.restate else set()
        for _ in range(self.restate):
            token = int(np.argmax(logits))
            if token == llama.token_eos():
                break
            written.append(token)
            logits = step(token)
            self.evaluated += 1
            if token in newline or "\n" in llama.detokenize([token]).decode("utf-8", "ignore"):
                break
        self.restated = llama.detokenize(written).decode("utf-8", "ignore").strip() if written else ""
        return logits

    def _room_aside(self, n_new: int) -> bool:
        params = getattr(self.llama, "context_params", None)
        return (params is not None and int(params.n_seq_max) > JUDGE_SEQ and bool(params.kv_unified)
                and self.llama.n_tokens + n_new <= self.llama.n_ctx())

    def _logits(self) -> Any:
        import numpy as np

        llama = self.llama
        return np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),)).astype(np.float64)

    def _eval_aside(self, keep: int, new: Sequence[int]) -> Any:
        """Evaluate `new` (and a restatement) after the first `keep` tokens of the cache in the judge's own
        sequence; the logits of its last token, or None if llama.cpp found no room (the caller judges in place)."""
        import llama_cpp

        llama = self.llama
        memory = llama_cpp.llama_get_memory(llama._ctx.ctx)
        batch = llama._batch
        llama_cpp.llama_memory_seq_rm(memory, JUDGE_SEQ, -1, -1)
        llama_cpp.llama_memory_seq_cp(memory, 0, JUDGE_SEQ, 0, keep)
        at = keep

        def decode(part: list[int]) -> Any:
            nonlocal at
            batch.set_batch(batch=part, n_past=at, logits_all=False)
            for j in range(len(part)):
                batch.batch.seq_id[j][0] = JUDGE_SEQ
            llama._ctx.decode(batch)
            at += len(part)
            return self._logits()

        try:
            logits = None
            for i in range(0, len(new), llama.n_batch):
                logits = decode(list(new[i: i + llama.n_batch]))
            self.evaluated += len(new)
            return self._restated(logits, lambda token: decode([token]))
        except RuntimeError as exc:  # no KV slot (fragmented cache): judge in place instead
            log.debug("claim judge: no room in a second sequence (%s); judging in place", exc)
            return None
        finally:
            llama_cpp.llama_memory_seq_rm(memory, JUDGE_SEQ, -1, -1)

    def _eval_in_place(self, keep: int, new: Sequence[int]) -> Any:
        llama = self.llama
        answer = list(llama.input_ids[keep: llama.n_tokens])
        llama.n_tokens = keep
        llama.eval(new)
        self.evaluated += len(new)

        def step(token: int) -> Any:
            llama.eval([token])
            return self._logits()

        logits = self._restated(self._logits(), step)
        llama.n_tokens = keep
        if answer:  # put back what the answer held, so a generation in progress goes on from it
            llama.eval(answer)
            self.restored += len(answer)
        return logits


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

    def fit_threads(self, settings: Any) -> int | None:
        """With `adapt_threads`, the model's threads fitted to the cores free now (rag/models/threads.py);
        the count set, or None (off, or no llama.cpp context)."""
        if not settings.adapt_threads:
            return None
        from rag.models.threads import fit_llama_threads

        return fit_llama_threads(self.llm, settings.threads)


def llama_helpers_for(llm: Any, refusal: str, state_dir: Path, judge: Any = None) -> LlamaHelpers:
    """The refusal probe, the prompt-state cache (in `state_dir`) and the claim judge of `llm` (each None
    for servers and fakes); `judge`, when given, is used instead of the model's own."""
    return LlamaHelpers(llm, refusal_probe_for(llm, refusal), prompt_cache_for(llm, state_dir),
                        judge if judge is not None else claim_judge_for(llm))
