"""The modules of ``allowance`` import along one line: policy -> engine -> operations -> stores
-> limiter / client / http, with no cycle. Every import of the package's own modules counts
(module level, ``TYPE_CHECKING`` blocks and imports deferred into functions alike): a deferred
import is still a dependency, and hiding a cycle in one is what this test stops."""

from __future__ import annotations

import ast
from pathlib import Path

import allowance

SRC = Path(allowance.__file__).parent


def own_modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = ["allowance", *path.relative_to(SRC).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    modules = own_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph[module])
    return seen


def test_no_module_imports_in_a_cycle() -> None:
    graph = import_graph()
    in_cycles = sorted(m for m in graph if m in reachable(graph, m))
    assert in_cycles == []


def test_the_layers_import_downwards_only() -> None:
    graph = import_graph()
    upper = ("allowance.limiter", "allowance.aio", "allowance.client", "allowance.http")

    def above(module: str, layers: tuple[str, ...]) -> bool:
        return any(module == layer or module.startswith(layer + ".") for layer in layers)

    for module in ("allowance.policy", "allowance.engine", "allowance.rules", "allowance.ops"):
        found = reachable(graph, module)
        assert not {m for m in found if m.startswith("allowance.stores")}, module
        assert not {m for m in found if above(m, upper)}, module
    for module in graph:
        if module.startswith("allowance.stores"):
            assert not {m for m in graph[module] if above(m, upper)}, module
    # the HTTP client needs no store (the server has them)
    assert not {m for m in reachable(graph, "allowance.remote") if m.startswith("allowance.stores")}
