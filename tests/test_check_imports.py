"""tools/check_imports.py: finds import circles through function-local imports and package __init__ modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import check_imports


def make_package(root: Path, files: dict[str, str]) -> Path:
    """A package under ``root`` from ``{"pkg/mod.py": source}``; returns ``root`` (the source root)."""
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root


ACYCLIC = {
    "pkg/__init__.py": "from pkg.api import run\n",
    "pkg/api.py": "from pkg import core\nfrom pkg.util import helper\n\ndef run():\n    from pkg.sub import leaf\n",
    "pkg/core.py": "import os\nimport pkg.util\n",
    "pkg/util.py": "def helper():\n    import json\n",
    "pkg/sub/__init__.py": "",
    "pkg/sub/leaf.py": "from ..util import helper\nfrom . import other\n",
    "pkg/sub/other.py": "import json\nfrom os import path\n",  # not modules of the tree: no edges
}


def test_a_package_without_circles_passes(tmp_path, capsys):
    root = make_package(tmp_path, ACYCLIC)
    assert check_imports.main([str(root), "--package", "pkg"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no import circles among the 7 modules of pkg")


def test_edges_resolve_submodules_relative_imports_and_packages(tmp_path):
    modules, edges = check_imports.import_edges(make_package(tmp_path, ACYCLIC), "pkg")
    assert set(modules) == {"pkg", "pkg.api", "pkg.core", "pkg.util", "pkg.sub", "pkg.sub.leaf", "pkg.sub.other"}
    found = {(e.source, e.target) for e in edges}
    assert found == {
        ("pkg", "pkg.api"),
        ("pkg.api", "pkg.core"),  # `from pkg import core`: the submodule, not pkg/__init__
        ("pkg.api", "pkg.util"),
        ("pkg.api", "pkg.sub.leaf"),  # function-local
        ("pkg.core", "pkg.util"),
        ("pkg.sub.leaf", "pkg.util"),  # `from ..util import`
        ("pkg.sub.leaf", "pkg.sub.other"),  # `from . import other`
    }


def test_a_circle_through_a_function_local_import_is_listed(tmp_path, capsys):
    files = dict(ACYCLIC)
    files["pkg/util.py"] = "def helper():\n    from pkg import core\n"  # util -> core -> util
    root = make_package(tmp_path, files)
    assert check_imports.main([str(root), "--package", "pkg"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "1 import circle(s) among the modules of pkg:",
        "  pkg.core -> pkg.util -> pkg.core",
        "      pkg/core.py:2 imports pkg.util",
        "      pkg/util.py:2 imports pkg.core",
    ]


def test_a_circle_through_a_package_init_and_every_cycle_is_listed(tmp_path, capsys):
    files = dict(ACYCLIC)
    # the registry pattern: the package's __init__ imports its architectures, which import the package
    files["pkg/sub/__init__.py"] = "from pkg.sub import leaf, other\n"
    files["pkg/sub/leaf.py"] = "from pkg.sub import register\n"
    files["pkg/sub/other.py"] = "import pkg.sub\n"
    root = make_package(tmp_path, files)
    modules, edges = check_imports.import_edges(root, "pkg")
    assert check_imports.find_circles(modules, edges) == [
        ["pkg.sub", "pkg.sub.leaf", "pkg.sub"],
        ["pkg.sub", "pkg.sub.other", "pkg.sub"],
    ]
    assert check_imports.main([str(root), "--package", "pkg"]) == 1
    assert "2 import circle(s)" in capsys.readouterr().out


def test_a_longer_circle_is_written_once_from_its_smallest_module(tmp_path):
    files = {
        "pkg/__init__.py": "",
        "pkg/c.py": "import pkg.a\n",
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "if True:\n    try:\n        from pkg.c import x\n    except ImportError:\n        pass\n",
    }
    modules, edges = check_imports.import_edges(make_package(tmp_path, files), "pkg")
    assert check_imports.find_circles(modules, edges) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_not_a_package_is_a_one_line_error(tmp_path, capsys):
    assert check_imports.main([str(tmp_path), "--package", "missing"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("check_imports: error:") and err.count("\n") == 1


@pytest.mark.parametrize("broken", ["def f(:\n", "x = 'unterminated\n"])
def test_a_file_that_does_not_parse_is_a_one_line_error(tmp_path, capsys, broken):
    root = make_package(tmp_path, {"pkg/__init__.py": "", "pkg/bad.py": broken})
    assert check_imports.main([str(root), "--package", "pkg"]) == 2
    assert capsys.readouterr().err.startswith("check_imports: error:")
