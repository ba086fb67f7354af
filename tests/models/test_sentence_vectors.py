"""Sentence vectors in context (`SentenceTransformerEmbedder.embed_spans`) with the real MiniLM."""
import numpy as np
import pytest

from rag.text import split_sentences

pytestmark = pytest.mark.integration

TEXT = ("Niger's junta ordered the Americans to leave. The United States will withdraw about 1,000 troops. "
        "Washington spent $110 million on a drone base near Agadez. Russia sent military instructors in April.")


def spans_of(text):
    return [(s.start, s.end) for s in split_sentences(text)]


def test_the_mean_over_all_spans_is_minilms_own_vector_of_the_text(real_embedder):
    whole, = real_embedder.embed_spans([TEXT], [[(0, len(TEXT))]])
    assert whole.shape == (1, real_embedder.dim)
    # MiniLM's own mean also counts [CLS] and [SEP]; a span's mean counts only the span's tokens
    assert float(whole[0] @ real_embedder.embed([TEXT])[0]) > 0.995


def test_in_context_vectors_are_normalised_pick_the_right_sentence_and_differ_from_alone(real_embedder):
    spans = spans_of(TEXT)
    assert len(spans) == 4
    in_context, = real_embedder.embed_spans([TEXT], [spans])
    alone, = real_embedder.embed_spans([TEXT], [spans], in_context=False)
    assert np.allclose(np.linalg.norm(in_context, axis=1), 1.0, atol=1e-5)
    assert np.allclose(alone, real_embedder.embed([TEXT[a:b] for a, b in spans]), atol=1e-5)
    assert not np.allclose(in_context, alone, atol=0.05)  # each sentence sees its neighbours
    question = real_embedder.embed_query(["How much did the drone base cost?"])[0]
    assert int(np.argmax(in_context @ question)) == 2
    assert int(np.argmax(alone @ question)) == 2


def test_spans_past_the_models_window_are_embedded_alone(real_embedder):
    filler = "The committee met again on Tuesday to review the long budget. " * 40  # far over 256 tokens
    text = filler + "The drone base cost $110 million."
    spans = spans_of(text)
    last = spans[-1]
    vectors, = real_embedder.embed_spans([text], [spans])
    assert vectors.shape == (len(spans), real_embedder.dim)
    assert float(vectors[-1] @ real_embedder.embed([text[last[0]:last[1]]])[0]) > 0.999
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_several_texts_in_one_pass_match_each_text_alone(real_embedder):
    other = "Drones flew from the base. Russia sent instructors."
    both = real_embedder.embed_spans([TEXT, other], [spans_of(TEXT), spans_of(other)])
    assert np.allclose(both[0], real_embedder.embed_spans([TEXT], [spans_of(TEXT)])[0], atol=1e-4)
    assert np.allclose(both[1], real_embedder.embed_spans([other], [spans_of(other)])[0], atol=1e-4)
    assert real_embedder.embed_spans([], []) == []
    empty, = real_embedder.embed_spans(["x"], [[]])
    assert empty.shape == (0, real_embedder.dim)
