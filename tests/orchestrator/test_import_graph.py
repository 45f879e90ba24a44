"""The core's import graph (issue 18, DESIGN decision 37): no circle between modules, floors imported
only downwards, and none of the outer layers imported.

The graph holds every import, also those inside functions: a function-level import is still a
dependency, and hiding a circle inside a function is how the old 12-module circle grew. The floors
are the module map of docs/contributors/architecture.md; a module may import its own floor and the
floors below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = "orchestrator"

#: Bottom to top, as docs/contributors/architecture.md draws them. Each entry is a module or a package.
FLOORS: list[set[str]] = [
    {"errors", "ids", "settings", "dotenv", "crypto", "logs", "results", "amounts", "events", "payloads"},
    {"db"},
    {"unit_of_work", "audit"},
    {"providers"},
    {"money"},
    {"chain_steps"},
    {"accounts"},
    {"escrow"},
    {"payments"},
    {"airtm"},
    {"outbox"},
    {"operations"},
    {"chain_kinds", "commands"},
    {"client"},
    {"cli", "__main__"},
]
#: Never imported by the core (the CLI may import ``actors`` inside a function: decision 37).
OUTER = ("web", "actors", "schemas", "dramatiq", "marshmallow", "aiohttp.web")


def module_names() -> dict[str, Path]:
    found = {}
    for path in (ROOT / CORE).rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported dotted name, line, inside a function) for every import in the module."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nested: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            nested.update(id(inner) for inner in ast.walk(node) if inner is not node)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in nested) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            found.append((base, node.lineno, id(node) in nested))
            found += [(f"{base}.{alias.name}", node.lineno, id(node) in nested) for alias in node.names]
    return found


def core_graph() -> dict[str, set[str]]:
    """Module -> the core modules it imports (a name ``from x import y`` resolves to ``x.y`` if that is
    a module, else to ``x``)."""
    modules = module_names()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for imported, _, _ in imports_of(name, path):
            target = imported
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target not in {name, CORE}:
                graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def floor_of(module: str) -> int:
    top = module.split(".")[1] if module != CORE else ""
    for level, members in enumerate(FLOORS):
        if top in members:
            return level
    raise AssertionError(f"{module} is on no floor: add it to FLOORS and to the module map")


def test_the_cycle_finder_finds_a_circle_and_passes_a_tree() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_imports_inside_functions() -> None:
    """The chain-step engine once imported the aggregates inside ``kinds()``; such an edge must count."""
    graph = core_graph()
    assert "orchestrator.accounts.users" in graph["orchestrator.accounts.bootstrap"]
    main = module_names()["orchestrator.cli.main"]
    assert any(inside and name.startswith("actors") for name, _, inside in imports_of("orchestrator.cli.main", main))


def test_no_two_core_modules_import_each_other_in_a_circle() -> None:
    cycle = find_cycle(core_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_every_module_imports_only_its_own_floor_and_those_below() -> None:
    upward = [f"{module} (floor {floor_of(module)}) imports {target} (floor {floor_of(target)})"
              for module, targets in core_graph().items() for target in sorted(targets)
              if floor_of(target) > floor_of(module)]
    assert upward == []


@pytest.mark.parametrize("outer", OUTER)
def test_the_core_never_imports_an_outer_layer(outer: str) -> None:
    offenders = []
    for name, path in module_names().items():
        for imported, line, inside in imports_of(name, path):
            if imported != outer and not imported.startswith(outer + "."):
                continue
            if outer == "actors" and name.startswith(f"{CORE}.cli.") and inside:
                continue  # decision 37: the CLI sends actors' messages, from inside its commands
            offenders.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert offenders == []
