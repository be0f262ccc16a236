"""P3M protocol (reference §10.2): whole-image matting metrics of the official P3M / GFM evaluation code.

Inputs are float arrays in [0, 1] of one shape (H, W): ``pred`` (p) and ``gt`` (alpha); a ``trimap`` is uint8 with
values {0, 128, 255} (0 = background Bg, 128 = unknown U, 255 = foreground Fg); a ``face`` mask is boolean.

Every value equals, to a relative 1e-6 (in practice to the last bits), what the literal transcription of the
reference gives (`tests/reference_metrics.py`); the implementation is just faster:

* Grad reproduces ``scipy.ndimage.gaussian_filter(..., output=float32)`` operation by operation (axis-0 pass
  accumulated in float64 and stored as float32, then the axis-1 pass likewise, same 13-tap kernels, same
  (anti)symmetric summation order, 'reflect' border), so the error map is bit-identical to SciPy's. It is only
  computed on 8x8 tiles near a pixel where p != alpha: elsewhere both 13x13 windows are identical, so are both
  gradients, and the error is exactly 0. The float32 map is summed with NumPy as in the reference.
* Conn uses that the ten thresholded masks are nested: one union-find over row runs of equal level, from the top
  threshold down, gives the largest 4-connected component of every level (ties go to the component whose first
  pixel comes first in raster order, as with ``skimage.measure.label`` + ``argmax``); one flood fill gives each
  pixel's round-down level.
* SAD/MSE/MAD and the trimap / face variants come from one fused pass.
"""
from __future__ import annotations

import cv2
import numpy as np
from numba import njit

__all__ = [
    "sad",
    "mse",
    "mad",
    "sad_trimap",
    "mse_trimap",
    "mad_trimap",
    "sad_fg",
    "sad_bg",
    "grad",
    "conn",
    "sad_privacy",
    "mse_privacy",
    "mad_privacy",
    "p3m_metrics",
    "CONN_THRESHOLDS",
    "gaussian_kernel1d",
]

#: Conn thresholds exactly as the reference builds them: ``np.arange(0, 1.1, 0.1)`` (0.30000000000000004, ...).
CONN_THRESHOLDS = np.arange(0, 1.1, 0.1)
#: Conn: a pixel is "connected" when it exceeds its round-down level by less than this.
CONN_THETA = 0.15
GRAD_SIGMA = 1.4
_GRAD_RADIUS = int(4.0 * GRAD_SIGMA + 0.5)  # SciPy: truncate 4.0 -> radius 6, 13 taps
_TILE_SHIFT = 3  # Grad tiles of 8x8 pixels
_TILE = 1 << _TILE_SHIFT


def gaussian_kernel1d(sigma: float, order: int, radius: int) -> np.ndarray:
    """1-D Gaussian (order 0) or first-derivative-of-Gaussian (order 1) kernel, built exactly as SciPy builds it."""
    x = np.arange(-radius, radius + 1)
    sigma2 = sigma * sigma
    phi_x = np.exp(-0.5 / sigma2 * x**2)
    phi_x = phi_x / phi_x.sum()
    if order == 0:
        return phi_x
    if order != 1:
        raise ValueError("order must be 0 or 1")
    # SciPy's polynomial recurrence for order 1: q(x) = (x**[0, 1]) . [0, -1/sigma2]
    q = (x[:, None] ** np.arange(2)).dot(np.array([0.0, 1.0 / -sigma2]))
    return q * phi_x


# SciPy's gaussian_filter1d correlates with the reversed kernel; OpenCV filters correlate too.
_W_SMOOTH = np.ascontiguousarray(gaussian_kernel1d(GRAD_SIGMA, 0, _GRAD_RADIUS)[::-1])
_W_DERIV = np.ascontiguousarray(gaussian_kernel1d(GRAD_SIGMA, 1, _GRAD_RADIUS)[::-1])


def _as_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.ascontiguousarray(pred, dtype=np.float64)
    a = np.ascontiguousarray(gt, dtype=np.float64)
    if p.ndim != 2 or p.shape != a.shape:
        raise ValueError(f"pred and gt must be 2-D arrays of one shape, got {p.shape} and {a.shape}")
    return p, a


