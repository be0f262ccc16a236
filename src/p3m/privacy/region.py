"""Face region R_face (Li et al., ACM MM 2021; figure demo/face_obfuscation.jpg of `JizhiziLi/P3M`) as geometry:
outlines as polygons, and their anti-aliased soft masks.

P3M spans the face region by landmarks, from the jaw line up to the brows (Li et al., ACM MM 2021);
`p3m.privacy.landmarks` builds that outline per face. This module holds the geometry every outline shares:

- `soft_mask`: polygons -> float weights in [0, 1], exact and anti-aliased: a pixel's weight is a linear ramp
  of its centre's signed distance ``d`` to the outline, ``clip(0.5 + d / feather, 0, 1)``, so the edge is
  ``feather`` px wide, centred on the outline, at every face size (no stair steps);
- `polygon_signed_distance`: the exact Euclidean distance of points to a polygon, positive inside (non-zero
  winding), the quantity the ramp is a function of;
- `ellipse_polygon`, `face_ellipse`: the ellipse of a detector's box (``--region ellipse``, and the covering
  shape where landmarks are not trusted);
- `face_region`, `box_coverage`: the box ellipse as a bool mask, which the audit measures faces with.

Coordinates are image pixels with pixel centres at integer + 0.5 for polygons (``(x, y)`` columns, as the face
mesh gives them); `face_region` and `face_ellipse` keep OpenCV's integer pixel centres, as before.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from p3m.privacy.detect import Face

# the soft edge is never narrower than one pixel: anti-aliasing is always on
MIN_FEATHER = 1.0


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
            (round(cx * f), round(cy * f)),
            (max(1, round(fw / 2 * f)), max(1, round(fh / 2 * f))),
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


def ellipse_polygon(
    center: tuple[float, float], axes: tuple[float, float], angle_deg: float = 0.0, n: int = 72
) -> np.ndarray:
    """(n, 2) float64 vertices of the ellipse with full axes ``axes`` (width, height) rotated by ``angle_deg``
    (clockwise on screen, as OpenCV)."""
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    a, b = axes[0] / 2.0, axes[1] / 2.0
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    x, y = a * np.cos(t), b * np.sin(t)
    return np.stack([center[0] + c * x - s * y, center[1] + s * x + c * y], axis=1)


def polygon_area(polygon: np.ndarray) -> float:
    """Unsigned area of a simple polygon (shoelace formula), in px²."""
    p = np.asarray(polygon, np.float64)
    x, y = p[:, 0], p[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2.0


def polygon_signed_distance(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance of each point to the polygon's outline, positive inside, negative outside.

    points: (M, 2) x, y; polygon: (N, 2) vertices, closed implicitly. Inside is the non-zero winding rule, so a
    polygon that crosses itself counts as the union of its loops. Returns (M,) float64.
    """
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, np.float64).reshape(-1, 2)
    if len(poly) < 3:
        raise ValueError(f"a polygon needs at least 3 vertices, got {len(poly)}")
    px, py = pts[:, 0], pts[:, 1]
    best = np.full(len(pts), np.inf)
    winding = np.zeros(len(pts), np.int64)
    # one pass per edge over all points (the edges are few, the points many)
    for (ax, ay), (bx, by) in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        ex, ey = bx - ax, by - ay
        dx, dy = px - ax, py - ay
        t = np.clip((dx * ex + dy * ey) / max(ex * ex + ey * ey, 1e-12), 0.0, 1.0)
        np.minimum(best, (dx - t * ex) ** 2 + (dy - t * ey) ** 2, out=best)
        # winding number: an upward edge with the point on its left counts +1, a downward one on its right -1
        cross = ex * dy - ey * dx
        winding += ((ay <= py) & (by > py) & (cross > 0)).astype(np.int64)
        winding -= ((ay > py) & (by <= py) & (cross < 0)).astype(np.int64)
    dist = np.sqrt(best)
    return np.where(winding != 0, dist, -dist)


def soft_mask(
    shape: tuple[int, ...], polygons: Sequence[np.ndarray], feathers: Sequence[float] | float = MIN_FEATHER
) -> np.ndarray:
    """Anti-aliased, feathered mask of the union of ``polygons``: float32 HxW in [0, 1].

    Each pixel's weight is ``clip(0.5 + d / f, 0, 1)`` with ``d`` the signed distance of its centre (x + 0.5,
    y + 0.5) to the polygon (`polygon_signed_distance`) and ``f`` that polygon's feather width in px (at least
    `MIN_FEATHER`); the union takes the largest weight. So the weight is 1 deeper than ``f / 2`` inside, 0 farther
    than ``f / 2`` outside, and a linear ramp across the outline. Only pixels within ``f / 2 + 1.5`` px of the
    rasterised outline are measured exactly; the others are inside or outside by the raster.
    """
    h, w = int(shape[0]), int(shape[1])
    out = np.zeros((h, w), np.float32)
    if isinstance(feathers, (int, float)):
        feathers = [float(feathers)] * len(polygons)
    if len(feathers) != len(polygons):
        raise ValueError(f"{len(polygons)} polygons but {len(feathers)} feather widths")
    for polygon, feather in zip(polygons, feathers, strict=True):
        poly = np.asarray(polygon, np.float64).reshape(-1, 2)
        if len(poly) < 3 or not np.all(np.isfinite(poly)):
            raise ValueError("a polygon needs at least 3 finite vertices")
        f = max(MIN_FEATHER, float(feather))
        reach = f / 2.0 + 2.0
        x0 = max(0, math.floor(poly[:, 0].min() - reach))
        y0 = max(0, math.floor(poly[:, 1].min() - reach))
        x1 = min(w, math.ceil(poly[:, 0].max() + reach) + 1)
        y1 = min(h, math.ceil(poly[:, 1].max() + reach) + 1)
        if x1 <= x0 or y1 <= y0:
            continue
        # raster of the outline (pixel centres at +0.5: shift the polygon by -0.5 for OpenCV's integer centres)
        fill = np.zeros((y1 - y0, x1 - x0), np.uint8)
        shift = 8
        pts = np.round((poly - [x0 + 0.5, y0 + 0.5]) * (1 << shift)).astype(np.int32)
        cv2.fillPoly(fill, [pts], 1, lineType=cv2.LINE_8, shift=shift)
        # pixels near the raster's edge get the exact distance; the rest is 0 or 1 by the raster
        inside_d = cv2.distanceTransform(np.pad(fill, 1), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
        outside_d = cv2.distanceTransform(np.pad(1 - fill, 1, constant_values=1), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        outside_d = outside_d[1:-1, 1:-1]
        near = np.where(fill > 0, inside_d, outside_d) <= f / 2.0 + 1.5
        weight = fill.astype(np.float32)
        ys, xs = np.nonzero(near)
        if len(ys):
            centres = np.stack([xs + x0 + 0.5, ys + y0 + 0.5], axis=1)
            d = polygon_signed_distance(centres, poly)
            weight[ys, xs] = np.clip(0.5 + d / f, 0.0, 1.0)
        sub = out[y0:y1, x0:x1]
        np.maximum(sub, weight, out=sub)
    return out
