"""The parts of rag/store/ on their own: the FAISS index layouts (index_types), the words a document's
chunks cover (interface), and re-keying a moved document (moves) on a FAISS store made with fakes.
Whole sync runs: tests/test_sync.py; the index types under load: tests/store/test_store_scale.py."""
from __future__ import annotations

import numpy as np
import pytest

from rag.store import index_types
from rag.store.interface import covered_words
from rag.store.moves import rekey
from rag.types import Chunk


def unit_vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_ivf_lists_grow_with_the_corpus_and_keep_39_vectors_each():
    assert index_types.ivf_nlist(10) == 1
    for n in (1_000, 10_000, 100_000, 1_000_000):
        nlist = index_types.ivf_nlist(n)
        assert n // nlist >= 39 and nlist & (nlist - 1) == 0  # a power of two
    assert index_types.ivf_nlist(1_000_000) > index_types.ivf_nlist(10_000)
    assert index_types.ivf_nprobe(8) == 8 and index_types.ivf_nprobe(4096) == 64


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_each_kind_finds_a_stored_vector_under_its_id(kind):
    vectors = unit_vectors(400)
    ids = np.arange(1000, 1400)
    index = index_types.build_index(kind, 16, ids, vectors)
    assert index_types.index_kind(index) == kind and index.ntotal == 400
    _, found = index.search(vectors[[7, 300]], 1)
    assert found[:, 0].tolist() == [1007, 1300]


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown index kind 'lsh'"):
        index_types.build_index("lsh", 16, np.arange(3), unit_vectors(3))


def test_covered_words_count_overlapping_chunks_once():
    text = "one two three four five six"
    a = Chunk(id=1, doc_id="d", source="s", text=text[:18], start=0, end=18)   # one two three four
    b = Chunk(id=2, doc_id="d", source="s", text=text[8:], start=8, end=len(text))  # three four five six
    assert covered_words([b, a]) == 6
    assert covered_words([a]) == 4 and covered_words([]) == 0


def test_rekey_moves_the_record_and_every_chunk_and_refuses_a_taken_or_missing_id(make_rag, tmp_path):
    (tmp_path / "a.txt").write_text("The ferry leaves at dawn. It returns at dusk.")
    (tmp_path / "b.txt").write_text("The market opens at noon.")
    rag = make_rag(chunk_size=20)
    rag.add([tmp_path / "a.txt", tmp_path / "b.txt"])
    store = rag.store
    by_name = {d.source.rsplit("/", 1)[1]: d.id for d in store.docs.values()}
    old = by_name["a.txt"]
    with store.writing():
        moved = rekey(store, old, "new-id", "/elsewhere/a.txt")
        store.save()
    assert old not in store.docs and store.docs["new-id"] is moved and moved.source == "/elsewhere/a.txt"
    assert moved.chunk_ids and all(store.chunks[c].doc_id == "new-id" and store.chunks[c].source == "/elsewhere/a.txt"
                                   for c in moved.chunk_ids)
    with pytest.raises(ValueError, match="'new-id' is already in the index"):
        rekey(store, by_name["b.txt"], "new-id", "/x")
    with pytest.raises(Exception, match="no document with id 'gone'"):
        rekey(store, "gone", "other", "/x")


def test_bm25_ranks_the_chunk_with_the_rare_term_first_and_filters_before_ranking():
    from rag.store.bm25 import Bm25

    texts = ["Niger's junta ordered the troops out.", "The drone base at Agadez cost $110 million.",
             "Washington spent money on training.", "The base at Agadez hosted drones and crews."]
    chunks = {i: Chunk(id=i, doc_id="d", source="s", text=t, start=0, end=len(t)) for i, t in enumerate(texts)}
    bm25 = Bm25()
    assert bm25.search(chunks, key=1, question="Agadez drone base cost", k=2)[0] == 1
    # scoped to chunks without the best one: the other Agadez chunk, never one outside `within`
    assert bm25.search(chunks, key=1, question="Agadez drone base cost", k=2, within=frozenset({0, 3})) == [3]
    assert bm25.search(chunks, key=1, question="Agadez", k=2, within=frozenset()) == []
    # a new key rebuilds: a chunk added later is found
    chunks[4] = Chunk(id=4, doc_id="e", source="s", text="Zorbania's capital is Quillton.", start=0, end=31)
    assert bm25.search(chunks, key=2, question="Quillton", k=1) == [4]
