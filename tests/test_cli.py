"""The `p3m` command itself: verbs wired, errors as one line, a debug switch for tracebacks."""

from __future__ import annotations

import argparse

import pytest

from p3m import cli


def test_every_verb_has_help(capsys):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(cli.COMMANDS)
    assert cli.main([]) == 2  # no verb: help, usage exit code
    assert "synth" in capsys.readouterr().out


def _failing_verb(monkeypatch, exc: Exception) -> None:
    import p3m.commands.synth as synth

    def boom(args):
        raise exc

    monkeypatch.setattr(synth, "run", boom)


def test_system_errors_are_one_line(monkeypatch, capsys, tmp_path):
    _failing_verb(monkeypatch, PermissionError(13, "Permission denied", str(tmp_path / "out")))
    assert cli.main(["synth", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Permission denied" in err and "Traceback" not in err


def test_unexpected_errors_are_one_line_unless_debugging(monkeypatch, capsys, tmp_path):
    _failing_verb(monkeypatch, RuntimeError("kaboom"))
    monkeypatch.delenv("P3M_DEBUG", raising=False)
    assert cli.main(["synth", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: RuntimeError: kaboom" in err and "P3M_DEBUG" in err
    monkeypatch.setenv("P3M_DEBUG", "1")
    with pytest.raises(RuntimeError, match="kaboom"):
        cli.main(["synth", str(tmp_path / "d")])


# Options of other programs that p3m's texts cite on purpose (the published P3M code, torchrun).
FOREIGN_OPTIONS = {"--fast_test", "--nproc_per_node"}


def test_every_option_named_in_a_message_exists():
    """Every `--option` in a string of the source (error messages, hints, help, descriptions) is an option of the
    verb it is about: the module's own verb, a verb the same text names (`p3m VERB ... --opt`) or, for shared
    modules (io, privacy, models, ...), some verb."""
    import ast
    import re
    from pathlib import Path

    import p3m

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    per_verb = {verb: set(p._option_string_actions) for verb, p in sub.choices.items()}
    anywhere = set().union(*per_verb.values()) | set(parser._option_string_actions)
    option = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")
    named_verb = re.compile(r"\bp3m (" + "|".join(per_verb) + r")\b")
    bad = []
    root = Path(p3m.__file__).parent
    for path in sorted(root.rglob("*.py")):
        own = path.stem if path.parent.name == "commands" and path.stem in per_verb else None
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            text = node.value
            verbs = set(named_verb.findall(text)) | ({own} if own else set())
            allowed = set().union(*(per_verb[v] for v in verbs)) if verbs else anywhere
            for opt in option.findall(text):
                if opt not in allowed and opt not in FOREIGN_OPTIONS:
                    bad.append(f"{path.relative_to(root)}:{node.lineno}: {opt} in {text[:80]!r}")
    assert not bad, "options named in texts but missing from the parser:\n" + "\n".join(bad)


def test_hints_name_only_options_of_the_verb_that_prints_them(tmp_path, capsys):
    from p3m.io import read_image

    (tmp_path / "empty").mkdir()
    assert cli.main(["audit", str(tmp_path / "empty"), "-q"]) == 1  # audit has no --recursive: no such hint
    out = capsys.readouterr().out
    assert "folder contains no images" in out and "--recursive" not in out
    big = tmp_path / "big.png"
    from PIL import Image

    Image.new("L", (9000, 8000)).save(big)
    with pytest.raises(Exception) as info:
        read_image(big)
    assert "over the limit" in str(info.value) and "--max-pixels" not in str(info.value)  # only `serve` has it


def test_raw_os_errors_become_clear_lines(monkeypatch, capsys, tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("a file where a folder is needed")
    _failing_verb(monkeypatch, FileExistsError(17, "File exists", str(blocker)))
    assert cli.main(["synth", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err == f"p3m synth: error: {blocker}: already exists and is not a folder\n"
    _failing_verb(monkeypatch, NotADirectoryError(20, "Not a directory", str(blocker / "x")))
    assert cli.main(["synth", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "[Errno" not in err and "not a folder (a file is in the way)" in err
