"""The `p3m` command: one verb per job. Each verb lives in `p3m.commands.<verb>`; this module only wires."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import re
import sys

# verb -> module under p3m.commands exposing `add_parser(subparsers)` and `run(args) -> int`.
COMMANDS = (
    "synth",
    "demo",
    "matte",
    "models",
    "export",
    "anonymize",
    "audit",
    "evaluate",
    "benchmark",
    "train",
    "prepare",
    "serve",
)


def build_parser() -> argparse.ArgumentParser:
    from p3m import __version__

    parser = argparse.ArgumentParser(prog="p3m", description="Privacy-preserving portrait matting.")
    parser.add_argument("--version", action="version", version=f"p3m {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for verb in COMMANDS:
        module = importlib.import_module(f"p3m.commands.{verb}")
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


def main(argv: list[str] | None = None) -> int:
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
    except Exception as exc:  # user-facing errors are one line; see p3m.errors
        from p3m.errors import P3MError

        if isinstance(exc, P3MError):
            print(f"p3m {args.command}: error: {exc}", file=sys.stderr)
            return 2
        if os.environ.get("P3M_DEBUG"):
            raise
        hint = install_hint(exc) if isinstance(exc, ModuleNotFoundError) else None
        if hint:  # an optional part of p3m that was not installed
            print(f"p3m {args.command}: error: {hint}", file=sys.stderr)
            return 2
        if isinstance(exc, OSError):  # disk full, permission denied, ...: the path and the system's words
            from p3m.errors import os_error_message

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
