"""The import graph of the package: arrows run one way, no cycles (issue 14).

Every ``import``/``from … import`` in ``src/trainvis`` is read from the source
(function-level "lazy" imports included, ``TYPE_CHECKING`` blocks excluded:
those never run). Two rules:

- between packages, a module may import only a lower layer (``LAYERS``):
  ``api → charts/realtime/health → store → models``, and so on;
- between files, the graph has no cycle (inside a package as well).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "trainvis"

#: The layer of every top-level module or package of ``trainvis``: a module may
#: import its own package and anything of a strictly lower layer, nothing else.
LAYERS: dict[str, int] = {
    "version": 0,
    "errors": 0,
    "config": 0,
    "models": 1,
    "events": 2,
    "series": 2,
    "store": 3,
    "gpu": 3,
    "charts": 4,
    "realtime": 4,
    "health": 4,
    "client": 4,
    "api": 5,
    "importers": 5,
    "integrations": 5,
    "compat": 5,  # the wandb and SummaryWriter drop-ins: they import client only
    "exporters": 6,
    "demo": 7,
    "server": 7,
    "transfer_cli": 7,
    "trainvis": 7,  # the package's __init__: re-exports the SDK
    "cli": 8,
    "__main__": 9,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_lines(tree: ast.Module) -> set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks (imports that never run)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path, known: set[str], name: str | None = None) -> set[str]:
    """The ``trainvis`` modules ``path`` (module ``name``) imports anywhere in its body."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("trainvis"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if not target.startswith("trainvis"):
                continue
            for alias in node.names:
                child = f"{target}.{alias.name}"
                found.add(child if child in known else target)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    known = {module_name(path) for path in paths}
    return {module_name(path): imports_of(path, known) for path in paths}


def top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "trainvis"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, …, a]``, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_every_top_level_module_has_a_layer() -> None:
    missing = {top(module) for module in import_graph()} - set(LAYERS)
    assert not missing, f"give these a layer in LAYERS: {sorted(missing)}"


def test_imports_between_packages_point_down() -> None:
    against = [
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if top(module) != top(target) and LAYERS[top(target)] >= LAYERS[top(module)]
    ]
    assert not against, "imports against the layer order:\n" + "\n".join(sorted(against))


def test_no_import_cycle_between_files() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycle_between_packages() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        packages.setdefault(top(module), set()).update(
            top(target) for target in targets if top(target) != top(module)
        )
    cycle = find_cycle(packages)
    assert cycle is None, "package cycle: " + " -> ".join(cycle or [])


#: Packages that must stay pure: chart builders are functions on arrays (no store,
#: no I/O); the SDK installs in a training environment without the server.
ONLY: dict[str, set[str]] = {
    "charts": {"errors", "models", "series", "version"},
    "client": {"errors", "models", "config", "gpu", "store", "version"},
}


@pytest.mark.parametrize("package", sorted(ONLY))
def test_pure_packages_import_only_their_allowance(package: str) -> None:
    extra = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        if top(module) == package
        for target in targets
        if top(target) != package and top(target) not in ONLY[package]
    )
    assert not extra, f"{package} imports outside its allowance:\n" + "\n".join(extra)


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ],
)
def test_find_cycle_finds_a_cycle(graph: dict[str, set[str]], expected: list[str] | None) -> None:
    assert find_cycle(graph) == expected


def test_lazy_and_relative_imports_count(tmp_path: Path) -> None:
    """A function-level import is an arrow like any other; TYPE_CHECKING ones are not."""
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from trainvis.cli import main\n"
        "def f():\n"
        "    from trainvis.api.app import create_app\n"
        "    from .sibling import thing\n"
    )
    known = {"trainvis.api.app", "trainvis.cli", "trainvis.store.sibling"}
    assert imports_of(source, known, "trainvis.store.mod") == {
        "trainvis.api.app",
        "trainvis.store.sibling",
    }
