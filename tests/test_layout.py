"""The package's shape: the stages live in their folders, on floors, and nothing imports upward.

`check_layout(root)` reads any tree of the package (no import: it parses the files) and returns every
broken rule; the tests point it at this tree (nothing broken) and at main as of c7b5919, before the
floors were enforced (each of that day's cases reported).

The floors, bottom to top; a module may import its own room and the rooms of lower floors, never a
room above, nor another room on its own floor. TYPE_CHECKING imports and imports inside functions count.
"""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pytest

import rag

ROOT = Path(rag.__file__).resolve().parent

# room -> the modules in it (a module is in a room if its name is one of these or starts with one + ".")
ROOMS: dict[str, tuple[str, ...]] = {
    "ground": ("rag.types", "rag.errors", "rag.text", "rag.model_names", "rag.config", "rag.prompts"),
    "models": ("rag.models",),
    "ingest": ("rag.ingest",),
    "store": ("rag.store",),
    "answer": ("rag.answer",),
    "pipeline": ("rag.pipeline", "rag.indexer", "rag.asker"),
    "collections": ("rag.collections",),
    "evaluation": ("rag.evaluation",),
    "app": ("rag.app",),
    "testing": ("rag.testing",),  # the fakes, for tests
    "package": ("rag",),  # rag/__init__.py: the public names, `rag.RAG` on first use
}
FLOORS: list[tuple[str, ...]] = [
    ("ground",),
    ("models",),
    ("ingest", "store"),
    ("answer",),
    ("pipeline",),
    ("collections", "evaluation"),
    ("app", "testing", "package"),
]
# Rules beyond the floors (each would also follow from them today; named so that moving a room keeps them).
FORBIDDEN: list[tuple[str, str, str]] = [  # (importing module or room, imported prefix, rule)
    ("answer", "rag.ingest", "answer-ingest"),
    ("rag.config", "rag.models", "config-ground"),
    ("rag.config", "rag.store", "config-ground"),
    ("rag.config", "rag.answer", "config-ground"),
]
CONCRETE_STORES = {"IndexStore", "PgStore"}
# The FAISS layout's file names: only rag/store/ may know them.
STORE_FILES = re.compile(r"(?:^|[^\w])(?:records|vectors)\.(?:\d+|$)|\.faiss\b|\bmanifest\.json\b")


@dataclass(frozen=True)
class Violation:
    rule: str  # floors, siblings, unplaced, answer-ingest, config-ground, store-type, store-private,
    # store-files, user-text
    module: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.module}: {self.detail}"


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    return {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}


def _imports(tree: ast.AST, modules: set[str], *, type_checking: bool) -> set[str]:
    """rag modules imported anywhere in the file (also inside functions); under TYPE_CHECKING too if asked."""
    skip = set() if type_checking else _type_checking_nodes(tree)
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "rag")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rag":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in modules else node.module)
    return out


def _room(module: str) -> str | None:
    best = None
    for room, prefixes in ROOMS.items():
        for p in prefixes:
            inside = module == p or (module.startswith(p + ".") and p != "rag")  # the package room: rag itself
            if inside and (best is None or len(p) > len(best[1])):
                best = (room, p)
    return best[0] if best else None


def _floor(room: str) -> int:
    return next(i for i, rooms in enumerate(FLOORS) if room in rooms)


def _is_docstring(node: ast.AST, parents: dict[int, ast.AST]) -> bool:
    return isinstance(parents.get(id(node)), ast.Expr)  # a string standing alone: a docstring or a comment


def _names_a_store(node: ast.AST) -> bool:
    """`store`, `self.store`, `rag.store`: an expression that is a store by its name."""
    return (isinstance(node, ast.Name) and node.id == "store") or (isinstance(node, ast.Attribute) and node.attr == "store")


