"""Trimaps from alpha mattes: the reference `gen_trimap_with_dilate` (reference §8.1 step 1).

Values follow reference §0: 0 = background, 128 = unknown/transition, 255 = foreground.
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["trimap_from_alpha", "random_trimap", "kernel_size_for_test_split"]


def trimap_from_alpha(alpha_u8: np.ndarray, kernel_size: int) -> np.ndarray:
    """Trimap HxW uint8 {0, 128, 255} of an HxW uint8 alpha with a k x k ellipse element.

    D = dilate([A != 0]), E = erode([A == 255]) (one iteration each), T = 255*E + 128*(D - E).
    """
    alpha = np.asarray(alpha_u8)
    if alpha.ndim == 3:
        alpha = alpha[..., 0]  # masks stored with 3 channels use channel 0 (reference §1.2)
    if alpha.ndim != 2:
        raise ValueError(f"alpha must be HxW, got shape {alpha.shape}")
    if alpha.dtype != np.uint8:
        raise ValueError(f"alpha must be uint8 0-255, got {alpha.dtype}")
    k = int(kernel_size)
    if k < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    nonzero = (alpha != 0).astype(np.uint8)
    opaque = (alpha == 255).astype(np.uint8)
    # BORDER_CONSTANT with 0 for dilate and 1 for erode matches the reference's cv2 defaults
    # (pixels outside the image never add foreground nor erase it).
    dilated = cv2.dilate(nonzero, element, iterations=1)
    eroded = cv2.erode(opaque, element, iterations=1)
    trimap = eroded.astype(np.int32) * 255 + (dilated.astype(np.int32) - eroded.astype(np.int32)) * 128
    return trimap.astype(np.uint8)


def random_trimap(
    alpha_u8: np.ndarray, rng: np.random.Generator, low: int = 15, high: int = 30
) -> np.ndarray:
    """Training trimap: `trimap_from_alpha` with k drawn uniformly from [low, high] inclusive."""
    if low > high:
        raise ValueError(f"low ({low}) must not exceed high ({high})")
    k = int(rng.integers(low, high, endpoint=True))
    return trimap_from_alpha(alpha_u8, k)


def kernel_size_for_test_split(height: int, width: int) -> int:
    """Fixed kernel for test-split trimaps: the odd integer nearest 2 % of the shorter side, at least 3.

    At 1080 px this gives 21, inside the training range [15, 30]; at 320 px it gives 7.
    """
    target = 0.02 * min(height, width)
    return max(3, 2 * int(round((target - 1) / 2)) + 1)
