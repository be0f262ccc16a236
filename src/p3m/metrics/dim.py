"""DIM protocol (`Yaoyi-Li/GCA-Matting` DIM_evaluation_code/): unknown-region metrics of the Deep Image Matting MATLAB
evaluation code.

Transcribes ``compute_sad_loss.m``, ``compute_mse_loss.m``, ``compute_gradient_loss.m`` (with ``gaussgradient.m``),
``compute_connectivity_error.m`` and the scaling of ``evaluate.m``. Only the unknown region U (trimap == 128)
counts. Inputs: ``pred`` and ``gt`` float arrays in [0, 1]; the MATLAB code reads uint8 PNGs, so for parity pass
8-bit maps divided by 255 (what `p3m evaluate` does). ``trimap`` is uint8 {0, 128, 255}.

Conventions kept from MATLAB: ``mat2gray`` min-max normalisation before the gradient; an L2-normalised 9x9
derivative-of-Gaussian kernel (sigma 1.4) applied as a convolution with replicated borders; Conn in single
precision with the thresholds of MATLAB's ``0:0.1:1`` and the largest component chosen among 4-connected
components, ties going to the component found first in MATLAB's column-major scan. Sums are accumulated in float64
(MATLAB accumulates single-precision SAD/MSE/Conn sums in single precision; the difference is in the 7th digit at
most).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy import ndimage

__all__ = [
    "dim_conn",
    "dim_grad",
    "dim_gradient_kernel",
    "dim_metrics",
    "dim_mse",
    "dim_sad",
    "mat2gray",
    "matlab_colon",
]

DIM_SIGMA = 1.4
_FOUR_CONNECTED = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


def _prepare(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    a = np.asarray(gt, dtype=np.float64)
    t = np.asarray(trimap)
    if p.ndim != 2 or p.shape != a.shape or t.shape != p.shape:
        raise ValueError(f"pred, gt and trimap must be 2-D arrays of one shape, got {p.shape}, {a.shape}, {t.shape}")
    return p, a, t == 128


def dim_sad(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> float:
    """DIM protocol, unknown region U: sum_U |P - A| / 255 / 1000 for 8-bit maps (= sum_U |p - alpha| / 1000)."""
    p, a, unknown = _prepare(pred, gt, trimap)
    return float(np.sum(np.abs(p - a)[unknown]) / 1000)


def dim_mse(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> float:
    """DIM protocol, unknown region U: sum_U (p - alpha)^2 / |U|, raw (papers often print x1000); nan if U is empty."""
    p, a, unknown = _prepare(pred, gt, trimap)
    n = int(unknown.sum())
    if n == 0:
        return float("nan")
    return float(np.sum(((p - a) ** 2)[unknown]) / n)


def mat2gray(x: np.ndarray) -> np.ndarray:
    """MATLAB ``mat2gray``: min-max normalisation to [0, 1] of the map on its own (a constant map is kept, clipped)."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    if hi == lo:
        return np.clip(x, 0.0, 1.0)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def dim_gradient_kernel(sigma: float = DIM_SIGMA, epsilon: float = 1e-2) -> np.ndarray:
    """``gaussgradient.m`` x-kernel: h(r, c) = g(r) * g'(c), half-size ceil(sigma*sqrt(-2 ln(sqrt(2 pi) sigma eps))),
    divided by its L2 norm (9x9 for sigma 1.4); the y-kernel is its transpose."""
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * epsilon)))
    u = np.arange(-half, half + 1, dtype=np.float64)
    gauss = np.exp(-(u**2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    dgauss = -u * gauss / sigma**2
    hx = gauss[:, None] * dgauss[None, :]
    return hx / math.sqrt(np.sum(np.abs(hx) * np.abs(hx)))


def _imfilter_conv_replicate(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """MATLAB ``imfilter(x, kernel, 'replicate', 'conv')`` for an odd-sized kernel (float64)."""
    # OpenCV correlates; a convolution is a correlation with the kernel rotated by 180 degrees.
    return cv2.filter2D(x, cv2.CV_64F, np.ascontiguousarray(kernel[::-1, ::-1]), borderType=cv2.BORDER_REPLICATE)


def _gradient_magnitude(x: np.ndarray) -> np.ndarray:
    hx = dim_gradient_kernel()
    gx = _imfilter_conv_replicate(x, hx)
    gy = _imfilter_conv_replicate(x, np.ascontiguousarray(hx.T))
    return np.sqrt(gx**2 + gy**2)


def dim_grad(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> float:
    """DIM protocol, unknown region U: sum_U (|grad mat2gray(p)| - |grad mat2gray(alpha)|)^2 / 1000,
    L2-normalised 9x9 derivative-of-Gaussian kernel (sigma 1.4), replicate borders."""
    p, a, unknown = _prepare(pred, gt, trimap)
    error = (_gradient_magnitude(mat2gray(p)) - _gradient_magnitude(mat2gray(a))) ** 2
    return float(np.sum(error[unknown]) / 1000)


def matlab_colon(start: float, step: float, stop: float) -> np.ndarray:
    """MATLAB's ``start:step:stop``: the first half counted up from start, the second half down from stop."""
    n = math.floor((stop - start) / step + 1e-10)
    k = np.arange(n + 1)
    return np.where(k <= n / 2, start + k * step, stop - (n - k) * step)


def _as_single_8bit(x: np.ndarray) -> np.ndarray:
    """MATLAB ``single(X)/255`` for an 8-bit map given as x = X/255; other maps are just cast to single."""
    scaled = np.rint(x * 255)
    if np.all(np.abs(x * 255 - scaled) < 1e-6):
        return scaled.astype(np.float32) / np.float32(255)
    return x.astype(np.float32)


def _largest_component_column_major(mask: np.ndarray) -> np.ndarray | None:
    """Largest 4-connected component of ``mask`` (bwconncomp + max), ties to the first in column-major order."""
    labels, count = ndimage.label(mask, structure=_FOUR_CONNECTED)
    if count == 0:
        return None
    areas = np.bincount(labels.ravel())[1:]
    candidates = np.flatnonzero(areas == areas.max()) + 1
    if len(candidates) > 1:
        column_major = labels.ravel(order="F")
        firsts = [int(np.argmax(column_major == k)) for k in candidates]
        best = int(candidates[int(np.argmin(firsts))])
    else:
        best = int(candidates[0])
    return labels == best


def dim_conn(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray, step: float = 0.1) -> float:
    """DIM protocol, unknown region U: connectivity error (single precision, thresholds 0:0.1:1, 4-connectivity,
    theta 0.15) summed over U, / 1000."""
    p, a, unknown = _prepare(pred, gt, trimap)
    p32 = _as_single_8bit(p)
    a32 = _as_single_8bit(a)
    thresholds = matlab_colon(0.0, step, 1.0)
    l_map = np.full(p.shape, -1.0)
    for i in range(1, len(thresholds)):
        t32 = np.float32(thresholds[i])  # single vs double comparison happens in single in MATLAB
        omega = _largest_component_column_major((p32 >= t32) & (a32 >= t32))
        # no component at this threshold: skipped, as in the P3M protocol (`JizhiziLi/P3M` core/evaluate.py)
        if omega is None:
            continue
        l_map[(l_map == -1) & ~omega] = thresholds[i - 1]
    l_map[l_map == -1] = 1.0
    l32 = l_map.astype(np.float32)
    d_p = p32 - l32
    d_a = a32 - l32
    theta = np.float32(0.15)
    phi_p = np.float32(1) - d_p * (d_p >= theta).astype(np.float32)
    phi_a = np.float32(1) - d_a * (d_a >= theta).astype(np.float32)
    return float(np.sum(np.abs(phi_p - phi_a)[unknown], dtype=np.float64) / 1000)


def dim_metrics(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray, *, fast: bool = False) -> dict[str, float]:
    """Every DIM-protocol metric: dim_sad, dim_mse, dim_grad, dim_conn (``fast`` skips Grad and Conn)."""
    out = {"dim_sad": dim_sad(pred, gt, trimap), "dim_mse": dim_mse(pred, gt, trimap)}
    if not fast:
        out["dim_grad"] = dim_grad(pred, gt, trimap)
        out["dim_conn"] = dim_conn(pred, gt, trimap)
    return out
