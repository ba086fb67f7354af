"""RAG.sync with fakes: the index made to match folders; moved files re-keyed without re-embedding."""
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.errors import InputError
from rag.ingest.loading import document_id
from rag.pipeline import RAG
from rag.testing import FakeEmbedder

BRIDGE = "The Tamar bridge opened in 1961 and carries the A38 road across the river."
LIGHTHOUSE = "The Smeaton lighthouse was moved to Plymouth Hoe in 1882 after the rock eroded."
FERRY = "The Torpoint ferry crosses the Hamoaze on chains and runs all night."


def embedded(embedder: FakeEmbedder) -> list[str]:
    return [t for call in embedder.calls for t in call]


def sources(rag: RAG) -> set[str]:
    return {d.source for d in rag.documents()}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def cite_lighthouse(prompt: str) -> str:
    """A fake model that copies the lighthouse sentence from the passage it was shown, with its number."""
    m = re.search(r"\[(\d+)\] [^\[]*?(The Smeaton lighthouse[^.\n]*\.)", prompt, re.DOTALL)
    return f"{m.group(2).strip()} [{m.group(1)}]" if m else "Not in the documents."


def test_sync_adds_changes_and_removes_and_embeds_only_what_changed(make_rag, tmp_path):
    emb = FakeEmbedder()
    rag = make_rag(embedder=emb)
    folder = tmp_path / "notes"
    a, b = write(folder / "a.txt", BRIDGE), write(folder / "sub" / "b.md", LIGHTHOUSE)
    first = rag.sync([folder])
    assert {i.source for i in first.added} == {str(a), str(b)} and not first.removed and first.ok
    assert sorted(embedded(emb)) == sorted([BRIDGE, LIGHTHOUSE])

    emb.calls.clear()
    again = rag.sync([folder])
    assert not (again.added or again.replaced or again.removed or again.moved) and len(again.unchanged) == 2
    assert embedded(emb) == []

    b.write_text(LIGHTHOUSE + " It is open to visitors.", encoding="utf-8")
    a.unlink()
    c = write(folder / "c.txt", FERRY)
    events = []
    report = rag.sync([folder], on_event=events.append)
    assert [i.source for i in report.added] == [str(c)]
    assert [i.source for i in report.replaced] == [str(b)]
    assert [i.source for i in report.removed] == [str(a)]
    assert sources(rag) == {str(b), str(c)}
    assert sorted(embedded(emb)) == sorted([LIGHTHOUSE + " It is open to visitors.", FERRY])
    assert {(e.step, e.path) for e in events if e.step != "reading"} == {
        ("removed", str(a)), ("replaced", str(b)), ("added", str(c))}
    # saved: a new process sees the same documents
    reopened = RAG.open(settings=rag.settings, embedder=FakeEmbedder(), seed=False)
    assert sources(reopened) == {str(b), str(c)}
    assert not any(ch.source == str(a) for ch in reopened.store.chunks.values())


def test_a_moved_file_is_rekeyed_not_reembedded_and_cited_at_its_new_path(make_rag, tmp_path):
    emb = FakeEmbedder()
    rag = make_rag(cite_lighthouse, embedder=emb)
    folder = tmp_path / "notes"
    old = write(folder / "lighthouse.txt", LIGHTHOUSE)
    write(folder / "bridge.txt", BRIDGE)
    rag.sync([folder])
    old_id = rag.store.doc_for_source(str(old))
    vectors_before = rag.store.vectors(rag.store.docs[old_id].chunk_ids)
    emb.calls.clear()

    new = folder / "archive" / "renamed.txt"
    new.parent.mkdir()
    shutil.move(old, new)
    events = []
    report = rag.sync([folder], on_event=events.append)

    assert embedded(emb) == []  # nothing re-embedded
    assert not report.added and not report.removed and not report.replaced and not report.unchanged[1:]
    (move,) = report.moved
    new_id = document_id(str(new), LIGHTHOUSE.encode())
    assert (move.old_id, move.old_source, move.info.id, move.info.source) == (old_id, str(old), new_id, str(new))
    assert old_id not in rag.store.docs and rag.store.doc_for_source(str(new)) == new_id
    record = rag.store.docs[new_id]
    assert all(rag.store.chunks[c].source == str(new) and rag.store.chunks[c].doc_id == new_id
               for c in record.chunk_ids)
    assert np.array_equal(rag.store.vectors(record.chunk_ids), vectors_before)
    assert [(e.step, e.previous, e.path) for e in events if e.step not in ("reading", "unchanged")] == [
        ("moved", str(old), str(new))]

    answer = rag.ask("When was the Smeaton lighthouse moved to Plymouth Hoe?")
    assert not answer.abstained and answer.citations
    assert {c.source for c in answer.citations} == {str(new)}
    # a new process loads the re-keyed records, and another sync finds nothing to do
    emb.calls.clear()
    reopened = RAG.open(settings=rag.settings, embedder=emb, seed=False)
    assert sources(reopened) == {str(new), str(folder / "bridge.txt")}
    assert not reopened.sync([folder]).moved and embedded(emb) == []


