from rag.ingest.chunking import SentenceChunker
from rag.text import split_sentences
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


# Hard cases from news, papers and legal text: each text and the sentences it must split into.
HARD_CASES = [
    ("Sen. Warren spoke. Then she left.", ["Sen. Warren spoke.", "Then she left."]),
    ("See Fig. 3 for details. It shows the trend.", ["See Fig. 3 for details.", "It shows the trend."]),
    ("The vote is on Jan. 5 at noon. Everyone is invited.", ["The vote is on Jan. 5 at noon.", "Everyone is invited."]),
    ("Troops left the U.S. Africa Command area. Talks went on.", ["Troops left the U.S. Africa Command area.", "Talks went on."]),
    ("A group from the Pentagon and U. S. Africa Command came.", ["A group from the Pentagon and U. S. Africa Command came."]),
    ("J. K. Rowling wrote it. It sold well.", ["J. K. Rowling wrote it.", "It sold well."]),
    ("The rate rose to 3.5 percent. Markets fell.", ["The rate rose to 3.5 percent.", "Markets fell."]),
    ("It cost $1.2 billion. Critics objected.", ["It cost $1.2 billion.", "Critics objected."]),
    ("Dr. Smith and Mr. Jones met Mrs. Lee. They talked.", ["Dr. Smith and Mr. Jones met Mrs. Lee.", "They talked."]),
    ("Smith et al. reported it. We agree.", ["Smith et al. reported it.", "We agree."]),
    ("Compare Smith v. Jones with Roe v. Wade. Both matter.", ["Compare Smith v. Jones with Roe v. Wade.", "Both matter."]),
    ("Under Art. 5 of the treaty, members help. It was invoked once.", ["Under Art. 5 of the treaty, members help.", "It was invoked once."]),
    ("Steps:\n1. Open the file.\n2. Read it.", ["Steps:\n1. Open the file.", "2. Read it."]),
    ("The meeting ended at 5 p.m. on Friday. Nobody spoke.", ["The meeting ended at 5 p.m. on Friday.", "Nobody spoke."]),
    ("He said, \"We will leave.\" Then he left.", ["He said, \"We will leave.\"", "Then he left."]),
    ("Is it over? Yes! It is.", ["Is it over?", "Yes!", "It is."]),
    ("Wait... Then it happened.", ["Wait...", "Then it happened."]),
    ("The base opened in 2019. In 2024 it closed.", ["The base opened in 2019.", "In 2024 it closed."]),
    ("Gen. Langley visited Niamey. Col. Smith stayed.", ["Gen. Langley visited Niamey.", "Col. Smith stayed."]),
    ("See pp. 10-12 and vol. 3 of the report. It is long.", ["See pp. 10-12 and vol. 3 of the report.", "It is long."]),
    ("The U.N. Security Council met. It voted.", ["The U.N. Security Council met.", "It voted."]),
    ("He moved to St. Louis in 2001. He stayed.", ["He moved to St. Louis in 2001.", "He stayed."]),
    ("Results (see Eq. 2) hold. They are robust.", ["Results (see Eq. 2) hold.", "They are robust."]),
    ("It rose about 5%. Then it fell.", ["It rose about 5%.", "Then it fell."]),
    ("Title\n\nFirst sentence here.", ["Title", "First sentence here."]),
    ("They fought for art. The museum closed.", ["They fought for art.", "The museum closed."]),
    ("He saw the sun. Then it set.", ["He saw the sun.", "Then it set."]),
    ("(He left.) She stayed.", ["(He left.)", "She stayed."]),
    ("Prof. Ng, Ph.D., lectured. All attended.", ["Prof. Ng, Ph.D., lectured.", "All attended."]),
    ("Section 2. Definitions apply here.", ["Section 2.", "Definitions apply here."]),
    ("No. 10 Downing St. is famous. Tourists visit.", ["No. 10 Downing St. is famous.", "Tourists visit."]),
    ("i. First point.\nii. Second point.", ["i. First point.", "ii. Second point."]),
    ("The firm, Acme Inc., grew. It hired.", ["The firm, Acme Inc., grew.", "It hired."]),
]


def test_sentence_splitter_on_hard_cases():
    wrong = []
    for text, expected in HARD_CASES:
        spans = split_sentences(text)
        got = [text[s.start:s.end] for s in spans]
        if got != expected:
            wrong.append((text, got))
    assert not wrong, wrong


def test_sentence_spans_are_exact_offsets_with_an_offset():
    text = "Sen. Warren spoke. Then she left."
    spans = split_sentences(text, offset=100)
    assert [(s.start, s.end) for s in spans] == [(100, 118), (119, 133)]
