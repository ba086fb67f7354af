"""The whole flow with fakes: ingest, ask, cite, refuse, bad input. Fast and offline."""
import re
from pathlib import Path

import pytest

from rag import prompts
from rag.answer.answerer import REFUSAL
from rag.errors import ConfigError, DocumentNotFound, InputError
from tests.conftest import SEED_ARTICLE
from tests.filemakers import make_pdf


def answer_from_passage(prompt: str) -> str:
    """A fake model that copies the clause with '$110 million' from the passage it was shown."""
    m = re.search(r"\[(\d+)\] [^\[]*?(Washington spent \$110 million[^.\n]*\.)", prompt, re.S)
    return f"{m.group(2).strip()} [{m.group(1)}]" if m else "Not in the documents."


def test_ask_cites_the_passage_that_holds_the_answer(make_rag):
    rag = make_rag(answer_from_passage)
    report = rag.add([SEED_ARTICLE])
    assert len(report.added) == 1 and report.ok
    answer = rag.ask("How much did Washington spend to establish the base in northern Niger?")
    assert not answer.abstained
    assert "$110 million" in answer.text
    assert answer.citations and all("$110 million" in c.text for c in answer.citations)
    c = answer.citations[0]
    source_text = SEED_ARTICLE.read_text(encoding="utf-8")
    assert source_text[c.start:c.end] == c.text
    assert set(answer.timings) >= {"retrieve", "first_token", "generate", "total"}
    # the prompt the model saw numbers the passages and carries the question
    assert "From 000_a5055be445bd665f.txt:\n[1] " in rag.llm.prompts[0]
    assert "Question: How much did Washington spend" in rag.llm.prompts[0]


def test_model_answer_from_memory_is_refused(make_rag):
    rag = make_rag("Paris is the capital of France [1].")
    rag.add([SEED_ARTICLE])
    answer = rag.ask("What is the capital of France?")
    assert answer.abstained and answer.text == REFUSAL and answer.citations == []
    assert "supported by the passages" in answer.refusal_reason


def test_model_refusal_is_kept(make_rag):
    rag = make_rag("Not in the documents.")
    rag.add([SEED_ARTICLE])
    assert rag.ask("Who won the 2018 World Cup?").abstained


def test_low_retrieval_score_refuses_without_calling_the_model(make_rag):
    rag = make_rag("Should never be used [1].", min_score=0.99)
    rag.add([SEED_ARTICLE])
    answer = rag.ask("What is the capital of France?")
    assert answer.abstained and "relevant enough" in answer.refusal_reason
    assert rag.llm.prompts == []


def test_empty_index_refuses(make_rag):
    answer = make_rag("Anything [1].").ask("Is there anything?")
    assert answer.abstained


def test_stream_yields_checked_sentences_then_the_answer_with_the_same_text(make_rag):
    rag = make_rag(answer_from_passage)
    rag.add([SEED_ARTICLE])
    items = list(rag.stream("How much did Washington spend to establish the base in northern Niger?"))
    sentences, final = items[:-1], items[-1]
    assert len(sentences) >= 1 and all(isinstance(t, str) for t in sentences)
    assert "".join(sentences) == final.text and final.text.startswith("Washington spent")


def test_the_claim_check_setting_and_judge_reach_the_answerer(settings, tmp_path):
    from rag.pipeline import RAG
    from rag.testing import FakeClaimJudge, FakeEmbedder, FakeLLM

    question = "How much did Washington spend to establish the base in northern Niger?"
    for check, threshold, refused in ((True, 0.5, True), (True, 0.2, False), (False, 0.5, False)):
        judge = FakeClaimJudge(default=0.3)
        rag = RAG.open(settings=settings.with_(claim_check=check, claim_threshold=threshold,
                                               index_dir=tmp_path / f"i-{check}-{threshold}"),
                       embedder=FakeEmbedder(), llm=FakeLLM([answer_from_passage]), seed=False, claim_judge=judge)
        rag.add([SEED_ARTICLE])
        items = list(rag.stream(question))
        answer = items[-1]
        assert answer.abstained is refused, (check, threshold, answer.refusal_reason)
        assert bool(judge.calls) is check and (items[:-1] == [] if refused else "".join(items[:-1]) == answer.text)
        assert answer.signals.claims == ([0.3] if check else [None])


