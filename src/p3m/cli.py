"""The `p3m` command: one verb per job. Each verb lives in `p3m.commands.<verb>`; this module only wires.

Every verb module exposes `add_parser(subparsers)` and `run(args) -> int`, and loads its heavy dependencies (torch,
PIL, onnxruntime) only when it runs, so that building the parser (`p3m --help`) stays quick.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import sys
from types import ModuleType

from p3m import __version__
from p3m.commands import (
    anonymize,
    audit,
    benchmark,
    demo,
    evaluate,
    export,
    matte,
    models,
    prepare,
    serve,
    synth,
    train,
)
from p3m.errors import P3MError, os_error_message

# verb -> its module, in the order `p3m --help` lists them
_VERBS: dict[str, ModuleType] = {
    "synth": synth,
    "demo": demo,
    "matte": matte,
    "models": models,
    "export": export,
    "anonymize": anonymize,
    "audit": audit,
    "evaluate": evaluate,
    "benchmark": benchmark,
    "train": train,
    "prepare": prepare,
    "serve": serve,
}
COMMANDS = tuple(_VERBS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="p3m", description="Privacy-preserving portrait matting.")
    parser.add_argument("--version", action="version", version=f"p3m {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for verb in COMMANDS:
        module = _VERBS[verb]
        sp = module.add_parser(sub)
        sp.set_defaults(_run=module.run)
    return parser


def install_hint(exc: ModuleNotFoundError) -> str | None:
    """How to install the optional part a missing module belongs to (from p3m's own package metadata), or None."""
    missing = (exc.name or "").partition(".")[0].lower()
    try:
        requirements = importlib.metadata.requires("p3m") or []
    except importlib.metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return None
    for requirement in requirements:
        spec, _, marker = requirement.partition(";")
        dist = re.split(r"[\s<>=!~\[(]", spec.strip(), maxsplit=1)[0]
        extra = re.search(r"extra\s*==\s*[\"']([^\"']+)[\"']", marker)
        if extra and missing and dist.lower().replace("-", "_") == missing:
            return f"needs the optional package {dist} ({missing} is not installed): pip install 'p3m[{extra[1]}]'"
    return None


def _never_fail_to_print() -> None:
    """File names are printed as they are; one that is not valid in the terminal's encoding (bytes that are not
    UTF-8, an emoji on an ASCII terminal) is shown escaped, like stderr does, instead of ending the run."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    _never_fail_to_print()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("p3m: interrupted", file=sys.stderr)
        return 130
    except P3MError as exc:  # user-facing errors are one line; see p3m.errors
        print(f"p3m {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if os.environ.get("P3M_DEBUG"):
            raise
        hint = install_hint(exc) if isinstance(exc, ModuleNotFoundError) else None
        if hint:  # an optional part of p3m that was not installed
            print(f"p3m {args.command}: error: {hint}", file=sys.stderr)
            return 2
        if isinstance(exc, OSError):  # disk full, permission denied, ...: the path and the system's words
            print(f"p3m {args.command}: error: {os_error_message(exc)}", file=sys.stderr)
            return 2
        print(
            f"p3m {args.command}: internal error: {type(exc).__name__}: {exc} "
            "(a bug: please report it; set P3M_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
