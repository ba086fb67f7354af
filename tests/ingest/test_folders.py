"""rag/ingest/folders.py: what a sync looks at (scan) and how a moved file is recognised (file_hashes)."""
from __future__ import annotations

import pytest

from rag.errors import InputError
from rag.ingest.folders import file_hashes, scan


def test_scan_finds_supported_files_skips_hidden_ones_and_names_a_missing_folder(tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("beta")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.txt").write_text("gamma")
    found = scan([tmp_path])
    assert sorted(p.name for p in found.files) == ["a.txt", "b.md"]
    assert str((tmp_path / "a.txt").resolve()) in found.sources
    with pytest.raises(InputError, match="folder to sync does not exist: .*nowhere"):
        scan([tmp_path / "nowhere"])
    with pytest.raises(InputError, match="no folder to sync"):
        scan([])


def test_scan_of_changed_paths_looks_only_at_them(tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "b.txt").write_text("beta")
    found = scan([tmp_path], changed=[tmp_path / "b.txt", tmp_path / "gone.txt"])
    assert [p.name for p in found.files] == ["b.txt"]


def test_file_hashes_are_the_same_for_the_same_contents_and_skip_big_or_unsupported_files(tmp_path):
    (tmp_path / "a.txt").write_text("same words")
    (tmp_path / "b.txt").write_text("same words")
    (tmp_path / "c.txt").write_text("other words")
    (tmp_path / "big.txt").write_text("x" * 100)
    (tmp_path / "tool.exe").write_bytes(b"MZ")
    got = file_hashes(sorted(tmp_path.iterdir()), max_bytes=50)
    names = {k.rsplit("/", 1)[1]: v for k, v in got.items()}
    assert set(names) == {"a.txt", "b.txt", "c.txt"}
    assert names["a.txt"][0] == names["b.txt"][0] != names["c.txt"][0]  # contents hash
    assert names["a.txt"][1] != names["b.txt"][1]  # the document id is path plus contents
