"""Stored MediaPipe 0.10.21 outputs and the photos they were computed on, for the parity tests of the ports.

tools/mediapipe_reference_output.py wrote tests/data/mediapipe_<family>.npz (and the pose masks); its docstring
says how. Photos: scikit-image's astronaut (public domain) and three P3M-10k demo photos (MIT), see
tests/data/README.md. Each photo is checked against the sha256 of the pixels the reference was computed on, so
a different JPEG decoder fails loudly instead of loosening the comparison.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import cv2
import numpy as np
from skimage import data

DATA = Path(__file__).parent / "data"
PHOTOS = ("astronaut", "profile", "cap", "walking")


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@cache
def reference(family: str) -> dict[str, np.ndarray]:
    """The arrays of tests/data/mediapipe_<family>.npz by key."""
    with np.load(DATA / f"mediapipe_{family}.npz") as z:
        return {k: z[k] for k in z.files}


def photo(name: str, family: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a reference photo, as decoded when the reference was made."""
    rgb = data.astronaut() if name == "astronaut" else read_rgb(DATA / f"people_{name}.jpg")
    stored = reference(family)[f"digest/{name}"].tobytes()
    assert hashlib.sha256(np.ascontiguousarray(rgb).tobytes()).digest() == stored, f"{name}: decoded differently"
    return rgb


def centre(rgb: np.ndarray, size: int) -> np.ndarray:
    """The size x size middle of an image (how the reference script feeds smaller networks)."""
    top, left = (rgb.shape[0] - size) // 2, (rgb.shape[1] - size) // 2
    return np.ascontiguousarray(rgb[top : top + size, left : left + size])
