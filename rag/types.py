"""Typed data that crosses a stage boundary. Each concept is defined once, here."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal


def _last_at(starts: tuple[tuple[int, Any], ...], offset: int) -> Any:
    """The value of the last (start, value) pair that starts at or before `offset` (None if none)."""
    found = None
    for start, value in starts:
        if start > offset:
            break
        found = value
    return found


@dataclass(frozen=True)
class Document:
    """A loaded source file. `id` hashes its path and contents (`loading.document_id`): one file, one document."""

    id: str
    source: str
    text: str
    # Sorted (char_offset, page_number) pairs: page of a char is the last entry whose offset <= char.
    page_starts: tuple[tuple[int, int], ...] = ()
    content_hash: str = ""  # hash of the file's bytes alone (loading.content_hash): a moved file keeps it
    ocr_pages: tuple[int, ...] = ()  # page numbers whose text came from OCR (rag/ingest/pdf.py)
    # Sorted (char_offset, label) pairs for locations other than PDF pages ("slide 3", "sheet Sales,
    # rows 2-41", "chapter 2: The Storm", "cell 5"): a char's section is the last entry at or before it.
    sections: tuple[tuple[int, str], ...] = ()
    partial: str = ""  # why only part of the file's text is here (its OCR budget ran out), "" if all of it

    def section_at(self, offset: int) -> str | None:
        return _last_at(self.sections, offset)

    def page_at(self, offset: int) -> int | None:
        return _last_at(self.page_starts, offset)


@dataclass(frozen=True)
class Chunk:
    """A contiguous span of a document; `start`/`end` are char offsets into `Document.text`."""

    id: int
    doc_id: str
    source: str
    text: str
    start: int
    end: int
    page: int | None = None
    ocr: bool = False  # its text came from OCR of a scanned page
    location: str | None = None  # the label of the document section the span lies in (Document.sections)


@dataclass(frozen=True)
class Passage:
    """A retrieved span with its relevance score (cosine similarity or fused score)."""

    chunk: Chunk
    score: float
    text: str
    start: int
    end: int

    @classmethod
    def of(cls, chunk: Chunk, score: float) -> "Passage":
        return cls(chunk=chunk, score=score, text=chunk.text, start=chunk.start, end=chunk.end)


@dataclass(frozen=True)
class Citation:
    n: int
    text: str
    source: str
    page: int | None
    start: int
    end: int
    score: float
    doc_id: str = ""
    ocr: bool = False
    location: str | None = None  # "slide 3", "sheet Sales, rows 2-41", ... (Chunk.location)
    # The checks of the answer sentences this passage backs: all passed the support check (names,
    # numbers, words); `claim` is the lowest claim-check score among them (None: not judged).
    supported: bool = True
    claim: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "text": self.text,
            "source": self.source,
            "page": self.page,
            "start": self.start,
            "end": self.end,
            "score": round(float(self.score), 4),
            "ocr": self.ocr,
            "location": self.location,
            "check": {"supported": self.supported,
                      "claim": None if self.claim is None else round(float(self.claim), 4)},
        }


@dataclass(frozen=True)
class AnswerSentence:
    """One sentence of the answer with the passage numbers that support it (empty: unsupported), the
    claim check's probability that those passages state it as the answer to the question (None: not
    judged), and why it was left out of the answer ("" = shown: it passed every check)."""

    text: str
    citations: tuple[int, ...]
    supported: bool
    claim: float | None = None
    dropped: str = ""


@dataclass
class RefusalSignals:
    """The evidence an answer's refusal decision read, and the thresholds it was read against."""

    best_score: float | None = None  # best cosine of the question with any passage
    p_refusal: float | None = None  # model's probability of starting with the refusal (llama.cpp only)
    supported: float | None = None  # share of the answer's sentences that passages back
    retried: bool = False  # the model refused unsure and was asked again with the refusal banned
    # The claim check's score of every sentence of the answer, in order (None: not judged, e.g. a
    # sentence the support check already failed, or no judge for this model): a sentence is shown when
    # it is supported and its score reaches claim_threshold (None: the check was off).
    claims: list[float | None] = field(default_factory=list)
    min_score: float | None = None
    refusal_prob: float | None = None
    retry_below: float | None = None
    claim_threshold: float | None = None

    def to_json(self) -> dict[str, Any]:
        def num(v: Any) -> Any:
            return v if v is None or isinstance(v, bool) else round(float(v), 4)

        return {k: ([num(x) for x in v] if isinstance(v, list) else num(v)) for k, v in asdict(self).items()}


