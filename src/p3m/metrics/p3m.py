"""P3M protocol (`JizhiziLi/P3M` core/evaluate.py): whole-image matting metrics of the official P3M / GFM evaluation
code.

Inputs are float arrays in [0, 1] of one shape (H, W): ``pred`` (p) and ``gt`` (alpha); a ``trimap`` is uint8 with
values {0, 128, 255} (0 = background Bg, 128 = unknown U, 255 = foreground Fg); a ``face`` mask is boolean.

Every value equals, to a relative 1e-6 (in practice to about 1e-13; Grad bit for bit), what the literal
transcription of the reference gives (`tests/reference/metrics.py`); the implementation is just faster, on one core:

* One pass over the pair, row by row (`_scan_kernel`): every plain sum (SAD/MSE/MAD and the trimap / face variants)
  and the Conn terms of the level-0 pixels in one branch-free vectorised loop (float64 terms computed as the
  reference computes them, summed in SIMD lanes within a row, then row after row), and the row runs of equal key
  (Conn level; at levels >= 1 also whether p != alpha), each with the index ranges of the runs that touch it in the
  rows above and below.
* Grad reproduces ``scipy.ndimage.gaussian_filter(..., output=float32)`` operation by operation (axis-0 pass
  accumulated in float64 and stored as float32, then the axis-1 pass likewise, same 13-tap kernels, same
  (anti)symmetric summation order, 'reflect' border), so the error map is bit-identical to SciPy's. It is only
  computed on 8x8 tiles near a pixel where p != alpha: elsewhere both 13x13 windows are identical, so are both
  gradients, and the error is exactly 0. Where one map is constant on the 13x13 windows of a whole tile (a GT's
  flat background or foreground) its two derivatives are exactly 0 and are not computed. The float32 map is
  summed with NumPy as in the reference.
* Conn uses that the ten thresholded masks are nested: one union-find over the runs, from the top level down, gives
  the largest 4-connected component of every level (ties go to the component whose first pixel comes first in
  raster order, as with ``skimage.measure.label`` + ``argmax``); the merges it records form a tree in which every
  run's parent comes first in raster order, so one sweep in raster order gives each run's round-down level, and
  sums the Conn terms on the way.
"""

from __future__ import annotations

import cv2
import numpy as np
from numba import njit

__all__ = [
    "CONN_THRESHOLDS",
    "conn",
    "gaussian_kernel1d",
    "grad",
    "mad",
    "mad_privacy",
    "mad_trimap",
    "mse",
    "mse_privacy",
    "mse_trimap",
    "p3m_metrics",
    "sad",
    "sad_bg",
    "sad_fg",
    "sad_privacy",
    "sad_trimap",
]

#: Conn thresholds exactly as the reference builds them: ``np.arange(0, 1.1, 0.1)`` (0.30000000000000004, ...).
CONN_THRESHOLDS = np.arange(0, 1.1, 0.1)
#: Conn: a pixel is "connected" when it exceeds its round-down level by less than this.
CONN_THETA = 0.15
GRAD_SIGMA = 1.4
_GRAD_RADIUS = int(4.0 * GRAD_SIGMA + 0.5)  # SciPy: truncate 4.0 -> radius 6, 13 taps
_TILE_SHIFT = 3  # Grad tiles of 8x8 pixels
_TILE = 1 << _TILE_SHIFT
# Sums may be reordered into SIMD lanes; nothing else is relaxed (no FMA contraction, no nan / sign-of-zero
# assumptions), so every term is computed exactly as the reference computes it.
_LANES = {"reassoc"}

assert len(CONN_THRESHOLDS) == 11 and _GRAD_RADIUS == 6  # the kernels below are written for these


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


# --------------------------------------------------------------------------- one pass: sums and Conn runs

# Sums: [sum|d|, sum d^2, sum_T|d~|, sum_T d~^2, n_U, n_Fg, n_Bg, sum_Fg|d|, sum_Bg|d|, n_F, sum_F|d|, sum_F d^2]
# with d = p - alpha and d~ = (p forced to 1 on Fg, 0 on Bg) - alpha; then the Conn sum over the level-0 pixels.
_N_SUMS = 12


