"""The multi-level foreground estimator of Germer et al. (2020, "Fast Multi-Level Foreground Estimation"), as
pymatting's `estimate_foreground_ml` loop body computes it, written pixel by pixel with Jacobi updates (every pixel
reads the previous iterate), the variant `p3m.infer.foreground.multilevel_foreground` vectorises.
"""

from __future__ import annotations

import numpy as np


def literal_multilevel(image, alpha, eps=1e-5, n_small=20, n_big=4, small=32, gw=1.0):
    """Germer et al.'s multi-level estimator written pixel by pixel (pymatting's loop body), with
    Jacobi updates (every pixel reads the previous iterate), as p3m's vectorised version claims."""
    h0, w0 = alpha.shape
    fm = image[alpha > 0.9].sum(0) / ((alpha > 0.9).sum() + 1e-5)
    bm = image[alpha < 0.1].sum(0) / ((alpha < 0.1).sum() + 1e-5)
    F = np.zeros((1, 1, 3), np.float64) + fm
    B = np.zeros((1, 1, 3), np.float64) + bm
    levels = int(np.ceil(np.log2(max(w0, h0))))
    for lev in range(levels + 1):
        w, h = round(w0 ** (lev / levels)), round(h0 ** (lev / levels))
        img, al, F, B = (_nearest(a, h, w) for a in (image, alpha, F, B))
        for _ in range(n_small if (w <= small and h <= small) else n_big):
            F2, B2 = F.copy(), B.copy()
            for y in range(h):
                for x in range(w):
                    a0 = al[y, x]
                    a1 = 1 - a0
                    a00, a01, a11 = a0 * a0, a0 * a1, a1 * a1
                    b0, b1 = a0 * img[y, x], a1 * img[y, x]
                    for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                        x2, y2 = max(0, min(w - 1, x + dx)), max(0, min(h - 1, y + dy))
                        da = eps + gw * abs(a0 - al[y2, x2])
                        a00 += da
                        a11 += da
                        b0 = b0 + da * F[y2, x2]
                        b1 = b1 + da * B[y2, x2]
                    det = a00 * a11 - a01 * a01
                    F2[y, x] = np.clip((a11 * b0 - a01 * b1) / det, 0, 1)
                    B2[y, x] = np.clip((a00 * b1 - a01 * b0) / det, 0, 1)
            F, B = F2, B2
    return F, B


def _nearest(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour resize to h x w, pixel by pixel, as the estimator moves between levels."""
    return np.array(
        [
            [a[min(a.shape[0] - 1, y * a.shape[0] // h), min(a.shape[1] - 1, x * a.shape[1] // w)] for x in range(w)]
            for y in range(h)
        ]
    )
