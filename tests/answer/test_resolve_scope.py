"""rag/answer/scope.py on a small index with fakes: which documents a `documents` list picks, and the
errors that name what is wrong. The whole scoped question: tests/answer/test_scope.py."""
from __future__ import annotations

import pytest

from rag.answer.scope import resolve_scope
from rag.errors import InputError


@pytest.fixture
def store(make_rag, tmp_path):
    for name, text in {"report-2024.txt": "The rent is 4,200 euros.", "report-2023.txt": "The rent was 3,900 euros.",
                       "lease.md": "The lease runs ten years."}.items():
        (tmp_path / name).write_text(text)
    rag = make_rag()
    rag.add(sorted(tmp_path.glob("*.*")))
    return rag.store


def test_none_or_empty_is_the_whole_corpus(store):
    assert resolve_scope(store, None) is None and resolve_scope(store, []) is None


def test_globs_on_the_file_name_and_ids_pick_documents_and_their_chunks(store):
    by_name = {d.source.rsplit("/", 1)[1]: d for d in store.docs.values()}
    scope = resolve_scope(store, ["report-*"])
    assert scope.doc_ids == {by_name["report-2024.txt"].id, by_name["report-2023.txt"].id}
    assert scope.chunk_ids == {c for n in ("report-2024.txt", "report-2023.txt") for c in by_name[n].chunk_ids}
    lease = by_name["lease.md"]
    assert resolve_scope(store, [lease.id]).doc_ids == {lease.id}


def test_bad_entries_are_named(store):
    with pytest.raises(InputError, match="'nothing-\\*'.*rag list"):
        resolve_scope(store, ["lease.md", "nothing-*"])
    with pytest.raises(InputError, match="not one string"):
        resolve_scope(store, "lease.md")
    with pytest.raises(InputError, match="is empty"):
        resolve_scope(store, ["  "])