def test_reingest_same_file_adds_nothing_and_changed_file_replaces(make_rag, tmp_path):
    rag = make_rag()
    f = tmp_path / "note.txt"
    f.write_text("The first version says the bridge opened in 1999.")
    first = rag.add([f])
    again = rag.add([f])
    assert again.unchanged == [first.added[0].id] and not again.added
    f.write_text("The second version says the bridge opened in 2001.")
    changed = rag.add([f])
    assert len(changed.replaced) == 1
    docs = rag.documents()
    assert len(docs) == 1 and docs[0].id == changed.replaced[0].id
    texts = [c.text for c in rag.store.chunks.values()]
    assert texts == ["The second version says the bridge opened in 2001."]


def test_many_files_are_embedded_in_few_batches_and_each_chunk_keeps_its_own_vector(make_rag, tmp_path, monkeypatch):
    from rag import indexer
    from rag.testing import FakeEmbedder

    monkeypatch.setattr(indexer, "EMBED_BATCH_CHUNKS", 10)
    embedder = FakeEmbedder()
    rag = make_rag(embedder=embedder)
    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(25):  # one chunk each; a copy at another path is a document of its own
        (folder / f"n{i:02d}.txt").write_text(f"Note {i} says the {['red', 'blue', 'green'][i % 3]} boat left on day {i}.")
    (folder / "copy.txt").write_text("Note 3 says the red boat left on day 3.")
    embedder.calls.clear()
    report = rag.add([folder])
    assert len(report.added) == 26 and not report.unchanged
    assert [len(c) for c in embedder.calls] == [10, 10, 6]
    # every stored vector is the vector of its own chunk text, whatever batch it came in
    for record in rag.store.docs.values():
        (cid,) = record.chunk_ids
        stored = rag.store.index.reconstruct(cid)
        assert (stored == embedder.embed([rag.store.chunks[cid].text])[0]).all()
    ids = [cid for d in rag.store.docs.values() for cid in d.chunk_ids]
    assert len(set(ids)) == 26
    calls = len(embedder.calls)
    assert len(rag.add([folder]).unchanged) == 26 and len(embedder.calls) == calls  # nothing embedded again
    assert rag.retrieve("When did the boat leave on day 17?")[0].chunk.source.endswith("n17.txt")


def test_delete_and_list(make_rag):
    rag = make_rag()
    info = rag.add([SEED_ARTICLE]).added[0]
    assert [(d.id, d.chunks) for d in rag.documents()] == [(info.id, info.chunks)]
    rag.delete(info.id)
    assert rag.documents() == []
    with pytest.raises(DocumentNotFound):
        rag.delete(info.id)


def test_bad_files_are_skipped_and_the_rest_indexed(make_rag, tmp_path):
    rag = make_rag()
    (tmp_path / "good.txt").write_text("A perfectly good file about cranes.")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02")
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    make_pdf(tmp_path / "scan.pdf", [None])
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    report = rag.add([tmp_path])
    assert [d.source.rsplit("/", 1)[-1] for d in report.added] == ["good.txt"]
    failed = {f.path.rsplit("/", 1)[-1]: f.reason for f in report.failed}
    assert set(failed) == {"empty.txt", "binary.txt", "latin.txt", "broken.pdf", "scan.pdf", "photo.jpg"}
    assert not report.ok
    assert len(rag.documents()) == 1


def test_bad_questions_and_paths_are_clear_errors(make_rag, tmp_path):
    rag = make_rag()
    rag.add([SEED_ARTICLE])
    with pytest.raises(InputError, match="empty"):
        rag.ask("   ")
    with pytest.raises(InputError, match="100,000 characters"):
        rag.ask("x" * 100_000)
    with pytest.raises(InputError, match="does not exist"):
        rag.add([tmp_path / "missing"])
    assert len(rag.documents()) == 1  # nothing lost


def test_index_survives_reopen(make_rag, settings):
    from rag.pipeline import RAG
    from rag.testing import FakeEmbedder, FakeLLM

    make_rag().add([SEED_ARTICLE])
    reopened = RAG.open(settings=settings, embedder=FakeEmbedder(), llm=FakeLLM(), seed=False)
    assert len(reopened.documents()) == 1


def test_every_prompt_renders():
    for name in prompts.available():
        values = {v: f"<{v}>" for v in prompts.variables(name)}
        text = prompts.render(name, **values)
        assert "{" + "}" not in text
        for v in values.values():
            assert v in text


def test_index_type_setting_reaches_the_store(make_rag):
    rag = make_rag(index_type="hnsw")
    assert rag.store.index_type == "hnsw"


def test_answer_style_picks_the_system_prompt(make_rag):
    for style, words in (("sentence", "one or two short sentences"), ("short", "the few words")):
        rag = make_rag(answer_from_passage, answer_style=style)
        rag.add([SEED_ARTICLE])
        rag.ask("How much did Washington spend to establish the base in northern Niger?")
        system = rag.llm.messages_seen[-1][0].content
        assert words in system, (style, system)


