"""The import graph, measured from the code: no import cycles, and arrows that point one way.

Layers (docs/how_it_works.md, "Layers"): front ends (cli, eval, tools) → registry (`holitom.methods`) →
hosts and hooks (`holitom.hosts`, `holitom.patch`) → algorithms (`temporal`, `spatial`, `outer`, `inner`,
`attention`, `baselines`) → `counts` / `shapes`. A pure algorithm knows no model and no config class of the
registry (as ToMe's `merge.py`): it takes plain values, or owns the constant and the registry imports it.

How the graph is built (every `.py` of `holitom/`, `llava/`, `eval/holitom_eval/`, parsed with `ast`):
- every import statement counts, wherever it is: module level, inside functions (lazy imports),
  under `if TYPE_CHECKING:` and in `try:` blocks; a lazy import only postpones a cycle, it does not remove it;
- `import a.b.c` is an edge to `a.b.c`; `from a.b import c` is an edge to the module `a.b.c` when `c` is a
  submodule, else to `a.b` (its `__init__`); relative imports are resolved against the importing module;
- package `__init__` rule: importing `a.b.c` also runs `a/__init__` and `a/b/__init__`, but that is Python's
  machinery, not a dependency of the importer, so it adds no edge. A name taken from a package
  (`from holitom import HoliTomConfig`) is an edge to that `__init__`, and the `__init__`'s own imports
  (its re-exports) are edges like any other: a cycle through a re-exporting `__init__` is a cycle;
- modules named by string to `importlib.import_module` (the method registry's `_MODULES`) are edges too: in a
  module that calls `import_module`, every dotted string constant equal to a module's name is one;
- a module importing itself is no edge; imports of anything outside these trees are ignored.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"holitom": REPO / "holitom", "llava": REPO / "llava", "holitom_eval": REPO / "eval" / "holitom_eval"}

# The algorithm layer and the layer below it (prefixes: a package name stands for its submodules too).
ALGORITHMS = ("holitom.temporal", "holitom.spatial", "holitom.outer", "holitom.inner", "holitom.attention",
              "holitom.baselines")  # fmt: skip
BOTTOM = ("holitom.counts", "holitom.shapes")
# Hosts and hooks (a host's checkpoint and input code lives beside its adapter in `holitom.hosts`).
HOSTS_AND_HOOKS = ("holitom.hosts", "holitom.patch")
# What may sit at the package root: the public entry points, the algorithms and the bottom layer. Every other
# module belongs to a subpackage's role (tools, hosts, hooks, registry, baselines).
ROOT_MODULES = {"holitom", "holitom.__main__", "holitom.cli", "holitom.config", "holitom.flops", "holitom.paper",
                "holitom.temporal", "holitom.spatial", "holitom.outer", "holitom.inner", "holitom.attention",
                "holitom.counts", "holitom.shapes"}  # fmt: skip
BOTTOM_RANK, ALGORITHM, HOSTS, REGISTRY, FRONT, LLAVA = range(6)


def _in(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def layer(module: str) -> int:
    """A module's layer; every `holitom` module not in a lower one, and `holitom_eval`, is a front end."""
    if module.split(".")[0] == "llava":
        return LLAVA
    for rank, prefixes in ((BOTTOM_RANK, BOTTOM), (ALGORITHM, ALGORITHMS), (HOSTS, HOSTS_AND_HOOKS),
                           (REGISTRY, ("holitom.methods",))):  # fmt: skip
        if _in(module, prefixes):
            return rank
    return FRONT


@dataclass
class Graph:
    """Module name → {imported module → line of its first import there}, and each module's file."""

    files: dict[str, Path] = field(default_factory=dict)
    edges: dict[str, dict[str, int]] = field(default_factory=dict)

    def describe(self, path: list[str]) -> str:
        """`a → b (a.py:12) → c (b.py:3)`: each arrow with the import line that makes it."""
        steps = [path[0]]
        for a, b in zip(path, path[1:]):
            steps.append(f"{b} ({self.files[a].relative_to(REPO)}:{self.edges[a][b]})")
        return " → ".join(steps)


def module_files() -> dict[str, tuple[Path, bool]]:
    """Module name → (file, is a package `__init__`)."""
    out = {}
    for prefix, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            package = parts[-1] == "__init__"
            name = ".".join((prefix, *(parts[:-1] if package else parts)))
            out[name] = (path, package)
    return out


