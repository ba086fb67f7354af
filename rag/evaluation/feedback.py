"""A collection's own test set, grown from the chat: each answer marked "right", "wrong" or "should have
refused" becomes an item of `<collection folder>/feedback-testset.jsonl`, in the JSONL format
`rag eval run` reads (rag/evaluation/testsets.py):

    right            {"id", "question", "answers": [the answer's text, citation markers removed], ...}
    should_refuse    {"id", "question", "answers": [], ...}         (an unanswerable item)
    wrong            {"id", "question", "needs_gold": true, ...}     (no "answers" until the user gives the
                                                                      right one in the Evaluate tab; until
                                                                      then a run skips it as a problem)

Every item also keeps what was marked: "feedback", "answer", "citations" (source, page, location, text)
and "saved_at". The id is derived from the question, so marking the same question again replaces its item.
"""
from __future__ import annotations

import hashlib
import json
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rag.errors import InputError
from rag.evaluation.testsets import Problem, TestSet, parse_jsonl

FEEDBACK_FILE = "feedback-testset.jsonl"
VERDICTS = ("right", "wrong", "should_refuse")
NEEDS_GOLD = "marked wrong: give it the right answer (gold) in the Evaluate tab to use it"

_lock = threading.Lock()  # one writer at a time in this process (every write rewrites the file whole)


def feedback_path(directory: str | Path) -> Path:
    """The collection's own test set file in its folder `directory`."""
    return Path(directory) / FEEDBACK_FILE


def item_id(question: str) -> str:
    return "fb-" + hashlib.sha256(" ".join(question.split()).lower().encode("utf-8")).hexdigest()[:10]


def feedback_item(question: str, answer: str, citations: list[dict[str, Any]], verdict: str) -> dict[str, Any]:
    """The JSONL record for one marked answer (see the module docstring)."""
    if verdict not in VERDICTS:
        raise InputError(f"bad feedback {verdict!r}; choose one of: {', '.join(VERDICTS)}")
    question = (question or "").strip()
    if not question:
        raise InputError("there is no question to save the feedback for")
    record: dict[str, Any] = {"id": item_id(question), "question": question}
    text = _plain(answer)
    if verdict == "right":
        if not text:
            raise InputError("an empty answer cannot be marked right")
        record["answers"] = [text]
    elif verdict == "should_refuse":
        record["answers"] = []
    else:
        record["needs_gold"] = True
    record.update({"feedback": verdict, "answer": answer, "citations": citations,
                   "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return record


def _plain(answer: str) -> str:
    from rag.answer.citations import strip_markers

    return " ".join(strip_markers(answer or "").split())


def load_items(directory: str | Path) -> list[dict[str, Any]]:
    """Every record of the collection's own test set, in file order (none: [])."""
    path = feedback_path(directory)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # load_testset reports it; the editor shows the usable ones
            if isinstance(record, dict) and "id" in record:
                out.append(record)
    return out


def _write(directory: str | Path, records: list[dict[str, Any]]) -> None:
    path = feedback_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    tmp.replace(path)


def record(directory: str | Path, question: str, answer: str, citations: list[dict[str, Any]],
           verdict: str) -> dict[str, Any]:
    """Save one marked answer (replacing an earlier mark of the same question); returns the record."""
    new = feedback_item(question, answer, citations, verdict)
    with _lock:
        records = [r for r in load_items(directory) if r.get("id") != new["id"]]
        _write(directory, [*records, new])
    return new


def set_gold(directory: str | Path, item: str, answers: list[str]) -> dict[str, Any]:
    """Give item `item` these gold answers (an empty list: it must be refused)."""
    answers = [a.strip() for a in answers if a and a.strip()]
    with _lock:
        records = load_items(directory)
        found = _find(records, item)
        found["answers"] = list(dict.fromkeys(answers))
        found.pop("needs_gold", None)
        found["edited_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        _write(directory, records)
    return found


def delete(directory: str | Path, item: str) -> None:
    with _lock:
        records = load_items(directory)
        _find(records, item)
        _write(directory, [r for r in records if r.get("id") != item])


def _find(records: list[dict[str, Any]], item: str) -> dict[str, Any]:
    for r in records:
        if r.get("id") == item:
            return r
    ids = ", ".join(str(r.get("id")) for r in records[:10]) or "none"
    raise InputError(f"no item {item!r} in the collection's test set; items: {ids}")


def load_feedback_testset(directory: str | Path) -> TestSet:
    """The collection's own test set, as `rag eval run` reads it; items still waiting for a gold
    answer are listed as problems (skipped), with what to do about them."""
    path = feedback_path(directory)
    if not path.is_file():
        raise InputError(f"the collection has no test set of its own yet ({path}): mark answers in the chat "
                         "as right, wrong or should have refused to grow one")
    testset = parse_jsonl(path.read_text(encoding="utf-8"), path)
    waiting = {r["id"] for r in load_items(directory) if r.get("needs_gold") and "answers" not in r}
    testset.problems = [Problem(NEEDS_GOLD, p.line, p.item_id) if p.item_id in waiting else p
                        for p in testset.problems]
    return testset