@njit(cache=True, nogil=True, fastmath=_LANES)
def _row_pass(pr, ar, tr, fr, t, theta, key, diff, acc):  # pragma: no cover - compiled
    """One row of the pair, branch-free (vectorised): adds the row's sums to ``acc`` (layout above, then the Conn
    term |phi_p - phi_alpha| of the level-0 pixels) and writes diff[c] = (p - alpha != 0: p != alpha, or a nan or
    inf involved) and the run key key[c] = 2 * level + (diff[c] and level > 0), where
    level = #{i >= 1 : min(p, alpha) >= t_i}, so that the thresholded Conn masks are M_i = {level >= i}."""
    t1, t2, t3, t4, t5, t6, t7, t8, t9, t10 = t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], t[10]
    s_abs = 0.0
    s_sq = 0.0
    t_abs = 0.0
    t_sq = 0.0
    fg_abs = 0.0
    bg_abs = 0.0
    f_abs = 0.0
    f_sq = 0.0
    zero = 0.0
    n_u = 0
    n_fg = 0
    n_bg = 0
    n_f = 0
    for c in range(pr.shape[0]):
        pv = pr[c]
        av = ar[c]
        d = pv - av
        ad = abs(d)
        d2 = d * d
        s_abs += ad
        s_sq += d2
        v = tr[c]
        is_fg = v == 255
        is_bg = v == 0
        dt = 1.0 - av if is_fg else (0.0 - av if is_bg else d)
        t_abs += abs(dt)
        t_sq += dt * dt
        fg_abs += ad if is_fg else 0.0
        bg_abs += ad if is_bg else 0.0
        n_u += v == 128
        n_fg += is_fg
        n_bg += is_bg
        in_face = fr[c]
        f_abs += ad if in_face else 0.0
        f_sq += d2 if in_face else 0.0
        n_f += in_face
        m = min(pv, av)
        level = 0
        level += m >= t1
        level += m >= t2
        level += m >= t3
        level += m >= t4
        level += m >= t5
        level += m >= t6
        level += m >= t7
        level += m >= t8
        level += m >= t9
        level += m >= t10
        differs = d != 0.0
        diff[c] = differs
        key[c] = 2 * level + (differs & (level > 0))
        # outside M_1, hence outside Omega_1, the round-down level is t_0 = 0 (when M_1 is not empty): d = p - 0.0
        phi_p = 1.0 - (pv if pv >= theta else 0.0)
        phi_a = 1.0 - (av if av >= theta else 0.0)
        zero += abs(phi_p - phi_a) if level == 0 else 0.0
    acc[0] += s_abs
    acc[1] += s_sq
    acc[2] += t_abs
    acc[3] += t_sq
    acc[4] += n_u
    acc[5] += n_fg
    acc[6] += n_bg
    acc[7] += fg_abs
    acc[8] += bg_abs
    acc[9] += n_f
    acc[10] += f_abs
    acc[11] += f_sq
    acc[12] += zero


@njit(cache=True, nogil=True)
def _row_runs(key, n, ids, run_start, run_end, change):  # pragma: no cover - compiled
    """Cuts one row into runs of equal key, numbered from ``n``; ids[c] = number of the run of pixel c. Returns
    the number after the row's last run. ``key`` has a sentinel (-1) after the row's last pixel; ``change``:
    scratch of 8 * ceil(w / 8) bytes, zero past w."""
    w = ids.shape[0]
    n_changes = 0
    for c in range(w):  # change[c]: a run ends at pixel c
        ends = key[c] != key[c + 1]
        change[c] = ends
        n_changes += ends
    first = n
    if 8 * n_changes > w:  # many short runs: one branch-free pass (a run's end is rewritten until it changes)
        for c in range(w):
            ids[c] = n
            run_end[n] = c + 1
            n += change[c]
        start = 0
        for x in range(first, n):
            run_start[x] = start
            start = run_end[x]
    else:  # few long runs: skip 8 pixels without a run end at a time
        words = change.view(np.uint64)
        start = 0
        for k in range(words.shape[0]):
            if words[k] == 0:
                continue
            for c in range(8 * k, min(w, 8 * k + 8)):
                if change[c]:
                    run_start[n] = start
                    run_end[n] = c + 1
                    ids[start : c + 1] = n
                    n += 1
                    start = c + 1
    return n


