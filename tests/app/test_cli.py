"""The CLI's contract: exit codes, messages, JSON shape. Uses fakes through the `_open` seam."""
import json

import pytest

from rag.app import cli
from rag.pipeline import RAG
from rag.testing import FakeEmbedder, FakeLLM
from tests.conftest import SEED_ARTICLE


@pytest.fixture
def fake_open(monkeypatch, tmp_path):
    llm = FakeLLM(["Washington spent about $110 million to establish the base in northern Niger [1]."])

    def _open(settings):
        # loading in this process: tests replace loading.load, which a worker process would not see
        return RAG.open(settings=settings.with_(min_score=0.1, load_workers=1), embedder=FakeEmbedder(), llm=llm,
                        seed=False)

    monkeypatch.setattr(cli, "_open", _open)
    return tmp_path / "idx"


def test_ingest_reports_failures_by_name_and_exit_code(fake_open, tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "good.txt").write_text("Cranes are tall birds.")
    (tmp_path / "docs" / "bad.txt").write_bytes(b"\x00\x00")
    code = cli.main(["ingest", str(tmp_path / "docs"), "--index", str(fake_open)])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_PARTIAL
    assert "good.txt" in out and "bad.txt" in err and "binary" in err
    assert cli.main(["list", "--index", str(fake_open)]) == 0
    assert "1 document(s)" in capsys.readouterr().out


def test_ask_json_shape(fake_open, capsys):
    assert cli.main(["ingest", str(SEED_ARTICLE), "--index", str(fake_open)]) == 0
    capsys.readouterr()
    assert cli.main(["ask", "--json", "How much did Washington spend on the base?", "--index", str(fake_open)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["abstained"] is False and "$110 million" in data["answer"]
    assert set(data["citations"][0]) >= {"n", "text", "source", "page", "start", "end", "score"}
    assert "retrieve" in data["timings"]


def test_errors_are_messages_not_tracebacks(fake_open, tmp_path, capsys):
    assert cli.main(["ingest", str(tmp_path / "missing"), "--index", str(fake_open)]) == cli.EXIT_ERROR
    assert "error: path does not exist" in capsys.readouterr().err
    assert cli.main(["ask", "", "--index", str(fake_open)]) == cli.EXIT_ERROR
    assert "question is empty" in capsys.readouterr().err
    assert cli.main(["delete", "nope", "--index", str(fake_open)]) == cli.EXIT_ERROR
    assert "no document with id 'nope'" in capsys.readouterr().err


def test_bad_setting_names_the_valid_choices(monkeypatch, capsys):
    monkeypatch.setenv("RAG_TOP_K", "0")
    assert cli.main(["list"]) == cli.EXIT_ERROR
    assert "top_k=0" in capsys.readouterr().err
    monkeypatch.setenv("RAG_TOP_K", "3")
    monkeypatch.setenv("RAG_MODEL", "gpt-17")
    assert cli.main(["list"]) == cli.EXIT_ERROR
    assert "qwen2.5-1.5b" in capsys.readouterr().err


def test_a_failed_save_is_one_line_and_the_index_keeps_its_last_state(fake_open, tmp_path, capsys, monkeypatch):
    import errno

    from rag.store import faiss_index as store

    assert cli.main(["ingest", str(SEED_ARTICLE), "--index", str(fake_open)]) == 0
    capsys.readouterr()
    note = tmp_path / "note.txt"
    note.write_text("The bridge opened in 1999.")

    def disk_full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    with monkeypatch.context() as m:
        m.setattr(store, "write_atomic", disk_full)
        assert cli.main(["ingest", str(note), "--index", str(fake_open)]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: could not save the index") and "No space left on device" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert cli.main(["list", "--index", str(fake_open)]) == 0
    assert "1 document(s)" in capsys.readouterr().out  # the seed article, as last saved


def test_corrupt_records_are_one_line_with_the_way_out(fake_open, capsys):
    assert cli.main(["ingest", str(SEED_ARTICLE), "--index", str(fake_open)]) == 0
    capsys.readouterr()
    records = next(fake_open.glob("records.*.json"))
    records.write_text('{"documents": [{"oops": 1}], "chunks": []}')
    assert cli.main(["list", "--index", str(fake_open)]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "corrupt" in err and "rag ingest PATH --index NEWDIR" in err and len(err.strip().splitlines()) == 1


def test_file_names_are_printed_escaped_so_they_cannot_forge_a_line(fake_open, tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "evil\nadded     0000  fake.txt").write_bytes(b"\x00\x00")
    (tmp_path / "docs" / "bell\x07.txt").write_text("Cranes are tall birds.")
    assert cli.main(["ingest", str(tmp_path / "docs"), "--index", str(fake_open)]) == cli.EXIT_PARTIAL
    out, err = capsys.readouterr()
    assert "\x07" not in out and "bell\\x07.txt'" in out
    lines = err.splitlines()
    assert len(lines) == 2 and "evil\\nadded     0000  fake.txt'" in lines[0] and "binary" in lines[0]


def test_an_interrupted_ingest_says_which_files_are_saved(fake_open, tmp_path, capsys, monkeypatch):
    from rag.ingest import loading

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("Cranes are tall birds.")
    (tmp_path / "docs" / "b.txt").write_text("Herons are grey birds.")
    real_load = loading.load

    def load(path, limits=None, ocr=None):
        if path.name == "b.txt":
            raise KeyboardInterrupt
        return real_load(path, limits, ocr)

    monkeypatch.setattr(loading, "load", load)
    assert cli.main(["ingest", str(tmp_path / "docs"), "--index", str(fake_open)]) == 130
    out, err = capsys.readouterr()
    assert "a.txt" in out and "b.txt" not in out
    assert "interrupted; the 1 file(s) reported as added or replaced above are saved" in err
    monkeypatch.setattr(loading, "load", real_load)
    assert cli.main(["list", "--index", str(fake_open)]) == 0
    assert "1 document(s)" in capsys.readouterr().out


def test_a_fifo_and_a_link_loop_on_the_command_line_are_named(fake_open, tmp_path, capsys):
    import os

    os.mkfifo(tmp_path / "pipe.txt")
    os.symlink("loop.md", tmp_path / "loop.md")
    good = tmp_path / "good.txt"
    good.write_text("Cranes are tall birds.")
    code = cli.main(["ingest", str(tmp_path / "pipe.txt"), str(tmp_path / "loop.md"), str(good), "--index", str(fake_open)])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_PARTIAL and "good.txt" in out
    assert "pipe.txt: is a named pipe (FIFO), not a regular file" in err
    assert "loop.md: symbolic link loop" in err and "does not exist" not in err
