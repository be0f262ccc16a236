"""The multi-level foreground estimator of Germer et al. ("Fast Multi-Level Foreground Estimation", ICPR 2020),
compiled with numba: the kernels behind `p3m.infer.foreground.multilevel_foreground` and the "ml" method of
`p3m.infer.foreground.estimate_foreground`.

Coarse-to-fine pyramid (level sizes ``round(side ** (level / n_levels))``, nearest-neighbour moves between levels
with source index ``dst * n_src // n_dst``); on each level, per pixel, the 2x2 least-squares solve for (F, B) with
alpha-gradient-weighted smoothness over the 4-neighbourhood (clamped borders), Jacobi updates (every pixel reads
the previous iterate). On levels larger than ``band_only_above`` pixels only the unknown band (0 < a < 1, grown by
one pixel, 8-connected) is updated; the rest keeps the values brought up from the coarser level.

Every update is the same float32 arithmetic in the same order as the vectorised numpy version it replaced (kept
in tests/reference/foreground_before.py), so the two agree to float32 rounding; the compiled loops read each
level once instead of building a dozen full-size temporaries per iteration (0.27 s -> about 0.03 s per 1080 px
portrait on the 2-core CPU dev machine, benchmarks/bench_throughput.py). Compiled once and cached beside the
sources (`cache=True`; `make setup` runs `warm_up`); ``nogil``, so a pipeline's other threads run meanwhile.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["level_sizes", "multilevel", "multilevel_uint8", "warm_up"]


def level_sizes(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(heights, widths) int64 of the pyramid's levels, coarsest (1 x 1) first, the full size last."""
    n_levels = max(1, math.ceil(math.log2(max(width, height))))
    heights = [round(height ** (level / n_levels)) for level in range(n_levels + 1)]
    widths = [round(width ** (level / n_levels)) for level in range(n_levels + 1)]
    return np.array(heights, np.int64), np.array(widths, np.int64)


@njit(cache=True, nogil=True)
def _nearest3(a, h, w):  # pragma: no cover - numba
    """(H, W, 3) -> (h, w, 3), source index dst * n_src // n_dst."""
    out = np.empty((h, w, 3), np.float32)
    sh, sw = a.shape[0], a.shape[1]
    for y in range(h):
        sy = y * sh // h
        for x in range(w):
            sx = x * sw // w
            out[y, x, 0] = a[sy, sx, 0]
            out[y, x, 1] = a[sy, sx, 1]
            out[y, x, 2] = a[sy, sx, 2]
    return out


