"""Real MiniLM, real FAISS, real default bundled GGUF model, on the seed article (issue 2's acceptance)."""
import json
import subprocess
import sys

import pytest

from rag.answer.answerer import REFUSAL
from rag.errors import IndexMismatchError
from rag.store.faiss_index import IndexStore

pytestmark = pytest.mark.integration

ANSWERABLE = [
    ("How much did Washington spend to establish the base in northern Niger?", "110 million"),
    ("Who is Niger's prime minister?", "Zeine"),
    ("When did the State Department declare the takeover in Niger a coup?", "October"),
    ("How many American soldiers are in Niger?", "1,000"),
    ("How many instructors did Russia send to Niger?", "100"),
    ("Which newspaper first reported the upcoming withdrawal?", "New York Times"),
    ("What happened to Niger's president when the junta took over?", "house arrest"),
]
UNANSWERABLE = [
    "What is the capital of France?",
    "Who won the FIFA World Cup in 2018?",
]


def test_the_acceptance_question_is_answered_and_cited(real_rag):
    answer = real_rag.ask("How much did Washington spend to establish the base in northern Niger?")
    assert not answer.abstained, answer.refusal_reason
    assert "110 million" in answer.text
    assert any("$110 million" in c.text for c in answer.citations)
    source = real_rag.store.chunks[next(iter(real_rag.store.chunks))].source
    text = open(source, encoding="utf-8").read()
    assert all(text[c.start:c.end] == c.text for c in answer.citations)


def test_at_least_six_of_seven_answered_with_a_citation_holding_the_answer(real_rag):
    """The 1.5B default with the whole article in the prompt; the bar leaves room for one miss."""
    results = {}
    for question, expected in ANSWERABLE:
        answer = real_rag.ask(question)
        results[question] = (
            not answer.abstained
            and expected.lower() in answer.text.lower()
            and any(expected.lower() in c.text.lower() for c in answer.citations)
        ), answer.model_text
    assert sum(ok for ok, _ in results.values()) >= 6, results


@pytest.mark.parametrize("question", UNANSWERABLE)
def test_refuses_what_the_article_does_not_say(real_rag, question):
    answer = real_rag.ask(question)
    assert answer.abstained, answer.text
    assert answer.text == REFUSAL and not answer.citations


def test_real_embeddings_rank_the_answer_passage_first(real_rag):
    passages = real_rag.retrieve("How much did Washington spend to establish the base in northern Niger?")
    assert "$110 million" in passages[0].text
    assert passages[0].score > 0.5 > passages[-1].score - 0.2


def test_index_built_with_minilm_refuses_another_model(real_rag):
    with pytest.raises(IndexMismatchError, match="all-MiniLM-L6-v2"):
        IndexStore.open(real_rag.store.directory, "another-model", 768)


def test_cli_ask_json(real_rag, tmp_path):
    """The acceptance command, through the console entry point, on its own fresh index."""
    index = tmp_path / "cli-index"
    run = lambda *args: subprocess.run([sys.executable, "-m", "rag.app.cli", *args], capture_output=True, text=True, timeout=900)
    from rag.config import SEEDS_DIR

    ingest = run("ingest", str(SEEDS_DIR / "000_a5055be445bd665f.txt"), "--index", str(index))
    assert ingest.returncode == 0, ingest.stderr
    out = run("ask", "--json", "How much did Washington spend to establish the base in northern Niger?", "--index", str(index))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) >= {"answer", "abstained", "citations", "timings"}
    assert "110 million" in data["answer"] and not data["abstained"]
    assert any("$110 million" in c["text"] for c in data["citations"])
    assert set(data["citations"][0]) >= {"n", "text", "source", "page", "start", "end", "score"}
    refused = json.loads(run("ask", "--json", "What is the capital of France?", "--index", str(index)).stdout)
    assert refused["abstained"] and refused["answer"] == REFUSAL


