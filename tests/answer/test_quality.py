"""Issue 5's pieces on hand-made data: rank fusion, hybrid retrieval, MMR, sentence selection."""
import numpy as np
import pytest

from rag.answer.context import SentenceSelector
from rag.answer.retrieval import (
    DenseRetriever,
    DiverseRetriever,
    HybridRetriever,
    mmr_order,
    reciprocal_rank_fusion,
)
from rag.config import Settings
from rag.errors import ConfigError
from rag.store.faiss_index import IndexStore
from rag.testing import FakeEmbedder
from rag.types import Chunk, Passage


def test_rrf_rewards_agreement_and_keeps_single_list_hits():
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 4, 1]], k=4)
    assert fused[:2] == [1, 3]  # in both lists
    assert set(fused) == {1, 2, 3, 4}
    assert reciprocal_rank_fusion([[5, 6]], k=1) == [5]


def _store(tmp_path, texts):
    emb = FakeEmbedder(dim=16)  # few dimensions: many collisions, so dense alone is unreliable
    store = IndexStore.create(tmp_path, emb.name, emb.dim, 100, 0)
    first = store.reserve_ids(len(texts))
    chunks = [Chunk(id=first + i, doc_id=f"d{i}", source=f"/d{i}.txt", text=t, start=0, end=len(t)) for i, t in enumerate(texts)]
    for c in chunks:
        store.add(c.doc_id, c.source, len(c.text), [c], emb.embed([c.text]))
    return store, emb


def test_hybrid_finds_the_rare_keyword_and_scores_on_the_cosine_scale(tmp_path):
    texts = [f"general remarks about weather and travel number {i}" for i in range(30)]
    texts.append("The serial code XJ-4471 appears only here.")
    store, emb = _store(tmp_path, texts)
    hybrid = HybridRetriever(store, emb).retrieve("Where does XJ-4471 appear?", 3)
    assert any("XJ-4471" in p.text for p in hybrid)
    dense = {p.chunk.id: p.score for p in DenseRetriever(store, emb).retrieve("Where does XJ-4471 appear?", 31)}
    for p in hybrid:
        assert abs(p.score - dense[p.chunk.id]) < 1e-5


def test_hybrid_sees_deletions(tmp_path):
    store, emb = _store(tmp_path, ["alpha keyword zebra", "beta other words", "gamma more words"])
    retriever = HybridRetriever(store, emb)
    assert retriever.retrieve("zebra", 1)[0].text == "alpha keyword zebra"
    store.remove("d0")
    assert all("zebra" not in p.text for p in retriever.retrieve("zebra", 2))


def test_selector_keeps_the_relevant_sentence_with_exact_offsets():
    doc = ("Intro words here. The weather was mild all week. Washington spent about $110 million on the base. "
           "Construction began in 2016. Unrelated closing remarks follow.")
    offset = 1000  # the chunk starts at char 1000 of its document
    chunk = Chunk(id=0, doc_id="d", source="/d.txt", text=doc, start=offset, end=offset + len(doc))
    selected, = SentenceSelector(FakeEmbedder(dim=256), max_words=15).select(
        "How much did Washington spend on the base?", [Passage.of(chunk, 0.7)])
    assert "$110 million" in selected.text
    assert len(selected.text.split()) <= 15
    assert doc[selected.start - offset:selected.end - offset] == selected.text
    assert selected.score == 0.7 and selected.chunk is chunk


class BlurEmbedder(FakeEmbedder):
    """Every text gets the same vector: only the question's words can tell the sentences apart."""

    def embed(self, texts, progress=False):
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        out[:, 0] = 1.0
        return out