def test_a_moved_file_of_another_type_or_from_an_old_index_is_reembedded(make_rag, tmp_path):
    emb = FakeEmbedder()
    rag = make_rag(embedder=emb)
    folder = tmp_path / "notes"
    a, b = write(folder / "a.txt", BRIDGE), write(folder / "b.txt", FERRY)
    rag.sync([folder])
    # an index saved before content hashes were kept: b's record has none
    with rag.store.writing():
        rag.store.docs[rag.store.doc_for_source(str(b))].content_hash = ""
        rag.store._dirty = True
        rag.store.save()
    emb.calls.clear()
    a.rename(folder / "a.html")  # same bytes, read as HTML
    b.rename(folder / "b2.txt")
    report = rag.sync([folder])
    assert not report.moved
    assert {i.source for i in report.removed} == {str(a), str(b)}
    assert {i.source for i in report.added} == {str(folder / "a.html"), str(folder / "b2.txt")}
    assert sorted(embedded(emb)) == sorted([BRIDGE, FERRY])


def test_documents_outside_the_synced_folders_are_never_touched(make_rag, tmp_path):
    rag = make_rag()
    folder, other = tmp_path / "notes", tmp_path / "other"
    write(folder / "a.txt", BRIDGE)
    outside = write(other / "x.txt", LIGHTHOUSE)
    lookalike = write(tmp_path / "notes-old" / "y.txt", FERRY)  # a sibling whose name starts like the folder
    rag.add([outside, lookalike])
    rag.sync([folder])
    outside.unlink()  # gone, but not in a synced folder: not the sync's to remove
    (folder / "a.txt").unlink()
    report = rag.sync([folder])
    assert [i.source for i in report.removed] == [str(folder / "a.txt")]
    assert sources(rag) == {str(outside), str(lookalike)}
    # a moved file whose old copy is outside the synced folders is a new document, the old one stays
    write(folder / "copy.txt", LIGHTHOUSE)
    report = rag.sync([folder])
    assert not report.moved and [i.source for i in report.added] == [str(folder / "copy.txt")]
    assert str(outside) in sources(rag)


def test_changed_paths_limit_what_is_looked_at(make_rag, tmp_path):
    rag = make_rag()
    folder = tmp_path / "notes"
    a, b = write(folder / "a.txt", BRIDGE), write(folder / "sub" / "b.txt", FERRY)
    rag.sync([folder])
    a.unlink()
    shutil.rmtree(folder / "sub")
    c = write(folder / "c.txt", LIGHTHOUSE)
    report = rag.sync([folder], changed=[a, c, tmp_path / "elsewhere.txt"])
    assert [i.source for i in report.removed] == [str(a)] and [i.source for i in report.added] == [str(c)]
    assert sources(rag) == {str(b), str(c)}  # b's folder was not named as changed
    report = rag.sync([folder], changed=[folder / "sub"])  # a deleted folder: everything under it goes
    assert [i.source for i in report.removed] == [str(b)] and sources(rag) == {str(c)}


def test_hidden_files_are_neither_added_nor_removed_and_a_missing_folder_is_an_error(make_rag, tmp_path):
    rag = make_rag()
    folder = tmp_path / "notes"
    write(folder / "a.txt", BRIDGE)
    write(folder / ".a.txt.swp", FERRY)
    hidden = write(folder / ".private" / "p.txt", LIGHTHOUSE)
    rag.add([hidden])  # ingested by name
    report = rag.sync([folder])
    assert sources(rag) == {str(folder / "a.txt"), str(hidden)} and not report.removed
    with pytest.raises(InputError, match=r"folder to sync does not exist: .*nope"):
        rag.sync([folder, tmp_path / "nope"])
    assert sources(rag) == {str(folder / "a.txt"), str(hidden)}


def test_sync_writes_on_the_latest_generation_and_a_reader_serves_its_result(make_rag, settings, tmp_path):
    rag = make_rag()
    folder = tmp_path / "notes"
    a = write(folder / "a.txt", BRIDGE)
    write(folder / "b.txt", FERRY)
    rag.sync([folder])
    server = RAG.open(settings=settings, embedder=FakeEmbedder(), seed=False)  # `rag serve` elsewhere
    other = RAG.open(settings=settings, embedder=FakeEmbedder(), seed=False)  # `rag ingest` elsewhere
    outside = write(tmp_path / "x.txt", LIGHTHOUSE)
    other.add([outside])  # saved after `rag`'s last look at the index
    a.unlink()
    rag.sync([folder])
    assert sources(rag) == {str(folder / "b.txt"), str(outside)}  # the other process's save is kept
    hits = server.retrieve("When did the Tamar bridge open across the river?", top_k=5)
    assert hits and all(p.chunk.source != str(a) for p in hits)
    assert sources(server) == {str(folder / "b.txt"), str(outside)}


def test_copies_with_the_same_contents_move_one_to_one(make_rag, tmp_path):
    emb = FakeEmbedder()
    rag = make_rag(embedder=emb)
    folder = tmp_path / "notes"
    write(folder / "a.txt", FERRY)
    write(folder / "b.txt", FERRY)
    rag.sync([folder])
    emb.calls.clear()
    (folder / "a.txt").rename(folder / "c.txt")
    (folder / "b.txt").rename(folder / "d.txt")
    write(folder / "e.txt", FERRY)  # a third copy: new, so embedded
    report = rag.sync([folder])
    assert sorted((Path(m.old_source).name, Path(m.info.source).name) for m in report.moved) == [
        ("a.txt", "c.txt"), ("b.txt", "d.txt")]
    assert [Path(i.source).name for i in report.added] == ["e.txt"] and not report.removed
    assert embedded(emb) == [FERRY]
    assert {Path(s).name for s in sources(rag)} == {"c.txt", "d.txt", "e.txt"}
