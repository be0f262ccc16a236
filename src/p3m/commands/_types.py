"""argparse value types shared by the verbs: numbers with a lower bound, each error one clear line."""

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
