"""Test sets for `rag eval`: JSONL written by hand, or SQuAD (v1/v2) JSON read as it is published.

JSONL, one item per line:
    {"id": "q1", "question": "...", "answers": ["$110 million", "110 million"], "evidence": ["..."]}
`id` and `evidence` are optional; an empty `answers` list means the right behaviour is to refuse.

SQuAD JSON: every paragraph's `context` becomes a document to index (see `TestSet.documents`); an
item with `is_impossible: true` must be refused; evidence is the context sentence(s) holding the answer.

A malformed line or item does not stop the run: it is recorded as a `Problem` (line number or id and
why) and the other items are kept. Only a file that cannot be read at all raises `InputError`.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.config import TESTSETS_DIR
from rag.errors import InputError
from rag.text import split_sentences


@dataclass(frozen=True)
class TestItem:
    """One question with its acceptable answers (empty: must be refused) and evidence strings."""

    __test__ = False  # not a pytest test class, despite the name

    id: str
    question: str
    answers: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()
    line: int | None = None  # line in a JSONL file, for messages

    @property
    def must_refuse(self) -> bool:
        return not self.answers

    @property
    def gold(self) -> tuple[str, ...]:
        """Strings a passage must contain to count as supporting: the answers and the evidence."""
        return self.answers + self.evidence


@dataclass(frozen=True)
class Problem:
    """A line or item that could not be used, and why."""

    message: str
    line: int | None = None
    item_id: str | None = None

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.item_id is not None:
            where.append(f"id {self.item_id!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


@dataclass
class TestSet:
    """Items in file order, problems found while reading, and (SQuAD) the documents to index."""

    __test__ = False

    path: Path | None
    format: str  # "jsonl" | "squad" | "items"
    items: list[TestItem] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    documents: list[tuple[str, str]] = field(default_factory=list)  # (file name, text)

    def __len__(self) -> int:
        return len(self.items)


def bundled_testsets() -> list[str]:
    """Names of the test sets shipped in `testsets/` (e.g. `nearmiss-seed`), for `rag eval run NAME`."""
    return sorted(p.stem for p in TESTSETS_DIR.glob("*.jsonl")) if TESTSETS_DIR.is_dir() else []


def resolve_testset(name: str | Path) -> Path:
    """A path as given when it exists, else the bundled test set of that name (`nearmiss-squad`), else
    an InputError naming the path and the bundled names."""
    path = Path(name).expanduser()
    if path.exists():
        return path
    bundled = TESTSETS_DIR / f"{path.name}.jsonl"
    if path.name == str(name) and bundled.is_file():
        return bundled
    raise InputError(f"test set not found: {path} (not a file, nor a bundled test set; bundled: "
                     f"{', '.join(bundled_testsets()) or 'none'})")


def load_testset(path: str | Path) -> TestSet:
    """Read a JSONL or SQuAD JSON test set, deciding by content (a JSON object with `data` is SQuAD).
    `path` may also name a bundled test set (`bundled_testsets()`)."""
    path = resolve_testset(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise InputError(f"test set not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read test set {path}: {exc}") from exc
    if path.suffix.lower() != ".jsonl" and text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None  # perhaps JSONL after all
        if isinstance(data, dict) and "data" in data:
            return parse_squad(data, path)
        if isinstance(data, dict) and "question" not in data:
            raise InputError(f"{path}: a JSON object without 'data' is neither SQuAD nor a JSONL item")
    return parse_jsonl(text, path)


def load_jsonl(path: str | Path) -> TestSet:
    path = Path(path).expanduser()
    try:
        return parse_jsonl(path.read_text(encoding="utf-8-sig"), path)
    except FileNotFoundError as exc:
        raise InputError(f"test set not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read test set {path}: {exc}") from exc


def parse_jsonl(text: str, path: Path | None = None) -> TestSet:
    testset = TestSet(path=path, format="jsonl")
    seen: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            testset.problems.append(Problem(f"not valid JSON ({exc.msg} at column {exc.colno})", line=lineno))
            continue
        item = _item_from(record, testset.problems, line=lineno, default_id=f"line-{lineno}")
        if item is None:
            continue
        if item.id in seen:
            testset.problems.append(Problem("duplicate id; the first one is kept", line=lineno, item_id=item.id))
            continue
        seen.add(item.id)
        testset.items.append(item)
    return testset


def _strings(value: Any, name: str) -> tuple[tuple[str, ...] | None, str | None]:
    """(the strings, None) or (None, why not)."""
    if not isinstance(value, list):
        return None, f"'{name}' must be a list of strings, got {type(value).__name__}"
    if not all(isinstance(v, str) and v.strip() for v in value):
        return None, f"'{name}' must hold only non-empty strings"
    return tuple(dict.fromkeys(v.strip() for v in value)), None


def _item_from(record: Any, problems: list[Problem], *, line: int | None, default_id: str) -> TestItem | None:
    if not isinstance(record, dict):
        problems.append(Problem(f"expected a JSON object, got {type(record).__name__}", line=line))
        return None
    raw_id = record.get("id")
    item_id = default_id if raw_id is None or raw_id == "" else str(raw_id)
    where = {"line": line, "item_id": item_id if raw_id is not None else None}
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        problems.append(Problem("'question' is missing or empty", **where))
        return None
    if "answers" not in record:
        problems.append(Problem("'answers' is missing (use [] for a question that must be refused)", **where))
        return None
    answers, why = _strings(record["answers"], "answers")
    if answers is None:
        problems.append(Problem(why or "", **where))
        return None
    evidence: tuple[str, ...] = ()
    if record.get("evidence") is not None:
        evidence, why = _strings(record["evidence"], "evidence")
        if evidence is None:
            problems.append(Problem(why or "", **where))
            return None
    return TestItem(id=item_id, question=question.strip(), answers=answers, evidence=evidence, line=line)


# -- SQuAD ------------------------------------------------------------------------------------

def read_json(path: Path, what: str, missing: str) -> Any:
    """A JSON file, or an InputError naming it: `missing` when it does not exist, `what` otherwise."""
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError as exc:
        raise InputError(f"{missing} not found: {path}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {what} {path}: {exc}") from exc


def load_squad(path: str | Path) -> TestSet:
    path = Path(path).expanduser()
    return parse_squad(read_json(path, "SQuAD file", "test set"), path)


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:limit].strip("-").lower() or "doc"


def _sentence_at(context: str, start: int, end: int) -> str | None:
    """The sentence(s) of `context` overlapping the char span [start, end)."""
    spans = [s for s in split_sentences(context) if s.start < end and s.end > start]
    if not spans:
        return None
    return context[spans[0].start:spans[-1].end]


def parse_squad(data: Any, path: Path | None = None) -> TestSet:
    """SQuAD v2 (or v1, e.g. COVID-QA) JSON -> items and one document per paragraph context."""
    testset = TestSet(path=path, format="squad")
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        raise InputError(f"{path or 'SQuAD data'}: expected an object with a 'data' list of articles")
    seen: set[str] = set()
    for a_index, article in enumerate(articles):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            testset.problems.append(Problem(f"article {a_index} has no 'paragraphs' list; skipped"))
            continue
        title = str(article.get("title") or "")
        for p_index, paragraph in enumerate(article["paragraphs"]):
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            if not isinstance(context, str) or not context.strip():
                testset.problems.append(Problem(f"article {a_index} paragraph {p_index} has no context; skipped"))
                continue
            doc_key = paragraph.get("document_id") or title or "article"
            name = f"{a_index:03d}-{p_index:03d}-{_slug(str(doc_key))}.txt"
            testset.documents.append((name, context))
            for q_index, qa in enumerate(paragraph.get("qas") or []):
                item = _squad_item(qa, context, testset.problems, default_id=f"{a_index}-{p_index}-{q_index}")
                if item is None:
                    continue
                if item.id in seen:
                    testset.problems.append(Problem("duplicate id; the first one is kept", item_id=item.id))
                    continue
                seen.add(item.id)
                testset.items.append(item)
    return testset


def _squad_item(qa: Any, context: str, problems: list[Problem], default_id: str) -> TestItem | None:
    if not isinstance(qa, dict):
        problems.append(Problem("a 'qas' entry is not an object", item_id=default_id))
        return None
    item_id = str(qa["id"]) if qa.get("id") not in (None, "") else default_id
    question = qa.get("question")
    if not isinstance(question, str) or not question.strip():
        problems.append(Problem("'question' is missing or empty", item_id=item_id))
        return None
    if qa.get("is_impossible"):
        return TestItem(id=item_id, question=question.strip())
    raw = qa.get("answers")
    if not isinstance(raw, list) or not raw:
        problems.append(Problem("answerable item has no 'answers' list", item_id=item_id))
        return None
    answers: dict[str, None] = {}
    evidence: dict[str, None] = {}
    for ans in raw:
        text = ans.get("text") if isinstance(ans, dict) else None
        if not isinstance(text, str) or not text.strip():
            continue
        answers[text.strip()] = None
        start = ans.get("answer_start")
        if not (isinstance(start, int) and context[start:start + len(text)] == text):
            start = context.find(text)
        if start >= 0:
            sentence = _sentence_at(context, start, start + len(text))
            if sentence:
                evidence[sentence] = None
    if not answers:
        problems.append(Problem("answerable item has no answer text", item_id=item_id))
        return None
    return TestItem(id=item_id, question=question.strip(), answers=tuple(answers),
                    evidence=tuple(e for e in evidence if e not in answers))