def _as_trimap(trimap: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    t = np.ascontiguousarray(trimap)
    if t.shape != shape:
        raise ValueError(f"trimap shape {t.shape} differs from the prediction shape {shape}")
    return t


def _as_face(face: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    f = np.ascontiguousarray(face, dtype=bool)
    if f.shape != shape:
        raise ValueError(f"face mask shape {f.shape} differs from the prediction shape {shape}")
    return f


# --------------------------------------------------------------------------- fused sums


@njit(cache=True, nogil=True, inline="always")
def _level(m, t, nt):  # pragma: no cover - compiled
    """Conn level of a pixel: #{i >= 1 : m >= t_i} with m = min(p, alpha)."""
    if m >= t[nt]:
        return nt
    if m >= t[1]:  # false for nan
        g = min(int(m * nt), nt - 1)  # a guess, corrected by exact comparisons
        while g < nt and m >= t[g + 1]:
            g += 1
        while g > 1 and m < t[g]:
            g -= 1
        return g
    return 0


@njit(cache=True, nogil=True)
def _sums_kernel(p, a, tri, face, use_tri, use_face, differ, tile_shift):  # pragma: no cover - compiled
    """One pass for every plain sum, and the tile grid ``differ`` of the tiles where p != alpha somewhere.

    Sums: [sum|d|, sum d^2, sum_T|d~|, sum_T d~^2, n_U, n_Fg, n_Bg, sum_Fg|d|, sum_Bg|d|, n_F, sum_F|d|, sum_F d^2]
    with d = p - alpha and d~ = (p forced to 1 on Fg, 0 on Bg) - alpha.
    """
    h, w = p.shape
    s_abs = 0.0
    s_sq = 0.0
    t_abs = 0.0
    t_sq = 0.0
    n_u = 0
    n_fg = 0
    n_bg = 0
    fg_abs = 0.0
    bg_abs = 0.0
    n_f = 0
    f_abs = 0.0
    f_sq = 0.0
    for r in range(h):
        tr = r >> tile_shift
        for c in range(w):
            av = a[r, c]
            d = p[r, c] - av
            differ[tr, c >> tile_shift] |= d != 0.0  # branch-free: noisy data mispredicts
            ad = abs(d)
            s_abs += ad
            s_sq += d * d
            if use_tri:
                v = tri[r, c]
                if v == 255:
                    dt = 1.0 - av
                    n_fg += 1
                    fg_abs += ad
                elif v == 0:
                    dt = 0.0 - av
                    n_bg += 1
                    bg_abs += ad
                else:
                    dt = d
                    if v == 128:
                        n_u += 1
                t_abs += abs(dt)
                t_sq += dt * dt
            if use_face and face[r, c]:
                n_f += 1
                f_abs += ad
                f_sq += d * d
    return np.array([s_abs, s_sq, t_abs, t_sq, n_u, n_fg, n_bg, fg_abs, bg_abs, n_f, f_abs, f_sq], np.float64)


@njit(cache=True, nogil=True)
def _scan_kernel(p, a, tri, face, use_tri, use_face, differ, tile_shift, t, theta):  # pragma: no cover - compiled
    """`_sums_kernel` plus the Conn row runs, in one read of the pair: (sums, runs).

    Runs: every row is cut into runs of equal Conn level, level(x) = #{i >= 1 : min(p, alpha) >= t_i}, so that the
    thresholded masks are M_i = {level >= i}; each run is flagged when p != alpha somewhere on it. The Conn terms of
    the level-0 pixels are summed here: outside M_1, hence outside Omega_1, their round-down level is t_0 = 0
    whenever M_1 is not empty, whatever the components.
    """
    h, w = p.shape
    nt = t.shape[0] - 1
    cap = h * w + 1
    run_row = np.empty(cap, np.int32)
    run_start = np.empty(cap, np.int32)
    run_end = np.empty(cap, np.int32)
    run_level = np.empty(cap, np.uint8)
    run_differs = np.zeros(cap, np.bool_)
    row_first = np.zeros(h + 1, np.int64)
    counts = np.zeros(nt + 1, np.int64)
    n_runs = 0
    differs = False
    zero_total = 0.0
    s_abs = 0.0
    s_sq = 0.0
    t_abs = 0.0
    t_sq = 0.0
    s_abs1 = 0.0
    s_sq1 = 0.0
    t_abs1 = 0.0
    t_sq1 = 0.0
    n_u = 0
    n_fg = 0
    n_bg = 0
    fg_abs = 0.0
    bg_abs = 0.0
    n_f = 0
    f_abs = 0.0
    f_sq = 0.0
    for r in range(h):
        tr = r >> tile_shift
        row_first[r] = n_runs
        prev = -1
        for c in range(w):
            pv = p[r, c]
            av = a[r, c]
            d = pv - av
            differ[tr, c >> tile_shift] |= d != 0.0
            ad = abs(d)
            dt = d
            if use_tri:
                v = tri[r, c]
                if v == 255:
                    dt = 1.0 - av
                    n_fg += 1
                    fg_abs += ad
                elif v == 0:
                    dt = 0.0 - av
                    n_bg += 1
                    bg_abs += ad
                elif v == 128:
                    n_u += 1
            if c & 1:  # two accumulator sets, even and odd columns: shorter dependency chains
                s_abs1 += ad
                s_sq1 += d * d
                t_abs1 += abs(dt)
                t_sq1 += dt * dt
            else:
                s_abs += ad
                s_sq += d * d
                t_abs += abs(dt)
                t_sq += dt * dt
            if use_face and face[r, c]:
                n_f += 1
                f_abs += ad
                f_sq += d * d
            g = _level(min(pv, av), t, nt)
            if g == 0:  # l = t_0 = 0: d = p - 0.0 = p
                phi_p = 1.0 - (pv if pv >= theta else 0.0)
                phi_a = 1.0 - (av if av >= theta else 0.0)
                zero_total += abs(phi_p - phi_a)
            if g != prev:
                if prev >= 0:
                    run_end[n_runs - 1] = c
                    run_differs[n_runs - 1] = differs
                run_row[n_runs] = r
                run_start[n_runs] = c
                run_level[n_runs] = g
                counts[g] += 1
                n_runs += 1
                prev = g
                differs = False
            differs |= d != 0.0
        run_end[n_runs - 1] = w
        run_differs[n_runs - 1] = differs
    row_first[h] = n_runs
    s_abs += s_abs1
    s_sq += s_sq1
    if use_tri:
        t_abs += t_abs1
        t_sq += t_sq1
    else:
        t_abs = 0.0
        t_sq = 0.0
    sums = np.array([s_abs, s_sq, t_abs, t_sq, n_u, n_fg, n_bg, fg_abs, bg_abs, n_f, f_abs, f_sq], np.float64)
    return sums, (run_row, run_start, run_end, run_level, run_differs, row_first, counts, n_runs, zero_total)


def _sums(
    p: np.ndarray, a: np.ndarray, trimap: np.ndarray | None, face: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(plain sums, tile grid where p != alpha) of one pair, see `_sums_kernel`."""
    h, w = p.shape
    differ = np.zeros((-(-h // _TILE), -(-w // _TILE)), np.bool_)
    sums = _sums_kernel(
        p,
        a,
        np.zeros((1, 1), np.uint8) if trimap is None else np.ascontiguousarray(trimap, dtype=np.uint8),
        np.zeros((1, 1), np.bool_) if face is None else face,
        trimap is not None,
        face is not None,
        differ,
        _TILE_SHIFT,
    )
    return sums, differ


def _scan(p: np.ndarray, a: np.ndarray, trimap: np.ndarray | None, face: np.ndarray | None) -> tuple:
    """(plain sums, tile grid where p != alpha, Conn row runs) of one pair, see `_scan_kernel`."""
    h, w = p.shape
    differ = np.zeros((-(-h // _TILE), -(-w // _TILE)), np.bool_)
    sums, runs = _scan_kernel(
        p,
        a,
        np.zeros((1, 1), np.uint8) if trimap is None else np.ascontiguousarray(trimap, dtype=np.uint8),
        np.zeros((1, 1), np.bool_) if face is None else face,
        trimap is not None,
        face is not None,
        differ,
        _TILE_SHIFT,
        CONN_THRESHOLDS,
        CONN_THETA,
    )
    return sums, differ, runs


def _divide(num: float, den: float) -> float:
    """num / den with NumPy semantics (inf or nan for den == 0), as the reference code yields."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(num) / np.float64(den))


def _trimap_values(s: np.ndarray, n: int) -> dict[str, float]:
    n_u = s[4]
    if n_u == 0:  # reference fallback: n - |Fg| - |Bg| (also 0 for a strictly ternary trimap)
        n_u = n - s[5] - s[6]
    return {
        "sad_t": s[2] / 1000,
        "mse_t": _divide(s[3], n_u),
        "mad_t": _divide(s[2], n_u),
        "sad_fg": s[7] / 1000,
        "sad_bg": s[8] / 1000,
    }


def _privacy_values(s: np.ndarray) -> dict[str, float]:
    if s[9] == 0:  # no face pixel: the privacy metrics are undefined for this image
        return {"sad_privacy": float("nan"), "mse_privacy": float("nan"), "mad_privacy": float("nan")}
    return {"sad_privacy": s[10] / 1000, "mse_privacy": s[11] / s[9], "mad_privacy": s[10] / s[9]}


def sad(pred: np.ndarray, gt: np.ndarray) -> float:
    """P3M protocol, whole image: sum |p - alpha| / 1000."""
    p, a = _as_pair(pred, gt)
    return float(_sums(p, a, None, None)[0][0] / 1000)


def mse(pred: np.ndarray, gt: np.ndarray) -> float:
    """P3M protocol, whole image: sum (p - alpha)^2 / (H*W), raw (no x1000)."""
    p, a = _as_pair(pred, gt)
    return float(_sums(p, a, None, None)[0][1] / p.size)


def mad(pred: np.ndarray, gt: np.ndarray) -> float:
    """P3M protocol, whole image: sum |p - alpha| / (H*W)."""
    p, a = _as_pair(pred, gt)
    return float(_sums(p, a, None, None)[0][0] / p.size)


def _trimap_metric(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray, key: str) -> float:
    p, a = _as_pair(pred, gt)
    return float(_trimap_values(_sums(p, a, _as_trimap(trimap, p.shape), None)[0], p.size)[key])


def sad_trimap(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> float:
    """P3M protocol SAD-T: p forced to 1 on Fg and 0 on Bg, sum over the whole image / 1000."""
    return _trimap_metric(pred, gt, trimap, "sad_t")


def mse_trimap(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> float:
    """P3M protocol MSE-T: forced p, sum (p~ - alpha)^2 / |U| (fallback H*W - |Fg| - |Bg| when |U| = 0)."""
    return _trimap_metric(pred, gt, trimap, "mse_t")


def mad_trimap(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> float:
    """P3M protocol MAD-T: forced p, sum |p~ - alpha| / |U| (same fallback as MSE-T)."""
    return _trimap_metric(pred, gt, trimap, "mad_t")


def sad_fg(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> float:
    """P3M protocol SAD-FG: sum over trimap == 255 of |p - alpha| (p not forced) / 1000."""
    return _trimap_metric(pred, gt, trimap, "sad_fg")


def sad_bg(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> float:
    """P3M protocol SAD-BG: sum over trimap == 0 of |p - alpha| (p not forced) / 1000."""
    return _trimap_metric(pred, gt, trimap, "sad_bg")


def _privacy_metric(pred: np.ndarray, gt: np.ndarray, face: np.ndarray, key: str) -> float:
    p, a = _as_pair(pred, gt)
    return float(_privacy_values(_sums(p, a, None, _as_face(face, p.shape))[0])[key])


def sad_privacy(pred: np.ndarray, gt: np.ndarray, face: np.ndarray) -> float:
    """P3M protocol (IJCV 2024), face region F: sum_F |p - alpha| / 1000; nan when F is empty."""
    return _privacy_metric(pred, gt, face, "sad_privacy")


def mse_privacy(pred: np.ndarray, gt: np.ndarray, face: np.ndarray) -> float:
    """P3M protocol (IJCV 2024), face region F: sum_F (p - alpha)^2 / |F|; nan when F is empty."""
    return _privacy_metric(pred, gt, face, "mse_privacy")


def mad_privacy(pred: np.ndarray, gt: np.ndarray, face: np.ndarray) -> float:
    """P3M protocol (IJCV 2024), face region F: sum_F |p - alpha| / |F|; nan when F is empty."""
    return _privacy_metric(pred, gt, face, "mad_privacy")


# --------------------------------------------------------------------------- Grad


@njit(cache=True, nogil=True, inline="always")
def _reflect(i, n):  # pragma: no cover - compiled
    """SciPy 'reflect' (half-sample symmetric, 'dcba|abcd') index, repeated for tiny n."""
    if n == 1:
        return 0
    i = i % (2 * n)
    return 2 * n - 1 - i if i >= n else i


@njit(cache=True, nogil=True)
def _grad_tile(x, r0, r1, c0, c1, fw_s, fw_d, xa, xb, buf):  # pragma: no cover - compiled
    """x_a, x_b of SciPy gaussian_filter(x, 1.4, order=[1,0] / [0,1], output=float32) on rows r0:r1, cols c0:c1.

    Same arithmetic as SciPy's correlate1d for (anti)symmetric kernels: double accumulation
    c*w0 + sum_{j=-R..-1} (x[j] +/- x[-j]) * w_j, stored as float32 after each axis. ``buf``: scratch buffers
    (`_grad_buffers`), reused across tiles.
    """
    h, w = x.shape
    rad = (fw_s.shape[0] - 1) // 2
    cs = max(0, c0 - rad)
    ce = min(w, c1 + rad)
    nc = ce - cs
    lines, vs_all, vd_all = buf
    acc_s = lines[0, :nc]
    acc_d = lines[1, :nc]
    vs = vs_all[: r1 - r0, :nc]
    vd = vd_all[: r1 - r0, :nc]
    for rr in range(r1 - r0):
        r = r0 + rr
        w_s0 = fw_s[rad]
        w_d0 = fw_d[rad]
        row_c = x[r, cs:ce]
        for k in range(nc):
            v = row_c[k]
            acc_s[k] = v * w_s0
            acc_d[k] = v * w_d0
        for jj in range(-rad, 0):
            ws = fw_s[rad + jj]
            wd = fw_d[rad + jj]
            row_u = x[_reflect(r + jj, h), cs:ce]
            row_v = x[_reflect(r - jj, h), cs:ce]
            for k in range(nc):
                u = row_u[k]
                v = row_v[k]
                acc_s[k] += (u + v) * ws
                acc_d[k] += (u - v) * wd
        out_s = vs[rr]
        out_d = vd[rr]
        for k in range(nc):
            out_s[k] = np.float32(acc_s[k])
            out_d[k] = np.float32(acc_d[k])
    # horizontal pass on the float32 intermediates, through a reflect-padded float64 line
    ncol = c1 - c0
    line_s = lines[2, : ncol + 2 * rad]
    line_d = lines[3, : ncol + 2 * rad]
    out_a = lines[4, :ncol]
    out_b = lines[5, :ncol]
    for rr in range(r1 - r0):
        row_s = vs[rr]
        row_d = vd[rr]
        for k in range(ncol + 2 * rad):
            cc = c0 - rad + k
            if cc < 0 or cc >= w:
                cc = _reflect(cc, w)
            line_s[k] = row_s[cc - cs]
            line_d[k] = row_d[cc - cs]
        w_s0 = fw_s[rad]
        w_d0 = fw_d[rad]
        centre_d = line_d[rad : rad + ncol]
        centre_s = line_s[rad : rad + ncol]
        for k in range(ncol):
            out_a[k] = centre_d[k] * w_s0  # x_a: derivative along rows, then smoothing along columns
            out_b[k] = centre_s[k] * w_d0  # x_b: smoothing along rows, then derivative along columns
        for jj in range(-rad, 0):
            ws = fw_s[rad + jj]
            wd = fw_d[rad + jj]
            d_lo = line_d[rad + jj : rad + jj + ncol]
            d_hi = line_d[rad - jj : rad - jj + ncol]
            s_lo = line_s[rad + jj : rad + jj + ncol]
            s_hi = line_s[rad - jj : rad - jj + ncol]
            for k in range(ncol):
                out_a[k] += (d_lo[k] + d_hi[k]) * ws
                out_b[k] += (s_lo[k] - s_hi[k]) * wd
        row_a = xa[rr]
        row_b = xb[rr]
        for k in range(ncol):
            row_a[k] = np.float32(out_a[k])
            row_b[k] = np.float32(out_b[k])


@njit(cache=True, nogil=True)
def _grad_error_kernel(p, a, tiles, tile, fw_s, fw_d, error):  # pragma: no cover - compiled
    """error = (|grad p| - |grad alpha|)^2 in float32 on the active tiles (left untouched elsewhere)."""
    h, w = p.shape
    rad = (fw_s.shape[0] - 1) // 2
    buf = (np.empty((6, w + 2 * rad)), np.empty((tile, w + 2 * rad), np.float32),
           np.empty((tile, w + 2 * rad), np.float32))
    pa = np.empty((tile, w), np.float32)
    pb = np.empty((tile, w), np.float32)
    aa = np.empty((tile, w), np.float32)
    ab = np.empty((tile, w), np.float32)
    for ti in range(tiles.shape[0]):
        r0 = ti * tile
        r1 = min(h, r0 + tile)
        tj = 0
        while tj < tiles.shape[1]:
            if not tiles[ti, tj]:
                tj += 1
                continue
            tk = tj
            while tk < tiles.shape[1] and tiles[ti, tk]:
                tk += 1
            c0 = tj * tile  # a run of active tiles: columns c0:c1
            c1 = min(w, tk * tile)
            tj = tk
            _grad_tile(p, r0, r1, c0, c1, fw_s, fw_d, pa, pb, buf)
            _grad_tile(a, r0, r1, c0, c1, fw_s, fw_d, aa, ab, buf)
            for rr in range(r1 - r0):
                for k in range(c1 - c0):
                    mag_p = np.sqrt(pa[rr, k] * pa[rr, k] + pb[rr, k] * pb[rr, k])
                    mag_a = np.sqrt(aa[rr, k] * aa[rr, k] + ab[rr, k] * ab[rr, k])
                    e = mag_p - mag_a
                    error[r0 + rr, c0 + k] = e * e


def _grad_error_map(p: np.ndarray, a: np.ndarray, differ: np.ndarray) -> np.ndarray:
    """(|grad p| - |grad alpha|)^2 in float32, from the tile grid ``differ`` (where p != alpha, see `_sums`)."""
    # A window of radius 6 < tile size reaches at most the 8 neighbouring tiles: elsewhere p and alpha have
    # identical 13x13 windows, identical float32 gradients, and an error of exactly 0.
    active = cv2.dilate(differ.view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)
    error = np.zeros(p.shape, dtype=np.float32)
    _grad_error_kernel(p, a, active, _TILE, _W_SMOOTH, _W_DERIV, error)
    return error


def _grad_error_map_full(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The Grad error map of a pair (float32, zeros included), as the reference builds it."""
    p, a = _as_pair(pred, gt)
    return _grad_error_map(p, a, _sums(p, a, None, None)[1])


def _grad(p: np.ndarray, a: np.ndarray, differ: np.ndarray) -> float:
    # Summed as the reference sums it (float32 array, NumPy pairwise order), then / 10 in float32.
    return float(np.sum(_grad_error_map(p, a, differ)) / 10)


def grad(pred: np.ndarray, gt: np.ndarray) -> float:
    """P3M protocol, whole image: sum (|grad p| - |grad alpha|)^2 / 10, Gaussian derivatives sigma 1.4, float32."""
    p, a = _as_pair(pred, gt)
    return _grad(p, a, _sums(p, a, None, None)[1])


# --------------------------------------------------------------------------- Conn


@njit(cache=True, nogil=True, inline="always")
def _find(parent, x):  # pragma: no cover - compiled
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@njit(cache=True, nogil=True)
def _conn_kernel(p, a, t, theta, runs):  # pragma: no cover - compiled
    """Sum over the image of |phi_p - phi_alpha| for the Conn round-down map (reference §10.2).

    Works on the row runs of equal level made by `_scan_kernel` (M_i = {level >= i} are nested): runs are added
    from the highest level down into a union-find (root = first run in raster order, which reproduces the
    tie-break of skimage.measure.label + argmax), tracking the largest component of every level; a flood fill
    from the innermost nested Omega then gives each pixel's round-down level.
    """
    run_row, run_start, run_end, run_level, run_differs, row_first, counts, n_runs, zero_total = runs
    h, w = p.shape
    nt = t.shape[0] - 1  # levels 1..nt
    # first run of the row above / below that may overlap each run (runs of a row are sorted by column)
    up_first = np.empty(n_runs, np.int64)
    down_first = np.empty(n_runs, np.int64)
    for r in range(h):
        lo_up = row_first[r - 1] if r > 0 else 0
        lo_down = row_first[r + 1] if r < h - 1 else 0
        for x in range(row_first[r], row_first[r + 1]):
            if r > 0:
                while lo_up < row_first[r] and run_end[lo_up] <= run_start[x]:
                    lo_up += 1
                up_first[x] = lo_up
            if r < h - 1:
                while lo_down < row_first[r + 2] and run_end[lo_down] <= run_start[x]:
                    lo_down += 1
                down_first[x] = lo_down
    # runs bucketed by level, raster order inside a bucket
    start = np.zeros(nt + 2, np.int64)
    for i in range(1, nt + 2):
        start[i] = start[i - 1] + counts[i - 1]
    order = np.empty(n_runs, np.int32)
    fill = start.copy()
    for k in range(n_runs):
        g = run_level[k]
        order[fill[g]] = k
        fill[g] += 1

    parent = np.full(n_runs, -1, np.int32)
    size = np.zeros(n_runs, np.int64)
    best_root = np.full(nt + 2, -1, np.int64)
    best_size = np.zeros(nt + 2, np.int64)
    chain_ok = np.zeros(nt + 2, np.bool_)
    b_root = -1
    b_size = 0
    for i in range(nt, 0, -1):
        for j in range(start[i], start[i + 1]):
            x = order[j]
            parent[x] = x
            size[x] = run_end[x] - run_start[x]
            if size[x] > b_size or (size[x] == b_size and x < b_root):
                b_root = x
                b_size = size[x]
            r = run_row[x]
            rx = x  # current root of x's set
            for side in range(3):
                if side == 0:  # left and right neighbours in the same row
                    lo = x - 1 if x > row_first[r] else x
                    hi = x + 2 if x + 1 < row_first[r + 1] else x + 1
                elif side == 1:
                    if r == 0:
                        continue
                    lo = up_first[x]
                    hi = row_first[r]
                else:
                    if r == h - 1:
                        continue
                    lo = down_first[x]
                    hi = row_first[r + 2]
                for y in range(lo, hi):
                    if side > 0 and run_start[y] >= run_end[x]:
                        break
                    if y == x or parent[y] < 0:
                        continue
                    ry = _find(parent, y)
                    if rx == ry:
                        continue
                    if ry < rx:
                        rx, ry = ry, rx
                    parent[ry] = rx
                    size[rx] += size[ry]
                    s = size[rx]
                    if s > b_size or (s == b_size and rx < b_root):
                        b_root = rx
                        b_size = s
        if b_size > 0:
            best_root[i] = b_root
            best_size[i] = b_size
            if i < nt and best_size[i + 1] > 0:
                # Omega_{i+1} lies in one component of M_i: nested in Omega_i or disjoint from it
                chain_ok[i + 1] = _find(parent, best_root[i + 1]) == b_root
    n_levels = 0  # L: number of non-empty levels (empty ones are skipped, and they are the top ones)
    for i in range(1, nt + 1):
        if best_size[i] > 0:
            n_levels = i
    chain = 0  # c: Omega_1 > Omega_2 > ... > Omega_c nested
    if n_levels > 0:
        chain = 1
        while chain < n_levels and chain_ok[chain + 1]:
            chain += 1

    # depth(run) = max{i <= c : run in Omega_i}, flood fill from Omega_c down to Omega_1
    depth = np.zeros(n_runs, np.uint8)
    state = np.zeros(n_runs, np.uint8)  # 0 unseen, 1 in Omega, 2 deferred to its lower level
    queue = np.empty(n_runs, np.int32)
    deferred_next = np.empty(n_runs, np.int32)
    deferred_head = np.full(nt + 2, -1, np.int64)
    if chain > 0:
        seed = best_root[chain]
        state[seed] = 1
        queue[0] = seed
        q_end = 1
        for i in range(chain, 0, -1):
            q_begin = 0
            if i < chain:
                q_end = 0
                y = deferred_head[i]
                while y >= 0:
                    state[y] = 1
                    queue[q_end] = y
                    q_end += 1
                    y = deferred_next[y]
            while q_begin < q_end:
                x = queue[q_begin]
                q_begin += 1
                depth[x] = i
                r = run_row[x]
                for side in range(3):
                    if side == 0:
                        lo = x - 1 if x > row_first[r] else x
                        hi = x + 2 if x + 1 < row_first[r + 1] else x + 1
                    elif side == 1:
                        if r == 0:
                            continue
                        lo = up_first[x]
                        hi = row_first[r]
                    else:
                        if r == h - 1:
                            continue
                        lo = down_first[x]
                        hi = row_first[r + 2]
                    for y in range(lo, hi):
                        if side > 0 and run_start[y] >= run_end[x]:
                            break
                        if y == x or state[y] != 0:
                            continue
                        g = run_level[y]
                        if g >= i:
                            state[y] = 1
                            queue[q_end] = y
                            q_end += 1
                        elif g >= 1:
                            state[y] = 2
                            deferred_next[y] = deferred_head[g]
                            deferred_head[g] = y

    total = 0.0
    if n_levels > 0:
        total = zero_total  # level-0 pixels, summed by `_scan_kernel`
    for k in range(n_runs):
        if not run_differs[k]:  # p == alpha on the whole run: identical phi, contributes exactly 0
            continue
        if n_levels > 0 and run_level[k] == 0:
            continue
        dk = depth[k]
        lk = 1.0 if dk >= n_levels else t[dk]
        r = run_row[k]
        row_p = p[r, run_start[k] : run_end[k]]
        row_a = a[r, run_start[k] : run_end[k]]
        for c in range(row_p.shape[0]):  # branch-free; equal p and alpha give exactly 0
            d_p = row_p[c] - lk
            d_a = row_a[c] - lk
            phi_p = 1.0 - (d_p if d_p >= theta else 0.0)
            phi_a = 1.0 - (d_a if d_a >= theta else 0.0)
            total += abs(phi_p - phi_a)
    return total


def _conn(p: np.ndarray, a: np.ndarray, runs: tuple) -> float:
    """Conn from the row runs of `_scan`."""
    return float(_conn_kernel(p, a, CONN_THRESHOLDS, CONN_THETA, runs) / 1000)


def conn(pred: np.ndarray, gt: np.ndarray) -> float:
    """P3M protocol, whole image: connectivity error, thresholds 0..1 step 0.1, 4-connectivity, theta 0.15, / 1000."""
    p, a = _as_pair(pred, gt)
    return _conn(p, a, _scan(p, a, None, None)[2])


# --------------------------------------------------------------------------- all at once


def p3m_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    trimap: np.ndarray | None = None,
    face: np.ndarray | None = None,
    *,
    fast: bool = False,
) -> dict[str, float]:
    """Every P3M-protocol metric for one pair: sad, mse, mad, grad, conn; with a trimap also sad_t, mse_t, mad_t,
    sad_fg, sad_bg; with a face mask also sad_privacy, mse_privacy, mad_privacy. ``fast`` skips Grad and Conn
    (the official ``--fast_test``)."""
    p, a = _as_pair(pred, gt)
    tri = None if trimap is None else _as_trimap(trimap, p.shape)
    f = None if face is None else _as_face(face, p.shape)
    if fast:
        s = _sums(p, a, tri, f)[0]
    else:
        s, differ, runs = _scan(p, a, tri, f)
    out = {"sad": float(s[0] / 1000), "mse": float(s[1] / p.size), "mad": float(s[0] / p.size)}
    if not fast:
        out["grad"] = _grad(p, a, differ)
        out["conn"] = _conn(p, a, runs)
    if tri is not None:
        out.update({k: float(v) for k, v in _trimap_values(s, p.size).items()})
    if f is not None:
        out.update({k: float(v) for k, v in _privacy_values(s).items()})
    return out
