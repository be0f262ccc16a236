"""Where a coarse person prior spills onto the background, told by colour: pure functions of arrays.

The built-in route's selfie prior (`p3m.infer.portrait`) is computed at 256x256, so its edge is coarse and often
reaches a few pixels of the network's grid onto the background, with the probability still above 0.5 but below
the network's confident values. Next to that edge the image usually says more: the background there has the
colour of the background just beyond, and the person the colour of the person just inside. A local two-colour
model (the mean colour of the confident foreground and of the background around each pixel, as
Gaussian-weighted means by normalised convolution, Knutsson & Westin 1993) marks the pixels whose colour is
far closer to the background's; the route drops them from the mask where the prior is unsure, and closed-form
matting then draws the edge in a band round the moved mask.

Conventions: images HxWx3 uint8 (any colour order, used as given), probabilities HxW float32 in [0, 1], masks
HxW bool; lengths are fractions of the image's long side, so they mean the same at every resolution.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from p3m.infer.resize import working_size

__all__ = ["background_by_colour", "gaussian_kernel", "local_mean_colour"]


def gaussian_kernel(sigma: float) -> np.ndarray:
    """1-D float32 Gaussian of standard deviation `sigma` px, truncated at 3 sigma (at least 3 taps), summing to 1."""
    radius = max(1, math.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / max(sigma, 1e-6)) ** 2)
    return (k / k.sum()).astype(np.float32)


def local_mean_colour(colours: np.ndarray, weight: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-weighted mean colour of the weighted pixels round each pixel (normalised convolution).

    Parameters
    ----------
    colours : HxWxC float32
    weight : HxW float32 (or bool) in [0, 1]: which pixels' colours count, and how much
    sigma : float, the Gaussian's standard deviation in pixels (`gaussian_kernel`); pixels outside the image
        count as weight 0.

    Returns
    -------
    mean : HxWxC float32, sum_q g(p - q) w(q) c(q) / sum_q g(p - q) w(q) (0 where the denominator is 0)
    density : HxW float32, sum_q g(p - q) w(q): the weighted share of counted pixels round p, in [0, 1]
    """
    k = gaussian_kernel(sigma)
    w = np.asarray(weight, np.float32)

    def smooth(a: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(a, cv2.CV_32F, k, k, borderType=cv2.BORDER_CONSTANT)

    density = smooth(w)
    total = smooth(np.ascontiguousarray(colours * w[..., None], dtype=np.float32))
    if total.ndim == 2:  # cv2 drops a single channel
        total = total[..., None]
    safe = np.where(density > 1e-6, density, 1.0)[..., None]
    mean = np.where(density[..., None] > 1e-6, total / safe, 0.0).astype(np.float32)
    return mean, density


def background_by_colour(
    image: np.ndarray,
    prob: np.ndarray,
    *,
    sigma: float = 0.015,
    ratio: float = 4.0,
    foreground: float = 0.95,
    background: float = 0.35,
    min_density: float = 0.05,
    grid: int = 256,
) -> np.ndarray:
    """HxW bool: the pixels whose colour is `ratio` times closer to the local background's than the foreground's.

    Parameters
    ----------
    image : HxWx3 uint8, the image the probability belongs to (same grid)
    prob : HxW float32 in [0, 1], the person prior
    sigma : float, the reach of "local": the Gaussian's standard deviation, fraction of the long side
    ratio : float, a pixel is background when its colour distance to the local foreground mean exceeds this
        times its distance to the local background mean
    foreground : float, the foreground's colour samples are the pixels with prob >= this (the confident core)
    background : float, the background's are those with prob <= this: the prior's graded tail outside the
        mask included, so the background right next to the edge is sampled (a shaded wall beside the person
        has another colour than the lit wall further off, where the prior is near 0)
    min_density : float, both kinds of samples must weigh at least this round the pixel
        (`local_mean_colour`'s density): where one side is far away, there is nothing to compare with
    grid : int, the model is computed on a copy at most this many pixels long (the prior's own resolution
        is 256: finer adds nothing but time) and the verdict resized back (nearest)

    Returns
    -------
    HxW bool, True where the colour says background. Only a verdict on colour: the caller decides where to use it
    (the route: where the prior is unsure, `PortraitSettings.spill_unsure`).
    """
    h, w = prob.shape
    sh, sw = working_size(h, w, grid)
    small = image if (sh, sw) == (h, w) else cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
    p = prob if (sh, sw) == (h, w) else cv2.resize(prob, (sw, sh), interpolation=cv2.INTER_AREA)
    colours = small.astype(np.float32)
    s = sigma * max(sh, sw)
    fg_mean, fg_density = local_mean_colour(colours, p >= foreground, s)
    bg_mean, bg_density = local_mean_colour(colours, p <= background, s)
    d_fg = np.linalg.norm(colours - fg_mean, axis=-1)
    d_bg = np.linalg.norm(colours - bg_mean, axis=-1)
    verdict = (d_fg > ratio * d_bg) & (fg_density >= min_density) & (bg_density >= min_density)
    if (sh, sw) != (h, w):
        verdict = cv2.resize(verdict.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    return verdict
