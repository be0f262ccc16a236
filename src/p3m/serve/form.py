"""The text options of a request's form, validated one by one into ApiError 422 ``invalid_option``."""

from __future__ import annotations

from p3m.choices import COLOR_HELP
from p3m.choices import parse_color as parse_color_text
from p3m.errors import ApiError
from p3m.serve.multipart import MAX_FIELD_BYTES, Part

__all__ = ["FormOptions", "parse_color"]


def parse_color(text: str) -> tuple[int, int, int]:
    """'white' / '#RRGGBB' / '#RGB' / 'R,G,B' -> (r, g, b); ApiError 422 otherwise."""
    try:
        color = parse_color_text(text)
    except ValueError:
        color = None
    if color is None:
        raise ApiError(422, "invalid_option", f"background {text[:40]!r} is not a colour; use {COLOR_HELP}")
    return color


class FormOptions:
    """Text options of a multipart form (every field but ``image``); unknown fields are refused."""

    def __init__(self, fields: dict[str, Part], allowed: set[str]) -> None:
        unknown = sorted(set(fields) - allowed - {"image"})
        if unknown:
            raise ApiError(
                422,
                "invalid_option",
                f"unknown field(s) {', '.join(unknown)}; allowed: image, {', '.join(sorted(allowed))}",
            )
        self.values: dict[str, str] = {}
        for key in allowed & set(fields):
            data = fields[key].data
            if len(data) > MAX_FIELD_BYTES:
                raise ApiError(422, "invalid_option", f"field {key!r} is too long")
            self.values[key] = data.decode("utf-8", "replace").strip()

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.values.get(key) or default
        value = value.lower()
        if value not in choices:
            raise ApiError(422, "invalid_option", f"{key} must be one of {', '.join(choices)}, got {value[:40]!r}")
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        text = self.values.get(key)
        if not text:
            return default
        try:
            value = float(text)
        except ValueError:
            raise ApiError(422, "invalid_option", f"{key} must be a number, got {text[:40]!r}") from None
        if not (low <= value <= high):  # also refuses NaN
            raise ApiError(422, "invalid_option", f"{key} must be in [{low}, {high}], got {text[:40]!r}")
        return value
