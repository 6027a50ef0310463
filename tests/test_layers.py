"""The house rules, read from the source (an AST walk, nothing imported):

- layers point down: node_runtime <- tool_library <- console (and benchmarks);
  node_runtime imports nothing of the layers above it, nor click, textual or rich;
- no import circles inside node_runtime (imports inside functions count: a
  deferred import is still a dependency; `if TYPE_CHECKING:` imports do not);
- no module reaches into another object's private attributes (`other._x`,
  `from .mod import _x`): one object's insides are its own.

Each rule is also run against a small piece of bad source, so a checker that
has stopped finding anything fails here too.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: top-level modules each package must never import
FORBIDDEN = {
    "node_runtime": {"console", "tool_library", "themes", "benchmarks", "click", "textual", "rich"},
    "tool_library": {"console", "themes", "benchmarks", "click", "textual", "rich"},
}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node of `tree` except what sits under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool = False) -> list[tuple[str, list[str], int]]:
    """(absolute module, names imported from it, line) for each runtime import."""
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, [alias.name for alias in node.names], node.lineno))
    return sorted(out, key=lambda hit: hit[2])


def forbidden_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    top = module.split(".")[0]
    banned = FORBIDDEN.get(top, set())
    return [f"{module}:{line} imports {target}" for target, _, line in imports_of(source, module, is_package)
            if target.split(".")[0] in banned]


def private_reaches(source: str, module: str) -> list[str]:
    """`x._name` where x is not self/cls, and `from m import _name`."""
    found = []
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                found.append(f"{module}:{node.lineno} reaches into {ast.unparse(owner)}.{node.attr}")
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{module}:{node.lineno} imports private {alias.name} from {node.module}")
    return sorted(found, key=lambda hit: int(hit.split(":")[1].split()[0]))


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle found by a depth-first walk (one per back edge)."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def package_graph(package: str) -> dict[str, set[str]]:
    files = sorted((ROOT / package).rglob("*.py"))
    names = {module_name(p) for p in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        mod = module_name(path)
        edges = set()
        for target, imported, _ in imports_of(path.read_text(), mod, path.name == "__init__.py"):
            for candidate in [f"{target}.{n}" for n in imported] + [target]:
                if candidate in names:
                    edges.add(candidate)
                    break
        edges.discard(mod)
        graph[mod] = edges
    return graph


def sources(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        yield path, module_name(path)


# --- the rules on the real tree -------------------------------------------------------


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_point_down(package):
    found = [hit for path, mod in sources(package)
             for hit in forbidden_imports(path.read_text(), mod, path.name == "__init__.py")]
    assert not found, "\n".join(found)


def test_node_runtime_has_no_import_circles():
    cycles = import_cycles(package_graph("node_runtime"))
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


#: modules allowed to reach into others' insides, and why
PRIVATE_REACH_ALLOWED = {
    "node_runtime.libp2p_fixes": "the one place py-libp2p 0.8.1's insides are patched, each fix pinned by a test",
}


@pytest.mark.parametrize("package", ["node_runtime", "tool_library"])
def test_no_module_reaches_into_another_objects_private_attributes(package):
    found = [hit for path, mod in sources(package) if mod not in PRIVATE_REACH_ALLOWED
             for hit in private_reaches(path.read_text(), mod)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("module", ["node_runtime", "tool_library", "console.cli", "console.core"])
def test_headless_layers_load_without_textual(module):
    """What nodes and the headless CLI import never pulls in Textual (one fresh
    interpreter per import, so nothing else has loaded it first). Rich is not
    checked here: py-libp2p loads it through httpx; the AST rule above keeps our
    own code from importing it."""
    code = f"import sys, {module}; sys.exit('{module} loaded textual' if 'textual' in sys.modules else 0)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr or result.stdout


# --- the checker finds what it is for ---------------------------------------------------


def test_the_checker_catches_each_kind_of_breach():
    bad = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "import click\n"
        "from console.app import OlaneConsole\n"
        "if TYPE_CHECKING:\n"
        "    from tool_library import build_tools\n"  # annotations only: allowed
        "def f(node):\n"
        "    from textual.app import App\n"  # deferred: still a dependency
        "    return node._peers, self._mine\n"
        "from .codec import _secret\n"
    )
    assert [h.split(" imports ")[1] for h in forbidden_imports(bad, "node_runtime.x")] == [
        "click", "console.app", "textual.app"]
    reaches = private_reaches(bad, "node_runtime.x")
    assert len(reaches) == 2 and "node._peers" in reaches[0] and "_secret" in reaches[1]
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []
    relative = imports_of("from . import codec\nfrom ..errors import E\n", "node_runtime.sub.mod")
    assert [(t, n) for t, n, _ in relative] == [("node_runtime.sub", ["codec"]), ("node_runtime.errors", ["E"])]
