"""Embedders: batches fitted to the texts' number, and a question embedded once."""
import numpy as np
import pytest

from rag.models.embedding import QUERIES_KEPT, fitted_batch


def test_few_texts_get_small_batches_and_an_ingest_keeps_the_largest():
    assert fitted_batch(26, 64) == 8  # the sentences of one question's passages
    assert fitted_batch(40, 64) == 10
    assert fitted_batch(1, 64) == 8
    assert fitted_batch(256, 64) == 64  # an ingest's full batches
    assert fitted_batch(10_000, 64) == 64
    assert fitted_batch(3, 4) == 4  # never more than asked for
    assert all(1 <= fitted_batch(n, 64) <= 64 for n in range(0, 500))


SENTENCES = ["Niger's junta ordered the Americans to leave.",
             "The United States will withdraw about 1,000 troops from the country by September.",
             "Washington spent $110 million on a drone base near Agadez, in the north of the Sahel desert.",
             "Russia sent instructors.", "Drones flew from the base for years, watching jihadist groups."] * 6


@pytest.mark.integration
def test_fitted_batches_give_the_vectors_of_one_big_batch(real_embedder):
    small = real_embedder.embed(SENTENCES)  # 30 texts: batches of 8
    big = real_embedder.model.encode(SENTENCES, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    assert small.shape == (30, real_embedder.dim)
    assert np.allclose(small, big, atol=1e-5)


@pytest.mark.integration
def test_a_question_is_embedded_once_and_the_cache_stays_small(real_embedder, monkeypatch):
    calls = []
    encode = real_embedder.model.encode
    monkeypatch.setattr(real_embedder.model, "encode", lambda texts, **kw: calls.append(list(texts)) or encode(texts, **kw))
    question = "How much did the drone base near Agadez cost to build?"
    first = real_embedder.embed_query([question])
    second = real_embedder.embed_query([question])
    assert len(calls) == 1
    assert np.array_equal(first, second) and first.shape == (1, real_embedder.dim)
    assert np.allclose(first, real_embedder.embed([question]), atol=1e-6)
    first[0, 0] = 99.0  # the caller's copy, not the kept vector
    assert real_embedder.embed_query([question])[0, 0] != 99.0
    for i in range(QUERIES_KEPT + 3):
        real_embedder.embed_query([f"question number {i}?"])
    assert len(real_embedder._queries) == QUERIES_KEPT
    assert question not in real_embedder._queries  # the oldest went first
    two = real_embedder.embed_query(["a", "b"])  # several at once: embedded, not kept
    assert two.shape == (2, real_embedder.dim)


def test_sentence_embedder_is_the_same_or_names_what_int8_needs():
    from rag.errors import ConfigError
    from rag.models.embedding import sentence_embedder
    from rag.testing import FakeEmbedder

    fake = FakeEmbedder()
    assert sentence_embedder(fake, "same") is fake
    assert sentence_embedder(fake, "auto") is fake  # no int8 copy: the same one
    with pytest.raises(ConfigError, match="all-MiniLM-L6-v2 on embed_backend 'torch', not 'fake-embedder'"):
        sentence_embedder(fake, "int8")
    with pytest.raises(ConfigError, match="'fp16' is not known; valid: 'auto', 'same', 'int8'"):
        sentence_embedder(fake, "fp16")


@pytest.mark.integration
def test_the_int8_copy_is_shared_near_and_leaves_the_original_alone(real_embedder):
    from rag.models.embedding import sentence_embedder

    before = real_embedder.embed(SENTENCES[:5])
    quick = sentence_embedder(real_embedder, "int8")
    assert quick is real_embedder.int8() is sentence_embedder(real_embedder, "auto")
    assert quick.model is not real_embedder.model
    assert quick.name == "all-MiniLM-L6-v2+int8" and real_embedder.name == "all-MiniLM-L6-v2"
    assert np.array_equal(real_embedder.embed(SENTENCES[:5]), before)  # the index's embedder is untouched
    near = quick.embed(SENTENCES[:5])
    cosines = (near * before).sum(axis=1)
    assert near.shape == before.shape and np.allclose(np.linalg.norm(near, axis=1), 1.0, atol=1e-5)
    assert cosines.min() > 0.8 and not np.allclose(near, before, atol=1e-3)
    question = quick.embed_query(["How much did the drone base cost?"])[0]
    assert int(np.argmax(near @ question)) == int(np.argmax(before @ real_embedder.embed_query(
        ["How much did the drone base cost?"])[0])) == 2
