import numpy as np
import pytest

from rag.errors import DocumentNotFound, IndexMismatchError, StoreError
from rag.store import faiss_index as store_mod
from rag.store import generations
from rag.store.faiss_index import IndexStore
from rag.testing import FakeEmbedder
from rag.types import Chunk

EMB = FakeEmbedder(dim=32)


def add_doc(store: IndexStore, doc_id: str, texts: list[str]) -> list[Chunk]:
    first = store.reserve_ids(len(texts))
    chunks = [Chunk(id=first + i, doc_id=doc_id, source=f"/{doc_id}.txt", text=t, start=0, end=len(t)) for i, t in enumerate(texts)]
    store.add(doc_id, f"/{doc_id}.txt", sum(map(len, texts)), chunks, EMB.embed(texts))
    return chunks


def top(store: IndexStore, text: str) -> Chunk:
    return store.search(EMB.embed([text])[0], 1)[0][0]


def test_add_delete_add_reload_search_never_reuses_ids(tmp_path):
    s = IndexStore.create(tmp_path, EMB.name, EMB.dim, 100, 1)
    add_doc(s, "a", ["apples grow on trees", "bananas are yellow"])
    add_doc(s, "b", ["cars drive on roads", "boats float on water"])
    s.remove("a")
    new = add_doc(s, "c", ["violins play music", "pianos have keys"])
    assert {c.id for c in new}.isdisjoint({0, 1})  # ids of the deleted doc are not reused
    s.save()
    r = IndexStore.open(tmp_path, EMB.name, EMB.dim)
    assert top(r, "violins play music").text == "violins play music"
    assert top(r, "boats float on water").text == "boats float on water"
    assert top(r, "apples grow on trees").doc_id != "a"
    more = add_doc(r, "d", ["kites fly high"])
    assert more[0].id == 6
    assert top(r, "pianos have keys").text == "pianos have keys"
    assert {d.id: d.chunks for d in r.documents()} == {"b": 2, "c": 2, "d": 1}


def test_remove_unknown_document(tmp_path):
    s = IndexStore.create(tmp_path, EMB.name, EMB.dim, 100, 1)
    with pytest.raises(DocumentNotFound, match="nope"):
        s.remove("nope")


def test_opening_with_another_embedding_model_fails_clearly(tmp_path):
    s = IndexStore.create(tmp_path, "model-a", 32, 100, 1)
    s.save()
    with pytest.raises(IndexMismatchError, match="model-a.*model-b"):
        IndexStore.open(tmp_path, "model-b", 32)
    with pytest.raises(IndexMismatchError, match="dimension 32"):
        IndexStore.open(tmp_path, "model-a", 64)


def test_crash_during_save_leaves_previous_index_whole(tmp_path, monkeypatch):
    s = IndexStore.create(tmp_path, EMB.name, EMB.dim, 100, 1)
    add_doc(s, "a", ["apples grow on trees"])
    s.save()
    add_doc(s, "b", ["cars drive on roads"])
    real = store_mod.write_atomic

    def crash_on_manifest(path, data):
        if path.name == "manifest.json":
            raise KeyboardInterrupt  # Ctrl-C after the data files, before the switch
        real(path, data)

    monkeypatch.setattr(store_mod, "write_atomic", crash_on_manifest)
    with pytest.raises(KeyboardInterrupt):
        s.save()
    monkeypatch.setattr(store_mod, "write_atomic", real)
    r = IndexStore.open(tmp_path, EMB.name, EMB.dim)
    assert [d.id for d in r.documents()] == ["a"]
    assert top(r, "apples grow on trees").text == "apples grow on trees"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_crash_while_writing_a_file_leaves_no_partial_file(tmp_path, monkeypatch):
    s = IndexStore.create(tmp_path, EMB.name, EMB.dim, 100, 1)
    add_doc(s, "a", ["apples"])
    s.save()
    add_doc(s, "b", ["cars"])

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(generations.os, "replace", boom)
    with pytest.raises(StoreError, match="could not save the index .*unchanged since its last save"):
        s.save()
    monkeypatch.undo()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert [d.id for d in IndexStore.open(tmp_path, EMB.name, EMB.dim).documents()] == ["a"]


def test_corrupt_files_give_a_store_error(tmp_path):
    s = IndexStore.create(tmp_path, EMB.name, EMB.dim, 100, 1)
    add_doc(s, "a", ["apples"])
    s.save()
    (tmp_path / f"records.{s.manifest.generation}.json").write_text("{broken")
    with pytest.raises(StoreError, match="corrupt"):
        IndexStore.open(tmp_path, EMB.name, EMB.dim)
    (tmp_path / "manifest.json").write_text("not json")
    with pytest.raises(StoreError, match="unreadable"):
        IndexStore.open(tmp_path, EMB.name, EMB.dim)


def test_search_scores_are_cosine(tmp_path):
    s = IndexStore.create(tmp_path, EMB.name, EMB.dim, 100, 1)
    add_doc(s, "a", ["apples grow on trees"])
    (chunk, score), = s.search(EMB.embed(["apples grow on trees"])[0], 5)
    assert score == pytest.approx(1.0, abs=1e-5)
    assert np.isfinite(score)


def test_a_write_that_fails_leaves_the_store_as_on_disk(tmp_path, monkeypatch):
    """Inside writing(), a failed save reloads the store: it must not go on serving (and later save
    unasked) a change that is on no disk."""
    s = IndexStore.create(tmp_path, EMB.name, EMB.dim, 100, 1)
    add_doc(s, "a", ["apples grow on trees"])
    s.save()

    def disk_full(src, dst):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(generations.os, "replace", disk_full)
        with pytest.raises(StoreError, match="could not save"), s.writing():
            add_doc(s, "b", ["cars drive on roads"])
            s.save()
    assert [d.id for d in s.documents()] == ["a"] and len(s.chunks) == 1 and s.index.ntotal == 1
    with pytest.raises(DocumentNotFound), s.writing():  # nothing changed: no reload needed
        s.remove("zzz")
    with s.writing():
        add_doc(s, "c", ["violins play music"])
        s.save()
    assert [d.id for d in IndexStore.open(tmp_path, EMB.name, EMB.dim).documents()] == ["a", "c"]
