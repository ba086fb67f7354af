"""The package's shape: the stages live in their folders and the import graph has no cycles."""
from __future__ import annotations

import ast
from pathlib import Path

import rag

ROOT = Path(rag.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """rag modules imported anywhere in the file (also inside functions), except under TYPE_CHECKING."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rag":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in modules else node.module)
    return out


def test_the_import_graph_of_rag_has_no_cycles():
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {name: _imports(path, set(files)) - {name} for name, path in files.items()}
    # `rag/__init__.py` re-exports the API, so every `import rag.x` runs it first; that edge is not a
    # dependency of the module's code and is left out (as Python itself resolves it before the child).
    graph = {name: deps - {"rag"} for name, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, trail + [dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert "rag.answer.context" in graph and "rag.evaluation.calibration" in graph  # the walk saw the tree


def test_each_stage_has_its_folder_and_no_module_does_three_jobs():
    for folder in ("ingest", "models", "store", "answer", "evaluation", "app"):
        assert (ROOT / folder / "__init__.py").is_file(), folder
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text(encoding="utf-8").splitlines()) for p in ROOT.rglob("*.py")}
    assert max(sizes.values()) <= 450, {k: v for k, v in sizes.items() if v > 450}
