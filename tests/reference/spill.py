"""The local mean colour by its definition: a normalised convolution (Knutsson & Westin, "Normalized and
Differential Convolution", CVPR 1993) summed pixel by pixel over the Gaussian's reach, as
`p3m.infer.spill.local_mean_colour` defines it (its kernel from `p3m.infer.spill.gaussian_kernel`)."""

from __future__ import annotations

import numpy as np

from p3m.infer.spill import gaussian_kernel


def literal_local_mean(colours: np.ndarray, weight: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the sums of the definition over every pixel of the image within the kernel's reach."""
    k = gaussian_kernel(sigma).astype(np.float64)
    r = len(k) // 2
    h, w, c = colours.shape
    mean, density = np.zeros((h, w, c)), np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            num, den = np.zeros(c), 0.0
            for qy in range(max(0, y - r), min(h, y + r + 1)):
                for qx in range(max(0, x - r), min(w, x + r + 1)):
                    g = k[qy - y + r] * k[qx - x + r] * weight[qy, qx]
                    num += g * colours[qy, qx]
                    den += g
            density[y, x] = den
            mean[y, x] = num / den if den > 1e-6 else 0.0
    return mean, density
