"""`rag sync` on the PostgreSQL store (RAG_STORE; rag/store/postgres.py) on a real PostgreSQL + pgvector
(tests/conftest.py pg_server), with fakes: a moved file is re-keyed in SQL (content_hash column), not
re-embedded, and cited at its new path, by this process and a new one; a table made before content_hash
gets the column when opened, and its moved documents are re-embedded once."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from rag.ingest.loading import document_id
from rag.pipeline import RAG
from rag.testing import FakeEmbedder, FakeLLM
from tests.test_sync import BRIDGE, LIGHTHOUSE, cite_lighthouse, embedded, sources, write

pytest.importorskip("psycopg")


@pytest.fixture
def pg_settings(settings, pg_uri):
    return settings.with_(store=pg_uri, chunk_size=20, chunk_overlap=1)


def open_pg(settings, embedder, *replies) -> RAG:
    return RAG.open(settings=settings, embedder=embedder, llm=FakeLLM(replies or ["Not in the documents."]), seed=False)


def db_rows(rag: RAG) -> tuple[list[tuple], list[tuple]]:
    docs = rag.store.conn.execute("SELECT id, source, content_hash FROM rag_documents ORDER BY source").fetchall()
    chunks = rag.store.conn.execute("SELECT id, doc_id, source FROM rag_chunks ORDER BY id").fetchall()
    return docs, chunks


def test_a_moved_file_is_rekeyed_in_the_database_not_reembedded(pg_settings, tmp_path):
    emb = FakeEmbedder()
    rag = open_pg(pg_settings, emb, cite_lighthouse)
    folder = tmp_path / "notes"
    old = write(folder / "lighthouse.txt", LIGHTHOUSE)
    write(folder / "bridge.txt", BRIDGE)
    rag.sync([folder])
    old_id = rag.store.doc_for_source(str(old))
    chunk_ids = list(rag.store.docs[old_id].chunk_ids)
    vectors_before = rag.store.vectors(chunk_ids)
    docs, _ = db_rows(rag)
    assert all(len(h) == 64 for _, _, h in docs)  # the content hash is stored, not only held in memory
    emb.calls.clear()

    new = folder / "archive" / "renamed.txt"
    new.parent.mkdir()
    shutil.move(old, new)
    report = rag.sync([folder])

    assert embedded(emb) == []
    assert not report.added and not report.removed and not report.replaced
    (move,) = report.moved
    new_id = document_id(str(new), LIGHTHOUSE.encode())
    assert (move.old_id, move.old_source, move.info.id, move.info.source) == (old_id, str(old), new_id, str(new))
    docs, chunks = db_rows(rag)
    assert {(i, s) for i, s, _ in docs} == {(rag.store.doc_for_source(str(folder / "bridge.txt")),
                                             str(folder / "bridge.txt")), (new_id, str(new))}
    assert [(c, d, s) for c, d, s in chunks if c in chunk_ids] == [(c, new_id, str(new)) for c in chunk_ids]
    assert np.array_equal(rag.store.vectors(chunk_ids), vectors_before)
    answer = rag.ask("When was the Smeaton lighthouse moved to Plymouth Hoe?")
    assert not answer.abstained and {c.source for c in answer.citations} == {str(new)}

    # another process sees the move, and its sync has nothing to do
    emb.calls.clear()
    other = open_pg(pg_settings, emb)
    assert sources(other) == {str(new), str(folder / "bridge.txt")}
    assert other.store.docs[new_id].chunk_ids == chunk_ids
    again = other.sync([folder])
    assert not (again.moved or again.added or again.removed or again.replaced) and embedded(emb) == []


def test_a_table_made_before_content_hash_gets_the_column_and_re_embeds_a_move_once(pg_settings, tmp_path):
    emb = FakeEmbedder()
    rag = open_pg(pg_settings, emb)
    folder = tmp_path / "notes"
    old = write(folder / "lighthouse.txt", LIGHTHOUSE)
    rag.sync([folder])
    with rag.store.conn.transaction():  # as an index made by the code before this change
        rag.store.conn.execute("ALTER TABLE rag_documents DROP COLUMN content_hash")
    rag.store.close()

    emb.calls.clear()
    reopened = open_pg(pg_settings, emb)  # adds the column ("" for the old rows)
    assert [h for _, _, h in db_rows(reopened)[0]] == [""]
    new = folder / "moved.txt"
    shutil.move(old, new)
    report = reopened.sync([folder])
    assert not report.moved and [i.source for i in report.removed] == [str(old)]
    assert [i.source for i in report.added] == [str(new)] and embedded(emb) == [LIGHTHOUSE]
    assert len(db_rows(reopened)[0][0][2]) == 64  # hashed now: its next move is a re-key
    emb.calls.clear()
    shutil.move(new, folder / "again.txt")
    assert [m.info.source for m in reopened.sync([folder]).moved] == [str(folder / "again.txt")]
    assert embedded(emb) == []
