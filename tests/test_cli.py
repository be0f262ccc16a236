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
