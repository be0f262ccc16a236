"""Foreground colour estimation (decontamination) and the outputs built from it.

A matte alone is not a cutout: in hair and other soft edges the image colour I = aF + (1-a)B still
contains the old background B. Writing I (or I*a) as the RGB of a straight-alpha PNG gives a colour
fringe (or a dark halo). We estimate F in the band where 0 < a < 1 and keep F = I elsewhere.

Methods:
- ``"ml"`` (default): multi-level foreground estimation of Germer et al., "Fast Multi-Level Foreground
  Estimation", ICPR 2020 (the algorithm of pymatting's `estimate_foreground_ml`), re-implemented in
  `p3m.infer.multilevel` (numba, compiled once and cached): coarse-to-fine pyramid, per pixel a 2x2
  least-squares solve for (F, B) with alpha-gradient-weighted smoothness over the 4-neighbourhood. The
  updates are Jacobi (all pixels at once) instead of pymatting's in-place sweep, so we run 2x its
  iterations per level.
- ``"blur"``: blur-fusion estimation, Forte & Pitie, "Approximate Fast Foreground Colour Estimation",
  ICIP 2021 (BiRefNet's `refine_foreground`): box filters only, fastest, less exact on wide bands.
- ``"pymatting"``: pymatting's own `estimate_foreground_ml` (numba; its first import compiles for
  tens of seconds unless NUMBA_CACHE_DIR holds a cache).

Both run only on the bounding box of the unknown band (plus a margin), so the cost follows the
size of the band, not of the image.

`render(kind, image, alpha, ...)` makes every output kind of `p3m.choices.OUTPUT_KINDS` (the matte, the straight
RGBA cutout, the foreground colours, the cutout over a background) as a pixel array: the one renderer of the CLI,
the server and the page. It is a pure function of arrays (no I/O, no shared state), so threads may call it freely.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from p3m.choices import FOREGROUND_METHODS, OUTPUT_KINDS, check_choice
from p3m.errors import ImageError
from p3m.infer.boxes import box_round
from p3m.pymatting_import import import_pymatting

__all__ = [
    "WHITE",
    "alpha_to_uint8",
    "blur_fusion_foreground",
    "composite",
    "cutout_rgba",
    "estimate_foreground",
    "fit_background",
    "multilevel_foreground",
    "render",
    "unknown_bbox",
]

WHITE = (255, 255, 255)


def unknown_bbox(alpha: np.ndarray, margin: int = 0) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of the pixels with 0 < alpha < 1, grown by `margin` and clipped; None if none."""
    box = box_round((alpha > 0) & (alpha < 1), margin)
    return None if box is None else (box[0].start, box[0].stop, box[1].start, box[1].stop)


