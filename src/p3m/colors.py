"""Background colours given as text (CLI `--background`, the HTTP API's `background` field)."""

from __future__ import annotations

import re

COLOR_NAMES = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
}

COLOR_HELP = f"a name ({', '.join(COLOR_NAMES)}), #RRGGBB, #RGB or R,G,B"


def parse_color(text: str) -> tuple[int, int, int] | None:
    """'white' / '#RRGGBB' / '#RGB' / 'R,G,B' -> (r, g, b); None when the text is not written as a colour.

    Raises ValueError for a colour written with a component over 255 (e.g. '300,0,0').
    """
    t = text.strip().lower()
    if t in COLOR_NAMES:
        return COLOR_NAMES[t]
    m = re.fullmatch(r"#([0-9a-f]{6}|[0-9a-f]{3})", t)
    if m:
        h = m.group(1)
        if len(h) == 3:
            h = "".join(c * 2 for c in h)
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    m = re.fullmatch(r"(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})", t)
    if m:
        r, g, b = (int(v) for v in m.groups())
        if max(r, g, b) > 255:
            raise ValueError(f"colour {text!r}: components must be 0-255")
        return r, g, b
    return None
