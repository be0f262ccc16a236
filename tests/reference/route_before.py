"""Steps of p3m's built-in portrait route before their speed-ups (`src/p3m/infer/portrait.py` and
`src/p3m/infer/spill.py` at commit f1ae4f2; the distance transforms and the component test at 42e8f91), verbatim
but renamed and made free functions (the settings they read passed as arguments). The faster code that replaced
them is tested against them on random inputs (`tests/test_route_savings.py`) and timed against them by
`benchmarks/bench_route_savings.py`.
"""

from __future__ import annotations

import cv2
import numpy as np


def previous_mask(prob: np.ndarray, threshold: float, seed_threshold: float, min_component: float) -> np.ndarray:
    """`PortraitMatting.mask`: HxW bool: prior >= threshold, in components with enough confident pixels."""
    binary = (prob >= threshold).astype(np.uint8)
    n, labels = cv2.connectedComponents(binary, connectivity=8)
    seeds = np.bincount(labels[prob >= max(seed_threshold, threshold)], minlength=n).astype(np.float64)
    seeds[0] = 0  # background label
    keep = (seeds > 0) & (seeds >= min_component * seeds.max())
    return keep[labels]


def previous_background_in_gaps(
    image: np.ndarray,
    prob: np.ndarray,
    mask: np.ndarray,
    gaps: np.ndarray,
    *,
    ratio: float = 2.0,
    ring: float = 0.1,
    foreground: float = 0.95,
    background: float = 0.35,
    smooth: float = 0.005,
    step: int = 4,
) -> np.ndarray:
    """`p3m.infer.spill.background_in_gaps`: HxW bool, the pixels of `mask` inside `gaps` whose colour is the
    background's, by the nearest sample."""
    verdict = np.zeros(mask.shape, bool)
    zone = mask & gaps
    if not zone.any():
        return verdict
    side = max(mask.shape)
    outside = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    every = np.zeros(mask.shape, bool)
    every[::step, ::step] = True
    around = every & ~mask & (prob <= background) & (outside <= ring * side)
    person = every & (prob >= foreground) & ~gaps
    if not (around.any() and person.any()):
        return verdict
    from scipy.spatial import cKDTree

    colours = cv2.GaussianBlur(image, (0, 0), 1.0).astype(np.float32)
    judged = colours[zone]
    d_fg = cKDTree(colours[person]).query(judged)[0]
    d_bg = cKDTree(colours[around]).query(judged)[0]
    verdict[zone] = d_fg + 1.0 > ratio * (d_bg + 1.0)
    r = round(smooth * side)
    if r > 0:
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        verdict = cv2.morphologyEx(verdict.astype(np.uint8), cv2.MORPH_CLOSE, disc).astype(bool) & zone
        verdict = cv2.morphologyEx(verdict.astype(np.uint8), cv2.MORPH_OPEN, disc).astype(bool)
    return verdict


# at commit 42e8f91: the distance transforms and the component test on the whole image, the local means' division


def previous_distance_to(mask: np.ndarray) -> np.ndarray:
    """`p3m.infer.portrait._distance_to`: HxW float32, Euclidean distance of every pixel to the nearest True pixel
    of `mask` (inf if none)."""
    if not mask.any():
        return np.full(mask.shape, np.inf, np.float32)
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def previous_touching(extra: np.ndarray, base: np.ndarray) -> np.ndarray:
    """`p3m.infer.portrait._touching`: the pixels of `extra` in connected components (8-connected) of
    `extra | base` that contain `base`."""
    n, labels = cv2.connectedComponents((extra | base).astype(np.uint8), connectivity=8)
    keep = np.zeros(n, dtype=bool)
    keep[np.unique(labels[base])] = True
    keep[0] = False
    return extra & keep[labels]


def previous_local_mean_colour(colours: np.ndarray, weight: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """`p3m.infer.spill.local_mean_colour` at 42e8f91: (HxWxC mean, HxW density) of the weighted colours. Its
    division, the part that changed; the weighted sums, unchanged, are spill's `_weighted_sums`."""
    from p3m.infer.spill import NO_DENSITY, _weighted_sums

    total, density = _weighted_sums(colours, weight, sigma)
    safe = np.where(density > NO_DENSITY, density, 1.0)[..., None]
    mean = np.where(density[..., None] > NO_DENSITY, total / safe, 0.0).astype(np.float32)
    return mean, density
