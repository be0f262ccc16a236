"""Contrast after the band's solve where a transition is a blurred step, not a soft one: pure functions of arrays.

Closed-form matting (Levin et al. 2008) reads alpha off each 3x3 window's colour line. Where the person's and the
background's colours are close (a lit face profile against a light sky, a dark suit on a dark stage) a pixel's
colour says little about its alpha: the solve, propagating from the band's known edges, leaves a soft ramp and a
haze (alpha 0.1-0.3 on the background, 0.7-0.9 on the person) where the true edge is a step, and the bilinear
upsampling to the image's size widens the ramp further. A contrast stretch about 0.5,

    alpha' = clip((alpha - 0.5) k + 0.5, 0, 1),

narrows it; but where the transition is real (hair, fur, motion blur) it throws true fractional alpha away. Two
cues tell the two apart (measured against the reference mattes of real portraits: benchmarks/RESULTS.md, "Step
edges"):

- **colour separation** (`colour_separation`): the distance between the local mean colour of the nearly opaque
  pixels and that of the nearly clear pixels round each pixel. Where it is large (light hair over a dark
  background) the colours pin alpha down and the solve's fractional values are the transition's own; where it is
  small they are the solve's guess.
- **texture of the alpha** (`high_pass_energy` of the alpha): strands make alpha rise and fall within a few
  pixels; a ramp left by the solve is smooth.

`step_gain` makes the stretch's k fall linearly from `strength` to 1 as the separation rises through `separated`
and as the alpha's texture rises through `textured` (the product of the two falls); `sharpen_steps` computes
both cues and applies the stretch. `colour_ambiguity` reads the same separation (`separation_at`, on a shrunk
copy) as a weight in [0, 1], for the route's pull toward its priors where the colours cannot decide
(`p3m.infer.prior_pull`). Conventions: images HxWx3 uint8 (RGB, or any order used consistently), alpha HxW float
in [0, 1]; colour distances are Euclidean in RGB scaled to [0, 1] (at most sqrt(3)).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from p3m.infer.boxes import box_round_points
from p3m.infer.spill import NO_DENSITY, local_mean_colour

__all__ = [
    "colour_ambiguity",
    "colour_separation",
    "high_pass_energy",
    "separation_at",
    "sharpen_steps",
    "step_gain",
    "stretch_about_half",
]

# the defaults, measured on the 12 P3M-10k test portraits and their altered copies (benchmarks/RESULTS.md)
SEPARATED = (0.6, 1.2)  # colour separation: full stretch below the first, none above the second
TEXTURED = (0.06, 0.12)  # the alpha's high-pass energy: full stretch below the first, none above the second
SIGMA = 0.01  # the colour means' Gaussian, std. dev. as a fraction of the long side
OPAQUE, CLEAR = 0.95, 0.05  # the pixels whose colours are the local foreground's and background's
# colour_ambiguity: full below the first, none above the second (the route's prior pull, benchmarks/RESULTS.md)
AMBIGUOUS = (0.3, 0.7)

_COARSE_SIGMA = 2.0  # the colour means are computed on a copy where their Gaussian is this many px (smooth anyway)
_DETAIL_SIGMA = 1.5  # high_pass_energy: the detail is what a Gaussian of this std. dev. (px) removes ...
_DETAIL_BOX = 5  # ... averaged over a box this many px wide


def high_pass_energy(x: np.ndarray) -> np.ndarray:
    """Local high-pass energy: the mean over a 5x5 box of |x - x blurred by a Gaussian of std. dev. 1.5 px|.

    Parameters
    ----------
    x : HxW float array (a grey image or an alpha matte, in [0, 1])

    Returns
    -------
    HxW float32 >= 0: about the amplitude of the structure finer than ~3 px round each pixel (strands, edges,
    texture); 0 on a linear ramp's inside, whatever its slope. Borders are reflected (OpenCV's default).
    """
    x = np.asarray(x, np.float32)
    detail = np.abs(x - cv2.GaussianBlur(x, (0, 0), _DETAIL_SIGMA))
    return cv2.blur(detail, (_DETAIL_BOX, _DETAIL_BOX))


def colour_separation(
    image: np.ndarray, alpha: np.ndarray, sigma: float, *, opaque: float = OPAQUE, clear: float = CLEAR
) -> np.ndarray:
    """Distance between the local mean colours of the nearly opaque and the nearly clear pixels round each pixel.

    Parameters
    ----------
    image : HxWx3 uint8
    alpha : HxW float in [0, 1], the same grid
    sigma : the Gaussian's standard deviation in pixels (`p3m.infer.spill.local_mean_colour`)
    opaque, clear : alpha >= opaque counts as the foreground's colour, alpha <= clear as the background's

    Returns
    -------
    HxW float32: |F(p) - B(p)|, F and B the Gaussian-weighted mean colours (RGB / 255) of the foreground and the
    background pixels round p; +inf where either has (almost) no pixel within the Gaussian's reach (3 sigma).
    """
    colours = np.asarray(image, np.float32) / np.float32(255.0)
    fg, fg_density = local_mean_colour(colours, alpha >= opaque, sigma)
    bg, bg_density = local_mean_colour(colours, alpha <= clear, sigma)
    distance = np.sqrt(np.sum((fg - bg) ** 2, axis=2))
    known = (fg_density > NO_DENSITY) & (bg_density > NO_DENSITY)
    return np.where(known, distance, np.inf).astype(np.float32)


def stretch_about_half(alpha: np.ndarray, gain: np.ndarray | float) -> np.ndarray:
    """HxW float32 clip((alpha - 0.5) gain + 0.5, 0, 1): a contrast stretch about 0.5 by `gain` (scalar or HxW;
    1 leaves alpha as it is, > 1 pushes values below 0.5 down and above it up)."""
    alpha = np.asarray(alpha, np.float32)
    # written as alpha + (alpha - 0.5)(gain - 1): exactly alpha where the gain is 1
    return np.clip(alpha + (alpha - 0.5) * (np.asarray(gain, np.float32) - 1), 0.0, 1.0)


def _bilinear_at(grid: np.ndarray, ys: np.ndarray, xs: np.ndarray, step: int) -> np.ndarray:
    """The values at pixels (ys, xs) of `grid` (float32, each cell `step` x `step` pixels) bilinearly upsampled
    `step` times, as cv2.resize(INTER_LINEAR) gives them (pixel centres aligned, the border replicated), without
    making the whole array."""
    corners = []
    for pos, n in ((ys, grid.shape[0]), (xs, grid.shape[1])):
        src = np.clip((pos + 0.5) / step - 0.5, 0, n - 1)
        lo = np.floor(src).astype(np.intp)
        corners.append((lo, np.minimum(lo + 1, n - 1), (src - lo).astype(np.float32)))
    (y0, y1, fy), (x0, x1, fx) = corners
    top = grid[y0, x0] * (1 - fx) + grid[y0, x1] * fx
    bottom = grid[y1, x0] * (1 - fx) + grid[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _falling(x: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """1 at or below bounds[0], 0 at or above bounds[1], linear between."""
    lo, hi = bounds
    return np.clip((hi - x) / max(hi - lo, 1e-12), 0.0, 1.0)


def step_gain(
    separation: np.ndarray,
    texture: np.ndarray,
    strength: float,
    *,
    separated: tuple[float, float] = SEPARATED,
    textured: tuple[float, float] = TEXTURED,
) -> np.ndarray:
    """HxW float32 stretch gain 1 + (strength - 1) s t, where s falls linearly from 1 to 0 as `separation` rises
    through `separated` and t as `texture` rises through `textured` (s = 0 where separation is +inf)."""
    s = _falling(np.asarray(separation, np.float64), separated)
    t = _falling(np.asarray(texture, np.float64), textured)
    return (1.0 + (strength - 1.0) * s * t).astype(np.float32)


def separation_at(
    image: np.ndarray, alpha: np.ndarray, ys: np.ndarray, xs: np.ndarray, sigma: float, *, cap: float
) -> np.ndarray:
    """`colour_separation` at pixels (ys, xs), computed on a copy shrunk by an integer factor (by area, OpenCV's fast
    path) until its Gaussian is about 2 px, and read back bilinearly: the colour means vary over sigma anyway.

    Parameters
    ----------
    image : HxWx3 uint8
    alpha : HxW float in [0, 1], the same grid (alpha >= `OPAQUE` the foreground's colours, <= `CLEAR` the
        background's; a trimap divided by 255 gives its known regions)
    ys, xs : int arrays of one length, the pixels asked for
    sigma : the Gaussian's standard deviation, a fraction of the long side
    cap : values above it are clipped to it before the interpolation (+inf, no colour known on one side, becomes it)

    Returns
    -------
    float32 array of ys's length, in [0, cap].
    """
    h, w = alpha.shape
    sigma_px = sigma * max(h, w)
    step = max(1, min(int(sigma_px / _COARSE_SIGMA), h, w))
    hs, ws = h // step, w // step
    if step > 1:
        small_image = cv2.resize(image[: hs * step, : ws * step], (ws, hs), interpolation=cv2.INTER_AREA)
        small_alpha = cv2.resize(alpha[: hs * step, : ws * step], (ws, hs), interpolation=cv2.INTER_AREA)
    else:
        small_image, small_alpha = image, alpha
    coarse = np.minimum(colour_separation(small_image, small_alpha, sigma_px / step), np.float32(cap))
    return coarse[ys, xs] if step == 1 else _bilinear_at(coarse, ys, xs, step)


def colour_ambiguity(
    image: np.ndarray,
    alpha: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    *,
    sigma: float = SIGMA,
    separated: tuple[float, float] = AMBIGUOUS,
) -> np.ndarray:
    """How little the colours round each pixel can tell person from background: 1 where the local foreground's and
    background's mean colours coincide, falling linearly to 0 as their distance rises through `separated`.

    The colour of a pixel fixes its alpha only as far as the two layers' colours differ (alpha = (C - B).(F - B) /
    |F - B|^2, its noise growing as 1 / |F - B|): where they are close, matting's value is a guess.

    Parameters
    ----------
    image : HxWx3 uint8
    alpha : HxW float in [0, 1] whose extremes mark the two layers (`separation_at`)
    ys, xs : int arrays of one length, the pixels asked for
    sigma : the colour means' Gaussian, a fraction of the long side
    separated : (full ambiguity at or below, none at or above), RGB distance in [0, 1] units

    Returns
    -------
    float32 array of ys's length, in [0, 1]; 0 where one layer has no pixel within the Gaussian's reach.
    """
    separation = separation_at(image, alpha, ys, xs, sigma, cap=separated[1])
    return _falling(separation, separated).astype(np.float32)


def sharpen_steps(
    image: np.ndarray,
    alpha: np.ndarray,
    strength: float,
    *,
    sigma: float = SIGMA,
    separated: tuple[float, float] = SEPARATED,
    textured: tuple[float, float] = TEXTURED,
) -> np.ndarray:
    """`alpha` stretched about 0.5 where its transition is a blurred step (module doc), by up to `strength`.

    Parameters
    ----------
    image : HxWx3 uint8, the image the alpha was solved on
    alpha : HxW float in [0, 1]
    strength : the largest gain (`stretch_about_half`); <= 1 returns alpha unchanged (as float32)
    sigma : the colour means' Gaussian (`colour_separation`), a fraction of the long side
    separated, textured : where the gain falls (`step_gain`)

    Returns
    -------
    HxW float32 in [0, 1]; pixels at exactly 0 or 1 stay so. The colour separation is computed on a copy shrunk
    by an integer factor (by area) until sigma is about 2 px, and read back bilinearly.
    """
    alpha = np.asarray(alpha, np.float32)
    if image.shape[:2] != alpha.shape or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image must be HxWx3 uint8 and alpha HxW of the same size, got {image.shape} {image.dtype} and "
            f"{alpha.shape}"
        )
    fractional = (alpha > 0) & (alpha < 1)
    if strength <= 1 or not fractional.any():
        return alpha.copy()
    ys, xs = np.nonzero(fractional)
    separation = separation_at(image, alpha, ys, xs, sigma, cap=separated[1])
    # the texture round the fractional pixels only: their bounding box grown by the reach of its Gaussian (4 std.
    # dev.) and box, which gives the values of the whole image there
    reach = math.ceil(4 * _DETAIL_SIGMA) + _DETAIL_BOX // 2 + 1
    box = box_round_points(ys, xs, reach, alpha.shape)
    texture = high_pass_energy(alpha[box])[ys - box[0].start, xs - box[1].start]
    gain = step_gain(separation, texture, strength, separated=separated, textured=textured)
    out = alpha.copy()
    out[ys, xs] = stretch_about_half(alpha[ys, xs], gain)
    return out
