"""Face region R_face from detected faces (reference §2.1): one filled ellipse per face.

P3M spans the face region by the landmark polygon from jaw line to brows (§2.1). CenterFace gives a box
(forehead to chin, cheek to cheek) and five landmarks, not a jaw line, so each face becomes the ellipse
inscribed in its box, scaled about the box centre by ``scale`` and rotated by the roll of the eye line
when landmarks are present. ``scale=1.0`` covers brows to chin; 1.2 (the CLI default) adds a margin
for detector jitter, as `deface`'s ``--mask-scale 1.3`` does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import cv2
import numpy as np

from p3m.privacy.detect import Face


def face_ellipse(face: Face, scale: float = 1.0) -> tuple[tuple[float, float], tuple[float, float], float]:
    """The face's ellipse as OpenCV's rotated rect ``((cx, cy), (full_width, full_height), angle_deg)``."""
    x0, y0, x1, y1 = face.box
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    angle = 0.0
    lms = face.landmarks
    if lms is not None and np.all(np.isfinite(lms)):
        (lx, ly), (rx, ry) = lms[0], lms[1]
        if abs(rx - lx) > 1e-6 or abs(ry - ly) > 1e-6:
            angle = math.degrees(math.atan2(ry - ly, rx - lx))
            # An eye line steeper than 45° is a landmark failure (CenterFace on profiles): ignore the roll.
            if abs(angle) > 45.0:
                angle = 0.0
    return (cx, cy), ((x1 - x0) * scale, (y1 - y0) * scale), angle


def face_region(shape: tuple[int, ...], faces: Iterable[Face], scale: float = 1.0) -> np.ndarray:
    """bool HxW mask, True inside the (scaled) ellipse of any face. ``shape`` may be an image shape (H, W, ...)."""
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    h, w = int(shape[0]), int(shape[1])
    mask = np.zeros((h, w), np.uint8)
    for face in faces:
        (cx, cy), (fw, fh), angle = face_ellipse(face, scale)
        # Sub-pixel precision: OpenCV draws with `shift` fractional bits.
        shift = 4
        f = 1 << shift
        cv2.ellipse(
            mask,
            (int(round(cx * f)), int(round(cy * f))),
            (max(1, int(round(fw / 2 * f))), max(1, int(round(fh / 2 * f)))),
            angle,
            0,
            360,
            1,
            thickness=-1,
            lineType=cv2.LINE_8,
            shift=shift,
        )
    return mask.astype(bool)


def box_coverage(face: Face, mask: np.ndarray, core: float = 0.7) -> float:
    """Fraction of the face's core ellipse (``core`` x the box ellipse) that ``mask`` covers, in [0, 1]."""
    core_region = face_region(mask.shape, [face], scale=core)
    n = int(core_region.sum())
    if n == 0:
        return 1.0
    return float((core_region & (np.asarray(mask) > 0)).sum()) / n