def _known_prefix(name: str, known: Iterable[str]) -> str | None:
    """The longest prefix of dotted `name` that is one of our modules (None: an outside import)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def _calls_import_module(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__"):
                return True
    return False


def imports_of(module: str, path: Path, package: bool, known: dict) -> dict[str, int]:
    """Modules of ours that `module` imports (see the module docstring's rules) → first line."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: dict[str, int] = {}

    def add(target: str | None, line: int) -> None:
        if target is not None and target != module:
            found[target] = min(found.get(target, line), line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(_known_prefix(alias.name, known), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".") if package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in known else _known_prefix(base, known), node.lineno)
    if _calls_import_module(tree):
        for node in ast.walk(tree):
            value = node.value if isinstance(node, ast.Constant) else None
            if isinstance(value, str) and "." in value and value in known:
                add(value, node.lineno)
    return found


def build_graph() -> Graph:
    known = module_files()
    graph = Graph()
    for name, (path, package) in known.items():
        graph.files[name] = path
        graph.edges[name] = imports_of(name, path, package, known)
    return graph


def components(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (sorted): each holds at least one cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.edges[node]:
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph.edges):
        if node not in index:
            connect(node)
    return sorted(found)


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle (first node repeated last) per strongly connected component of more than one module."""
    out = []
    for component in components(graph):
        start, members = component[0], set(component)
        paths = {start: [start]}  # breadth first inside the component: a shortest cycle through `start`
        queue = [start]
        cycle = None
        while queue and cycle is None:
            node = queue.pop(0)
            for nxt in graph.edges[node]:
                if nxt == start:
                    cycle = [*paths[node], start]
                    break
                if nxt in members and nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    queue.append(nxt)
        out.append(cycle)
    return out


@pytest.fixture(scope="module")
def graph() -> Graph:
    return build_graph()


def test_the_graph_sees_every_kind_of_import(graph):
    """The walker itself: lazy, relative, `from pkg import module` and registry-by-string imports all count."""
    assert {"holitom.methods.holitom", "holitom.outer", "llava.model.builder", "holitom_eval.plan"} <= set(
        graph.edges
    )
    assert "holitom.methods.vanilla" in graph.edges["holitom.methods"]  # import_module by name
    assert "holitom.outer" in graph.edges["holitom.methods.holitom"]  # imported inside install()
    assert "holitom.counts" in graph.edges["holitom.methods.holitom"]  # from holitom import counts
    assert "llava.model.llava_arch" in graph.edges["llava.model.language_model.llava_qwen"]  # relative import


def test_a_cycle_is_found_and_named():
    """The cycle finder on a graph with one cycle through a re-exporting `__init__` (and a dead end)."""
    toy = Graph(
        files={n: REPO / f"{n}.py" for n in ("pkg", "pkg.algo", "pkg.registry", "pkg.leaf")},
        edges={"pkg": {"pkg.registry": 1}, "pkg.registry": {"pkg.algo": 2, "pkg.leaf": 5},
               "pkg.algo": {"pkg": 3}, "pkg.leaf": {}},
    )  # fmt: skip
    assert cycles(toy) == [["pkg", "pkg.registry", "pkg.algo", "pkg"]]
    toy.edges["pkg.algo"] = {}
    assert cycles(toy) == []


def test_no_import_cycles(graph):
    found = [f"{graph.describe(cycle)}\n  (all of: {', '.join(component)})"
             for cycle, component in zip(cycles(graph), components(graph))]  # fmt: skip
    assert not found, "import cycles:\n" + "\n".join(found)


def test_algorithms_import_only_algorithms_counts_and_shapes(graph):
    """No arrow from an algorithm module to the registry, the hosts, the hooks, the front ends, the tools,
    the `holitom` package's re-exports or `llava`: the algorithms are pure tensor code. Every module of the
    layer is checked, so no path leaves it either."""
    algorithms = [m for m in graph.edges if _in(m, ALGORITHMS)]
    assert len(algorithms) >= 13, algorithms
    wrong = [
        graph.describe([m, t]) for m in algorithms for t in graph.edges[m] if not _in(t, ALGORITHMS + BOTTOM)
    ]
    assert not wrong, "algorithm modules importing above their layer:\n" + "\n".join(wrong)


def test_counts_and_shapes_import_nothing_of_ours(graph):
    wrong = [graph.describe([m, t]) for m in BOTTOM for t in graph.edges[m]]
    assert not wrong, "\n".join(wrong)


def test_every_arrow_points_down(graph):
    """front ends → registry → hosts and hooks → algorithms → counts/shapes; `llava` (the model code) is
    imported by hosts, hooks and front ends only."""
    wrong = []
    for module, targets in graph.edges.items():
        for target in targets:
            rank, target_rank = layer(module), layer(target)
            if target_rank == LLAVA and rank not in (HOSTS, REGISTRY, FRONT, LLAVA):
                wrong.append(graph.describe([module, target]))
            elif target_rank != LLAVA and (rank == LLAVA or target_rank > rank):
                wrong.append(graph.describe([module, target]))
    assert not wrong, "arrows pointing up:\n" + "\n".join(sorted(wrong))


def test_llava_imports_nothing_from_holitom(graph):
    wrong = [graph.describe([m, t]) for m in graph.edges if m.startswith("llava") for t in graph.edges[m]
             if not t.startswith("llava")]  # fmt: skip
    assert not wrong, "llava importing outside itself:\n" + "\n".join(wrong)


def test_the_package_root_holds_only_entry_points_and_algorithms(graph):
    """Tools live in `holitom.tools`, host code in `holitom.hosts`: a new root module must say which it is."""
    root = {m for m in graph.files if m.split(".")[0] == "holitom" and m.count(".") <= 1}
    packages = {m for m in root if graph.files[m].name == "__init__.py" and m != "holitom"}
    assert root - packages == ROOT_MODULES, f"unexpected at the root: {sorted(root - packages - ROOT_MODULES)}"
    assert packages == {"holitom.baselines", "holitom.hosts", "holitom.methods", "holitom.patch", "holitom.tools"}