@njit(cache=True, nogil=True)
def _scan_kernel(p, a, tri, face, use_tri, use_face, with_runs, t, theta, tile_shift):  # pragma: no cover
    """Every sum of the pair (`_row_pass`) and, ``with_runs``, the Conn runs and the Grad tile grid.

    Runs: every row is cut into runs of equal key (`_row_pass`): a run has one Conn level and, at levels >= 1,
    p != alpha either on all its pixels ("differs") or on none (level-0 runs count as differing). For run x, the
    runs of the row above that share a column with it are up_lo[x]..up_hi[x] (an empty range when hi < lo),
    likewise down_lo / down_hi below. ``differ``: the grid of the tiles of 2**tile_shift >= 8 pixels where
    p != alpha somewhere. ``tri`` / ``face`` are one dummy row when unused.
    """
    h, w = p.shape
    nt = t.shape[0] - 1
    acc = np.zeros(_N_SUMS + 1)
    key = np.empty(w + 1, np.int64)
    key[w] = -1  # sentinel: a run ends at the last pixel
    cap = h * w + 1 if with_runs else 1
    run_start = np.empty(cap, np.int32)
    run_end = np.empty(cap, np.int32)
    run_level = np.empty(cap, np.uint8)
    run_differs = np.empty(cap, np.bool_)
    up_lo = np.empty(cap, np.int32)
    up_hi = np.empty(cap, np.int32)
    down_lo = np.empty(cap, np.int32)
    down_hi = np.empty(cap, np.int32)
    row_first = np.zeros(h + 1, np.int64)
    counts = np.zeros(nt + 1, np.int64)
    differ = np.zeros(((h + (1 << tile_shift) - 1) >> tile_shift, (w + (1 << tile_shift) - 1) >> tile_shift), np.bool_)
    n_words = (w + 7) // 8
    diff_bytes = np.zeros(8 * n_words, np.uint8)
    diff_words = diff_bytes.view(np.uint64)  # p != alpha, 8 pixels per word
    change = np.zeros(8 * n_words, np.uint8)
    ids = np.empty(w, np.int32)
    ids_above = np.empty(w, np.int32)
    n_runs = 0
    for r in range(h):
        _row_pass(
            p[r],
            a[r],
            tri[r] if use_tri else tri[0],
            face[r] if use_face else face[0],
            t,
            theta,
            key,
            diff_bytes[:w],
            acc,
        )
        if not with_runs:
            continue
        tile_row = differ[r >> tile_shift]
        for k in range(n_words):  # 8 pixels at a time, all in one tile
            if diff_words[k] != 0:
                tile_row[(8 * k) >> tile_shift] = True
        row_first[r] = n_runs
        n_next = _row_runs(key, n_runs, ids, run_start, run_end, change)
        for x in range(n_runs, n_next):
            k = key[run_start[x]]
            run_level[x] = k >> 1
            run_differs[x] = ((k & 1) == 1) | (k == 0)  # branch-free
            counts[k >> 1] += 1
            if r > 0:
                up_lo[x] = ids_above[run_start[x]]
                up_hi[x] = ids_above[run_end[x] - 1]
            else:
                up_lo[x] = 0
                up_hi[x] = -1
            down_lo[x] = 0  # until the next row is cut
            down_hi[x] = -1
        if r > 0:
            for y in range(row_first[r - 1], n_runs):
                down_lo[y] = ids[run_start[y]]
                down_hi[y] = ids[run_end[y] - 1]
        n_runs = n_next
        ids, ids_above = ids_above, ids
    row_first[h] = n_runs
    sums = acc[:_N_SUMS].copy()
    if not use_tri:
        sums[2:9] = 0.0
    if not use_face:
        sums[9:12] = 0.0
    runs = (
        run_start,
        run_end,
        run_level,
        run_differs,
        up_lo,
        up_hi,
        down_lo,
        down_hi,
        row_first,
        counts,
        n_runs,
        acc[_N_SUMS],
    )
    return sums, differ, runs


