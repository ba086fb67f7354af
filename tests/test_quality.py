"""Issue 5's pieces on hand-made data: rank fusion, hybrid retrieval, sentence selection."""
from rag.context import SentenceSelector
from rag.retrieval import DenseRetriever, HybridRetriever, reciprocal_rank_fusion
from rag.store import IndexStore
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
