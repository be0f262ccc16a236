"""Literal reference implementation of the P3M-protocol metrics (reference §10.2), for tests and benchmarks only.

Every function transcribes the reference text as plainly as possible, with no attempt at speed: loops over the
thresholds, `skimage.measure.label` + `regionprops` for connected components, `scipy.ndimage.gaussian_filter` for
gradients. The fast implementation in `p3m.metrics.p3m` is tested against it; it is deliberately independent of it
(nothing here imports `p3m`).

Inputs: p (prediction) and alpha (ground truth) float64 arrays in [0, 1]; trimap uint8 with {0, 128, 255};
face mask boolean.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.measure import label, regionprops


def ref_sad(p: np.ndarray, alpha: np.ndarray) -> float:
    return float(np.sum(np.abs(p - alpha)) / 1000)


def ref_mse(p: np.ndarray, alpha: np.ndarray) -> float:
    n = p.shape[0] * p.shape[1]
    return float(np.sum((p - alpha) ** 2) / n)


def ref_mad(p: np.ndarray, alpha: np.ndarray) -> float:
    n = p.shape[0] * p.shape[1]
    return float(np.sum(np.abs(p - alpha)) / n)


def _forced(p: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    forced = np.copy(p)
    forced[trimap == 255] = 1.0
    forced[trimap == 0] = 0.0
    return forced


def _n_unknown(trimap: np.ndarray) -> float:
    n_u = float((trimap == 128).sum())
    if n_u == 0:  # the zero-unknown fallback
        n_u = float(trimap.shape[0] * trimap.shape[1] - (trimap == 255).sum() - (trimap == 0).sum())
    return n_u


def ref_sad_t(p: np.ndarray, alpha: np.ndarray, trimap: np.ndarray) -> float:
    return float(np.sum(np.abs(_forced(p, trimap) - alpha)) / 1000)


def ref_mse_t(p: np.ndarray, alpha: np.ndarray, trimap: np.ndarray) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(np.sum((_forced(p, trimap) - alpha) ** 2)) / np.float64(_n_unknown(trimap)))


def ref_mad_t(p: np.ndarray, alpha: np.ndarray, trimap: np.ndarray) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(np.sum(np.abs(_forced(p, trimap) - alpha))) / np.float64(_n_unknown(trimap)))


def ref_sad_fg(p: np.ndarray, alpha: np.ndarray, trimap: np.ndarray) -> float:
    weight_fg = (trimap == 255).astype(np.float64)
    return float(np.sum(np.abs(p * weight_fg - alpha * weight_fg)) / 1000)


def ref_sad_bg(p: np.ndarray, alpha: np.ndarray, trimap: np.ndarray) -> float:
    weight_bg = (trimap == 0).astype(np.float64)
    return float(np.sum(np.abs(p * weight_bg - alpha * weight_bg)) / 1000)


def ref_grad(p: np.ndarray, alpha: np.ndarray) -> float:
    p_a = gaussian_filter(p, sigma=1.4, order=[1, 0], output=np.float32)
    p_b = gaussian_filter(p, sigma=1.4, order=[0, 1], output=np.float32)
    alpha_a = gaussian_filter(alpha, sigma=1.4, order=[1, 0], output=np.float32)
    alpha_b = gaussian_filter(alpha, sigma=1.4, order=[0, 1], output=np.float32)
    p_mag = np.sqrt(p_a**2 + p_b**2)
    alpha_mag = np.sqrt(alpha_a**2 + alpha_b**2)
    return float(np.sum((p_mag - alpha_mag) ** 2) / 10)


def ref_conn(p: np.ndarray, alpha: np.ndarray) -> float:
    t = np.arange(0, 1.1, 0.1)
    l_map = np.full(p.shape, -1.0)
    for i in range(1, len(t)):
        m = (p >= t[i]) & (alpha >= t[i])
        components = regionprops(label(m, connectivity=1))
        if len(components) == 0:
            continue
        largest = components[int(np.argmax([c.area for c in components]))]
        omega = np.zeros(p.shape, dtype=bool)
        omega[largest.coords[:, 0], largest.coords[:, 1]] = True
        l_map[(l_map == -1) & ~omega] = t[i - 1]
    l_map[l_map == -1] = 1.0
    d_p = p - l_map
    d_alpha = alpha - l_map
    phi_p = 1 - d_p * (d_p >= 0.15)
    phi_alpha = 1 - d_alpha * (d_alpha >= 0.15)
    return float(np.sum(np.abs(phi_p - phi_alpha)) / 1000)


def published_conn(p: np.ndarray, alpha: np.ndarray) -> float:
    """Conn as the published evaluation code computes it (reference 10.2), for timing comparisons only.

    Same result as `ref_conn` up to float32 rounding of the threshold map (the published code keeps it in float32),
    plus the per-threshold normalised distance transform that the published code computes and never uses: it is
    what makes the published evaluator slow, so the benchmark times it as the published baseline.
    """
    from scipy.ndimage import distance_transform_edt

    h, w = p.shape
    thresh_steps = np.arange(0, 1.1, 0.1)
    l_map = -1 * np.ones((h, w), dtype=np.float32)
    for i in range(1, thresh_steps.size):
        label_image = label((p >= thresh_steps[i]) & (alpha >= thresh_steps[i]), connectivity=1)
        cc = regionprops(label_image)
        size_vec = np.array([c.area for c in cc])
        if len(size_vec) == 0:
            continue
        coords = cc[int(np.argmax(size_vec))].coords
        omega = np.zeros((h, w), dtype=np.float32)
        omega[coords[:, 0], coords[:, 1]] = 1
        l_map[(l_map == -1) & (omega == 0)] = thresh_steps[i - 1]
        dist_maps = distance_transform_edt(omega == 0)
        dist_maps = dist_maps / dist_maps.max()
    l_map[l_map == -1] = 1
    d_p, d_alpha = p - l_map, alpha - l_map
    phi_p = 1 - d_p * (d_p >= 0.15).astype(np.float32)
    phi_alpha = 1 - d_alpha * (d_alpha >= 0.15).astype(np.float32)
    return float(np.sum(np.abs(phi_p - phi_alpha)) / 1000)


def published_all(
    p: np.ndarray, alpha: np.ndarray, trimap: np.ndarray | None = None, face: np.ndarray | None = None
) -> dict[str, float]:
    """`ref_all` with Conn computed the published code's way (timing baseline of benchmarks/bench_metrics.py)."""
    return {"conn": published_conn(p, alpha), **ref_all_without_conn(p, alpha, trimap, face)}


