"""Measures of the package's shape that anyone can rerun: module and function sizes, import cycles.

- every module of ``aiopeewee_dist`` is under ``MAX_MODULE_LINES`` lines;
- no function (or method) is longer than ``MAX_FUNCTION_LINES`` lines, decorators and
  docstring included;
- ``import aiopeewee_dist`` imports no module in a cycle: the graph of the package's imports
  counts those made inside functions (a deferred import hides a cycle, it does not remove it);
  imports under ``if TYPE_CHECKING:`` are left out, as they never run.

``aiopeewee_dist/sharding/`` (and the flat sharding modules it replaces) is the sharding
work's: it is measured here too, and its exceptions, while it is being split, are listed in
``SHARDING_PENDING`` rather than hidden.

Run as a script (``python tests/test_structure.py``) it prints the figures.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "aiopeewee_dist"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
# Owned by the sharding work (issue 14 item 1), which splits these into aiopeewee_dist/sharding/.
SHARDING = ("_sharding.py", "_fanout.py", "_shardkeys.py", "_ids.py", "sharding/")
SHARDING_PENDING = frozenset(("_sharding.py", "_fanout.py"))


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def is_sharding(path: Path) -> bool:
    rel = relative(path)
    return any(rel == name or rel.startswith(name) for name in SHARDING if name.endswith((".py", "/")))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def function_lengths(path: Path) -> Iterator[tuple[str, int]]:
    """``("file:line name", lines)`` of every function and method, decorators included."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            where = path.name if not path.is_relative_to(PACKAGE) else relative(path)
            yield f"{where}:{node.lineno} {node.name}", node.end_lineno - start + 1


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                yield child
                yield from _runtime_nodes(child)
            continue
        yield node
        yield from _runtime_nodes(node)


def imports_of(path: Path, known: set[str], name: str | None = None) -> set[str]:
    """The package modules ``path`` imports when it runs (at import time or in a function)."""
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join([*base, *([node.module] if node.module else [])])
            else:
                prefix = node.module or ""
            # ``from . import _context`` imports a module, ``from ._x import y`` a name of ``_x``.
            targets = [
                f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in known else prefix
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = modules()
    known = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, known) for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _line_count(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_every_module_is_short() -> None:
    over = {
        relative(p): _line_count(p)
        for p in modules()
        if _line_count(p) >= MAX_MODULE_LINES and relative(p) not in SHARDING_PENDING
    }
    assert over == {}, f"modules of {MAX_MODULE_LINES} lines or more: {over}"


def test_no_function_is_long() -> None:
    over = {
        where: length
        for p in modules()
        if relative(p) not in SHARDING_PENDING
        for where, length in function_lengths(p)
        if length > MAX_FUNCTION_LINES
    }
    assert over == {}, f"functions over {MAX_FUNCTION_LINES} lines: {over}"


def test_no_import_cycle() -> None:
    found = cycles(import_graph())
    assert found == [], f"modules importing each other in a cycle: {found}"


def test_the_checks_see_what_they_claim(tmp_path: Path) -> None:
    # The cycle finder finds a cycle, including one closed by a function-level import.
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    # Function-level imports count, TYPE_CHECKING ones do not.
    (tmp_path / "pkg").mkdir()
    probe = tmp_path / "pkg" / "mod.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\nfrom . import a\nif TYPE_CHECKING:\n    from .b import B\n"
        "def f():\n    from .c import C\n"
    )
    known = {"pkg.a", "pkg.b", "pkg.c", "pkg.mod"}
    assert imports_of(probe, known, "pkg.mod") == {"pkg.a", "pkg.c"}
    deep = tmp_path / "deep.py"
    deep.write_text("def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES)
    assert [length for _, length in function_lengths(deep)] == [MAX_FUNCTION_LINES + 1]


def _report() -> None:
    sizes = sorted(((_line_count(p), relative(p)) for p in modules()), reverse=True)
    print("longest modules:", ", ".join(f"{name} {n}" for n, name in sizes[:5]))
    longest = sorted(
        ((length, where) for p in modules() for where, length in function_lengths(p)), reverse=True
    )
    print("longest functions:", ", ".join(f"{where} {n}" for n, where in longest[:5]))
    print("import cycles:", cycles(import_graph()) or "none")
    pending = [relative(p) for p in modules() if is_sharding(p)]
    print("sharding modules (the sharding work's):", ", ".join(pending))


if __name__ == "__main__":
    _report()
