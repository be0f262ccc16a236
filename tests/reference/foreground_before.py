"""p3m's own foreground estimation for cutouts before its speed-up (`p3m.infer.foreground` at commit f5aa228),
verbatim but renamed and cut to the "ml" method: the vectorised numpy multi-level estimator (Germer et al. 2020)
on the unknown band's bounding box. The compiled estimator that replaced it is tested and timed against it.
"""

from __future__ import annotations

import cv2
import numpy as np


def unknown_bbox(alpha: np.ndarray, margin: int = 0) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of the pixels with 0 < alpha < 1, grown by `margin` and clipped; None if none."""
    band = (alpha > 0) & (alpha < 1)
    rows = np.flatnonzero(band.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(band.any(axis=0))
    h, w = alpha.shape
    return (
        max(0, rows[0] - margin),
        min(h, rows[-1] + 1 + margin),
        max(0, cols[0] - margin),
        min(w, cols[-1] + 1 + margin),
    )


def _nearest(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """pymatting's nearest-neighbour resize: source index = dst * n_src // n_dst."""
    ys = np.arange(h) * a.shape[0] // h
    xs = np.arange(w) * a.shape[1] // w
    return a[ys][:, xs]


def _neighbours(a: np.ndarray) -> list[np.ndarray]:
    """Left, right, up, down neighbours with clamped borders (as pymatting)."""
    p = np.pad(a, [(1, 1), (1, 1)] + [(0, 0)] * (a.ndim - 2), mode="edge")
    return [p[1:-1, :-2], p[1:-1, 2:], p[:-2, 1:-1], p[2:, 1:-1]]