def _scan(
    p: np.ndarray, a: np.ndarray, trimap: np.ndarray | None, face: np.ndarray | None, with_runs: bool = True
) -> tuple:
    """(sums, tile grid where p != alpha, Conn runs) of one pair, see `_scan_kernel` (the last two only
    ``with_runs``)."""
    w = p.shape[1]
    sums, differ, runs = _scan_kernel(
        p,
        a,
        np.full((1, w), 128, np.uint8) if trimap is None else np.ascontiguousarray(trimap, dtype=np.uint8),
        np.zeros((1, w), np.bool_) if face is None else face,
        trimap is not None,
        face is not None,
        with_runs,
        CONN_THRESHOLDS,
        CONN_THETA,
        _TILE_SHIFT,
    )
    return (sums, differ, runs) if with_runs else (sums, None, None)


def _sums(p: np.ndarray, a: np.ndarray, trimap: np.ndarray | None, face: np.ndarray | None) -> np.ndarray:
    """The plain sums of one pair (layout of `_row_pass`)."""
    return _scan(p, a, trimap, face, with_runs=False)[0]


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
    return float(_sums(p, a, None, None)[0] / 1000)


def mse(pred: np.ndarray, gt: np.ndarray) -> float:
    """P3M protocol, whole image: sum (p - alpha)^2 / (H*W), raw (no x1000)."""
    p, a = _as_pair(pred, gt)
    return float(_sums(p, a, None, None)[1] / p.size)


def mad(pred: np.ndarray, gt: np.ndarray) -> float:
    """P3M protocol, whole image: sum |p - alpha| / (H*W)."""
    p, a = _as_pair(pred, gt)
    return float(_sums(p, a, None, None)[0] / p.size)


def _trimap_metric(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray, key: str) -> float:
    p, a = _as_pair(pred, gt)
    return float(_trimap_values(_sums(p, a, _as_trimap(trimap, p.shape), None), p.size)[key])


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
    return float(_privacy_values(_sums(p, a, None, _as_face(face, p.shape)))[key])


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
def _vertical_pass(x, r, cs, ce, fw_s, fw_d, out_s, out_d):  # pragma: no cover - compiled
    """Axis-0 pass of SciPy's correlate1d at row r, columns cs:ce, into out_s / out_d[:ce - cs]: smoothing (out_s)
    and derivative (out_d), c * w_0 + sum_{j=-6..-1} (x[r+j] +/- x[r-j]) * w_j accumulated in float64 with the taps
    in SciPy's order, rows reflected at the border, rounded to float32 (kept as float64 values). Vectorised across
    columns; the 13 rows stay in registers."""
    h = x.shape[0]
    u6 = x[_reflect(r - 6, h), cs:ce]
    v6 = x[_reflect(r + 6, h), cs:ce]
    u5 = x[_reflect(r - 5, h), cs:ce]
    v5 = x[_reflect(r + 5, h), cs:ce]
    u4 = x[_reflect(r - 4, h), cs:ce]
    v4 = x[_reflect(r + 4, h), cs:ce]
    u3 = x[_reflect(r - 3, h), cs:ce]
    v3 = x[_reflect(r + 3, h), cs:ce]
    u2 = x[_reflect(r - 2, h), cs:ce]
    v2 = x[_reflect(r + 2, h), cs:ce]
    u1 = x[_reflect(r - 1, h), cs:ce]
    v1 = x[_reflect(r + 1, h), cs:ce]
    centre = x[r, cs:ce]
    s6, s5, s4, s3, s2, s1, s0 = fw_s[0], fw_s[1], fw_s[2], fw_s[3], fw_s[4], fw_s[5], fw_s[6]
    d6, d5, d4, d3, d2, d1, d0 = fw_d[0], fw_d[1], fw_d[2], fw_d[3], fw_d[4], fw_d[5], fw_d[6]
    for k in range(ce - cs):
        c = centre[k]
        s = c * s0
        d = c * d0
        s += (u6[k] + v6[k]) * s6
        d += (u6[k] - v6[k]) * d6
        s += (u5[k] + v5[k]) * s5
        d += (u5[k] - v5[k]) * d5
        s += (u4[k] + v4[k]) * s4
        d += (u4[k] - v4[k]) * d4
        s += (u3[k] + v3[k]) * s3
        d += (u3[k] - v3[k]) * d3
        s += (u2[k] + v2[k]) * s2
        d += (u2[k] - v2[k]) * d2
        s += (u1[k] + v1[k]) * s1
        d += (u1[k] - v1[k]) * d1
        out_s[k] = np.float64(np.float32(s))
        out_d[k] = np.float64(np.float32(d))


