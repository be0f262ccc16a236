"""The names a user may type, one copy each: CLI options, the HTTP API's form fields, configs and settings.

Torch-free (the standard library and `p3m.errors` only), so that the CLI, the server's settings and the library
modules that implement each choice can all import it without loading anything heavy. The modules that implement a
choice check their input against these tuples with `check_choice`; adding a name here without an implementation
is a bug that the tests catch (every choice is exercised).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from p3m.errors import ChoiceError

__all__ = [
    "BACKENDS",
    "COLOR_HELP",
    "COLOR_NAMES",
    "DEVICES_HELP",
    "FOREGROUND_METHODS",
    "OBFUSCATION_METHODS",
    "OUTPUT_KINDS",
    "PRECISIONS",
    "PROTOCOLS",
    "RESIZE_MODES",
    "STRATEGIES",
    "check_choice",
    "parse_color",
]

#: Test strategies of a P3M-Net pass (p3m.infer.strategies): the published HYBRID and RESIZE, and a tiled one.
STRATEGIES = ("hybrid", "resize", "highres")
#: Numeric precision of a torch network; "auto" = bf16 where the hardware runs it natively, else fp32.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: Inference engines; "auto" = onnxruntime for an .onnx file, torch otherwise.
BACKENDS = ("auto", "torch", "onnxruntime")
#: Image resizing of the test strategies: "paper" = the published resize, "fast" = OpenCV.
RESIZE_MODES = ("paper", "fast")
#: Foreground (colour) estimation for cutouts (p3m.infer.foreground).
FOREGROUND_METHODS = ("ml", "blur", "pymatting")
#: What a matting run can write per image: the matte, the straight RGBA cutout, the foreground colours and the
#: cutout over a background.
OUTPUT_KINDS = ("alpha", "rgba", "fg", "composite")
#: Face obfuscation methods of the P3M pipeline (p3m.data.obfuscate).
OBFUSCATION_METHODS = ("blur", "mosaic", "zero")
#: Evaluation protocols: the P3M code's metrics, the DIM protocol, or both.
PROTOCOLS = ("p3m", "dim", "both")
DEVICES_HELP = "auto, cpu, cuda or cuda:N"


def check_choice(what: str, value: str, allowed: Sequence[str]) -> str:
    """`value` when it is one of `allowed`; else ChoiceError "unknown <what> 'x'; use one of a, b, c"."""
    if value not in allowed:
        raise ChoiceError(f"unknown {what} {value!r}; use one of {', '.join(allowed)}")
    return value


#: Background colours by name (CLI `--background`, the HTTP API's `background` field).
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