@njit(cache=True, nogil=True)
def _nearest2(a, h, w):  # pragma: no cover - numba
    out = np.empty((h, w), np.float32)
    sh, sw = a.shape
    for y in range(h):
        sy = y * sh // h
        for x in range(w):
            out[y, x] = a[sy, x * sw // w]
    return out


@njit(cache=True, nogil=True)
def _update(img, a, f, b, y, x, reg, gw, out_f, out_b, k):  # pragma: no cover - numba
    """The 2x2 solve of pixel (y, x) from the current f, b -> row k of out_f, out_b."""
    h, w = a.shape
    one = np.float32(1.0)
    zero = np.float32(0.0)
    xl, xr = max(x - 1, 0), min(x + 1, w - 1)
    yu, yd = max(y - 1, 0), min(y + 1, h - 1)
    a0 = a[y, x]
    w0 = reg + gw * abs(a0 - a[y, xl])
    w1 = reg + gw * abs(a0 - a[y, xr])
    w2 = reg + gw * abs(a0 - a[yu, x])
    w3 = reg + gw * abs(a0 - a[yd, x])
    wsum = w0 + w1 + w2 + w3
    a1 = one - a0
    m00 = a0 * a0 + wsum
    m01 = a0 * a1
    m11 = a1 * a1 + wsum
    inv_det = one / (m00 * m11 - m01 * m01)
    c00 = inv_det * m11
    c01 = -inv_det * m01
    c11 = inv_det * m00
    for c in range(3):
        rf = a0 * img[y, x, c]
        rb = a1 * img[y, x, c]
        rf += w0 * f[y, xl, c]
        rb += w0 * b[y, xl, c]
        rf += w1 * f[y, xr, c]
        rb += w1 * b[y, xr, c]
        rf += w2 * f[yu, x, c]
        rb += w2 * b[yu, x, c]
        rf += w3 * f[yd, x, c]
        rb += w3 * b[yd, x, c]
        out_f[k, c] = min(max(c00 * rf + c01 * rb, zero), one)
        out_b[k, c] = min(max(c01 * rf + c11 * rb, zero), one)


@njit(cache=True, nogil=True)
def _band_pixels(a):  # pragma: no cover - numba
    """(ys, xs) in row-major order of the pixels within one pixel (8-connected) of 0 < a < 1."""
    h, w = a.shape
    unknown = (a > 0) & (a < 1)
    grown = np.zeros((h, w), np.bool_)
    n = 0
    for y in range(h):
        for x in range(w):
            if unknown[y, x]:
                for yy in range(max(y - 1, 0), min(y + 2, h)):
                    for xx in range(max(x - 1, 0), min(x + 2, w)):
                        if not grown[yy, xx]:
                            grown[yy, xx] = True
                            n += 1
    ys = np.empty(n, np.int64)
    xs = np.empty(n, np.int64)
    k = 0
    for y in range(h):
        for x in range(w):
            if grown[y, x]:
                ys[k], xs[k] = y, x
                k += 1
    return ys, xs


@njit(cache=True, nogil=True)
def _iterate(img, a, f, b, n_iter, reg, gw, band_only):  # pragma: no cover - numba
    """n_iter Jacobi sweeps over every pixel, or (band_only) over the grown unknown band; f, b updated in place."""
    h, w = a.shape
    if band_only:
        ys, xs = _band_pixels(a)
    else:
        ys = np.empty(h * w, np.int64)
        xs = np.empty(h * w, np.int64)
        for y in range(h):
            for x in range(w):
                ys[y * w + x], xs[y * w + x] = y, x
    n = ys.shape[0]
    new_f = np.empty((n, 3), np.float32)
    new_b = np.empty((n, 3), np.float32)
    for _ in range(n_iter):
        for k in range(n):
            _update(img, a, f, b, ys[k], xs[k], reg, gw, new_f, new_b, k)
        for k in range(n):
            for c in range(3):
                f[ys[k], xs[k], c] = new_f[k, c]
                b[ys[k], xs[k], c] = new_b[k, c]


@njit(cache=True, nogil=True)
def _pyramid(image, alpha, heights, widths, reg, gw, n_small, n_big, small, band_above):  # pragma: no cover - numba
    """(F, B) float32 (H, W, 3) of a float32 image in [0, 1] and its alpha; band_above < 0: update every pixel."""
    big_h, big_w = alpha.shape
    sums = np.zeros((2, 3))
    counts = np.zeros(2)
    for y in range(big_h):
        for x in range(big_w):
            side = 0 if alpha[y, x] > 0.9 else 1 if alpha[y, x] < 0.1 else -1
            if side >= 0:
                counts[side] += 1
                for c in range(3):
                    sums[side, c] += image[y, x, c]
    f = np.empty((1, 1, 3), np.float32)
    b = np.empty((1, 1, 3), np.float32)
    for c in range(3):
        f[0, 0, c] = np.float32(sums[0, c] / (counts[0] + 1e-5))
        b[0, 0, c] = np.float32(sums[1, c] / (counts[1] + 1e-5))
    for level in range(heights.shape[0]):
        h, w = heights[level], widths[level]
        full = h == big_h and w == big_w
        img = image if full else _nearest3(image, h, w)
        a = alpha if full else _nearest2(alpha, h, w)
        f = _nearest3(f, h, w)
        b = _nearest3(b, h, w)
        n_iter = n_small if (w <= small and h <= small) else n_big
        _iterate(img, a, f, b, n_iter, reg, gw, band_above >= 0 and h * w > band_above)
    return f, b


@njit(cache=True, nogil=True)
def _to_float(image):  # pragma: no cover - numba
    """uint8 (H, W, 3) -> float32 in [0, 1] (v / 255 in float32, as numpy's astype(float32) / float32(255))."""
    h, w, _ = image.shape
    out = np.empty((h, w, 3), np.float32)
    scale = np.float32(255.0)
    for y in range(h):
        for x in range(w):
            for c in range(3):
                out[y, x, c] = np.float32(image[y, x, c]) / scale
    return out


@njit(cache=True, nogil=True)
def _foreground_uint8(image, alpha, heights, widths, reg, gw, n_small, n_big, small, band_above):  # pragma: no cover
    """F as uint8 (H, W, 3): rint(255 F) clipped, and the image's own colour where alpha >= 1."""
    f, _ = _pyramid(_to_float(image), alpha, heights, widths, reg, gw, n_small, n_big, small, band_above)
    h, w = alpha.shape
    out = np.empty((h, w, 3), np.uint8)
    scale = np.float32(255.0)
    for y in range(h):
        for x in range(w):
            opaque = alpha[y, x] >= 1.0
            for c in range(3):
                if opaque:
                    out[y, x, c] = image[y, x, c]
                else:
                    out[y, x, c] = np.uint8(min(max(np.rint(f[y, x, c] * scale), 0.0), 255.0))
    return out


def _args(
    alpha: np.ndarray,
    regularization: float,
    gradient_weight: float,
    n_small_iterations: int,
    n_big_iterations: int,
    small_size: int,
    band_only_above: int | None,
) -> tuple:
    heights, widths = level_sizes(*alpha.shape)
    return (
        heights,
        widths,
        np.float32(regularization),
        np.float32(gradient_weight),
        int(n_small_iterations),
        int(n_big_iterations),
        int(small_size),
        -1 if band_only_above is None else int(band_only_above),
    )


def multilevel(
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
    """(F, B), each HxWx3 float32 in [0, 1], of an HxWx3 float image in [0, 1] and its HxW alpha in [0, 1].

    regularization, gradient_weight: the smoothness weight between neighbours is ``regularization + gradient_weight
    * |a - a_neighbour|``. n_small_iterations on levels of at most small_size x small_size, n_big_iterations on the
    others. band_only_above: on levels with more pixels than this, only the unknown band (0 < a < 1, grown by one
    pixel) is updated; the rest keeps the values brought up from the coarser level. Only band pixels are used in
    the end, and their updates read just their 4 neighbours, so this changes little (tested) while making the fine
    levels cost what the band costs. None updates everything.
    """
    image01 = np.ascontiguousarray(image01, dtype=np.float32)
    alpha = np.ascontiguousarray(alpha, dtype=np.float32)
    args = _args(
        alpha, regularization, gradient_weight, n_small_iterations, n_big_iterations, small_size, band_only_above
    )
    return _pyramid(image01, alpha, *args)


def multilevel_uint8(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """F as HxWx3 uint8 (rounded) of an HxWx3 uint8 image and its HxW float32 alpha in [0, 1] (default settings);
    pixels with alpha >= 1 keep the image's colour exactly."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    alpha = np.ascontiguousarray(alpha, dtype=np.float32)
    return _foreground_uint8(image, alpha, *_args(alpha, 1e-5, 1.0, 20, 4, 32, 200_000))


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels on a tiny problem: `make setup` runs it."""
    alpha = np.clip(np.linspace(-1, 2, 8 * 8, dtype=np.float32).reshape(8, 8), 0, 1)
    image = np.linspace(0, 255, 8 * 8 * 3).reshape(8, 8, 3).astype(np.uint8)
    multilevel_uint8(image, alpha)
    multilevel(image / np.float32(255), alpha, band_only_above=16)
