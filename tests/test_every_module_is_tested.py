"""Every module of rag/ is imported by at least one test file (tests/**/test_*.py), so no module is only
ever reached by accident through another. Imports are read with ast, function-level ones included; a
package counts as tested when one of its modules is."""
from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import rag

TESTS = Path(__file__).resolve().parent


def rag_modules() -> list[str]:
    return ["rag", *(m.name for m in pkgutil.walk_packages(rag.__path__, "rag."))]


def imported_names(path: Path) -> set[str]:
    """`import a.b` gives a.b; `from a.b import c` gives a.b and a.b.c (c may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def untested(modules: list[str], imported: set[str]) -> list[str]:
    return [m for m in modules if not any(name == m or name.startswith(m + ".") for name in imported)]


def test_the_check_sees_imports_of_every_shape(tmp_path):
    probe = tmp_path / "test_probe.py"
    probe.write_text("import rag.types\nfrom rag.app import (\n    ui,\n    cli,\n)\n"
                     "def f():\n    from rag.store.moves import rekey\n")
    got = untested(["rag.types", "rag.app.ui", "rag.app.cli", "rag.store", "rag.store.moves", "rag.app.api"],
                   imported_names(probe))
    assert got == ["rag.app.api"]


def test_every_rag_module_is_imported_by_a_test_file():
    imported: set[str] = set()
    for path in TESTS.rglob("test_*.py"):
        imported |= imported_names(path)
    modules = rag_modules()
    assert len(modules) > 40  # the walk found the package
    missing = untested(modules, imported)
    assert not missing, f"rag modules no test file imports (add a test under tests/<folder>/): {missing}"
