"""One vocabulary across the verbs: what `p3m VERB --help` shows means the same thing in every verb."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest

from p3m import cli
from tests.paths import REPO

# metavars that stand for a folder; a file is named FILE..., PATH...; everything else is a value
FOLDER_METAVARS = {"OUT", "DIR", "ROOT"}
# spellings that read as either a folder or a kind of output: kept only as hidden aliases of clearer names
RETIRED = {"--output", "--outdir", "--model"}


def _verbs() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _help(verb: str, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        cli.main([verb, "--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def _kind(action: argparse.Action) -> str:
    """What an option's value is, as --help presents it: a flag, a folder, a file or some other value."""
    if action.nargs == 0:
        return "flag"
    metavar = action.metavar if isinstance(action.metavar, str) else ""
    if metavar in FOLDER_METAVARS:
        return "folder"
    if metavar.startswith(("FILE", "PATH")):
        return "file"
    return "value"


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


def test_every_help_shows_one_vocabulary(capsys):
    verbs = _verbs()
    meaning: dict[str, dict[str, str]] = {}  # long option -> verb -> kind
    short: dict[str, dict[str, str]] = {}  # short option -> verb -> long option
    for verb, parser in verbs.items():
        text = _help(verb, capsys)
        shown = set(re.findall(r"(?<![\w-])--?[a-z][a-z0-9-]*", text))
        assert not shown & RETIRED, f"p3m {verb} --help shows {sorted(shown & RETIRED)}"
        for action in _options(parser):
            longs = [s for s in action.option_strings if s.startswith("--")]
            assert len(longs) == 1, f"p3m {verb}: {action.option_strings} shows more than one long spelling"
            meaning.setdefault(longs[0], {})[verb] = _kind(action)
            for s in action.option_strings:
                if not s.startswith("--"):
                    short.setdefault(s, {})[verb] = longs[0]
            assert longs[0] in text, f"p3m {verb} --help does not show {longs[0]}"
    # every -o is --out: the folder where results go (the file, for export)
    assert set(short["-o"].values()) == {"--out"}, short["-o"]
    assert {v for v, k in meaning["--out"].items() if k != "folder"} == {"export"}
    assert meaning["--out"]["export"] == "file"
    # a short option is the same long option everywhere (-q --quiet, -r --recursive, -o --out)
    for flag, by_verb in short.items():
        assert len(set(by_verb.values())) == 1, f"{flag} means {by_verb}"
    # an option shared by verbs is a folder in all of them or in none (likewise flag, file, value)
    for option, by_verb in meaning.items():
        assert len(set(by_verb.values())) == 1 or option == "--out", f"{option}: {by_verb}"
    # the verbs that write files all take -o/--out (synth and audit: a positional folder / --report FILE)
    for verb in ("demo", "matte", "export", "anonymize", "evaluate", "benchmark", "train"):
        assert "--out" in meaning and verb in meaning["--out"], f"p3m {verb} has no -o/--out"
    # the architecture is --arch wherever one is chosen
    assert set(meaning["--arch"]) == {"matte", "export", "serve"}


def test_the_old_spellings_still_work_unshown(tmp_path):
    parser = cli.build_parser()
    args = parser.parse_args(["matte", "x.jpg", "--outdir", "o", "--output", "alpha", "--model", "p3m-r34"])
    assert (args.out, args.kinds, args.arch) == ("o", ["alpha"], "p3m-r34")
    for verb, extra in (("anonymize", ["x.jpg"]), ("evaluate", ["--pred", "p"]), ("export", ["--weights", "w"])):
        assert parser.parse_args([verb, *extra, "--output", "o"]).out == "o"
    assert parser.parse_args(["export", "--weights", "w", "-o", "m.onnx", "--model", "p3m-r34"]).arch == "p3m-r34"
    assert parser.parse_args(["serve", "--model", "p3m-r34"]).arch == "p3m-r34"


def test_the_kinds_option_names_the_folder_option_when_given_a_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:  # argparse's usage error
        cli.main(["matte", str(tmp_path), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "unknown output kind" in err and "the output folder is -o/--out" in err


def test_top_level_help_describes_every_verb_truthfully(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert "downloaded" not in text  # nothing is downloaded: models come built in, trained or dropped in
    models_line = next(line for line in text.splitlines() if line.strip().startswith("models"))
    assert "portrait-cf" in models_line


def test_readme_verb_table_lists_every_verb():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `p3m ([a-z]+)", readme, re.M))
    assert listed == set(cli.COMMANDS)


def test_the_verbs_that_write_a_report_say_where(tmp_path, capsys):
    """`p3m audit` and `p3m anonymize` end by naming the report file they wrote (default and --report)."""
    from p3m.io import write_image

    write_image(tmp_path / "in" / "flat.png", np.full((64, 64, 3), 90, np.uint8))
    assert cli.main(["audit", str(tmp_path / "in"), "-q"]) == 0
    assert f"report: {tmp_path / 'in' / 'audit_report.csv'}" in capsys.readouterr().out
    assert (tmp_path / "in" / "audit_report.csv").is_file()
    assert cli.main(["audit", str(tmp_path / "in"), "--report", str(tmp_path / "a.csv"), "-q"]) == 0
    assert f"report: {tmp_path / 'a.csv'}" in capsys.readouterr().out
    assert cli.main(["anonymize", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q"]) == 0
    assert f"report: {tmp_path / 'out' / 'anonymize_report.csv'}" in capsys.readouterr().out
