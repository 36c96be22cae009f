"""The package's modules import each other one way: no import cycle among them (the sync and
asyncio clients share the stream core, neither leans on the other's internals).

Every import counts, wherever it stands: at the top, inside a function, or under
``if TYPE_CHECKING``. Run as a script to print the graph:
``python python/tests/test_import_graph.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set

PACKAGE = Path(__file__).resolve().parents[1] / "toolstream"


def module_name(path: Path, root: Path) -> str:
    """``toolstream/v1/x.py`` as ``toolstream.v1.x``; a package's ``__init__`` as the package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = PACKAGE) -> Dict[str, Path]:
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def _imported(source: str, in_package: bool, node: ast.AST, known: Set[str]) -> List[str]:
    """The package's modules an import statement names (``from . import x`` names the module
    ``x`` when there is one, else the package it is taken from)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in known]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        # The package a relative import starts from: ``source`` itself when it is a package.
        package = source.split(".")
        if not in_package:
            package.pop()
        base_parts = package[: len(package) - (node.level - 1)]
        base = ".".join(base_parts + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    names = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
    if names:
        return names
    return [base] if base in known else []


def import_graph(root: Path = PACKAGE) -> Dict[str, Set[str]]:
    """Each module of the package and the package's modules it imports."""
    found = modules(root)
    known = set(found)
    graph: Dict[str, Set[str]] = {}
    for name, path in found.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets: Set[str] = set()
        for node in ast.walk(tree):
            targets.update(_imported(name, path.name == "__init__.py", node, known))
        targets.discard(name)
        graph[name] = targets
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import cycle (its modules, the first repeated at the end), or ``None``."""
    visiting: List[str] = []
    finished: Set[str] = set()

    def visit(node: str) -> Optional[List[str]]:
        if node in visiting:
            return visiting[visiting.index(node) :] + [node]
        if node in finished:
            return None
        visiting.append(node)
        for target in sorted(graph.get(node, ())):
            cycle = visit(target)
            if cycle is not None:
                return cycle
        visiting.pop()
        finished.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start)
        if cycle is not None:
            return cycle
    return None


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "toolstream.client" in graph and "toolstream.aio" in graph, sorted(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_asyncio_client_does_not_import_the_sync_one() -> None:
    assert "toolstream.client" not in import_graph()["toolstream.aio"]


def test_the_sync_client_has_no_async_methods() -> None:
    # Agent.arun and arun_stream hand the call to toolstream.aio; no asyncio code lives here.
    tree = ast.parse((PACKAGE / "client.py").read_text(encoding="utf-8"))
    coroutines = [node.name for node in ast.walk(tree) if isinstance(node, ast.AsyncFunctionDef)]
    assert coroutines == []


def test_a_cycle_is_found_where_there_is_one(tmp_path: Path) -> None:
    # The check itself: two modules importing each other, one of them only for type checking.
    package = tmp_path / "toolstream"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import B\nA = 1\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import A\nB = 2\n"
    )
    (package / "c.py").write_text("def f():\n    from . import a\n    return a\n")
    graph = import_graph(package)
    assert graph["toolstream.c"] == {"toolstream.a"}
    assert find_cycle(graph) == ["toolstream.a", "toolstream.b", "toolstream.a"]


if __name__ == "__main__":
    for module, imports in sorted(import_graph().items()):
        print(module, "->", ", ".join(sorted(imports)) or "(none)")
    print("cycle:", find_cycle(import_graph()))