def test_the_question_s_words_pick_the_sentence_when_the_embedding_cannot_tell():
    doc = ("The mission began in 2013 with a small team. Officials praised the cooperation. "
           "Enfuvirtide is the first HIV fusion inhibitor approved for treatment. The report ends here.")
    chunk = Chunk(id=0, doc_id="d", source="/d.txt", text=doc, start=0, end=len(doc))
    question = "What is Enfuvirtide?"
    blind, = SentenceSelector(BlurEmbedder(dim=8), max_words=12).select(question, [Passage.of(chunk, 0.5)])
    assert "Enfuvirtide" not in blind.text  # cosine ties: the first sentence wins
    picked, = SentenceSelector(BlurEmbedder(dim=8), max_words=12, word_weight=0.2).select(
        question, [Passage.of(chunk, 0.5)])
    assert picked.text.startswith("Enfuvirtide is the first HIV fusion inhibitor")
    assert doc[picked.start:picked.end] == picked.text
    with pytest.raises(ConfigError, match="word_weight=-0.1"):
        SentenceSelector(BlurEmbedder(), word_weight=-0.1)


def test_context_word_weight_reaches_the_selector(tmp_path):
    from rag.pipeline import RAG

    rag = RAG.open(tmp_path / "idx", Settings(index_dir=tmp_path / "idx", context="sentences", context_word_weight=0.3),
                   embedder=FakeEmbedder(), seed=False)
    assert rag.selector.word_weight == 0.3
    with pytest.raises(Exception, match="context_word_weight"):
        Settings(context_word_weight=-1)


def test_mmr_skips_a_near_duplicate_of_what_it_already_picked():
    a = np.array([1.0, 0.0, 0.0]); b = np.array([0.99, 0.141, 0.0]); c = np.array([0.0, 0.0, 1.0])
    vectors = np.stack([a, b / np.linalg.norm(b), c]).astype(np.float32)
    relevance = np.array([1.0, 0.9, 0.5], dtype=np.float32)
    assert mmr_order(relevance, vectors, 2, diversity=0.3) == [0, 2]   # b is almost a
    assert mmr_order(relevance, vectors, 2, diversity=0.0) == [0, 1]   # pure relevance
    assert mmr_order(relevance, vectors, 5, diversity=0.3) == [0, 2, 1]  # k beyond the pool


def test_diverse_retriever_trades_a_duplicate_chunk_for_a_new_one(tmp_path):
    same = "The base near Agadez cost about $110 million to build."
    texts = [same, same + " Again.", "Russia sent military instructors to Niamey in April 2024."]
    store, emb = _store(tmp_path, texts)
    dense = DenseRetriever(store, emb)
    question = "How much did the base near Agadez cost to build?"
    plain = [p.text for p in dense.retrieve(question, 2)]
    assert sorted(plain) == sorted(texts[:2])  # the near-duplicates fill both slots
    diverse = DiverseRetriever(dense, store, emb, diversity=0.5).retrieve(question, 2)
    assert [p.text for p in diverse] == [plain[0], texts[2]]
    assert diverse[1].score == pytest.approx(dense.retrieve(question, 3)[2].score)  # still the cosine
    assert [p.text for p in DiverseRetriever(dense, store, emb, diversity=0.0).retrieve(question, 2)] == plain


def test_diversity_is_validated():
    with pytest.raises(ConfigError, match="diversity=1.0"):
        Settings(diversity=1.0)
    assert Settings(diversity=0.3).diversity == 0.3


def test_diverse_retriever_re_embeds_when_the_index_cannot_reconstruct(tmp_path, monkeypatch):
    texts = ["alpha beta gamma", "alpha beta gamma delta", "zeta eta theta"]
    store, emb = _store(tmp_path, texts)
    np.testing.assert_allclose(store.vectors([2]),
                               emb.embed([texts[2]]), atol=1e-6)
    expected = [p.text for p in DiverseRetriever(DenseRetriever(store, emb), store, emb, 0.5).retrieve("alpha beta", 2)]
    monkeypatch.setattr(store, "vectors", lambda ids: None)  # as for an IVF index
    again = [p.text for p in DiverseRetriever(DenseRetriever(store, emb), store, emb, 0.5).retrieve("alpha beta", 2)]
    assert again == expected


