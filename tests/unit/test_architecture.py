"""The code's shape: no import circle (function-local and TYPE_CHECKING imports count: a type a
lower module needs from an upper one is still a dependency), no import from a lower layer up
into the pipeline, one module that knows the marker file, and modules of a readable size."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "qtoolkit"
MARKER_LITERAL = "qtoolkit.json"
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def import_graph() -> dict[str, set[str]]:
    """module -> qtoolkit modules it imports, function-local and TYPE_CHECKING imports
    included."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        deps: set[str | None] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                deps.update(resolve(a.name) for a in node.names if a.name.startswith("qtoolkit"))
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                if not module.startswith("qtoolkit"):
                    continue
                for alias in node.names:
                    full = f"{module}.{alias.name}"
                    deps.add(full if full in mods else resolve(module))
        deps.discard(name)
        deps.discard(None)
        graph[name] = {d for d in deps if d is not None}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle():
    assert _cycles(import_graph()) == []


def test_type_checking_and_local_imports_are_edges(tmp_path, monkeypatch):
    pkg = tmp_path / "qtoolkit"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from qtoolkit.high import H\n"
    )
    (pkg / "high.py").write_text("def f():\n    from qtoolkit import low\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    graph = import_graph()
    assert graph["qtoolkit.low"] == {"qtoolkit.high"} and graph["qtoolkit.high"] == {"qtoolkit.low"}
    assert _cycles(graph) == [["qtoolkit.high", "qtoolkit.low"]]


def test_lower_layers_do_not_import_the_pipeline_or_cli():
    # The package root is a facade above the pipeline (`qtoolkit.quantize`, loaded lazily), like
    # the CLI; every other module is below it.
    upward = {
        (name, dep)
        for name, deps in import_graph().items()
        if name != "qtoolkit" and not name.startswith(("qtoolkit.pipeline", "qtoolkit.cli"))
        for dep in deps
        if dep.startswith(("qtoolkit.pipeline", "qtoolkit.cli"))
    }
    assert upward == set()


def test_marker_name_is_written_in_one_module():
    holders = sorted(
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if MARKER_LITERAL in path.read_text()
    )
    assert holders == ["qtoolkit/artifacts.py"]


def test_modules_are_of_a_readable_size():
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
