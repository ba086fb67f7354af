"""The near-miss test set (testsets/nearmiss-*.jsonl), checked against the documents it was made from.

Each near-miss item takes a real fact of a document (`fact`, copied verbatim) and asks it with one term
swapped (`original` -> `swapped`: a relation, an entity, a time or a unit), so that the documents do not
answer it and it must be refused ("What is the name of Niger's ousted president?": the article names Ali
Lamine Zeine as prime minister and never names the president). Its control (`control`) asks the same fact
straight, with gold answers copied from the text. The check, for every near-miss item:

1. `fact` occurs verbatim in its document and holds `original` and `fact_answer` (the control's answer);
2. the question holds `swapped` and not `original`, and they differ (the swap was really made);
3. no sentence of the document holds both `swapped` and `fact_answer`: the document never states the fact
   in the swapped relation (had any sentence called Zeine president, item 1 of the seed part would fail here);

and for every control: each gold answer occurs verbatim in its document and in the fact it asks about.
Terms match case-insensitively as whole words; sentences are the project's own (`split_sentences`).
"The document" is the seed article; for SQuAD all paragraphs of the article of that title; for COVID-QA the
paper (`document_id`). What the check cannot see: a document that answers the swapped question with some
other answer (another president, named elsewhere); the authors checked that by reading, and the run's
refusals are the second check.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest

from rag.config import SEEDS_DIR, TESTSETS_DIR
from rag.errors import InputError
from rag.evaluation.testsets import bundled_testsets, load_testset, resolve_testset
from rag.text import split_sentences

DATASETS = Path(os.environ.get("RAG_DATASETS_DIR") or Path(__file__).resolve().parents[3] / "shared" / "datasets")
PARTS = {"nearmiss-seed": "seed", "nearmiss-squad": "squad-small/squad-v2-small.json",
         "nearmiss-covid": "covid-qa/covidqa-200423.json"}


def records(name: str) -> list[dict]:
    return [json.loads(line) for line in (TESTSETS_DIR / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]


def documents(source: str) -> dict[str, str]:
    """document name -> its text, for a part's source."""
    if source == "seed":
        return {p.name: p.read_text(encoding="utf-8") for p in SEEDS_DIR.glob("*.txt")}
    data = json.loads((DATASETS / source).read_text(encoding="utf-8"))
    out: dict[str, list[str]] = {}
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            key = str(paragraph.get("document_id") or article["title"])
            out.setdefault(key, []).append(paragraph["context"])
    return {k: "\n\n".join(v) for k, v in out.items()}


def has(text: str, term: str) -> bool:
    """`term` in `text`, case-insensitive, as whole words (a boundary only where the term has a word edge)."""
    left = r"(?<!\w)" if term[:1].isalnum() else ""
    right = r"(?!\w)" if term[-1:].isalnum() else ""
    return re.search(left + re.escape(term) + right, text, flags=re.IGNORECASE) is not None


def problems(item: dict, docs: dict[str, str], controls: dict[str, dict]) -> list[str]:
    """What is wrong with one item of the set (empty: it passes every check above)."""
    text = docs.get(item["document"])
    if text is None:
        return [f"{item['id']}: document {item['document']!r} not found"]
    out = []
    if item["answers"]:  # a control
        for answer in item["answers"]:
            if answer not in text:
                out.append(f"{item['id']}: gold answer {answer!r} is not in the document")
            if not any(answer in ev for ev in item.get("evidence", [])):
                out.append(f"{item['id']}: gold answer {answer!r} is not in its evidence")
        for ev in item.get("evidence", []):
            if ev not in text:
                out.append(f"{item['id']}: evidence {ev!r} is not in the document")
        return out
    fact, answer, original, swapped = item["fact"], item["fact_answer"], item["original"], item["swapped"]
    if fact not in text:
        out.append(f"{item['id']}: fact is not verbatim in the document")
    if not has(fact, original):
        out.append(f"{item['id']}: original term {original!r} is not in the fact")
    if answer not in fact:
        out.append(f"{item['id']}: fact_answer {answer!r} is not in the fact")
    if original.lower() == swapped.lower() or not has(item["question"], swapped) or has(item["question"], original):
        out.append(f"{item['id']}: the question must hold the swapped term {swapped!r} and not {original!r}")
    for span in split_sentences(text):
        sentence = text[span.start:span.end]
        if has(sentence, swapped) and has(sentence, answer):
            out.append(f"{item['id']}: {swapped!r} and the answer {answer!r} share a sentence: {sentence!r}")
    control = controls.get(item.get("control", ""))
    if control is None or not control["answers"] or fact not in control.get("evidence", []):
        out.append(f"{item['id']}: its control {item.get('control')!r} is missing or asks another fact")
    elif not any(answer in a or a in answer for a in control["answers"]):
        out.append(f"{item['id']}: fact_answer {answer!r} is not its control's answer")
    return out