def check_layout(root: Path) -> list[Violation]:
    """Every broken rule in the package tree at `root` (the `rag` folder), read without importing it."""
    root = Path(root)
    files = {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    trees = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in files.items()}
    found: list[Violation] = []
    for name, tree in trees.items():
        room = _room(name)
        if room is None:
            found.append(Violation("unplaced", name, "is in no room; add it to ROOMS and FLOORS (tests/test_layout.py)"))
            continue
        # -- imports: floors, siblings, and the named rules ---------------------------------------------
        for dep in sorted(_imports(tree, set(files), type_checking=True) - {name}):
            dep_room = _room(dep)
            if dep_room is None or dep_room == room:
                continue
            if _floor(dep_room) > _floor(room):
                found.append(Violation("floors", name, f"imports {dep} ({dep_room}, a floor above {room})"))
            elif _floor(dep_room) == _floor(room):
                found.append(Violation("siblings", name, f"imports {dep} ({dep_room}, on the same floor as {room})"))
            for who, prefix, rule in FORBIDDEN:
                if (who == room or who == name) and (dep == prefix or dep.startswith(prefix + ".")):
                    found.append(Violation(rule, name, f"imports {dep}"))
        parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        in_store, in_app = room == "store", room == "app"
        for node in ast.walk(tree):
            # -- the Store protocol: typed against it, never a concrete store or its private fields -------
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id == "isinstance" and len(node.args) == 2:
                    types = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
                    hit = [t.id for t in types if isinstance(t, ast.Name) and t.id in CONCRETE_STORES]
                    if hit:
                        found.append(Violation("store-type", name, f"line {node.lineno}: isinstance(..., {hit[0]})"))
                if node.func.id in ("getattr", "hasattr") and node.args and _names_a_store(node.args[0]):
                    found.append(Violation("store-type", name, f"line {node.lineno}: {ast.unparse(node)[:60]}"))
                if node.func.id == "print" and not in_app:
                    found.append(Violation("user-text", name, f"line {node.lineno}: print(...) outside rag/app/"))
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and _names_a_store(node.value)):
                found.append(Violation("store-private", name, f"line {node.lineno}: {ast.unparse(node)}"))
            if (not in_store and isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and not _is_docstring(node, parents) and STORE_FILES.search(node.value)):
                found.append(Violation("store-files", name, f"line {node.lineno}: {node.value!r}"))
            # -- only rag/app/ turns our errors into text: nobody else catches RagError as such -----------
            if isinstance(node, ast.ExceptHandler) and not in_app and node.type is not None:
                caught = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
                if any(isinstance(t, ast.Name) and t.id == "RagError" for t in caught):
                    found.append(Violation("user-text", name, f"line {node.lineno}: except RagError outside rag/app/"))
    return found


