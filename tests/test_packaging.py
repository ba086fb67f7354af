"""Installed like any package: the wheel carries every subpackage, the prompts and the seed corpus, and a
wheel installed in a new virtualenv answers the seed question with its index in the user's data folder."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

import rag
from rag.config import PROJECT_ROOT

QUESTION = "How much did Washington spend to establish the base in northern Niger?"


def test_pyproject_lists_every_subpackage_and_maps_prompts_seeds_and_testsets():
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    root = Path(rag.__file__).resolve().parent
    tree = {".".join(p.parent.relative_to(root.parent).parts) for p in root.rglob("__init__.py")}
    data = {"prompts", "seeds", "testsets"}
    assert set(config["packages"]) == tree | {f"rag._data.{d}" for d in data}
    assert config["package-dir"] == {f"rag._data.{d}": d for d in data}
    shipped = {p.suffix for d in data for p in (PROJECT_ROOT / d).iterdir()}
    patterns = {pat[1:] for pats in config["package-data"].values() for pat in pats}
    assert shipped <= patterns, shipped - patterns  # every kind of file in prompts/, seeds/ and testsets/ ships


def test_importing_rag_changes_no_process_wide_setting():
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    code = "import os, rag; print(os.environ.get('HF_HUB_OFFLINE'), os.environ.get('TRANSFORMERS_OFFLINE'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                         cwd=PROJECT_ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "None"]


@pytest.mark.integration
def test_the_built_wheel_answers_the_seed_question_from_a_new_virtualenv(tmp_path):
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(PROJECT_ROOT), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(dist)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("rag_local-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    # Run from elsewhere and without PYTHONPATH: from the checkout, pip would take its rag_local.egg-info
    # for an installed copy and skip the wheel.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_") and k != "PYTHONPATH"}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                             capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert install.returncode == 0, install.stderr
    # The dependencies (torch, llama.cpp, the model packages) come from this test run's environment, to
    # keep CI short; the project itself comes only from the wheel (the editable finder is not loaded).
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True, cwd=tmp_path, env=env).stdout.strip())
    assert (site / "rag" / "_data" / "prompts" / "answer_system.txt").is_file()
    assert (site / "rag" / "_data" / "testsets" / "nearmiss-seed.jsonl").is_file()
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    work = tmp_path / "somewhere"
    work.mkdir()
    where = subprocess.run([str(python), "-c", "import rag.config as c; print(c.IN_CHECKOUT, c.PROMPTS_DIR, "
                            "c.DEFAULT_INDEX_DIR)"], capture_output=True, text=True, cwd=work, env=env, timeout=300)
    assert where.returncode == 0, where.stderr
    in_checkout, prompts, index = where.stdout.split()
    assert in_checkout == "False" and prompts.startswith(str(site)) and index.startswith(str(tmp_path / "data"))
    ask = subprocess.run([str(venv / "bin" / "rag"), "ask", QUESTION], capture_output=True, text=True, cwd=work,
                         env=env, timeout=900)
    assert ask.returncode == 0, ask.stderr
    answer = ask.stdout.split("Answer:", 1)[-1]
    assert "110 million" in answer, ask.stdout
    assert (Path(index) / "manifest.json").is_file()  # the seed index was built in the user's data folder
