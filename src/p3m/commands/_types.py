"""argparse helpers shared by the verbs: numbers with a lower bound (each error one clear line), and old option
spellings kept working without being shown."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= minimum."""

    def parse(text: str) -> int:
        value = whole_number(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value

    parse.__name__ = f"int>={minimum}"
    return parse


count = at_least(0)  # image counts, queue sizes
positive = at_least(1)  # workers, processes


def hide_aliases(action: argparse.Action, *aliases: str) -> argparse.Action:
    """Keep `aliases` (old spellings, registered with `action`) working but out of `--help`, usage and error messages.

    The parser maps every option string it was given to the action when the argument is added; what help and errors
    show is `action.option_strings`, so the old spellings are dropped from there only.
    """
    unknown = set(aliases) - set(action.option_strings)
    if unknown:
        raise ValueError(f"{', '.join(sorted(unknown))} not among {action.option_strings}")
    action.option_strings = [s for s in action.option_strings if s not in aliases]
    return action


def add_arch(parser: argparse.ArgumentParser) -> argparse.Action:
    """`--arch ARCH` of the verbs that load weights (matte, export, serve); `--model`, its old name, still works."""
    action = parser.add_argument(
        "--arch",
        "--model",
        dest="arch",
        default=None,
        metavar="ARCH",
        help="architecture, e.g. p3m-r34 (default: from the weights)",
    )
    return hide_aliases(action, "--model")
