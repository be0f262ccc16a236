"""docs/architecture.md stays true: the modules it names exist, its layers hold every module of src/p3m, every
import of a p3m module points down or across them, and every name of its "where each idea lives" table exists."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from tests.paths import REPO

sys.path.insert(0, str(REPO / "tools"))
from check_imports import Edge, import_edges  # tools/ is not a package

PAGE = REPO / "docs" / "architecture.md"
SRC = REPO / "src"
_ROW = re.compile(r"^\s*(\d+)\s+(.+?)\s{2,}(p3m\S*(?:\s+p3m\S*)*)\s*$")


def layer_rows(text: str) -> list[tuple[int, str, list[str]]]:
    """(layer number, name, modules) of each row of the page's first ``text`` block under "## Layers"."""
    section = text.split("## Layers", 1)[1]
    block = section.split("```text", 1)[1].split("```", 1)[0]
    rows = []
    for line in block.splitlines()[2:]:  # the header line, then rows
        match = _ROW.match(line)
        if match:
            rows.append((int(match[1]), match[2].strip(), match[3].split()))
        elif line.strip():
            raise AssertionError(f"{PAGE.name}: unreadable layer row {line!r}")
    return rows


def layer_of(module: str, named: dict[str, int]) -> int | None:
    """The layer of ``module``: its own row, else the row of its nearest package named on the page (``p3m`` itself
    stands for its ``__init__`` only: a new top-level module needs a row of its own)."""
    if module in named:
        return named[module]
    parts = module.split(".")[:-1]
    while len(parts) > 1:
        name = ".".join(parts)
        if name in named:
            return named[name]
        parts.pop()
    return None


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path], list[Edge]]:
    return import_edges(SRC, "p3m")


@pytest.fixture(scope="module")
def named() -> dict[str, int]:
    layers: dict[str, int] = {}
    for number, _name, modules in layer_rows(PAGE.read_text(encoding="utf-8")):
        for module in modules:
            assert module not in layers, f"{module} is in two layers"
            layers[module] = number
    return layers


def test_the_page_has_layers_from_errors_to_the_cli(named) -> None:
    assert named["p3m.errors"] == 0
    assert named["p3m.cli"] == max(named.values())
    assert len(named) >= 40


def test_every_module_named_on_the_page_exists(graph, named) -> None:
    modules, _ = graph
    missing = sorted(set(named) - set(modules))
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def test_every_module_has_a_layer(graph, named) -> None:
    modules, _ = graph
    homeless = sorted(m for m in modules if layer_of(m, named) is None)
    assert not homeless, f"add these modules to a layer of docs/architecture.md: {homeless}"


def test_imports_point_down_the_layers(graph, named) -> None:
    _, edges = graph
    upward = [
        f"{e.path.relative_to(SRC)}:{e.line}: {e.source} (layer {layer_of(e.source, named)}) imports "
        f"{e.target} (layer {layer_of(e.target, named)})"
        for e in edges
        if (layer_of(e.target, named) or 0) > (layer_of(e.source, named) or 0)
    ]
    assert not upward, "imports that point up the layers of docs/architecture.md:\n" + "\n".join(upward)


def _defines(path: Path, names: list[str]) -> bool:
    """Whether the module at ``path`` defines ``names[0]`` at top level (and ``names[1]`` inside it, a class)."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    for name in names:
        found = None
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name:
                found = node
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                    found = node
        if found is None:
            return False
        body = found.body if isinstance(found, ast.ClassDef) else []
    return True


def test_every_home_in_the_table_exists(graph) -> None:
    modules, _ = graph
    table = PAGE.read_text(encoding="utf-8").split("## Where each idea lives", 1)[1].split("\n## ", 1)[0]
    homes = re.findall(r"`(p3m(?:\.\w+)*)`", table)
    assert len(homes) >= 20
    for home in homes:
        parts = home.split(".")
        cut = max(i for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in modules)
        module, names = ".".join(parts[:cut]), parts[cut:]
        assert _defines(modules[module], names), f"docs/architecture.md: {home} does not exist"
    for folder in re.findall(r"`(src/p3m/[\w/]+/)`", table):
        assert (REPO / folder).is_dir(), f"docs/architecture.md: {folder} does not exist"


def test_the_page_is_linked_from_the_readme() -> None:
    assert "(docs/architecture.md)" in (REPO / "README.md").read_text(encoding="utf-8")


def test_the_layer_reader_refuses_a_mangled_row() -> None:
    page = "## Layers\n\n```text\nlayer  name  modules\n 0     errors        p3m.errors\n nonsense\n```\n"
    with pytest.raises(AssertionError, match="unreadable layer row"):
        layer_rows(page)
    rows = layer_rows(page.replace(" nonsense\n", " 1     io  p3m.io p3m.atomic\n"))
    assert rows == [(0, "errors", ["p3m.errors"]), (1, "io", ["p3m.io", "p3m.atomic"])]
