"""Locations end to end with fakes: `rag eval run` on the mixed-format corpus reports where each
citation points, `rag ask` prints it, the UI shows it, and an index saved before locations existed
still opens (its chunks have none)."""
from __future__ import annotations

import json
from pathlib import Path

from rag.app import cli
from rag.app.eval_commands import run_cli
from rag.app.render import citation_html
from rag.pipeline import RAG
from rag.testing import FakeEmbedder, FakeLLM
from rag.types import Answer, AnswerSentence, Citation
from tests.formatmakers import MIXED_LOCATIONS, build_mixed_corpus, cited_at
from tests.evaluation.test_evaluation import cli_args, extractive

TESTSET = Path(__file__).resolve().parents[1] / "data" / "mixed_testset.jsonl"


def test_eval_run_on_the_mixed_corpus_reports_citation_locations(settings, tmp_path, capsys):
    build_mixed_corpus(tmp_path / "corpus", scanned=False)
    out, md = tmp_path / "report.json", tmp_path / "report.md"
    code = run_cli(cli_args(TESTSET, docs=tmp_path / "corpus", json_out=out, report=md), settings,
                   embedder=FakeEmbedder(), llm=FakeLLM([extractive]))
    assert code == 0
    items = {i["id"]: i for i in json.loads(out.read_text(encoding="utf-8"))["items"]}
    assert len(items) == 15  # m15 asks about the scan, left out here (OCR is a real model)
    # the extractive fake copies the sentence sharing most words with the question: the ones in prose
    for item_id in ("m01", "m05", "m06", "m09", "m14"):
        name, location = MIXED_LOCATIONS[item_id]
        cited = items[item_id]["citations"]
        assert any(cited_at(c, name, location) and c["supports"] for c in cited), cited
    # every passage is located: by its slide, rows, chapter, ... or, in a PDF, its page
    assert all(r["location"] or r["page"] for i in items.values() for r in i["retrieved"])
    text = md.read_text(encoding="utf-8")
    assert "| cited |" in text and "heron-roadmap.pptx, slide 2 (supports)" in text
    assert "marigold.epub, chapter 2: The Storm (supports)" in text
    assert "tide-tables.pdf, page 2 (supports)" in text  # pages alongside slides and rows


def test_rag_ask_prints_the_location_and_json_carries_it(monkeypatch, tmp_path, capsys):
    build_mixed_corpus(tmp_path / "corpus", scanned=False)
    llm = FakeLLM(["During the storm the Marigold lost its mainmast near Kestrel Reef [1]."])
    monkeypatch.setattr(cli, "_open", lambda s: RAG.open(settings=s.with_(min_score=0.0), embedder=FakeEmbedder(),
                                                          llm=llm, seed=False))
    index = str(tmp_path / "idx")
    assert cli.main(["ingest", str(tmp_path / "corpus"), "--index", index]) == 0
    capsys.readouterr()
    assert cli.main(["ask", "What did the Marigold lose in the storm?", "--doc", "*.epub", "--index", index]) == 0
    assert "marigold.epub, chapter 2: The Storm, chars" in capsys.readouterr().out
    assert cli.main(["ask", "--json", "What did the Marigold lose in the storm?", "--doc", "*.epub",
                     "--index", index]) == 0
    cited = json.loads(capsys.readouterr().out)["citations"]
    assert [c["location"] for c in cited] == ["chapter 2: The Storm"]


def test_the_ui_shows_the_location_escaped():
    c = Citation(n=1, text="Region | Manager", source="/d/sales.xlsx", page=None, start=0, end=16, score=0.5,
                 location="sheet <Q1>, rows 2-4")
    answer = Answer(question="q", text="x [1].", citations=[c], abstained=False,
                    sentences=[AnswerSentence(text="x.", citations=(1,), supported=True)])
    html = citation_html(c, answer)
    assert "sales.xlsx" in html and "sheet &lt;Q1&gt;, rows 2-4" in html and "<Q1>" not in html


def test_an_index_saved_before_locations_opens_with_none(make_rag, tmp_path):
    rag = make_rag()
    build_mixed_corpus(tmp_path / "corpus", scanned=False)
    rag.add([tmp_path / "corpus" / "heron-roadmap.pptx"])
    records = next(rag.settings.index_dir.glob("records.*.json"))
    data = json.loads(records.read_text(encoding="utf-8"))
    assert all(c["location"].startswith("slide ") for c in data["chunks"])
    for c in data["chunks"]:
        del c["location"]
    records.write_text(json.dumps(data), encoding="utf-8")
    old = RAG.open(settings=rag.settings, embedder=FakeEmbedder(), llm=FakeLLM(["x"]), seed=False)
    assert old.store.chunks and all(c.location is None for c in old.store.chunks.values())