@njit(cache=True, nogil=True)
def _horizontal_pass(line_s, line_d, n, fw_s, fw_d, out_a, out_b):  # pragma: no cover - compiled
    """Axis-1 pass of SciPy's correlate1d on the lines of `_vertical_pass`, padded by 6 on each side (pixel k at
    k + 6), accumulated likewise: out_a = float32 smoothing of line_d (x_a: derivative along rows, then smoothing
    along columns), out_b = float32 derivative of line_s (x_b)."""
    s6, s5, s4, s3, s2, s1, s0 = fw_s[0], fw_s[1], fw_s[2], fw_s[3], fw_s[4], fw_s[5], fw_s[6]
    d6, d5, d4, d3, d2, d1, d0 = fw_d[0], fw_d[1], fw_d[2], fw_d[3], fw_d[4], fw_d[5], fw_d[6]
    for k in range(n):
        xa = line_d[k + 6] * s0
        xb = line_s[k + 6] * d0
        xa += (line_d[k] + line_d[k + 12]) * s6
        xb += (line_s[k] - line_s[k + 12]) * d6
        xa += (line_d[k + 1] + line_d[k + 11]) * s5
        xb += (line_s[k + 1] - line_s[k + 11]) * d5
        xa += (line_d[k + 2] + line_d[k + 10]) * s4
        xb += (line_s[k + 2] - line_s[k + 10]) * d4
        xa += (line_d[k + 3] + line_d[k + 9]) * s3
        xb += (line_s[k + 3] - line_s[k + 9]) * d3
        xa += (line_d[k + 4] + line_d[k + 8]) * s2
        xb += (line_s[k + 4] - line_s[k + 8]) * d2
        xa += (line_d[k + 5] + line_d[k + 7]) * s1
        xb += (line_s[k + 5] - line_s[k + 7]) * d1
        out_a[k] = np.float32(xa)
        out_b[k] = np.float32(xb)


@njit(cache=True, nogil=True)
def _gradient_rows(x, r0, r1, c0, c1, fw_s, fw_d, line_s, line_d, xa, xb, off_out):  # pragma: no cover - compiled
    """x_a, x_b of SciPy gaussian_filter(x, 1.4, order=[1,0] / [0,1], output=float32) on rows r0:r1, columns
    c0:c1, into xa / xb[:r1 - r0, off_out:off_out + c1 - c0]. ``line_s`` / ``line_d``: scratch lines of the axis-0
    pass (length >= c1 - c0 + 12), reflect-padded where the 6-column halo leaves the image."""
    w = x.shape[1]
    cs = max(0, c0 - 6)
    ce = min(w, c1 + 6)
    off = cs - (c0 - 6)  # line index of image column cs
    n = c1 - c0
    for rr in range(r1 - r0):
        _vertical_pass(x, r0 + rr, cs, ce, fw_s, fw_d, line_s[off:], line_d[off:])
        for k in range(off):  # left halo outside the image
            src = _reflect(c0 - 6 + k, w) - cs + off
            line_s[k] = line_s[src]
            line_d[k] = line_d[src]
        for k in range(ce - cs + off, n + 12):  # right halo outside the image
            src = _reflect(c0 - 6 + k, w) - cs + off
            line_s[k] = line_s[src]
            line_d[k] = line_d[src]
        _horizontal_pass(line_s, line_d, n, fw_s, fw_d, xa[rr, off_out:], xb[rr, off_out:])


