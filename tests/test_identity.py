"""Identity is path plus contents: a document is one file. Checked against a model with hypothesis."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from rag.config import Settings
from rag.pipeline import RAG
from rag.testing import FakeEmbedder, FakeLLM

NAMES = ("a.md", "b.md", "sub/c.md")
# Few contents, so that two paths often hold the same contents and an edit often equals another file.
CONTENTS = (
    "The heron waited by the reeds until the water was still.",
    "Niamey asked the troops to leave before the end of the year.",
    "A lighthouse keeper painted the tower red and white each spring.",
)


def _rag(directory: Path) -> RAG:
    settings = Settings(index_dir=directory / "index", cache_dir=directory / "cache", min_score=0.0,
                        context="chunk")
    return RAG.open(settings=settings, embedder=FakeEmbedder(), llm=FakeLLM(["Not in the documents."]), seed=False)


def test_same_contents_at_two_paths_are_two_documents_and_edits_replace(tmp_path):
    a, b = tmp_path / "a.md", tmp_path / "b.md"
    a.write_text(CONTENTS[0], encoding="utf-8")
    b.write_text(CONTENTS[0], encoding="utf-8")
    rag = _rag(tmp_path)
    report = rag.add([a, b])
    assert len(report.added) == 2 and not report.unchanged  # b.md was "unchanged" before: never indexed
    by_source = {Path(d.source).name: d.id for d in rag.documents()}
    rag.delete(by_source["a.md"])
    assert [Path(d.source).name for d in rag.documents()] == ["b.md"]  # deleting a.md left b.md searchable
    assert rag.retrieve("heron reeds water")[0].chunk.source == str(b.resolve())
    # a.md comes back with other contents, then is edited to equal b.md: its own document is replaced
    a.write_text(CONTENTS[1], encoding="utf-8")
    rag.add([a])
    a.write_text(CONTENTS[0], encoding="utf-8")
    report = rag.add([a])
    assert len(report.replaced) == 1 and not report.unchanged
    texts = {Path(c.source).name: c.text for c in rag.store.chunks.values()}
    assert texts == {"a.md": CONTENTS[0], "b.md": CONTENTS[0]}  # the old text of a.md is gone
    assert rag.add([a, b]).unchanged and not rag.add([a, b]).added  # nothing changed: nothing re-embedded


STEPS = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(NAMES), st.sampled_from(CONTENTS)),
    st.tuples(st.just("ingest"), st.lists(st.sampled_from(NAMES), min_size=1, max_size=3)),
    st.tuples(st.just("delete"), st.sampled_from(NAMES)),
    st.tuples(st.just("reopen")),
    st.tuples(st.just("search"), st.sampled_from(CONTENTS)),
)


@pytest.mark.slow  # 10.4 s in the fakes-only tier (--durations, load ~1.5)
@hsettings(max_examples=300, deadline=None)
@given(steps=st.lists(STEPS, min_size=1, max_size=14))
def test_random_steps_keep_the_index_equal_to_a_model(steps):
    """Random write / ingest / delete / reopen / search steps; after each, the index must match the
    model: one document per ingested path, holding that path's contents as they were when ingested."""
    root = Path(tempfile.mkdtemp(prefix="rag-identity-"))
    try:
        path = lambda name: (root / "docs" / name).resolve()  # noqa: E731
        files: dict[str, str] = {}   # on disk now
        model: dict[str, str] = {}   # what the index should hold, by file name
        rag = _rag(root)
        for step in steps:
            kind = step[0]
            if kind == "write":
                _, name, content = step
                path(name).parent.mkdir(parents=True, exist_ok=True)
                path(name).write_text(content, encoding="utf-8")
                files[name] = content
            elif kind == "ingest":
                present = [n for n in step[1] if n in files]
                if present:
                    report = rag.add([path(n) for n in present])
                    assert not report.failed, report.failed
                    model.update({n: files[n] for n in present})
            elif kind == "delete":
                ids = [d.id for d in rag.documents() if d.source == str(path(step[1]))]
                assert len(ids) == (1 if step[1] in model else 0)
                if ids:
                    rag.delete(ids[0])
                    del model[step[1]]
            elif kind == "reopen":
                rag = _rag(root)
            else:
                holders = {str(path(n)) for n, c in model.items() if c == step[1]}
                found = {p.chunk.source for p in rag.retrieve(step[1], top_k=len(NAMES)) if p.chunk.text == step[1]}
                assert found == holders
            assert sorted(d.source for d in rag.documents()) == sorted(str(path(n)) for n in model)
            assert {c.source: c.text for c in rag.store.chunks.values()} == {str(path(n)): c for n, c in model.items()}
    finally:
        shutil.rmtree(root, ignore_errors=True)
