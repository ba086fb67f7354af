"""The `Store` protocol: both stores have every member, and the FAISS store's new members do what
the PostgreSQL store's do (tests/test_store_postgres.py checks those against a real server)."""
from __future__ import annotations

import json

import pytest

from rag.errors import DocumentNotFound, StoreError
from rag.store import generations
from rag.store.faiss_index import IndexStore
from rag.store.interface import Store, covered_words
from rag.store.moves import rekey
from rag.store.postgres import PgStore
from rag.testing import FakeEmbedder
from rag.types import Chunk

EMB = FakeEmbedder(dim=32)


def add_doc(store: IndexStore, doc_id: str, texts: list[str], start: int = 0) -> list[Chunk]:
    first = store.reserve_ids(len(texts))
    chunks, at = [], start
    for i, t in enumerate(texts):
        chunks.append(Chunk(id=first + i, doc_id=doc_id, source=f"/{doc_id}.txt", text=t, start=at, end=at + len(t)))
        at += len(t) + 1
    store.add(doc_id, f"/{doc_id}.txt", at, chunks, EMB.embed(texts))
    return chunks


def _members(cls: type) -> set[str]:
    return {n for n in vars(cls) if not n.startswith("_")} | set(getattr(cls, "__annotations__", {}))


def test_both_stores_have_every_member_of_the_protocol(tmp_path):
    wanted = _members(Store)
    assert {"rekey", "set_content_hash", "lexical_search", "corpus_words", "counts"} <= wanted
    faiss_store = IndexStore.create(tmp_path, EMB.name, EMB.dim, 100, 1)
    assert not [m for m in wanted if not hasattr(faiss_store, m)]
    # PgStore sets its data attributes when it connects; its methods and properties are on the class
    pg_attributes = {"directory", "manifest", "docs", "chunks", "corpus_words"}
    assert not [m for m in wanted - pg_attributes if not hasattr(PgStore, m)]


def test_lexical_search_ranks_full_text_and_filters_before_ranking(tmp_path):
    s = IndexStore.create(tmp_path, EMB.name, EMB.dim, 100, 1)
    mines = add_doc(s, "mines", ["copper mines in the valley", "the castle above the copper town"])
    garden = add_doc(s, "garden", ["roses in the castle garden", "a valley of tulips"])
    assert s.lexical_search("copper", 5)[0].doc_id == "mines"
    assert {c.id for c in s.lexical_search("copper", 5)} == {c.id for c in mines}
    within = frozenset(c.id for c in garden)
    assert {c.doc_id for c in s.lexical_search("copper valley castle", 5, within)} == {"garden"}
    assert s.lexical_search("copper", 5, within) == []  # no garden chunk has the word
    assert s.lexical_search("copper", 5, frozenset()) == []
    s.remove("mines")  # a change rebuilds the ranking
    assert s.lexical_search("copper", 5) == []


def test_counts_and_corpus_words_count_overlaps_once(tmp_path):
    s = IndexStore.create(tmp_path, EMB.name, EMB.dim, 100, 1)
    text = "one two three four five six"
    overlapping = [Chunk(id=s.reserve_ids(1), doc_id="a", source="/a.txt", text=text[:13], start=0, end=13),
                   Chunk(id=s.reserve_ids(1), doc_id="a", source="/a.txt", text=text[8:], start=8, end=len(text))]
    s.add("a", "/a.txt", len(text), overlapping, EMB.embed([c.text for c in overlapping]))
    add_doc(s, "b", ["seven eight", "nine"])
    assert s.counts() == (2, 4)
    assert covered_words(overlapping) == 6
    assert s.corpus_words == 6 + 3


def test_rekey_keeps_chunk_ids_and_vectors_and_moves_the_source(tmp_path):
    s = IndexStore.create(tmp_path, EMB.name, EMB.dim, 100, 1)
    chunks = add_doc(s, "a", ["apples grow on trees", "pears too"])
    s.set_content_hash("a", "h1")
    s.save()
    with s.writing():
        moved = rekey(s, "a", "a2", "/moved/a.txt")
        s.save()
    assert (moved.id, moved.source, moved.chunk_ids, moved.content_hash) == ("a2", "/moved/a.txt", [c.id for c in chunks], "h1")
    r = IndexStore.open(tmp_path, EMB.name, EMB.dim)
    assert r.doc_for_source("/moved/a.txt") == "a2" and r.doc_for_source("/a.txt") is None
    assert {c.doc_id for c in r.chunks.values()} == {"a2"}
    assert r.search(EMB.embed(["pears too"])[0], 1)[0][0].source == "/moved/a.txt"
    with pytest.raises(DocumentNotFound):
        rekey(r, "a", "a3", "/x.txt")
    with r.writing():
        add_doc(r, "b", ["other"])
        with pytest.raises(ValueError, match="already"):
            rekey(r, "a2", "b", "/y.txt")


def test_stored_counts_reads_the_records_and_follows_a_generation_that_moved_on(tmp_path, monkeypatch):
    assert IndexStore.stored_counts(tmp_path / "none") == (0, 0)
    s = IndexStore.create(tmp_path, EMB.name, EMB.dim, 100, 1)
    add_doc(s, "a", ["apples", "pears"])
    s.save()
    assert IndexStore.stored_counts(tmp_path) == (1, 2)
    old = s.manifest.generation
    add_doc(s, "b", ["cars"])
    s.save()  # removes the old generation's files
    stale = generations.Manifest(**{**json.loads((tmp_path / generations.MANIFEST).read_text()), "generation": old})
    reads = iter([stale])
    real = generations.read_manifest
    monkeypatch.setattr(generations, "read_manifest", lambda d: next(reads, None) or real(d))
    assert IndexStore.stored_counts(tmp_path) == (2, 3)  # the stale name's records were gone: followed
    (tmp_path / f"records.{s.manifest.generation}.json").write_text("{broken")
    with pytest.raises(StoreError, match="unreadable"):
        IndexStore.stored_counts(tmp_path)
