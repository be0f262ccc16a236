"""Fail when the modules of a package import each other in a circle.

Every import counts: module level, inside functions and methods, under ``if TYPE_CHECKING:`` or ``try:``. A
package's ``__init__`` is a module of its own (``p3m.models``). ``from p3m.x import y`` is an edge to ``p3m.x.y``
when ``y`` is a submodule, else to ``p3m.x``; ``import p3m.x.y`` is an edge to ``p3m.x.y`` (the parent packages
that Python also runs are not counted: importing a leaf module of a package never needs its ``__init__``'s names).

Usage, from anywhere::

    python tools/check_imports.py                       # src/p3m of this checkout
    python tools/check_imports.py SRC_ROOT --package NAME

Prints every circle (each elementary cycle once, with the file and line of each import on it) and exits 1, or
prints a one-line summary and exits 0. Standard library only.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# past this many elementary cycles in one strongly connected set, the rest are counted, not listed
MAX_LISTED = 200


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``path:line``."""

    source: str
    target: str
    path: Path
    line: int


def module_files(src_root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` under ``src_root``: dotted name -> file (``pkg/sub/__init__.py`` -> ``pkg.sub``)."""
    base = src_root / package
    if not (base / "__init__.py").is_file():
        raise FileNotFoundError(f"{base} is not a package (no __init__.py)")
    modules = {}
    for path in sorted(base.rglob("*.py")):
        parts = list(path.relative_to(src_root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of ``from <level dots><name> import ...`` written in ``module``."""
    parts = module.split(".")
    if not is_package:
        parts.pop()  # a plain module's imports are relative to its package
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    return ".".join([*parts, name] if name else parts)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[tuple[str, list[str]]]:
    """(module named, names taken from it) for one import statement."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, []
    else:
        base = node.module or ""
        if node.level:
            base = _resolve_relative(module, is_package, node.level, node.module)
        yield base, [alias.name for alias in node.names]


def import_edges(src_root: Path, package: str) -> tuple[dict[str, Path], list[Edge]]:
    """The modules of ``package`` and every import between two of them."""
    modules = module_files(src_root, package)
    edges = []
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for base, names in _imported(node, module, is_package):
                targets = []
                for name in names:
                    # `from pkg.x import y`: the submodule pkg.x.y when there is one, else pkg.x itself
                    targets.append(f"{base}.{name}" if f"{base}.{name}" in modules else base)
                if not names:
                    targets.append(base)
                for target in dict.fromkeys(targets):  # modules outside the tree (json, torch) are not edges
                    if target in modules and target != module:
                        edges.append(Edge(module, target, path, node.lineno))
    return modules, edges


def strongly_connected(nodes: list[str], graph: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one node (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
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
                    found.append(sorted(component))
    return sorted(found)


def elementary_cycles(component: list[str], graph: dict[str, list[str]], limit: int) -> list[list[str]]:
    """Up to ``limit`` elementary cycles inside one strongly connected component, each once (written from its
    smallest module)."""
    members = set(component)
    cycles: list[list[str]] = []
    for start in component:
        # only modules after `start`: each cycle is found from its smallest member alone
        allowed = {m for m in members if m >= start}
        path = [start]
        on_path = {start}
        work = [iter(sorted(t for t in graph[start] if t in allowed))]
        while work and len(cycles) < limit:
            child = next(work[-1], None)
            if child is None:
                work.pop()
                on_path.discard(path.pop())
            elif child == start:
                cycles.append([*path, start])
            elif child not in on_path:
                path.append(child)
                on_path.add(child)
                work.append(iter(sorted(t for t in graph[child] if t in allowed)))
    return cycles


def find_circles(modules: dict[str, Path], edges: list[Edge], limit: int = MAX_LISTED) -> list[list[str]]:
    """Up to ``limit`` elementary import cycles among ``modules``, components in name order."""
    graph: dict[str, list[str]] = {m: [] for m in modules}
    for edge in edges:
        if edge.target not in graph[edge.source]:
            graph[edge.source].append(edge.target)
    cycles: list[list[str]] = []
    for component in strongly_connected(sorted(modules), graph):
        cycles += elementary_cycles(component, graph, limit - len(cycles))
    return cycles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src_root", nargs="?", type=Path, default=REPO / "src", help="folder holding the package")
    parser.add_argument("--package", default="p3m", help="top-level package to check (default: p3m)")
    args = parser.parse_args(argv)
    try:
        modules, edges = import_edges(args.src_root, args.package)
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        print(f"check_imports: error: {exc}", file=sys.stderr)
        return 2
    cycles = find_circles(modules, edges)
    if not cycles:
        print(f"no import circles among the {len(modules)} modules of {args.package} ({len(edges)} imports)")
        return 0
    first_edge = {}
    for edge in edges:
        first_edge.setdefault((edge.source, edge.target), edge)
    more = " (listing stopped there)" if len(cycles) >= MAX_LISTED else ""
    print(f"{len(cycles)} import circle(s) among the modules of {args.package}{more}:")
    for cycle in cycles:
        print("  " + " -> ".join(cycle))
        for source, target in pairwise(cycle):
            edge = first_edge[source, target]
            print(f"      {edge.path.relative_to(args.src_root)}:{edge.line} imports {target}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
