"""The claim judge's scoring (rag/models/llama_state.LlamaClaimJudge and yes_score) on a
fake llama.cpp model whose next-token logits are scripted, and bench/claim_judge.py's offline scores."""
from __future__ import annotations

import ctypes
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole

from rag.answer.claims import judge_messages
from rag.models.llama_state import yes_score
from rag.errors import ConfigError
from rag.models.llama_state import LlamaClaimJudge, shared_prefix

ROOT = Path(__file__).resolve().parents[2]
VOCAB = ["<eos>", "\n", "yes", "Yes", " yes", " Yes", "YES", "no", "No", " no", " No", "NO", "The", " the",
         " question", " asks"]


class FakeLlama:
    """Word-level tokenizer over VOCAB plus one id per other character; eval records what it evaluates;
    the logits after each eval are `next_logits(evaluated_so_far)`."""

    def __init__(self, next_logits) -> None:
        self.vocab = list(VOCAB)
        self.next_logits = next_logits
        self.input_ids: list[int] = []
        self.n_tokens = 0
        self.evaluated: list[list[int]] = []
        self._logits = (ctypes.c_float * 0)()
        self._ctx = self

    def _id(self, piece: str) -> int:
        if piece not in self.vocab:
            self.vocab.append(piece)
        return self.vocab.index(piece)

    def tokenize(self, data: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        text = data.decode("utf-8")
        for word in sorted(VOCAB[1:], key=len, reverse=True):
            if text.startswith(word):
                return [self._id(word)] + (self.tokenize(text[len(word):].encode(), add_bos, special) if text[len(word):] else [])
        return [self._id(c) for c in text]

    def detokenize(self, tokens: list[int]) -> bytes:
        return "".join(self.vocab[t] for t in tokens).encode()

    def n_ctx(self) -> int:
        return 4096

    def n_vocab(self) -> int:
        return 200

    def token_eos(self) -> int:
        return 0

    def eval(self, tokens: list[int]) -> None:
        self.input_ids = self.input_ids[: self.n_tokens] + list(tokens)
        self.n_tokens = len(self.input_ids)
        self.evaluated.append(list(tokens))
        values = [-30.0] * self.n_vocab()
        for token, logit in self.next_logits(self).items():
            values[self._id(token)] = logit
        self._logits = (ctypes.c_float * len(values))(*values)

    def get_logits(self):  # as llama_cpp's context: a pointer numpy can view
        return ctypes.cast(self._logits, ctypes.POINTER(ctypes.c_float))


class FakeLlamaCPP:
    def __init__(self, llama: FakeLlama) -> None:
        self._model = llama

    def messages_to_prompt(self, messages) -> str:
        return "".join(f"<{m.role.value}>{m.content}\n" for m in messages) + "<assistant>"


MESSAGES = [ChatMessage(role=MessageRole.SYSTEM, content="sys"),
            ChatMessage(role=MessageRole.USER, content="[1] passage\n\nQuestion: Who?")]


def judge_with(next_logits, **kwargs):
    llama = FakeLlama(next_logits)
    return LlamaClaimJudge(FakeLlamaCPP(llama), **kwargs), llama


def test_yes_score_normalised_and_raw():
    assert yes_score(0.3, 0.1) == pytest.approx(0.75)
    assert yes_score(0.3, 0.1, "yes") == pytest.approx(0.3)
    assert yes_score(0.0, 0.0) is None
    with pytest.raises(ValueError, match="'odds'"):
        yes_score(0.3, 0.1, "odds")


def test_bad_scoring_names_the_choices():
    with pytest.raises(ConfigError, match="'odds'.*normalised"):
        judge_with(lambda _: {}, scoring="odds")


def test_score_reads_yes_and_no_mass_and_reuses_the_prompt_prefix():
    # yes-like tokens share e^2 + e^1, no-like e^1, "The" e^2: normalised = (e^2+e)/(e^2+2e)
    judge, llama = judge_with(lambda _: {"Yes": 2.0, " yes": 1.0, "No": 1.0, "The": 2.0})
    prompt = llama.tokenize(FakeLlamaCPP(llama).messages_to_prompt(MESSAGES).encode())
    llama.eval(prompt)  # the answer's prompt, as the answerer left it
    llama.evaluated.clear()
    score = judge.score(MESSAGES, "Who?", "Zeine is the answer [1].", [1], "Zeine is prime minister.")
    e = math.e
    assert score == pytest.approx((e**2 + e) / (e**2 + 2 * e), rel=1e-4)
    # only the judge's own tokens were evaluated: the prompt up to the question's end was kept (then the
    # prompt's tail the judge overwrote is evaluated again, so an answer in progress goes on from it)
    assert len(llama.evaluated) in (1, 2) and judge.restored == sum(len(e) for e in llama.evaluated[1:])
    assert llama.input_ids == prompt
    turns = judge_messages(MESSAGES, "Who?", "Zeine is the answer [1].", [1], "Zeine is prime minister.")
    full = llama.tokenize(FakeLlamaCPP(llama).messages_to_prompt(turns).encode())
    shared = shared_prefix(prompt, full)
    assert shared >= len(prompt) - len("\n<assistant>")  # all of the prompt up to the question's end
    assert judge.evaluated == len(llama.evaluated[0]) == len(full) - shared
    raw, _ = judge_with(lambda _: {"Yes": 2.0, " yes": 1.0, "No": 1.0, "The": 2.0}, scoring="yes")
    total = 2 * e**2 + 2 * e + (200 - 4) * math.exp(-30)
    assert raw.score(MESSAGES, "Who?", "s", [1], "e") == pytest.approx((e**2 + e) / total, rel=1e-3)


def test_restate_writes_a_line_then_scores_the_next_token():
    def next_logits(llama):
        text = llama.detokenize(llama.input_ids).decode()
        tail = text.rsplit("<assistant>", 1)[-1]
        if tail == "":
            return {"The": 5.0}
        if tail == "The":
            return {" question": 5.0}
        if tail == "The question":
            return {"\n": 5.0}
        return {"No": 3.0, "Yes": 0.0}  # after the restatement, the verdict

    judge, llama = judge_with(next_logits, prompt="claim_check_restate", restate=8)
    score = judge.score(MESSAGES, "Who?", "s", [1], "e")
    assert judge.restated == "The question"
    assert score == pytest.approx(1 / (1 + math.e**3), rel=1e-4)
    assert judge.evaluated == len(llama.evaluated[0]) + 3  # the prompt, then The, " question", "\n"


def test_restate_prompt_asks_for_the_relation_and_keeps_the_prompt_prefix():
    turns = judge_messages(MESSAGES, "Who is the president?", "s", [2], 'He said "hi"', prompt="claim_check_restate")
    assert turns[-1].content.startswith(MESSAGES[-1].content)
    assert "[2]" in turns[-1].content and "He said 'hi'" in turns[-1].content
    assert "what the question asks for" in turns[-1].content


def _bench():
    spec = importlib.util.spec_from_file_location("claim_judge_bench", ROOT / "bench" / "claim_judge.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


def test_bench_auc_and_curve_from_cached_scores():
    cj = _bench()

    def item(must_refuse, p_yes, p_no=0.1, evidence="Zeine is prime minister of Niger"):
        return {"question": "Who is the prime minister of Niger?", "must_refuse": must_refuse,
                "judged": [{"sentence": "s", "evidence": evidence,
                            "scores": {"current": {"p_yes": p_yes, "p_no": p_no, "ms": 1.0, "tokens": 3}}}]}

    items = [item(False, 0.9), item(False, 0.5), item(True, 0.4), item(True, 0.5), {"question": "q",
             "must_refuse": True, "judged": []}]
    result = cj.score_variant(items, "current")
    assert (result["n_answer"], result["n_refuse"]) == (2, 2)
    # 0.9/1.0 beats both near misses; 0.5/0.6 ties 0.5/0.6 and beats 0.4/0.5: (2 + 1.5) / 4
    assert result["auc"] == pytest.approx(0.875)
    at = {c["threshold"]: c for c in result["curve"]}
    assert at[0.85] == {"threshold": 0.85, "refused": 1.0, "answered": 0.5}
    assert cj.roc_auc([1.0], []) is None
    assert cj.question_coverage("Who is the prime minister of Niger?", "Zeine is prime minister of Niger") == 1.0
    assert cj.question_coverage("Who is the president of Niger?", "Zeine is prime minister of Niger") == 0.5
    assert cj.item_score(item(False, 0.9), "current*coverage") == pytest.approx(0.9)


def test_missing_words_name_the_question_terms_the_passage_sentence_lacks():
    from rag.text import missing_words

    fact = "Deputy Secretary of State Kurt Campbell met with Niger’s Prime Minister Ali Lamine Zeine"
    assert missing_words("What is the name of Niger's ousted president?", fact) == ["ousted", "president"]
    assert missing_words("Who is the Deputy Secretary of Defense who met Niger's prime minister?", fact) == ["Defense"]
    # stemmed like the support check: "met" and "meets" differ, "ministers" meets "Minister"
    assert missing_words("Which ministers did Campbell meet?", fact) == ["meet"]
    assert missing_words("Who met Niger's prime minister?", fact) == []


def test_missing_prompt_lists_them_or_says_none():
    fact = "Zeine is the Prime Minister of Niger."
    asked = judge_messages(MESSAGES, "Who is Niger's president?", "s", [1], fact, prompt="claim_check_missing")
    assert 'does not use: "president".' in asked[-1].content
    straight = judge_messages(MESSAGES, "Who is Niger's prime minister?", "s", [1], fact, prompt="claim_check_missing")
    assert "does not use: none." in straight[-1].content


def test_bench_gates_pairs_two_settings_on_the_same_items(tmp_path, capsys):
    cj = _bench()

    def item(id_, must_refuse, claim, contains=True):
        return {"id": id_, "must_refuse": must_refuse, "abstained": False, "contains": contains,
                "signals": {"best_score": 0.9, "p_refusal": 0.1, "retried": False, "claims": [claim]}}

    report = tmp_path / "open.json"
    report.write_text(json.dumps({"items": [item("a", False, 0.9), item("b", False, 0.62), item("u", True, 0.63),
                                            item("v", True, 0.64)]}))
    cj.main(["gates", str(report), "--a", "0.3,0.4,0.35,0.6", "--b", "0.3,0.4,0.35,0.65"])
    out = capsys.readouterr().out
    # 0.65 refuses u and v (right now) and b (a right answer lost): 2 / 1
    assert "| open | 4 | 0.000 → 1.000 | 0.000 → 0.500 | 1.000 → 0.500 | 2 / 1 | 1.000 |" in out
    with pytest.raises(SystemExit, match="min_score,refusal_prob,retry_below,claim_threshold"):
        cj.main(["gates", str(report), "--a", "0.3,0.4", "--b", "0.3,0.4,0.35,0.65"])