def _blur_fusion_pass(
    image: np.ndarray, fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """One blur-fusion step: local means of F and B weighted by alpha, then the residual put back into F."""
    k = (radius, radius)
    a = alpha[..., None]
    blurred_a = cv2.blur(alpha, k)[..., None]
    blurred_f = cv2.blur(fg * a, k) / (blurred_a + 1e-5)
    blurred_b = cv2.blur(bg * (1 - a), k) / ((1 - blurred_a) + 1e-5)
    f = blurred_f + a * (image - a * blurred_f - (1 - a) * blurred_b)
    return np.clip(f, 0.0, 1.0), blurred_b


def blur_fusion_foreground(image01: np.ndarray, alpha: np.ndarray, radii: tuple[int, int] = (90, 6)) -> np.ndarray:
    """Blur-fusion estimator (two passes): HxWx3 float32 image in [0, 1], HxW alpha -> HxWx3 float32 F."""
    image01 = image01.astype(np.float32, copy=False)
    alpha = alpha.astype(np.float32, copy=False)
    f, b = _blur_fusion_pass(image01, image01, image01, alpha, radii[0])
    f, _ = _blur_fusion_pass(image01, f, b, alpha, radii[1])
    return f


def multilevel_foreground(image01: np.ndarray, alpha: np.ndarray, **settings: Any) -> tuple[np.ndarray, np.ndarray]:
    """Multi-level (F, B) estimation (Germer et al. 2020): HxWx3 float in [0, 1], HxW alpha -> two HxWx3 float32.

    settings: those of `p3m.infer.multilevel.multilevel` (regularization, iterations per level, the band-only
    levels), where the compiled estimator lives.
    """
    from p3m.infer.multilevel import multilevel  # numba: loaded when a cutout is estimated, not by every import

    return multilevel(image01, alpha, **settings)


def _pymatting_foreground(image01: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    f = import_pymatting().estimate_foreground_ml(image01.astype(np.float32), alpha.astype(np.float32))
    return np.clip(f, 0.0, 1.0).astype(np.float32)


def estimate_foreground(image: np.ndarray, alpha: np.ndarray, method: str = "ml", margin: int = 32) -> np.ndarray:
    """Foreground colours F (HxWx3 uint8) for an RGB uint8 image and its alpha (HxW float in [0, 1]).

    F = image wherever the crop around the unknown band does not reach; inside it, pixels with
    alpha = 1 keep the image colour exactly and the others get the estimate.
    """
    check_choice("foreground method", method, FOREGROUND_METHODS)
    if image.shape[:2] != alpha.shape:
        raise ValueError(f"image {image.shape[:2]} and alpha {alpha.shape} differ in size")
    fg = image.copy()
    box = unknown_bbox(alpha, margin)
    if box is None:
        return fg
    y0, y1, x0, x1 = box
    a = np.clip(alpha[y0:y1, x0:x1].astype(np.float32), 0.0, 1.0)
    if method == "ml":
        from p3m.infer.multilevel import multilevel_uint8  # numba, as in multilevel_foreground

        fg[y0:y1, x0:x1] = multilevel_uint8(image[y0:y1, x0:x1], a)
        return fg
    crop = image[y0:y1, x0:x1].astype(np.float32) / np.float32(255.0)
    est = blur_fusion_foreground(crop, a) if method == "blur" else _pymatting_foreground(crop, a)
    est = np.clip(np.rint(est * 255.0), 0, 255).astype(np.uint8)
    opaque = a >= 1.0
    est[opaque] = image[y0:y1, x0:x1][opaque]
    fg[y0:y1, x0:x1] = est
    return fg


def alpha_to_uint8(alpha: np.ndarray, rounding: str = "round") -> np.ndarray:
    """Alpha in [0, 1] -> uint8: "round" for user outputs; "truncate" = floor(255*a), the published dataset mode
    (9.6)."""
    a = np.clip(np.asarray(alpha, dtype=np.float32), 0.0, 1.0) * np.float32(255.0)
    if rounding == "round":
        return np.rint(a).astype(np.uint8)
    if rounding == "truncate":
        return a.astype(np.uint8)
    raise ValueError(f"rounding must be 'round' or 'truncate', not {rounding!r}")


def cutout_rgba(foreground: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Straight (un-premultiplied) RGBA uint8: RGB = foreground colours, A = alpha; fully transparent pixels are
    (0, 0, 0, 0), so a cutout carries nothing of what the matte left out (the background would otherwise be one
    "ignore alpha" away, and it would cost file size)."""
    a8 = alpha_to_uint8(alpha)
    return np.dstack([np.where(a8[..., None] == 0, np.uint8(0), foreground), a8])


def composite(foreground: np.ndarray, alpha: np.ndarray, background: np.ndarray | tuple[int, int, int]) -> np.ndarray:
    """F*a + B*(1-a) as RGB uint8; background is an RGB colour or an HxWx3 uint8 image of the same size."""
    a = np.clip(alpha.astype(np.float32), 0.0, 1.0)[..., None]
    bg = np.asarray(background, dtype=np.float32)
    if bg.ndim == 3 and bg.shape[:2] != alpha.shape:
        raise ValueError(f"background {bg.shape[:2]} and alpha {alpha.shape} differ in size")
    out = foreground.astype(np.float32) * a + bg * (1.0 - a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def fit_background(background: np.ndarray, height: int, width: int) -> np.ndarray:
    """An HxWx3 background image scaled to cover height x width (aspect kept) and centre-cropped to it."""
    bh, bw = background.shape[:2]
    scale = max(height / bh, width / bw)
    nh, nw = max(height, round(bh * scale)), max(width, round(bw * scale))
    resized = cv2.resize(background, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y, x = (nh - height) // 2, (nw - width) // 2
    return resized[y : y + height, x : x + width]


def _check_background(background: object) -> None:
    """An RGB colour (three whole numbers in 0..255) or a non-empty HxWx3 uint8 image; ImageError otherwise."""
    if isinstance(background, np.ndarray):
        if background.dtype != np.uint8 or background.ndim != 3 or background.shape[2] != 3 or not background.size:
            raise ImageError(
                f"a background image must be a non-empty HxWx3 uint8 array, got {background.dtype} {background.shape}"
            )
        return
    values = tuple(background) if isinstance(background, (tuple, list)) else ()
    if len(values) != 3 or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in values):
        raise ImageError(f"a background colour must be three whole numbers in 0..255 (R, G, B), got {background!r}")


def render(
    kind: str,
    image: np.ndarray,
    alpha: np.ndarray,
    *,
    foreground: np.ndarray | None = None,
    background: np.ndarray | tuple[int, int, int] = WHITE,
    method: str = "ml",
) -> np.ndarray:
    """One output kind of an image and its matte, as uint8 pixels.

    kind: "alpha" (HxW matte), "rgba" (HxWx4 straight RGBA: decontaminated colours + alpha), "fg" (HxWx3
    decontaminated colours) or "composite" (HxWx3: the cutout over `background`, an RGB colour or an image of any
    size, fitted by `fit_background`). image: HxWx3 uint8; alpha: HxW float in [0, 1]; foreground: the colours of
    `estimate_foreground` when already computed (else estimated here with `method`).
    """
    check_choice("output kind", kind, OUTPUT_KINDS)
    if kind == "alpha":
        return alpha_to_uint8(alpha)
    if kind == "composite":
        _check_background(background)
    fg = foreground if foreground is not None else estimate_foreground(image, alpha, method)
    if kind == "rgba":
        return cutout_rgba(fg, alpha)
    if kind == "fg":
        return fg
    if isinstance(background, np.ndarray):
        background = fit_background(background, *alpha.shape)
    return composite(fg, alpha, background)