def test_hyde_asks_the_model_twice_and_answers_from_the_question(make_rag):
    rag = make_rag("Washington paid about $110 million for the base.", answer_from_passage, query_rewrite="hyde")
    rag.add([SEED_ARTICLE])
    answer = rag.ask("How much did Washington spend to establish the base in northern Niger?")
    assert len(rag.llm.prompts) == 2
    assert "Washington paid about" not in rag.llm.prompts[1]  # the made-up text only moved the search
    assert "Write two sentences" in rag.llm.prompts[0]
    assert not answer.abstained and "$110 million" in answer.text


def test_a_small_corpus_is_shown_whole_in_document_order_with_exact_spans(make_rag, tmp_path):
    rag = make_rag(answer_from_passage, context="auto", chunk_size=40)
    rag.add([SEED_ARTICLE])
    assert len(rag.store.chunks) > 1  # overlapping chunks; the prompt must not repeat their overlap
    ranked, shown = rag.context("How much did Washington spend to establish the base in northern Niger?")
    source = SEED_ARTICLE.read_text(encoding="utf-8")
    assert [p.start for p in shown] == sorted(p.start for p in shown)
    assert all(source[p.start:p.end] == p.text for p in shown)
    assert all(a.end < b.start for a, b in zip(shown, shown[1:]))  # no overlap
    covered = " ".join(p.text for p in shown)
    assert " ".join(source.split()) == " ".join(covered.split())  # nothing left out
    assert [p.score for p in ranked] == sorted((p.score for p in shown), reverse=True)
    answer = rag.ask("How much did Washington spend to establish the base in northern Niger?")
    assert not answer.abstained and "$110 million" in answer.citations[0].text
    prompt = rag.llm.prompts[0]
    assert prompt.count("From 000_a5055be445bd665f.txt:") == 1  # one label for the file's passages
    assert prompt.count("\n[1] ") == 1 and f"\n[{len(shown)}] " in prompt


def test_the_whole_corpus_leaves_out_documents_with_nothing_relevant(make_rag, tmp_path):
    lighthouse = tmp_path / "lighthouse.md"
    lighthouse.write_text("The keeper painted the lighthouse tower red and white every spring.\n", encoding="utf-8")
    rag = make_rag(answer_from_passage, context="auto", min_score=0.3)
    rag.add([SEED_ARTICLE, lighthouse])
    names = lambda passages: {Path(p.chunk.source).name for p in passages}  # noqa: E731
    ranked, shown = rag.context("How much did Washington spend to establish the base in northern Niger?")
    assert names(shown) == {SEED_ARTICLE.name} and ranked[0].score >= 0.3
    ranked, shown = rag.context("keeper painted lighthouse tower red white spring")
    assert names(shown) == {"lighthouse.md"} and ranked[0].score >= 0.3
    # Nothing reaches the gate anywhere: every document stays listed, and the gate refuses unasked.
    question = "zebra quantum xylophone"
    ranked, shown = rag.context(question)
    assert names(shown) == {SEED_ARTICLE.name, "lighthouse.md"} and ranked[0].score < 0.3
    calls = len(rag.llm.prompts)
    assert rag.ask(question).abstained and len(rag.llm.prompts) == calls


def test_a_corpus_too_big_for_the_prompt_is_retrieved_or_named(make_rag):
    rag = make_rag(answer_from_passage, context="auto", corpus_max_words=50)
    rag.add([SEED_ARTICLE])
    ranked, shown = rag.context("How much did Washington spend?")
    assert len(ranked) <= rag.settings.top_k  # retrieval, not the whole corpus
    # narrowed to the sentences near the question, shown in the order of the file
    assert all(len(p.text.split()) <= max(rag.settings.context_words, len(p.chunk.text.split())) for p in ranked)
    assert any(p.text != p.chunk.text for p in ranked)
    assert [p.start for p in shown] == sorted(p.start for p in shown)
    strict = make_rag(context="corpus", corpus_max_words=50)
    strict.add([SEED_ARTICLE])
    with pytest.raises(ConfigError, match="corpus_max_words=50"):
        strict.ask("How much did Washington spend?")


def test_document_order_sorts_retrieved_passages_by_position(make_rag):
    rag = make_rag(answer_from_passage, passage_order="document", chunk_size=30)
    rag.add([SEED_ARTICLE])
    ranked, shown = rag.context("Russia instructors Niger base drones")
    assert [p.start for p in shown] == sorted(p.start for p in ranked)