def _cycles(root: Path) -> list[str]:
    files = {_module_name(p, root): p for p in root.rglob("*.py")}
    trees = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in files.items()}
    # `rag/__init__.py` re-exports the API, so every `import rag.x` runs it first; that edge is not a
    # dependency of the module's code and is left out (as Python itself resolves it before the child).
    graph = {name: _imports(tree, set(files), type_checking=False) - {name, "rag"} for name, tree in trees.items()}
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(trail[trail.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, trail + [dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def test_the_import_graph_of_rag_has_no_cycles():
    assert _cycles(ROOT) == []


def test_every_rule_of_the_layout_holds():
    violations = check_layout(ROOT)
    assert not violations, "\n".join(map(str, violations))


def test_every_room_is_on_exactly_one_floor():
    placed = [room for rooms in FLOORS for room in rooms]
    assert sorted(placed) == sorted(ROOMS)


C7B5919 = "c7b5919"  # main before the floors were enforced (issue 23)


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory) -> Path:
    """The `rag` package of main at c7b5919, from git (CI runs in a clone of the repository)."""
    repo = ROOT.parent
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("git or the repository's history is not available, so main at c7b5919 cannot be read")
    done = subprocess.run(["git", "-C", str(repo), "archive", C7B5919, "rag"], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"commit {C7B5919} is not in this clone (a shallow clone?): {done.stderr.decode()[:200]}")
    target = tmp_path_factory.mktemp("c7b5919")
    with tarfile.open(fileobj=BytesIO(done.stdout)) as tar:
        tar.extractall(target, filter="data")
    return target / "rag"


def test_the_checker_reports_each_case_of_main_at_c7b5919(old_tree):
    violations = check_layout(old_tree)
    rules = {(v.rule, v.module) for v in violations}
    found = {(v.rule, v.module, v.detail) for v in violations}
    expected = {
        # config read the model registry from rag.models (and models read config: a hidden cycle)
        ("config-ground", "rag.config"), ("floors", "rag.config"),
        # store/ sat above ingest/ for FolderScan
        ("siblings", "rag.store.moves"),
        # answer/ imported the sentence splitter from ingest/
        ("answer-ingest", "rag.answer.citations"), ("answer-ingest", "rag.answer.context"),
        ("answer-ingest", "rag.answer.claims"),
        # models/ reached up into answer/ for the judge's turn
        ("floors", "rag.models.llama_state"),
        # the Store protocol leaked: isinstance and getattr on concrete stores, private fields written
        ("store-type", "rag.store.moves"), ("store-type", "rag.answer.retrieval"), ("store-type", "rag.answer.context"),
        ("store-private", "rag.store.moves"),
        # collections.py read the FAISS records file itself
        ("store-files", "rag.collections"),
        # evaluation printed an ingest's failures for the user
        ("user-text", "rag.evaluation.runner"),
    }
    assert expected <= rules, sorted(expected - rules)
    assert ("config-ground", "rag.config", "imports rag.models.bundled") in found
    assert ("siblings", "rag.store.moves", "imports rag.ingest.folders (ingest, on the same floor as store)") in found
    # and nothing the tree at c7b5919 did not do
    assert rules <= expected, sorted(rules - expected)


def test_the_checker_sees_type_checking_imports_and_each_rule(tmp_path):
    """A made-up tree breaking each rule once, so no rule is one that cannot fail."""
    pkg = tmp_path / "rag"
    for folder in ("models", "store", "answer", "ingest", "app"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("class RagError(Exception): ...\n")
    (pkg / "config.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rag.store.x import S\n")
    (pkg / "ingest" / "a.py").write_text("def f():\n    print('loaded')\n    open(f'records.{1}.json')\n")
    (pkg / "store" / "x.py").write_text("from rag.ingest import a\nopen(f'records.{1}.json')  # the store's own: allowed\n")
    (pkg / "answer" / "y.py").write_text(
        "from rag.ingest.a import f\n"
        "def g(store, IndexStore):\n"
        "    isinstance(store, IndexStore); getattr(store, 'words', 0); store._dirty = True\n"
        "    try:\n        f()\n    except RagError as exc:\n        return str(exc)\n")
    (pkg / "app" / "z.py").write_text("from rag.errors import RagError\ntry:\n    pass\nexcept RagError as exc:\n    print(exc)\n")
    (pkg / "stray.py").write_text("")
    rules = {(v.rule, v.module) for v in check_layout(pkg)}
    assert rules == {
        ("floors", "rag.config"), ("config-ground", "rag.config"),
        ("siblings", "rag.store.x"), ("store-files", "rag.ingest.a"),
        ("answer-ingest", "rag.answer.y"), ("store-type", "rag.answer.y"), ("store-private", "rag.answer.y"),
        ("user-text", "rag.answer.y"), ("user-text", "rag.ingest.a"),
        ("unplaced", "rag.stray"),
    }


def test_each_stage_has_its_folder_and_no_module_does_three_jobs():
    for folder in ("ingest", "models", "store", "answer", "evaluation", "app"):
        assert (ROOT / folder / "__init__.py").is_file(), folder
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text(encoding="utf-8").splitlines()) for p in ROOT.rglob("*.py")}
    assert max(sizes.values()) <= 450, {k: v for k, v in sizes.items() if v > 450}


def test_each_folder_says_what_it_may_import():
    for init in ROOT.rglob("__init__.py"):
        if init.parent == ROOT:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert "May import" in doc, f"{init.relative_to(ROOT.parent)}: its docstring does not say what it may import"