@dataclass
class Answer:
    """The single result type of `RAG.ask`; a refusal is an Answer with `abstained=True`."""

    question: str
    text: str
    citations: list[Citation]
    abstained: bool
    sentences: list[AnswerSentence] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    passages: list[Passage] = field(default_factory=list)
    refusal_reason: str = ""
    model_text: str = ""  # what the model said, before markers were cleaned and sentences checked
    signals: RefusalSignals = field(default_factory=RefusalSignals)

    @property
    def unsupported(self) -> list[str]:
        return [s.text for s in self.sentences if not s.supported]

    @property
    def shown(self) -> list[AnswerSentence]:
        """The sentences the reader sees: those that passed every check."""
        return [s for s in self.sentences if not s.dropped]

    def to_json(self) -> dict[str, Any]:
        return {
            "answer": self.text,
            "abstained": self.abstained,
            "citations": [c.to_json() for c in self.citations],
            "unsupported_sentences": self.unsupported,
            "sentences": [{"text": s.text, "citations": list(s.citations), "supported": s.supported,
                           "claim": None if s.claim is None else round(float(s.claim), 4), "dropped": s.dropped}
                          for s in self.sentences],
            "refusal_reason": self.refusal_reason,
            "model_text": self.model_text,
            "signals": self.signals.to_json(),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


@dataclass(frozen=True)
class DocumentInfo:
    id: str
    source: str
    chunks: int
    chars: int


@dataclass(frozen=True)
class FileFailure:
    path: str
    reason: str


@dataclass(frozen=True)
class IngestEvent:
    """One step of `RAG.add`, told as it happens: `reading` a file (before it is read: a file that
    stalls is the last one named), then its outcome once final: `added`/`replaced` (only after the save
    that keeps it), `unchanged`, or `failed` with the reason. `done` files of `total` are finished.
    `RAG.sync` also tells `removed` (a file gone from a synced folder) and `moved` (`previous` -> `path`),
    each once saved."""

    step: Literal["reading", "added", "replaced", "unchanged", "failed", "removed", "moved"]
    path: str
    done: int
    total: int
    reason: str = ""
    info: DocumentInfo | None = None
    previous: str = ""  # moved: the path the document had before


@dataclass(frozen=True)
class PreparedFile:
    """One file after an ingest executor's load+chunk(+embed) step (rag/ingest/executors.py), in file
    order: `doc` with its `chunks` (ids 0..n-1 until RAG.add numbers them) and their `vectors` if the
    executor embedded them (None: RAG.add embeds them), or `failure`. No chunks for a known document."""

    path: str
    doc: Document | None = None
    chunks: tuple[Chunk, ...] = ()
    vectors: Any = None  # np.ndarray (len(chunks), dim) float32, or None
    failure: FileFailure | None = None


@dataclass
class IngestReport:
    """What `RAG.add` did: ids added/replaced/unchanged, and every file it had to skip, with why."""

    added: list[DocumentInfo] = field(default_factory=list)
    replaced: list[DocumentInfo] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[FileFailure] = field(default_factory=list)
    partial: list[FileFailure] = field(default_factory=list)  # indexed, but only in part: why

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MovedDocument:
    """A file moved or renamed with its contents unchanged: its document re-keyed, its vectors kept."""

    old_id: str
    old_source: str
    info: DocumentInfo  # the new id and source


@dataclass
class SyncReport(IngestReport):
    """What `RAG.sync` did: `RAG.add`'s report for the files present (`replaced` = changed), plus the
    documents of vanished files `removed`, and those `moved` (re-keyed to their new path, not re-embedded)."""

    removed: list[DocumentInfo] = field(default_factory=list)
    moved: list[MovedDocument] = field(default_factory=list)


def hidden_in(path: Path, root: Path) -> bool:
    """Whether `path` (under `root`) is hidden there: a part of it below `root` starts with a dot."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


@dataclass(frozen=True)
class FolderScan:
    """What a sync looks at (rag/ingest/folders.py `scan`; the store's moves judge by it): the synced
    `roots`, the looked-at `scope` (None: the whole roots), the files found there (as `discover` yields
    them, for `RAG.add`) and their sources (resolved, as `loading.load` names them)."""

    roots: tuple[Path, ...]
    scope: tuple[Path, ...] | None
    files: list[Path] = field(default_factory=list)
    sources: frozenset[str] = frozenset()

    def covers(self, source: str) -> bool:
        """Whether a document with this source is this sync's: present in `sources` or to be removed."""
        path = Path(source)
        root = next((r for r in self.roots if path.is_relative_to(r)), None)
        if root is None or hidden_in(path, root):
            return False
        return self.scope is None or any(path.is_relative_to(s) for s in self.scope)


def short_source(source: str) -> str:
    return Path(source).name