def ref_privacy(p: np.ndarray, alpha: np.ndarray, face: np.ndarray) -> tuple[float, float, float]:
    """(SAD, MSE, MAD) restricted to the face pixels; nan when the face mask is empty."""
    n_face = int(face.sum())
    if n_face == 0:
        return float("nan"), float("nan"), float("nan")
    diff = p[face] - alpha[face]
    return float(np.sum(np.abs(diff)) / 1000), float(np.sum(diff**2) / n_face), float(np.sum(np.abs(diff)) / n_face)


def ref_all(
    p: np.ndarray, alpha: np.ndarray, trimap: np.ndarray | None = None, face: np.ndarray | None = None
) -> dict[str, float]:
    """Every P3M-protocol metric, keyed like `p3m.metrics` (trimap / face keys only when given)."""
    return {"conn": ref_conn(p, alpha), **ref_all_without_conn(p, alpha, trimap, face)}


def ref_all_without_conn(
    p: np.ndarray, alpha: np.ndarray, trimap: np.ndarray | None = None, face: np.ndarray | None = None
) -> dict[str, float]:
    out = {
        "sad": ref_sad(p, alpha),
        "mse": ref_mse(p, alpha),
        "mad": ref_mad(p, alpha),
        "grad": ref_grad(p, alpha),
    }
    if trimap is not None:
        out.update(
            sad_t=ref_sad_t(p, alpha, trimap),
            mse_t=ref_mse_t(p, alpha, trimap),
            mad_t=ref_mad_t(p, alpha, trimap),
            sad_fg=ref_sad_fg(p, alpha, trimap),
            sad_bg=ref_sad_bg(p, alpha, trimap),
        )
    if face is not None:
        out["sad_privacy"], out["mse_privacy"], out["mad_privacy"] = ref_privacy(p, alpha, face)
    return out
