"""The rooms' import graph: no cycle, and imports only point down.

Every module of buffers/, functions/, optimizer/ and infra/ is parsed with `ast`, and every
Import and ImportFrom node counts, wherever it sits: at the top, inside a function (a lazy
import), or under `if TYPE_CHECKING:`. A lazy import that dodges a cycle is still the cycle.
An edge goes to the module named (`from a.b import c`: a.b.c if it is a module, else a.b), not
to the packages above it, as import-linter counts them: a package's __init__ may import its own
modules (optimizer/sim/__init__.py does, to register the simulator's policies).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("buffers", "functions", "optimizer", "infra")
# room -> rooms it must never import: buffers/ is the pure core at the bottom; functions/ run
# in Lambda and ship without the optimizer or the infrastructure code; the optimizer plans
# offline and never imports AWS or the local stack.
FORBIDDEN = {
    "buffers": ("functions", "optimizer", "infra"),
    "functions": ("optimizer", "infra"),
    "optimizer": ("infra",),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """Every module of the rooms, by dotted name."""
    return {module_name(p): p for room in ROOMS for p in sorted((ROOT / room).rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module `name` is or lies in (its longest known prefix), if any."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def imports_of(module: str, source: str, modules: dict[str, Path] | set[str],
               is_package: bool = False) -> set[str]:
    """The project modules `module` imports anywhere in its source."""
    targets: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, is_package, node)
            # `from a.b import c` imports module a.b.c if there is one, else a name of a.b
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                     for a in node.names]
        else:
            continue
        targets |= {t for n in names if (t := _resolve(n, modules)) is not None}
    targets.discard(module)
    return targets


@cache
def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, over every room."""
    modules = project_modules()
    return {name: imports_of(name, path.read_text(), modules, path.name == "__init__.py")
            for name, path in modules.items()}


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module `start` imports, directly or not."""
    seen: set[str] = set()
    frontier = [start]
    while frontier:
        frontier = [n for node in frontier for n in graph.get(node, ()) if n not in seen]
        seen.update(frontier)
    return seen


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The shortest cycle through each module on one, each written from its smallest name."""
    reach = {node: _reachable(graph, node) for node in graph}
    cycles = set()
    for node in graph:
        if node in reach[node]:
            group = {m for m in reach[node] if node in reach[m]}
            cycle = _cycle_in(graph, group, node)[:-1]
            first = cycle.index(min(cycle))
            cycles.add((*cycle[first:], *cycle[:first], min(cycle)))
    return sorted(list(c) for c in cycles)


def _cycle_in(graph: dict[str, set[str]], members: set[str], start: str) -> list[str]:
    """A shortest path from start back to itself inside one component (breadth first)."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if nxt not in parents:
                    parents[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{start} is in a component without a cycle through it")


def test_the_graph_sees_every_room() -> None:
    graph = import_graph()
    assert {name.split(".")[0] for name in graph} == set(ROOMS)
    assert "buffers.types" in graph["buffers.batcher"]


def test_every_kind_of_import_counts() -> None:
    modules = {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d", "pkg.sub", "pkg.sub.e", "other"}
    source = """
from __future__ import annotations
import json
from typing import TYPE_CHECKING
import pkg.a
from pkg import b
from . import c
if TYPE_CHECKING:
    from pkg.d import Thing
def lazy():
    from .sub.e import helper
    import other.missing
"""
    assert imports_of("pkg.x", source, modules) == {"pkg.a", "pkg.b", "pkg.c", "pkg.d",
                                                    "pkg.sub.e", "other"}
    assert imports_of("pkg.sub", "from . import e\nfrom .. import a", modules,
                      is_package=True) == {"pkg.sub.e", "pkg.a"}


def test_no_import_cycle() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_point_down() -> None:
    bad = [f"{src} -> {dst}" for src, targets in sorted(import_graph().items())
           for dst in sorted(targets)
           if dst.split(".")[0] in FORBIDDEN.get(src.split(".")[0], ())]
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_cycle_finder_writes_each_cycle_once() -> None:
    graph = {"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": set(), "e": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
