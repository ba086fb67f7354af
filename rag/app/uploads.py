"""Uploads from the web UI: a sanitised name inside `<index_dir>/uploads/` (never outside it), the size
and type checks before anything is read, ingestion, and a per-file outcome for the page."""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.app.render import esc, user_message
from rag.errors import InputError
from rag.ingest.loading import MAX_FILE_BYTES, SUPPORTED_EXTENSIONS
from rag.pipeline import RAG
from rag.types import IngestReport

log = logging.getLogger(__name__)

UPLOAD_DIRNAME = "uploads"

_UNSAFE = re.compile(r"[^\w.\-]+")


def safe_filename(name: str) -> str:
    """A base name that is safe to create inside the upload area: directory parts dropped (either
    slash), only letters, digits, `_ . -`, no leading dot, bounded length, lower-case extension."""
    base = re.split(r"[\\/]", unicodedata.normalize("NFKC", str(name)).replace("\x00", ""))[-1]
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    stem = _UNSAFE.sub("_", stem).strip("._-")[:120] or "upload"
    ext = _UNSAFE.sub("", ext).lower()[:12]
    return f"{stem}.{ext}" if ext else stem


def upload_refusal(path: str | Path, name: str) -> str | None:
    """Why an uploaded file is refused before indexing (type or size), or None if it may go on."""
    ext = Path(safe_filename(name)).suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        return (f"file type {ext or '(none)'} is not accepted; accepted types: "
                f"{', '.join(SUPPORTED_EXTENSIONS)}")
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        return f"cannot read the uploaded file: {exc.strerror or exc}"
    if size > MAX_FILE_BYTES:
        return f"file is {size / 2**20:.1f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB"
    if size == 0:
        return "file is empty"
    return None


def store_upload(src: str | Path, name: str, upload_dir: Path) -> Path:
    """Copy an uploaded file into `upload_dir` under its sanitised name (atomically); the result is
    always directly inside `upload_dir`, whatever `name` holds."""
    upload_dir.mkdir(parents=True, exist_ok=True)
    root = upload_dir.resolve()
    dest = (root / safe_filename(name)).resolve()
    if dest.parent != root:  # cannot happen after safe_filename; kept as the last line of defence
        raise InputError(f"refused file name {name!r}")
    fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=root)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


@dataclass
class FileOutcome:
    name: str
    ok: bool
    message: str


def ingest_uploads(rag: RAG, files: Sequence[Any], upload_dir: Path,
                   progress: Callable[..., Any] | None = None) -> list[FileOutcome]:
    """Check, copy and index uploaded files one by one; every file gets an outcome line."""
    outcomes: list[FileOutcome] = []
    paths = [_upload_path(f) for f in files or [] if f is not None]
    for i, path in enumerate(paths):
        name = Path(path).name
        if progress is not None:
            progress((i, len(paths)), desc=f"Indexing {safe_filename(name)} ({i + 1}/{len(paths)})")
        refusal = upload_refusal(path, name)
        if refusal:
            outcomes.append(FileOutcome(name, False, refusal))
            continue
        existed = (upload_dir / safe_filename(name)).exists()
        dest: Path | None = None
        try:
            dest = store_upload(path, name, upload_dir)
            report = rag.add([dest], progress=True)
        except Exception as exc:  # noqa: BLE001 - one file's failure must not stop the others
            outcomes.append(FileOutcome(name, False, user_message(exc)))
            if dest is not None and not existed:
                dest.unlink(missing_ok=True)
            continue
        outcomes.append(_outcome(name, dest, report, existed, rag))
    if progress is not None and paths:
        progress((len(paths), len(paths)), desc="Done")
    return outcomes


def _upload_path(item: Any) -> str:
    if isinstance(item, (str, Path)):
        return str(item)
    path = getattr(item, "path", None) or getattr(item, "name", None)
    if path is None and isinstance(item, dict):
        path = item.get("path") or item.get("name")
    if path is None:
        raise InputError("unrecognised upload")
    return str(path)


def _outcome(name: str, dest: Path, report: IngestReport, existed: bool, rag: RAG) -> FileOutcome:
    shown = dest.name
    if report.failed:
        if not existed:
            dest.unlink(missing_ok=True)
        return FileOutcome(name, False, "; ".join(f.reason for f in report.failed))
    partly = "".join(f"; {f.reason}" for f in report.partial)  # e.g. its OCR budget ran out
    if report.added:
        info = report.added[0]
        return FileOutcome(name, True, f"indexed as {shown}: {info.chunks} chunks{partly}")
    if report.replaced:
        info = report.replaced[0]
        return FileOutcome(name, True, f"replaced the earlier {shown}: {info.chunks} chunks{partly}")
    # unchanged: the same bytes are already indexed (maybe under another name)
    if not existed and not any(d.source == str(dest) for d in rag.documents()):
        dest.unlink(missing_ok=True)
    return FileOutcome(name, True, "already indexed (same content); nothing to do")


def outcomes_html(outcomes: Sequence[FileOutcome]) -> str:
    if not outcomes:
        return '<div class="rag-muted">No file was given.</div>'
    items = "".join(
        f'<li class="{"rag-ok" if o.ok else "rag-bad"}">{"&#10003;" if o.ok else "&#10007; refused:"} '
        f"<b>{esc(o.name)}</b> &mdash; {esc(o.message)}</li>" for o in outcomes)
    bad = sum(not o.ok for o in outcomes)
    summary = (f"{len(outcomes) - bad} file(s) indexed" + (f", {bad} refused or failed" if bad else ""))
    return f'<div class="rag-report"><div>{esc(summary)}</div><ul>{items}</ul></div>'


def remove_uploaded_copy(source: str, upload_dir: Path) -> None:
    """After deleting a document, delete its file too when it lives in the upload area."""
    try:
        path = Path(source).resolve()
        if path.parent == upload_dir.resolve() and path.is_file():
            path.unlink()
    except OSError:
        log.warning("cannot remove %s", source, exc_info=True)
