"""The package's shape, read from the source: the core never imports the app, first-party
imports sit at module top, and the first-party import graph has no cycle.

The checks parse every module with :mod:`ast` (nothing is imported), so a deferred import
inside a function cannot hide a layer violation or a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "xmr_utils"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def first_party_imports(
    tree: ast.Module, module: str, is_package: bool
) -> Iterator[tuple[str, int, bool, bool]]:
    """``(imported module, line, at module top, under TYPE_CHECKING)`` for every import of
    ``xmr_utils`` in ``tree`` (relative imports resolved against ``module``)."""

    def walk(nodes: list[ast.stmt], top: bool, typing_only: bool) -> Iterator[tuple]:
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "xmr_utils":
                        yield alias.name, node.lineno, top, typing_only
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = module.split(".") if is_package else module.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                if base.split(".")[0] != "xmr_utils":
                    continue
                for alias in node.names:  # `from xmr_utils.core import losses` names a module
                    yield f"{base}.{alias.name}", node.lineno, top, typing_only
            elif isinstance(node, ast.If) and _is_type_checking(node):
                yield from walk(node.body, top, True)
                yield from walk(node.orelse, top, typing_only)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    children = getattr(node, field, None)
                    if isinstance(children, list) and children:
                        nested = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                        yield from walk(
                            children,
                            top and not nested and not isinstance(node, ast.ClassDef),
                            typing_only,
                        )

    yield from walk(tree.body, True, False)


def package_graph(root: Path) -> dict[str, list[tuple[str, int, bool, bool]]]:
    """Module -> its first-party imports, for every ``.py`` file under ``root``."""
    modules = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        found = []
        for target, line, top, typing_only in first_party_imports(
            tree, name, path.name == "__init__.py"
        ):
            # `from pkg import name` where name is not a module: keep the package itself
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                found.append((target, line, top, typing_only))
        graph[name] = found
    return graph


def layer_violations(graph: dict[str, list[tuple[str, int, bool, bool]]]) -> list[str]:
    core = "xmr_utils.core"
    return [
        f"{mod} line {line} imports {target}"
        for mod, imports in graph.items()
        if mod == core or mod.startswith(core + ".")
        for target, line, _, _ in imports
        if target.startswith("xmr_utils.app")
    ]


def deferred_imports(graph: dict[str, list[tuple[str, int, bool, bool]]]) -> list[str]:
    return [
        f"{mod} line {line} imports {target} inside a function"
        for mod, imports in graph.items()
        for target, line, top, _ in imports
        if not top
    ]


def cycles(graph: dict[str, list[tuple[str, int, bool, bool]]]) -> list[list[str]]:
    """Import cycles among runtime imports (TYPE_CHECKING imports excluded). A package's
    ``__init__`` importing its own submodules is not a cycle of the graph's meaning, so edges
    from a module to its own parent package are ignored."""
    edges = {
        mod: sorted(
            {
                t
                for t, _, _, typing_only in imports
                if not typing_only and not mod.startswith(t + ".")
            }
        )
        for mod, imports in graph.items()
    }
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for mod in sorted(edges):
        if mod not in state:
            visit(mod)
    return found


def test_core_never_imports_the_app() -> None:
    assert layer_violations(package_graph(PACKAGE)) == []


def test_first_party_imports_sit_at_module_top() -> None:
    assert deferred_imports(package_graph(PACKAGE)) == []


def test_no_import_cycle() -> None:
    assert cycles(package_graph(PACKAGE)) == []


def test_the_checks_catch_each_violation(tmp_path: Path) -> None:
    """The three checks above on a small package that breaks each rule once."""
    root = tmp_path / "xmr_utils"
    for folder in (root / "core", root / "app"):
        folder.mkdir(parents=True)
        (folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "core" / "losses.py").write_text(
        "def f():\n    from xmr_utils.app import viz\n    return viz\n"
    )
    (root / "app" / "viz.py").write_text("from xmr_utils.app import study\n")
    (root / "app" / "study.py").write_text(
        "from typing import TYPE_CHECKING\nfrom . import viz\n"
        "if TYPE_CHECKING:\n    from xmr_utils.core import losses\n"
    )
    graph = package_graph(root)
    assert layer_violations(graph) == ["xmr_utils.core.losses line 2 imports xmr_utils.app.viz"]
    assert deferred_imports(graph) == [
        "xmr_utils.core.losses line 2 imports xmr_utils.app.viz inside a function"
    ]
    assert cycles(graph) == [["xmr_utils.app.study", "xmr_utils.app.viz", "xmr_utils.app.study"]]