@njit(cache=True, nogil=True)
def _flat_tiles(x, r0, r1, c0, c1, tile, bad_col, bad_count, flat):  # pragma: no cover - compiled
    """flat[j] for the tiles j of columns c0:c1 in the band of rows r0:r1: whether x holds one value on the 13x13
    windows of all the tile's pixels (clipped to the image, which holds the reflected ones), so that both float32
    Gaussian derivatives of x are exactly 0 there (differences of equal values are 0; the smoothing pass then gives
    equal values). A difference, not an equality test, so that nan and inf never count as flat. ``bad_col`` /
    ``bad_count``: scratch, length >= image width + 1."""
    h, w = x.shape
    rs = max(0, r0 - 6)
    re = min(h, r1 + 6)
    cs = max(0, c0 - 6)
    ce = min(w, c1 + 6)
    n = ce - cs
    top = x[rs, cs:ce]
    col = bad_col[:n]  # 1 where the column is not constant over rows rs:re
    col[:] = 0
    for r in range(rs + 1, re):
        row = x[r, cs:ce]
        all_bad = np.uint8(1)
        for k in range(n):
            col[k] |= np.uint8(row[k] - top[k] != 0.0)
            all_bad &= col[k]
        if all_bad:  # no tile can be flat (a noisy image): stop early
            flat[: (c1 - c0 + tile - 1) // tile] = False
            return
    # bad_count[k] = #{k' < k : column k' not constant, or top row changing between k' and k' + 1}
    bad_count[0] = 0
    for k in range(n - 1):
        bad_count[k + 1] = bad_count[k] + (col[k] | np.uint8(top[k] - top[k + 1] != 0.0))
    for j in range((c1 - c0 + tile - 1) // tile):
        ws = max(0, c0 + j * tile - 6) - cs  # the tile's window: columns ws:we
        we = min(w, min(c1, c0 + (j + 1) * tile) + 6) - cs
        flat[j] = bad_count[we - 1] == bad_count[ws] and col[we - 1] == 0


@njit(cache=True, nogil=True)
def _band_gradient(x, r0, r1, c0, c1, tile, fw_s, fw_d, scratch, flat, xa, xb):  # pragma: no cover - compiled
    """x_a, x_b of x on rows r0:r1, columns c0:c1 (a run of whole tiles, the last one possibly cut by the image
    border) into xa / xb[:r1 - r0, :c1 - c0]: computed on the tiles that are not flat (`_flat_tiles`), exactly 0 on
    the others. Returns whether any tile needed computing."""
    line_s, line_d, bad_col, bad_count = scratch
    _flat_tiles(x, r0, r1, c0, c1, tile, bad_col, bad_count, flat)
    n_tiles = (c1 - c0 + tile - 1) // tile
    computed = False
    j = 0
    while j < n_tiles:
        k = j + 1
        while k < n_tiles and flat[k] == flat[j]:
            k += 1
        s0 = c0 + j * tile  # a run of tiles, all flat or none: columns s0:s1
        s1 = min(c1, c0 + k * tile)
        if flat[j]:
            for rr in range(r1 - r0):
                xa[rr, s0 - c0 : s1 - c0] = 0.0
                xb[rr, s0 - c0 : s1 - c0] = 0.0
        else:
            _gradient_rows(x, r0, r1, s0, s1, fw_s, fw_d, line_s, line_d, xa, xb, s0 - c0)
            computed = True
        j = k
    return computed


@njit(cache=True, nogil=True)
def _grad_error_kernel(p, a, tiles, tile, fw_s, fw_d, error):  # pragma: no cover - compiled
    """error = (|grad p| - |grad alpha|)^2 in float32 on the active tiles (left untouched elsewhere)."""
    h, w = p.shape
    scratch = (np.empty(w + 12), np.empty(w + 12), np.empty(w + 1, np.uint8), np.empty(w + 1, np.int64))
    flat = np.empty(tiles.shape[1], np.bool_)
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
            some_p = _band_gradient(p, r0, r1, c0, c1, tile, fw_s, fw_d, scratch, flat, pa, pb)
            some_a = _band_gradient(a, r0, r1, c0, c1, tile, fw_s, fw_d, scratch, flat, aa, ab)
            if not (some_p or some_a):  # both gradients exactly 0: so is the error
                continue
            for rr in range(r1 - r0):
                e_row = error[r0 + rr, c0:c1]
                xa_p, xb_p, xa_a, xb_a = pa[rr], pb[rr], aa[rr], ab[rr]
                for k in range(c1 - c0):
                    e = np.sqrt(xa_p[k] * xa_p[k] + xb_p[k] * xb_p[k]) - np.sqrt(xa_a[k] * xa_a[k] + xb_a[k] * xb_a[k])
                    e_row[k] = e * e


def _grad_error_map(p: np.ndarray, a: np.ndarray, differ: np.ndarray) -> np.ndarray:
    """(|grad p| - |grad alpha|)^2 in float32, from the tile grid ``differ`` (where p != alpha, see `_scan`)."""
    # A window of radius 6 < tile size reaches at most the 8 neighbouring tiles: elsewhere p and alpha have
    # identical 13x13 windows, identical float32 gradients, and an error of exactly 0.
    active = cv2.dilate(differ.view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)
    error = np.zeros(p.shape, dtype=np.float32)
    _grad_error_kernel(p, a, active, _TILE, _W_SMOOTH, _W_DERIV, error)
    return error


def _grad_error_map_full(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The Grad error map of a pair (float32, zeros included), as the reference builds it."""
    p, a = _as_pair(pred, gt)
    return _grad_error_map(p, a, _scan(p, a, None, None)[1])


def _grad(p: np.ndarray, a: np.ndarray, differ: np.ndarray) -> float:
    # Summed as the reference sums it (float32 array, NumPy pairwise order), then / 10 in float32.
    return float(np.sum(_grad_error_map(p, a, differ)) / 10)


def grad(pred: np.ndarray, gt: np.ndarray) -> float:
    """P3M protocol, whole image: sum (|grad p| - |grad alpha|)^2 / 10, Gaussian derivatives sigma 1.4, float32."""
    p, a = _as_pair(pred, gt)
    return _grad(p, a, _scan(p, a, None, None)[1])


# --------------------------------------------------------------------------- Conn


@njit(cache=True, nogil=True, inline="always")
def _find(parent, x):  # pragma: no cover - compiled
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@njit(cache=True, nogil=True)
def _runs_by_level(run_level, counts, n_runs):  # pragma: no cover - compiled
    """Run numbers bucketed by level, raster order inside a bucket: level i is order[start[i]:start[i + 1]]."""
    nt = counts.shape[0] - 1
    start = np.zeros(nt + 2, np.int64)
    for i in range(1, nt + 2):
        start[i] = start[i - 1] + counts[i - 1]
    order = np.empty(n_runs, np.int32)
    fill = start.copy()
    for x in range(n_runs):
        g = run_level[x]
        order[fill[g]] = x
        fill[g] += 1
    return order, start


@njit(cache=True, nogil=True)
def _component_tree(runs, w):  # pragma: no cover - compiled
    """The largest 4-connected component Omega_i of every mask M_i = {level >= i}, by one union-find over the runs
    added from the top level down (root = first run in raster order, which reproduces the tie-break of
    skimage.measure.label + argmax).

    Returns (best_root, n_levels, chain, merged_into, merge_level): Omega_i is the set of root best_root[i] at the
    end of level i; L = n_levels non-empty levels (empty ones are skipped, and they are the top ones); Omega_1 >
    Omega_2 > ... > Omega_c nested for c = chain. Every merge of the set of root y into the set of root x < y at level
    i is recorded as merged_into[y] = x, merge_level[y] = i: a tree in which a run's parent comes first.
    """
    run_start, run_end, run_level, _, up_lo, up_hi, down_lo, down_hi, _, counts, n_runs, _ = runs
    nt = counts.shape[0] - 1  # levels 1..nt
    order, start = _runs_by_level(run_level, counts, n_runs)
    parent = np.full(n_runs, -1, np.int32)  # -1: not added yet
    size = np.zeros(n_runs, np.int64)
    merged_into = np.full(n_runs, -1, np.int32)
    merge_level = np.zeros(n_runs, np.uint8)
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
            rx = x  # current root of x's set
            for side in range(3):
                if side == 0:  # the runs left and right of x in its row
                    lo = x - 1 if run_start[x] > 0 else x + 1
                    hi = x + 1 if run_end[x] < w else x
                    step = 2
                elif side == 1:
                    lo, hi, step = up_lo[x], up_hi[x], 1
                else:
                    lo, hi, step = down_lo[x], down_hi[x], 1
                for y in range(lo, hi + 1, step):
                    if parent[y] < 0:
                        continue
                    ry = _find(parent, y)
                    if rx == ry:
                        continue
                    if ry < rx:
                        rx, ry = ry, rx
                    parent[ry] = rx
                    merged_into[ry] = rx
                    merge_level[ry] = i
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
    n_levels = 0
    for i in range(1, nt + 1):
        if best_size[i] > 0:
            n_levels = i
    chain = 0
    if n_levels > 0:
        chain = 1
        while chain < n_levels and chain_ok[chain + 1]:
            chain += 1
    return best_root, n_levels, chain, merged_into, merge_level


@njit(cache=True, nogil=True)
def _conn_kernel(p, a, t, theta, runs):  # pragma: no cover - compiled
    """Sum over the image of |phi_p - phi_alpha| for the Conn round-down map (`JizhiziLi/P3M` core/evaluate.py).

    A pixel's round-down level is t_{i*-1} for the first non-empty level i* whose Omega does not hold it (1 when
    all do); with Omega_1 > ... > Omega_c nested and Omega_{c+1} disjoint from Omega_c, i* - 1 = depth, the largest
    i <= c with the pixel in Omega_i (0 when none). In the tree of `_component_tree`, run x is in Omega_i for the
    levels i <= min(depth(parent), merge level) at which its set belongs to its parent's, and for the levels at
    which x is itself best_root; parents come first in raster order, so one sweep in raster order gives every
    depth. Runs where p == alpha contribute exactly 0; level-0 pixels were summed by `_scan_kernel`.
    """
    run_start, run_end, run_level, run_differs, _, _, _, _, row_first, _, n_runs, zero_total = runs
    h, w = p.shape
    best_root, n_levels, chain, merged_into, merge_level = _component_tree(runs, w)
    own_depth = np.zeros(n_runs, np.uint8)  # the largest i <= c with best_root[i] == x
    for i in range(1, chain + 1):
        own_depth[best_root[i]] = i
    depth = np.zeros(n_runs, np.uint8)
    total = zero_total if n_levels > 0 else 0.0
    for r in range(h):
        row_p = p[r]
        row_a = a[r]
        for x in range(row_first[r], row_first[r + 1]):
            dx = own_depth[x]
            if dx == 0 and merged_into[x] >= 0:
                dx = min(depth[merged_into[x]], merge_level[x])
            depth[x] = dx
            if not run_differs[x] or (n_levels > 0 and run_level[x] == 0):
                continue
            lk = 1.0 if dx >= n_levels else t[dx]
            for c in range(run_start[x], run_end[x]):
                d_p = row_p[c] - lk
                d_a = row_a[c] - lk
                phi_p = 1.0 - (d_p if d_p >= theta else 0.0)
                phi_a = 1.0 - (d_a if d_a >= theta else 0.0)
                total += abs(phi_p - phi_a)
    return total


def _conn(p: np.ndarray, a: np.ndarray, runs: tuple) -> float:
    """Conn from the runs of `_scan`."""
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
    s, differ, runs = _scan(p, a, tri, f, with_runs=not fast)
    out = {"sad": float(s[0] / 1000), "mse": float(s[1] / p.size), "mad": float(s[0] / p.size)}
    if not fast:
        out["grad"] = _grad(p, a, differ)
        out["conn"] = _conn(p, a, runs)
    if tri is not None:
        out.update({k: float(v) for k, v in _trimap_values(s, p.size).items()})
    if f is not None:
        out.update({k: float(v) for k, v in _privacy_values(s).items()})
    return out
