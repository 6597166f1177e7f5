"""The package layout is the architecture: layers import only downwards, and no modules import each other.

Every import of every module of ``autoexec/`` counts, read with ``ast``: at the top, inside functions
and under ``TYPE_CHECKING`` alike (a deferred import is still a dependency). ``autoexec/plugins/``
and ``autoexec/toollib/`` are not part of the importable package (tools load them by file name).
(relayout: skip-file: the layer table names the new packages; the relayout script must not touch it.)
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Top to bottom. A module may import its own layer and the layers below it, never one above.
#: The data path reads down this table: CLI -> loader -> engine (job loop, phase runner, node
#: executor) -> ops -> transports -> store -> events/notifier.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("cli", ("autoexec.cli", "autoexec.deployments")),
    ("flows", ("autoexec.flows", "autoexec.multirunner")),
    ("load", ("autoexec.load",)),
    ("console", ("autoexec.console",)),
    ("engine", ("autoexec.engine",)),
    ("ops", ("autoexec.ops",)),
    ("job", ("autoexec.job",)),
    ("transports", ("autoexec.transports",)),
    ("blocks", ("autoexec.blocks",)),
    ("models", ("autoexec.models",)),
    ("jobdir", ("autoexec.jobdir",)),
    ("events", ("autoexec.events",)),
    # a node's status words: a vocabulary the store, the report and the events share, so below them
    # (models/status.py imports nothing of autoexec)
    ("status", ("autoexec.models.status",)),
    ("conf", ("autoexec.conf",)),
]
NOT_PACKAGE_CODE = ("plugins", "toollib")

Graph = dict[str, dict[str, int]]  # module -> {module it imports: line of the first such import}


def modules_of(root: Path, package: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[1:2] and parts[1] in NOT_PACKAGE_CODE:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph(root: Path, package: str) -> Graph:
    modules = modules_of(root, package)

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: Graph = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = module.split(".") if is_package else module.split(".")[:-1]
                    base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            for target in targets:
                if target != package and not target.startswith(package + "."):
                    continue
                imported = owner(target)
                if imported and imported != module:
                    edges.setdefault(imported, node.lineno)
        graph[module] = edges
    return graph


def layer_of(module: str, layers: list[tuple[str, tuple[str, ...]]]) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer index): the longest prefix decides
    for index, (_, prefixes) in enumerate(layers):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), index)
    return None if best is None else best[1]


def unlayered(graph: Graph, package: str, layers: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    return [m for m in graph if m != package and layer_of(m, layers) is None]


def upward_imports(graph: Graph, layers: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    found = []
    for module, edges in sorted(graph.items()):
        mine = layer_of(module, layers)
        for imported, line in sorted(edges.items()):
            theirs = layer_of(imported, layers)
            if mine is not None and theirs is not None and theirs < mine:
                found.append(f"{module} (layer {layers[mine][0]}) imports {imported} (layer {layers[theirs][0]}, "
                             f"above it) at line {line}")
    return found


def import_cycles(graph: Graph) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module, as a path a -> b -> ... -> a."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(start: str) -> None:  # iterative Tarjan: no recursion limit on deep graphs
        work = [(start, iter(sorted(graph.get(start, {}))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return [_cycle_path(graph, set(component)) for component in components]


def _cycle_path(graph: Graph, component: set[str]) -> list[str]:
    start = min(component)
    seen = {start: [start]}
    queue = [start]
    while queue:  # breadth first inside the component, back to the start
        node = queue.pop(0)
        for child in sorted(graph.get(node, {})):
            if child == start:
                return seen[node] + [start]
            if child in component and child not in seen:
                seen[child] = seen[node] + [child]
                queue.append(child)
    return sorted(component)


def describe(cycle: list[str], graph: Graph) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False)) + f" -> {cycle[-1]}"


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph(ROOT, "autoexec")


def test_every_module_has_a_layer(graph: Graph) -> None:
    assert len(graph) > 50  # the walk found the package
    assert unlayered(graph, "autoexec", LAYERS) == [], "give these modules a package from LAYERS"


def test_no_import_cycles(graph: Graph) -> None:
    cycles = import_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(describe(c, graph) for c in cycles)


def test_no_import_goes_up_the_layers(graph: Graph) -> None:
    upward = upward_imports(graph, LAYERS)
    assert not upward, "imports back up the layers:\n" + "\n".join(upward)


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path: Path) -> None:
    """The same checks on a small package with one deliberate upward import (inside a function) and
    one cycle (through a relative import under TYPE_CHECKING) report exactly those."""
    files = {
        "pkg/__init__.py": "",
        "pkg/top/__init__.py": "",
        "pkg/top/main.py": "from pkg.low import a\n\n\ndef g():\n    return a\n",
        "pkg/low/__init__.py": "",
        "pkg/low/base.py": "def f():\n    from pkg.top.main import g  # reaches back up\n    return g\n",
        "pkg/low/a.py": "from pkg.low import b\n",
        "pkg/low/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n",
        "pkg/low/c.py": "import pkg.low.base\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    layers = [("top", ("pkg.top",)), ("low", ("pkg.low",))]
    small = import_graph(tmp_path, "pkg")
    assert small["pkg.top.main"] == {"pkg.low.a": 1}
    assert small["pkg.low.c"] == {"pkg.low.base": 1}
    assert upward_imports(small, layers) == [
        "pkg.low.base (layer low) imports pkg.top.main (layer top, above it) at line 2"]
    cycles = import_cycles(small)
    assert cycles == [["pkg.low.a", "pkg.low.b", "pkg.low.a"]]
    assert describe(cycles[0], small) == "pkg.low.a (line 1) -> pkg.low.b (line 3) -> pkg.low.a"
    assert unlayered(small, "pkg", layers) == []
    assert unlayered(small, "pkg", layers[:1]) == ["pkg.low", "pkg.low.a", "pkg.low.b", "pkg.low.base", "pkg.low.c"]
