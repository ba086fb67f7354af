"""The mixed-format corpus (one file per new format) with the real MiniLM and the real default model:
each format answered with a citation that names the right slide / sheet and rows / chapter / e-mail /
cell. A text-layer PDF and a scanned one cited by page.
One model load, fifteen questions (docs/evaluation.md, "Mixed formats")."""
from __future__ import annotations

from pathlib import Path

import pytest

from rag.config import Settings
from rag.evaluation import evaluate
from rag.pipeline import RAG
from tests.formatmakers import MIXED_LOCATIONS, build_mixed_corpus, cited_at

pytestmark = pytest.mark.integration

TESTSET = Path(__file__).resolve().parents[1] / "data" / "mixed_testset.jsonl"
FORMAT_OF = {"pptx": ".pptx", "xlsx": ".xlsx", "csv": ".csv", "epub": ".epub", "eml": ".eml", "ipynb": ".ipynb",
             "pdf": "tide-tables.pdf", "scanned pdf": "harbour-log.pdf"}


def kind(name: str) -> str:
    """What must be answered at least once: each format; each of the two PDFs (text layer, scan)."""
    return name if name.endswith(".pdf") else Path(name).suffix


def test_each_format_is_answered_with_a_citation_at_the_right_location(tmp_path, real_embedder):
    files = build_mixed_corpus(tmp_path / "corpus")
    rag = RAG.open(settings=Settings.load(index_dir=tmp_path / "index"), embedder=real_embedder, seed=False)
    ingest = rag.add([tmp_path / "corpus"])
    assert ingest.ok and len(ingest.added) == len(files), ingest.failed
    report = evaluate(rag, TESTSET)
    by_id = {r.id: r for r in report.items}
    assert len(by_id) == 15 and not report.problems

    located = {}  # extension -> ids answered right with a supporting citation at the expected location
    for item_id, (name, location) in MIXED_LOCATIONS.items():
        r = by_id[item_id]
        if r.correct and any(cited_at(c, name, location) and c["supports"] for c in r.citations):
            located.setdefault(kind(name), []).append(item_id)
    missing = sorted(set(FORMAT_OF.values()) - set(located))
    assert not missing, {f"{k}: {r.verdict}": (r.answer, r.citations) for k, r in by_id.items()
                         if kind(MIXED_LOCATIONS.get(k, ("x.none",))[0]) in missing}
    # every citation of the run says where its passage is: a location, or a PDF's page
    for r in report.items:
        for c in r.citations:
            assert c["location"] or c["page"], (r.id, c)
    scan = [c for c in by_id["m15"].citations if c["source"] == "harbour-log.pdf"]
    assert scan and all(c["ocr"] for c in scan)  # the scan was read by OCR and cited as such
    refused = [r.id for r in report.items if r.must_refuse and r.abstained]
    assert len(refused) >= 2, [(r.id, r.answer) for r in report.items if r.must_refuse]
    print({k: round(v, 3) if isinstance(v, float) else v for k, v in report.metrics.items()})
