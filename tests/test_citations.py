from rag.citations import attribute, parse_markers, strip_markers, support
from rag.types import Chunk, Passage


def passages(*texts: str) -> list[Passage]:
    return [Passage.of(Chunk(id=i, doc_id="d", source="/d.txt", text=t, start=0, end=len(t)), 0.5) for i, t in enumerate(texts)]


PS = passages(
    "Washington spent about $110 million to establish the base in northern Niger.",
    "France withdrew its roughly 1,500 soldiers by the end of 2023.",
)


def test_markers_parse_and_strip():
    assert parse_markers("A [1]. B [2, 3][4].") == [1, 2, 3, 4]
    assert strip_markers("It cost $110 million [1].") == "It cost $110 million."


def test_support_requires_numbers_and_most_words():
    assert support("The base cost $110 million.", PS[0].text) >= 0.6
    assert support("The base cost $120 million.", PS[0].text) == 0.0  # wrong number, same words
    assert support("Paris is the capital of France.", PS[0].text) < 0.6


def test_invalid_markers_removed_and_unmarked_sentence_attached():
    text, sents = attribute("Washington spent $110 million on the base in Niger [7]. France withdrew 1,500 soldiers.", PS)
    assert text == "Washington spent $110 million on the base in Niger [1]. France withdrew 1,500 soldiers [2]."
    assert [s.citations for s in sents] == [(1,), (2,)]
    assert all(s.supported for s in sents)


def test_wrong_citation_is_moved_to_the_supporting_passage():
    _, sents = attribute("France withdrew about 1,500 soldiers [1].", PS)
    assert sents[0].citations == (2,)


def test_unsupported_sentence_is_flagged():
    text, sents = attribute("The base cost $110 million [1]. Paris is the capital of France [2].", PS)
    assert [s.supported for s in sents] == [True, False]
    assert "Paris is the capital of France." in text and "[2]" not in text


def test_contradicting_name_is_not_supported():
    ps = passages("General Michael Langley leads U.S. Africa Command.")
    _, sents = attribute("General Stephen Townsend leads Africa Command [1].", ps)
    assert not sents[0].supported


def test_words_echoed_from_the_question_prove_nothing():
    q = "What was the deadline for all US troops to be out of Niger?"
    ps = passages("A joint statement issued in May set September 15, 2024 as the date by which all U.S. troops would be gone.")
    _, sents = attribute("The deadline for all US troops to be out of Niger was September 15, 2024 [1].", ps, q)
    assert sents[0].supported  # "Niger" and "deadline" come from the question, the date from the passage
    _, sents = attribute("The deadline for all US troops to be out of Niger was October 1, 2024 [1].", ps, q)
    assert not sents[0].supported
    _, sents = attribute("Paris.", PS, "What is the capital of France?")
    assert not sents[0].supported


class SynonymEmbedder:
    """The bag-of-words fake embedder after mapping a few synonyms onto one word: a paraphrase is
    then close in meaning while sharing few words, which is what MiniLM gives the real check."""

    SYNONYMS = {"pulled out": "withdrew", "troops": "soldiers", "late": "end", "about": "roughly"}

    def __init__(self):
        from rag.testing import FakeEmbedder

        self.inner = FakeEmbedder(dim=256)

    def embed(self, texts, progress=False):
        out = []
        for t in texts:
            t = t.lower()
            for a, b in self.SYNONYMS.items():
                t = t.replace(a, b)
            out.append(t)
        return self.inner.embed(out)


def test_semantic_support_accepts_a_paraphrase_but_never_a_wrong_number():
    from rag.citations import SemanticSupport

    semantic = SemanticSupport(SynonymEmbedder(), min_cosine=0.75)
    paraphrase = "France pulled out about 1,500 troops by late 2023 [2]."
    assert not attribute(paraphrase, PS)[1][0].supported  # too few shared words for the lexical check
    _, sents = attribute(paraphrase, PS, semantic=semantic)
    assert sents[0].supported and sents[0].citations == (2,)
    _, sents = attribute("France pulled out about 1,900 troops by late 2023 [2].", PS, semantic=semantic)
    assert not sents[0].supported  # same meaning to the embedder, but the number is not in the passage
    _, sents = attribute("Paris is the capital of France [2].", PS, semantic=semantic)
    assert not sents[0].supported  # too few shared words to ask the embedder at all


def test_semantic_support_embeds_each_passage_once():
    from rag.citations import SemanticSupport

    class CountingEmbedder(SynonymEmbedder):
        def __init__(self):
            super().__init__()
            self.calls: list[int] = []

        def embed(self, texts, progress=False):
            self.calls.append(len(texts))
            return super().embed(texts)

    embedder = CountingEmbedder()
    semantic = SemanticSupport(embedder)
    first = semantic.similarity("France pulled out about 1,500 troops", PS[1].text)
    again = semantic.similarity("France pulled out about 1,500 troops", PS[1].text)
    assert first == again
    assert len(embedder.calls) == 3 and embedder.calls[1:] == [1, 1]  # the passage was embedded once
