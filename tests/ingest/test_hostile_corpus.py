"""A folder of hostile files beside good ones, ingested in a child process under a memory cap (RLIMIT_AS)
and a time cap: every bad file is named with its reason, every good one is indexed, nothing blows up.

The bombs are cheap to build: the 1 GB docx is 1,024 MB of spaces deflated at level 1 (~4.6 MB,
~2 s), the 50 MB single line is one write. The fake embedder keeps torch out of the child."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from tests.filemakers import make_docx, make_pdf

ROOT = Path(__file__).resolve().parents[2]
MEMORY_CAP = 3 * 2**30  # address space of the child: imports (faiss, llama-index) take ~1.5 GB of it
TIME_CAP = 120  # seconds, the whole child: imports, ingest, save
NS = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from rag.config import Settings
    from rag.pipeline import RAG
    from rag.testing import FakeEmbedder, FakeLLM
    folder, index = sys.argv[1], sys.argv[2]
    rag = RAG.open(settings=Settings(index_dir=index, cache_dir=index + "-cache"), embedder=FakeEmbedder(),
                   llm=FakeLLM(), seed=False)
    started = time.monotonic()
    report = rag.add([folder])
    print(json.dumps({"added": [d.source for d in report.added], "failed": [[f.path, f.reason] for f in report.failed],
                      "seconds": time.monotonic() - started,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def _docx_xml(path: Path, xml: str) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("word/document.xml", xml)
    return path


def _deflated(path: Path, megabytes: int, level: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        with z.open("word/document.xml", "w", force_zip64=True) as member:
            block = b" " * 2**20
            for _ in range(megabytes):
                member.write(block)
    return path


def build_corpus(folder: Path) -> tuple[set[str], dict[str, str]]:
    """The good file names, and each bad file's name with a fragment of the reason it must be given."""
    folder.mkdir()
    good = {"good.txt", "good.md", "good.html", "good.pdf", "good.docx", "utf16.txt", "nested.html", "open-tags.html"}
    (folder / "good.txt").write_text("Cranes are tall wading birds that fly with their necks outstretched.")
    (folder / "good.md").write_text("# Herons\n\nHerons fly with their necks folded back.")
    (folder / "good.html").write_text("<html><body><h1>Storks</h1><p>Storks nest on chimneys.</p></body></html>")
    make_pdf(folder / "good.pdf", ["Ibises probe mud with curved bills."])
    make_docx(folder / "good.docx", ["Spoonbills sweep their bills from side to side."])
    (folder / "utf16.txt").write_bytes("Flamingos are pink from their food, caf\u00e9 au lait.".encode("utf-16"))
    n = 100_000
    (folder / "nested.html").write_text("<html><body>" + "<div>x" * n + "</div>" * n + "</body></html>")
    (folder / "open-tags.html").write_text("<p>Tags never closed:</p>" + "<a x" * n)  # quadratic in HTMLParser

    bad: dict[str, str] = {}

    def add(name: str, reason: str) -> Path:
        bad[name] = reason
        return folder / name

    _deflated(add("bomb.docx", "expands to 1.0 GB when unzipped, more than the 100 MB limit"), 1024, 1)
    _deflated(add("dense.docx", "more than the 100x limit"), 8, 9)
    _docx_xml(add("xxe.docx", "undefined entity"),
              f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><w:document {NS}>'
              '<w:body><w:p><w:r><w:t>&x;</w:t></w:r></w:p></w:body></w:document>')
    entities = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    _docx_xml(add("laughs.docx", "amplification"),
              f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY l0 "lol">{entities}]><w:document {NS}>'
              '<w:body><w:p><w:r><w:t>&l9;</w:t></w:r></w:p></w:body></w:document>')
    whole_docx = make_docx(folder / "whole.docx.tmp", ["Some words."]).read_bytes()
    add("truncated.docx", "cannot parse DOCX").write_bytes(whole_docx[: len(whole_docx) // 2])
    (folder / "whole.docx.tmp").unlink()
    with open(add("huge_line.txt", "has 50,000,000 characters of text, more than the 5,000,000 limit"), "wb") as fh:
        fh.write(b"a" * 50_000_000)
    os.mkfifo(add("fifo.txt", "named pipe (FIFO)"))
    os.symlink("loop.txt", add("loop.txt", "symbolic link loop"))
    os.symlink("nowhere.txt", add("dangling.txt", "broken symbolic link"))
    os.symlink("/dev/zero", add("device.txt", "is a device"))
    os.symlink(folder, add("back-up", "is a link to a folder"))
    locked = make_pdf(folder / "locked.tmp", ["Secret words."])
    import pypdf

    writer = pypdf.PdfWriter(clone_from=locked)
    writer.encrypt(user_password="pw", owner_password="owner", algorithm="RC4-128")
    writer.write(add("encrypted.pdf", "PDF is encrypted"))
    locked.unlink()
    make_pdf(add("scan.pdf", "PDF has no text layer"), [None, None])
    whole_pdf = make_pdf(folder / "whole.pdf.tmp", ["Words on a page."]).read_bytes()
    add("truncated.pdf", "cannot parse PDF (Pdf").write_bytes(whole_pdf[:150])
    (folder / "whole.pdf.tmp").unlink()
    add("zero.pdf", "file is empty").write_bytes(b"")
    add("empty.txt", "file is empty").write_bytes(b"")
    add("junk.txt", "looks like a binary file").write_bytes(bytes(range(256)) * 64)
    add("latin1.txt", "not valid UTF-8").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    add("scripts.html", "no text found").write_text("<html><script>alert(1)</script><style>p{}</style></html>")
    add("program.exe", "unsupported file type").write_bytes(b"MZ\x90\x00")
    add("evil\nadded name\x1b[2J.txt", "binary").write_bytes(b"\x00\x01")
    add("chapter.md", "empty folder").mkdir()
    if os.geteuid() != 0:  # root reads any file whatever its mode
        secret = add("secret.txt", "permission denied")
        secret.write_text("You may not read this.")
        secret.chmod(0)
    return good, bad


def _limit_child() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


@pytest.mark.slow  # 7-13 s in the fakes-only tier here, ~30 s at load 3.6 (docs/notes/2026-12-03-performance-hostile-input.md)
def test_hostile_files_are_each_named_and_the_good_ones_indexed(tmp_path):
    started = time.monotonic()
    good, bad = build_corpus(tmp_path / "corpus")
    built = time.monotonic() - started
    assert len(bad) >= 20
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    try:
        child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "corpus"), str(tmp_path / "index")],
                               capture_output=True, text=True, check=False, timeout=TIME_CAP, env=env, cwd=tmp_path,
                               preexec_fn=_limit_child)
    finally:
        secret = tmp_path / "corpus" / "secret.txt"
        if secret.exists():
            secret.chmod(0o600)
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    added = {Path(p).name for p in result["added"]}
    failed = {Path(p).name: reason for p, reason in result["failed"]}
    assert added == good
    assert set(failed) == set(bad)
    for name, fragment in bad.items():
        assert fragment in failed[name], (name, failed[name])
    print(f"\nbuilt in {built:.1f} s; ingest {result['seconds']:.1f} s, child peak RSS {result['peak_rss_mb']:.0f} MB")
