"""Trimaps from alpha mattes: the reference `gen_trimap_with_dilate` (`JizhiziLi/P3M` core/data.py).

Values as in P3M's trimaps: 0 = background, 128 = unknown/transition, 255 = foreground.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["kernel_size_for_test_split", "random_kernel_size", "random_trimap", "trimap_crop", "trimap_from_alpha"]


def trimap_from_alpha(alpha_u8: np.ndarray, kernel_size: int) -> np.ndarray:
    """Trimap HxW uint8 {0, 128, 255} of an HxW uint8 alpha with a k x k ellipse element.

    D = dilate([A != 0]), E = erode([A == 255]) (one iteration each), T = 255*E + 128*(D - E).
    """
    alpha = np.asarray(alpha_u8)
    if alpha.ndim == 3:
        alpha = alpha[..., 0]  # masks stored with 3 channels use channel 0 (`JizhiziLi/P3M` core/evaluate.py)
    if alpha.ndim != 2:
        raise ValueError(f"alpha must be HxW, got shape {alpha.shape}")
    if alpha.dtype != np.uint8:
        raise ValueError(f"alpha must be uint8 0-255, got {alpha.dtype}")
    k = int(kernel_size)
    if k < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    nonzero = np.not_equal(alpha, 0).view(np.uint8)  # 0/1 (a bool array viewed as bytes: no copy)
    opaque = np.equal(alpha, 255).view(np.uint8)
    # BORDER_CONSTANT with 0 for dilate and 1 for erode matches the reference's cv2 defaults
    # (pixels outside the image never add foreground nor erase it).
    dilated = cv2.dilate(nonzero, element, iterations=1)
    eroded = cv2.erode(opaque, element, iterations=1)
    # 255 E + 128 (D - E) taken mod 256 (the uint8 cast) is 128 D + 127 E: in uint8 with no temporaries
    trimap = np.multiply(dilated, 128, out=dilated)
    trimap += np.multiply(eroded, 127, out=eroded)
    return trimap


def trimap_crop(alpha_u8: np.ndarray, kernel_size: int, y0: int, x0: int, height: int, width: int) -> np.ndarray:
    """``trimap_from_alpha(alpha_u8, kernel_size)[y0:y0 + height, x0:x0 + width]``, computed on that window only.

    The window is widened by the element's reach (k // 2 px) where the image allows: a pixel of the window then sees
    the same neighbourhood as in the whole image, and the image borders get the same treatment, so the values are
    identical. For a crop of a large image this is several times cheaper than the whole trimap.
    """
    alpha = np.asarray(alpha_u8)
    if alpha.ndim == 3:
        alpha = alpha[..., 0]
    h, w = alpha.shape[:2]
    if not (y0 >= 0 and x0 >= 0 and height >= 0 and width >= 0 and y0 + height <= h and x0 + width <= w):
        raise ValueError(f"window ({y0}, {x0}, {height}, {width}) is not inside the {h}x{w} alpha")
    if height == 0 or width == 0:
        return np.zeros((height, width), np.uint8)
    reach = max(int(kernel_size), 1) // 2
    wy0, wx0 = max(y0 - reach, 0), max(x0 - reach, 0)
    wy1, wx1 = min(y0 + height + reach, h), min(x0 + width + reach, w)
    window = trimap_from_alpha(alpha[wy0:wy1, wx0:wx1], kernel_size)
    return window[y0 - wy0 : y0 - wy0 + height, x0 - wx0 : x0 - wx0 + width]


def random_kernel_size(rng: np.random.Generator, low: int = 15, high: int = 30) -> int:
    """The kernel size of `random_trimap`: uniform in [low, high] inclusive (one draw from ``rng``)."""
    if low > high:
        raise ValueError(f"low ({low}) must not exceed high ({high})")
    return int(rng.integers(low, high, endpoint=True))


def random_trimap(alpha_u8: np.ndarray, rng: np.random.Generator, low: int = 15, high: int = 30) -> np.ndarray:
    """Training trimap: `trimap_from_alpha` with k drawn uniformly from [low, high] inclusive."""
    return trimap_from_alpha(alpha_u8, random_kernel_size(rng, low, high))


def kernel_size_for_test_split(height: int, width: int) -> int:
    """Fixed kernel for test-split trimaps: the odd integer nearest 2 % of the shorter side, at least 3.

    At 1080 px this gives 21, inside the training range [15, 30]; at 320 px it gives 7.
    """
    target = 0.02 * min(height, width)
    return max(3, 2 * round((target - 1) / 2) + 1)