def test_the_gate_reads_the_best_passage_not_the_first():
    from rag.answer.answerer import Answerer
    from rag.testing import FakeLLM

    def chunk(i, text):
        return Chunk(id=i, doc_id="d", source="/d.txt", text=text, start=0, end=len(text))

    # A fused order can put a BM25 hit with a low cosine first; the gate must still see the 0.8 one.
    passages = [Passage.of(chunk(0, "Agadez base notes."), 0.1),
                Passage.of(chunk(1, "Washington spent about $110 million on the base."), 0.8)]
    llm = FakeLLM(["Washington spent about $110 million on the base [2]."])
    answer = list(Answerer(llm, min_score=0.3).stream("How much did the base cost?", passages, {}))[-1]
    assert not answer.abstained and answer.citations[0].n == 2
    low = [Passage.of(chunk(0, "Agadez base notes."), 0.1), Passage.of(chunk(1, "Other words."), 0.2)]
    refused = list(Answerer(FakeLLM(["unused"]), min_score=0.3).stream("How much?", low, {}))[-1]
    assert refused.abstained and "best score 0.20" in refused.refusal_reason


def test_best_last_puts_the_top_passage_next_to_the_question_and_cites_what_was_shown():
    from rag.answer.answerer import Answerer
    from rag.testing import FakeLLM

    texts = ["Washington spent about $110 million on the base.", "Construction began in 2016.", "Other remarks."]
    passages = [Passage.of(Chunk(id=i, doc_id="d", source="/d.txt", text=t, start=0, end=len(t)), 0.9 - i / 10)
                for i, t in enumerate(texts)]
    llm = FakeLLM(["Washington spent about $110 million on the base [3]."])  # [3] is the top passage when reversed
    answer = list(Answerer(llm, min_score=0.3).stream("How much did the base cost?", passages, {}, passages[::-1]))[-1]
    prompt = llm.prompts[0]
    assert prompt.index("[3] \"\"\"Washington") > prompt.index("[1] \"\"\"Other remarks.")
    assert prompt.index("[3] \"\"\"Washington") < prompt.index("Question:")
    assert [c.n for c in answer.citations] == [3] and answer.citations[0].text == texts[0]
    assert [p.text for p in answer.passages] == texts  # retrieval rank is kept for evaluation
    with pytest.raises(ConfigError, match="use document, best_first, best_last"):
        Settings(passage_order="last")


def test_hyde_searches_with_the_hypothetical_answer_but_scores_the_question(tmp_path):
    from rag.answer.query_rewriting import HydeRewriter
    from rag.answer.retrieval import RewritingRetriever
    from rag.testing import FakeLLM

    texts = ["The presidential guard detained Bazoum in July 2023.", "Rainfall in the Sahel varies by season.",
             "Weather and travel notes for visitors."]
    store, emb = _store(tmp_path, texts)
    llm = FakeLLM(["The presidential guard detained Bazoum and held him.\n\nMore text that is cut off."])
    question = "Which unit arrested the president?"
    expanded = HydeRewriter(llm).expand(question)
    assert expanded.startswith(question + "\n") and "presidential guard detained Bazoum" in expanded
    assert "cut off" not in expanded  # stops at the end of the first paragraph
    assert question in llm.prompts[0]
    dense = DenseRetriever(store, emb)
    seen: list[str] = []

    def rewrite(q):
        seen.append(q)
        return expanded

    passages = RewritingRetriever(dense, rewrite, store, emb).retrieve(question, 3)
    assert seen == [question]
    assert passages[0].text == texts[0]
    plain = {p.chunk.id: p.score for p in dense.retrieve(question, 3)}
    for p in passages:  # the gate reads the question's own cosine
        assert p.score == pytest.approx(plain[p.chunk.id], abs=1e-5)
    with pytest.raises(ConfigError, match="use off, hyde"):
        Settings(query_rewrite="multi")


def test_hyde_falls_back_to_the_question_when_the_model_writes_nothing():
    from rag.answer.query_rewriting import HydeRewriter
    from rag.testing import FakeLLM

    assert HydeRewriter(FakeLLM(["   "])).expand("What is it?") == "What is it?"
