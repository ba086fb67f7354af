from rag.chunking import SentenceChunker, split_sentences
from rag.types import Document


def doc(text: str, pages=()) -> Document:
    return Document(id="d1", source="/tmp/d.txt", text=text, page_starts=pages)


def test_sentences_keep_exact_offsets_and_skip_abbreviations():
    text = "Gen. Langley met Dr. Smith in the U.S. capital. It rained!  Then it stopped?\n\nNew paragraph"
    spans = split_sentences(text)
    pieces = [text[s.start:s.end] for s in spans]
    assert pieces == [
        "Gen. Langley met Dr. Smith in the U.S. capital.",
        "It rained!",
        "Then it stopped?",
        "New paragraph",
    ]


def test_chunks_are_exact_spans_with_sentence_overlap():
    sentences = [f"Sentence number {i} has five words." for i in range(20)]
    text = " ".join(sentences)
    chunks = SentenceChunker(size=20, overlap=1).split(doc(text), first_id=100)
    assert [c.id for c in chunks] == list(range(100, 100 + len(chunks)))
    for c in chunks:
        assert text[c.start:c.end] == c.text
        assert len(c.text.split()) <= 20
    # neighbours share exactly one sentence
    for a, b in zip(chunks, chunks[1:]):
        assert b.start < a.end
        assert text[b.start:a.end].count(".") == 1
    assert chunks[0].start == 0 and chunks[-1].end == len(text)


def test_long_sentence_is_cut_at_words_and_pages_are_tracked():
    text = "alpha " * 50 + "end.\n\nSecond page sentence."
    second = text.index("Second")
    chunks = SentenceChunker(size=20, overlap=0).split(doc(text, pages=((0, 1), (second, 2))))
    assert all(len(c.text.split()) <= 20 for c in chunks)
    assert chunks[0].page == 1 and chunks[-1].page == 2
    assert all(text[c.start:c.end] == c.text for c in chunks)