def test_each_embedding_batch_is_saved_and_a_late_interrupt_keeps_the_files_before_it(make_rag, settings, tmp_path,
                                                                                     monkeypatch):
    from rag import indexer
    from rag.ingest import loading
    from rag.pipeline import RAG
    from rag.testing import FakeEmbedder, FakeLLM

    monkeypatch.setattr(indexer, "EMBED_BATCH_CHUNKS", 3)  # n0-n2 are one batch; n3 waits for its batch
    rag = make_rag(load_workers=1)  # loading.load replaced below: in this process
    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(5):
        (folder / f"n{i}.txt").write_text(f"Note {i} is about the {['red', 'blue', 'green'][i % 3]} boat.")
    real_load = loading.load

    def load(path, limits=None, ocr=None):
        if path.name == "n4.txt":  # Ctrl-C while the last file is read: n0-n3 were read before it
            raise KeyboardInterrupt
        return real_load(path, limits, ocr)

    monkeypatch.setattr(loading, "load", load)
    events = []
    with pytest.raises(KeyboardInterrupt):
        rag.add([folder], on_event=events.append)
    saved = [Path(e.path).name for e in events if e.step == "added"]
    assert saved == ["n0.txt", "n1.txt", "n2.txt", "n3.txt"]
    assert [(e.step, Path(e.path).name, e.done) for e in events] == [
        ("reading", "n0.txt", 0), ("reading", "n1.txt", 0), ("reading", "n2.txt", 0),
        ("added", "n0.txt", 1), ("added", "n1.txt", 2), ("added", "n2.txt", 3),
        ("reading", "n3.txt", 3), ("reading", "n4.txt", 3), ("added", "n3.txt", 4)]
    assert {e.total for e in events} == {5}
    reopened = RAG.open(settings=settings, embedder=FakeEmbedder(), llm=FakeLLM(), seed=False)
    assert sorted(Path(d.source).name for d in reopened.documents()) == saved


def test_a_file_with_too_many_chunks_is_skipped_and_named(make_rag, tmp_path):
    rag = make_rag(max_file_chunks=3, chunk_size=20)
    (tmp_path / "long.txt").write_text(" ".join(f"Sentence {i} has a few words in it." for i in range(60)))
    (tmp_path / "short.txt").write_text("A short note about cranes.")
    report = rag.add([tmp_path])
    assert [Path(d.source).name for d in report.added] == ["short.txt"]
    (failure,) = report.failed
    assert failure.path.endswith("long.txt")
    assert re.fullmatch(r"splits into [\d,]+ chunks, more than the 3 limit \(setting max_file_chunks\)", failure.reason)


class RecordingExecutor:
    """The local step, recording which files it was handed."""

    def __init__(self) -> None:
        from rag.ingest.executors import LocalExecutor

        self.local, self.given = LocalExecutor(), []

    def prepare(self, files, limits, chunker, known, max_chunks):
        self.given.append([Path(f).name for f in files])
        yield from self.local.prepare(files, limits, chunker, known, max_chunks)


def test_an_unchanged_file_is_never_parsed_again(make_rag, tmp_path, monkeypatch):
    from rag.ingest import loading

    rag = make_rag(load_workers=1)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("Cranes are tall birds.")
    make_pdf(folder / "b.pdf", ["Herons are grey birds that wade in rivers."])
    (folder / "bad.txt").write_bytes(b"\x00\x00")
    assert len(rag.add([folder]).added) == 2
    real_load = loading.load

    def refuse(path, limits=None, ocr=None):
        if path.name != "bad.txt":
            raise AssertionError(f"a loader ran for the unchanged {path.name}")
        return real_load(path, limits, ocr)

    monkeypatch.setattr(loading, "load", refuse)
    again = rag.add([folder])
    assert len(again.unchanged) == 2 and not again.added and [Path(f.path).name for f in again.failed] == ["bad.txt"]
    synced = rag.sync([folder])
    assert len(synced.unchanged) == 2 and not synced.added and not synced.removed
    monkeypatch.setattr(loading, "load", real_load)
    (folder / "a.txt").write_text("Cranes are tall grey birds.")
    recorder = RecordingExecutor()
    events = []
    changed = rag.add([folder], executor=recorder, on_event=events.append)
    assert recorder.given == [["a.txt", "bad.txt"]]  # b.pdf was decided unchanged before any executor
    assert [Path(i.source).name for i in changed.replaced] == ["a.txt"] and len(changed.unchanged) == 1
    assert [(e.step, Path(e.path).name) for e in events if e.step != "reading"] == [
        ("unchanged", "b.pdf"), ("failed", "bad.txt"), ("replaced", "a.txt")]
