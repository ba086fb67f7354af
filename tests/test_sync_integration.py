"""RAG.sync with the real MiniLM and the real default model: a deleted file's answer is gone after a sync."""
import pytest

from rag.pipeline import RAG

pytestmark = pytest.mark.integration

GARDEN = ("The Harbour Street community garden opens its gates at 7:30 every Saturday morning. "
          "Volunteers water the raised beds before the weekly plant swap begins at nine.")
BAKERY = ("The Mill Lane bakery bakes rye loaves on Tuesdays and Thursdays. "
          "Its sourdough starter was brought from Gdansk by the founder in 1994.")
QUESTION = "What time does the Harbour Street community garden open on Saturdays?"


def test_a_deleted_file_is_no_longer_answered_or_cited_after_a_sync(real_rag, real_embedder, tmp_path):
    folder = (tmp_path / "notes").resolve()
    (folder / "town").mkdir(parents=True)
    garden = folder / "garden.txt"
    garden.write_text(GARDEN, encoding="utf-8")
    (folder / "town" / "bakery.md").write_text(BAKERY, encoding="utf-8")
    rag = RAG.open(settings=real_rag.settings.with_(index_dir=tmp_path / "index"), embedder=real_embedder,
                   llm=real_rag.llm, seed=False)  # the model already loaded: one load for the session
    first = rag.sync([folder])
    assert len(first.added) == 2 and first.ok

    answer = rag.ask(QUESTION)
    assert not answer.abstained, (answer.refusal_reason, answer.model_text)
    assert "7:30" in answer.text
    assert {c.source for c in answer.citations} == {str(garden)}

    moved = folder / "town" / "garden-hours.txt"
    garden.rename(moved)
    report = rag.sync([folder])
    assert [(m.old_source, m.info.source) for m in report.moved] == [(str(garden), str(moved))]
    assert rag.retrieve(QUESTION, top_k=1)[0].chunk.source == str(moved)

    moved.unlink()
    report = rag.sync([folder])
    assert [i.source for i in report.removed] == [str(moved)]
    refused = rag.ask(QUESTION)
    assert refused.abstained, refused.text
    assert not any("garden" in c.source for c in refused.citations)
    assert not any("garden" in p.chunk.source for p in refused.passages)
    assert {d.source for d in rag.documents()} == {str(folder / "town" / "bakery.md")}