def test_an_answer_sentence_with_a_wrong_number_is_flagged(real_rag, real_embedder, tmp_path):
    """Real MiniLM retrieval and the real seed index; the model is scripted so that its second
    sentence contradicts the cited passage (16 years ago, where the passage says six)."""
    from rag.pipeline import RAG
    from rag.testing import FakeLLM

    reply = ("Washington spent $110 million to establish the base in northern Niger [1]. "
             "The base was built 16 years ago [1].")
    rag = RAG(real_rag.settings, real_rag.store, real_embedder, FakeLLM([reply]))
    answer = rag.ask("How much did Washington spend on the base in northern Niger, and how long ago was it built?")
    assert not answer.abstained, answer.refusal_reason
    first, second = answer.sentences
    assert first.supported and "110 million" in first.text
    assert not second.supported and "16" in second.text
    assert answer.unsupported == [second.text]
    # the cited passage is the one with the real figures, so the flag is about the number, not retrieval
    assert any("six years ago" in c.text and "110 million" in c.text for c in answer.citations)

    # an answer made only of the wrong number is refused, with the reason
    wrong_only = RAG(real_rag.settings, real_rag.store, real_embedder,
                     FakeLLM(["The base in northern Niger was built 16 years ago [1]."]))
    refused = wrong_only.ask("How long ago was the base in northern Niger built?")
    assert refused.abstained and "supported" in refused.refusal_reason


def test_onnx_backend_matches_torch_and_int8_gets_its_own_index_stamp(real_embedder, tmp_path):
    pytest.importorskip("onnxruntime")
    from rag.models.embedding import OnnxEmbedder

    texts = ["Washington spent about $110 million to establish the base in northern Niger.",
             "Who took power in Niger after the coup?", "short", "word " * 400]  # the last is truncated at 256
    reference = real_embedder.embed(texts)
    onnx = OnnxEmbedder("all-MiniLM-L6-v2", tmp_path, threads=2)
    assert onnx.name == real_embedder.name and onnx.dim == 384
    assert (onnx.embed(texts) * reference).sum(axis=1).min() > 0.9999
    assert (tmp_path / "embed" / "all-MiniLM-L6-v2.onnx").is_file()  # exported once, then reused
    int8 = OnnxEmbedder("all-MiniLM-L6-v2", tmp_path, threads=2, int8=True)
    assert int8.name == "all-MiniLM-L6-v2+int8"
    cosines = (int8.embed(texts) * reference).sum(axis=1)
    assert cosines.min() > 0.8 and cosines.min() < 0.9999  # close, but not the same vectors
    # an index built with torch vectors refuses the int8 embedder
    from rag.errors import IndexMismatchError
    from rag.store.faiss_index import IndexStore

    store = IndexStore.create(tmp_path / "idx", real_embedder.name, 384, 160, 1)
    store.save()
    with pytest.raises(IndexMismatchError, match="int8"):
        IndexStore.open(tmp_path / "idx", int8.name, 384)


def test_the_whole_article_is_shown_in_document_order_with_refusal_signals(real_rag):
    ranked, shown = real_rag.context("Who is Niger's prime minister?")
    assert real_rag.corpus is not None and real_rag.corpus.fits()
    assert [p.start for p in shown] == sorted(p.start for p in shown)  # the fixed order of the article
    assert {p.start for p in ranked} == {p.start for p in shown} and ranked[0].score >= ranked[-1].score
    answer = real_rag.ask("Who is Niger's prime minister?")
    assert not answer.abstained and "Zeine" in answer.text, answer.model_text
    # llama.cpp's probability of the refusal's first token, read from the real model
    assert answer.signals.p_refusal is not None and 0.0 < answer.signals.p_refusal < 0.5
    assert answer.signals.best_score == max(p.score for p in ranked)


def test_a_follow_up_rewritten_to_the_wrong_country_is_not_answered(real_rag):
    answer = real_rag.ask("Who is the prime minister in Nigeria?")
    assert answer.abstained or "Nigeria" not in answer.text, (answer.text, answer.model_text)


def test_the_prompt_state_saved_with_the_index_serves_a_fresh_model(real_rag, tmp_path):
    """A second process (here: a second model instance) loads the KV state saved after the first
    question, so it does not evaluate the article again; its answer is the same."""
    from rag.config import Settings
    from rag.pipeline import PROMPT_STATE_DIR, RAG

    settings = Settings.load(index_dir=tmp_path / "index")
    first = RAG.open(settings=settings, embedder=real_rag.embedder, seed=True)
    question = "Which newspaper first reported the upcoming withdrawal?"
    a = first.ask(question)
    states = list((tmp_path / "index" / PROMPT_STATE_DIR).glob("*.llama-state"))
    assert len(states) == 1 and states[0].stat().st_size > 0
    assert "restore_state" not in a.timings
    second = RAG.open(settings=settings, embedder=real_rag.embedder)
    b = second.ask(question)
    assert "restore_state" in b.timings  # loaded from the file, not evaluated
    assert b.text == a.text and not b.abstained and "New York Times" in b.text