def test_the_set_has_40_near_misses_each_with_a_control_and_rag_eval_reads_it():
    assert sorted(PARTS) == bundled_testsets()
    near, ctl = 0, 0
    for name, source in PARTS.items():
        rows = records(name)
        testset = load_testset(name)  # by name, as `rag eval run nearmiss-seed` does
        assert testset.problems == [] and testset.path == TESTSETS_DIR / f"{name}.jsonl"
        assert [i.id for i in testset.items] == [r["id"] for r in rows]
        assert {r["source"] for r in rows} == {source}
        nm = [r for r in rows if not r["answers"]]
        controls = {r["id"] for r in rows if r["answers"]}
        assert sorted(r["control"] for r in nm) == sorted(controls)  # one control per near miss, none spare
        assert all(i.must_refuse == (i.id.startswith("nm-")) for i in testset.items)
        assert {r["swap"] for r in nm} <= {"relation", "entity", "time", "unit"}
        near, ctl = near + len(nm), ctl + len(controls)
    assert near >= 40 and ctl == near
    kinds = Counter(r["swap"] for name in PARTS for r in records(name) if not r["answers"])
    assert len(kinds) == 4, kinds  # every kind of swap is represented


@pytest.mark.parametrize("name", sorted(PARTS))
def test_every_item_checks_against_its_document(name):
    source = PARTS[name]
    if source != "seed" and not (DATASETS / source).is_file():
        pytest.skip(f"{DATASETS / source} is not there (../shared/datasets beside the repository)")
    docs = documents(source)
    rows = records(name)
    controls = {r["id"]: r for r in rows if r["answers"]}
    found = [p for r in rows for p in problems(r, docs, controls)]
    assert found == []


def test_the_check_fails_items_that_are_answerable_or_not_swapped():
    docs = documents("seed")
    rows = records("nearmiss-seed")
    controls = {r["id"]: r for r in rows if r["answers"]}
    good = next(r for r in rows if r["id"] == "nm-seed-01")
    assert problems(good, docs, controls) == []
    # "Prime Minister" is what the article calls Zeine: asking it is answerable, and the check says so
    answerable = {**good, "question": "What is the name of Niger's Prime Minister?", "swapped": "Prime Minister",
                  "original": "Deputy Secretary of State"}
    assert any("share a sentence" in p for p in problems(answerable, docs, controls))
    not_swapped = {**good, "question": "What is the name of Niger's Prime Minister, the president?"}
    assert any("must hold the swapped term" in p for p in problems(not_swapped, docs, controls))
    misquoted = {**good, "fact": good["fact"].replace("Niger’s", "Niger's")}
    assert any("not verbatim" in p for p in problems(misquoted, docs, controls))
    bad_control = {**controls["ctl-seed-01"], "answers": ["Ali Zeine"]}
    assert any("not in the document" in p for p in problems(bad_control, docs, controls))


def test_a_test_set_is_found_by_path_or_bundled_name_and_a_wrong_name_lists_the_names(tmp_path):
    own = tmp_path / "nearmiss-seed.jsonl"
    own.write_text('{"question": "q?", "answers": []}\n', encoding="utf-8")
    assert resolve_testset(own) == own  # a path that exists wins
    assert resolve_testset("nearmiss-covid") == TESTSETS_DIR / "nearmiss-covid.jsonl"
    with pytest.raises(InputError, match=r"nearmiss-typo.*bundled: nearmiss-covid, nearmiss-seed, nearmiss-squad"):
        load_testset("nearmiss-typo")
    with pytest.raises(InputError, match="test set not found"):
        load_testset(tmp_path / "nearmiss-seed" / "missing.jsonl")