def previous_multilevel_foreground(
    image01: np.ndarray,
    alpha: np.ndarray,
    *,
    regularization: float = 1e-5,
    n_small_iterations: int = 20,
    n_big_iterations: int = 4,
    small_size: int = 32,
    gradient_weight: float = 1.0,
    band_only_above: int | None = 200_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Multi-level (F, B) estimation (Germer et al. 2020), vectorised: HxWx3 float in [0, 1], HxW alpha.

    band_only_above: on pyramid levels with more pixels than this, only the unknown band (0 < a < 1,
    grown by one pixel) is updated; the rest keeps the values brought up from the coarser level. Only
    band pixels are used in the end, and their updates read just their 4 neighbours, so this changes
    little (see tests) while making the fine levels cost what the band costs. None updates everything.
    """
    image01 = image01.astype(np.float32, copy=False)
    alpha = alpha.astype(np.float32, copy=False)
    h0, w0 = alpha.shape
    fg_mask, bg_mask = alpha > 0.9, alpha < 0.1
    f_mean = image01[fg_mask].sum(0) / (fg_mask.sum() + 1e-5)
    b_mean = image01[bg_mask].sum(0) / (bg_mask.sum() + 1e-5)
    f = np.broadcast_to(f_mean.astype(np.float32), (1, 1, 3))
    b = np.broadcast_to(b_mean.astype(np.float32), (1, 1, 3))
    n_levels = max(1, int(np.ceil(np.log2(max(w0, h0)))))
    for level in range(n_levels + 1):
        w = round(w0 ** (level / n_levels))
        h = round(h0 ** (level / n_levels))
        img = _nearest(image01, h, w)
        a = _nearest(alpha, h, w)
        f = np.ascontiguousarray(_nearest(f, h, w))
        b = np.ascontiguousarray(_nearest(b, h, w))
        n_iter = n_small_iterations if (w <= small_size and h <= small_size) else n_big_iterations
        if band_only_above is not None and h * w > band_only_above:
            _band_iterations(img, a, f, b, n_iter, regularization, gradient_weight)
            continue
        weights = [(regularization + gradient_weight * np.abs(a - n))[..., None] for n in _neighbours(a)]
        wsum = sum(weights)
        a0, a1 = a[..., None], 1.0 - a[..., None]
        m00, m01, m11 = a0 * a0 + wsum, a0 * a1, a1 * a1 + wsum
        inv_det = 1.0 / (m00 * m11 - m01 * m01)
        c00, c01, c11 = inv_det * m11, -inv_det * m01, inv_det * m00
        rhs_f0, rhs_b0 = a0 * img, a1 * img
        for _ in range(n_iter):
            rf, rb = rhs_f0.copy(), rhs_b0.copy()
            for wk, nf, nb in zip(weights, _neighbours(f), _neighbours(b), strict=True):
                rf += wk * nf
                rb += wk * nb
            f = np.clip(c00 * rf + c01 * rb, 0.0, 1.0)
            b = np.clip(c01 * rf + c11 * rb, 0.0, 1.0)
    return f, b


def _band_iterations(
    img: np.ndarray,
    a: np.ndarray,
    f: np.ndarray,
    b: np.ndarray,
    n_iter: int,
    regularization: float,
    gradient_weight: float,
) -> None:
    """Jacobi updates of f, b (in place) on the unknown band grown by one pixel, as flat gathers."""
    h, w = a.shape
    band = (a > 0) & (a < 1)
    band = cv2.dilate(band.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    ys, xs = np.nonzero(band)
    if ys.size == 0:
        return
    idx = ys * w + xs
    nbrs = [
        ys * w + np.maximum(xs - 1, 0),
        ys * w + np.minimum(xs + 1, w - 1),
        np.maximum(ys - 1, 0) * w + xs,
        np.minimum(ys + 1, h - 1) * w + xs,
    ]
    af = a.reshape(-1)
    a0 = af[idx]
    weights = [(regularization + gradient_weight * np.abs(a0 - af[n]))[:, None] for n in nbrs]
    wsum = sum(weights)
    a0, a1 = a0[:, None], 1.0 - a0[:, None]
    m00, m01, m11 = a0 * a0 + wsum, a0 * a1, a1 * a1 + wsum
    inv_det = 1.0 / (m00 * m11 - m01 * m01)
    c00, c01, c11 = inv_det * m11, -inv_det * m01, inv_det * m00
    pix = img.reshape(-1, 3)[idx]
    rhs_f0, rhs_b0 = a0 * pix, a1 * pix
    ff, bf = f.reshape(-1, 3), b.reshape(-1, 3)
    for _ in range(n_iter):
        rf, rb = rhs_f0.copy(), rhs_b0.copy()
        for wk, n in zip(weights, nbrs, strict=True):
            rf += wk * ff[n]
            rb += wk * bf[n]
        ff[idx] = np.clip(c00 * rf + c01 * rb, 0.0, 1.0)
        bf[idx] = np.clip(c01 * rf + c11 * rb, 0.0, 1.0)


def previous_estimate_foreground(image: np.ndarray, alpha: np.ndarray, margin: int = 32) -> np.ndarray:
    """Foreground colours F (HxWx3 uint8) for an RGB uint8 image and its alpha (HxW float in [0, 1]).

    F = image wherever the crop around the unknown band does not reach; inside it, pixels with
    alpha = 1 keep the image colour exactly and the others get the estimate.
    """
    if image.shape[:2] != alpha.shape:
        raise ValueError(f"image {image.shape[:2]} and alpha {alpha.shape} differ in size")
    fg = image.copy()
    box = unknown_bbox(alpha, margin)
    if box is None:
        return fg
    y0, y1, x0, x1 = box
    crop = image[y0:y1, x0:x1].astype(np.float32) / np.float32(255.0)
    a = np.clip(alpha[y0:y1, x0:x1].astype(np.float32), 0.0, 1.0)
    est = previous_multilevel_foreground(crop, a)[0]
    est = np.clip(np.rint(est * 255.0), 0, 255).astype(np.uint8)
    opaque = a >= 1.0
    est[opaque] = image[y0:y1, x0:x1][opaque]
    fg[y0:y1, x0:x1] = est
    return fg
