"""Where a coarse person prior spills onto the background, told by colour: pure functions of arrays.

The built-in route's selfie prior (`p3m.infer.portrait`) is computed at 256x256, so its edge is coarse and often
reaches a few pixels of the network's grid onto the background, with the probability still above 0.5 but below
the network's confident values. Next to that edge the image usually says more: the background there has the
colour of the background just beyond, and the person the colour of the person just inside. A local two-colour
model (the mean colour of the confident foreground and of the background around each pixel, as
Gaussian-weighted means by normalised convolution, Knutsson & Westin 1993) marks the pixels whose colour is
far closer to the background's; the route drops them from the mask where the prior is unsure, and closed-form
matting then draws the edge in a band round the moved mask.

Between the limbs and the body (`background_in_gaps`) the background the prior keeps is often enclosed by the
person, with no confident background next to it to compare with, and the prior there is confident too. Inside
the pose network's limb-gap polygons (`p3m.infer.priors.limb_gaps`) the test is the nearest colour instead of
the local means: a pixel whose colour is far nearer to some background sample round the person than to any
confident person sample outside the gaps is background, where enough such pixels lie together.

Inside the person's mask at the hair (`background_through_hair`) the 256 px prior covers the hair's whole outline,
and the background shows through between loose strands and curls, deeper than the band round the mask's edge.
There the local two-colour model again, with the foreground's colours taken deeper inside the person and one
more condition: the pixel's colour must lie outside the local foreground's own spread (more than a few standard
deviations from its mean), so that a highlight, a white collar or a pattern the person also has nearby is not
taken for the background.

Conventions: images HxWx3 uint8 (any colour order, used as given), probabilities HxW float32 in [0, 1], masks
HxW bool; lengths are fractions of the image's long side, so they mean the same at every resolution.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from p3m.infer.resize import mask_resized, shrunk

__all__ = [
    "GAP_SMOOTH",
    "NO_DENSITY",
    "background_by_chromaticity",
    "background_by_colour",
    "background_colour_in_gaps",
    "background_in_gaps",
    "background_through_hair",
    "chromaticity",
    "gaussian_kernel",
    "local_mean_colour",
    "parts_mostly",
    "verdict_regions",
]

#: `local_mean_colour`'s density at or below this counts as no pixel at all (its mean is 0 there)
NO_DENSITY = 1e-6
#: `background_in_gaps`'s smoothing: the disc's radius, fraction of the long side
GAP_SMOOTH = 0.005


def gaussian_kernel(sigma: float) -> np.ndarray:
    """1-D float32 Gaussian of standard deviation `sigma` px, truncated at 3 sigma (at least 3 taps), summing to 1."""
    radius = max(1, math.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / max(sigma, 1e-6)) ** 2)
    return (k / k.sum()).astype(np.float32)


def _weighted_sums(colours: np.ndarray, weight: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(HxWxC float32, HxW float32): `local_mean_colour`'s numerator and density, the weighted colours and the
    weights smoothed by its Gaussian (pixels outside the image weigh 0)."""
    k = gaussian_kernel(sigma)
    w = np.asarray(weight, np.float32)

    def smooth(a: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(a, cv2.CV_32F, k, k, borderType=cv2.BORDER_CONSTANT)

    density = smooth(w)
    total = smooth(np.ascontiguousarray(colours * w[..., None], dtype=np.float32))
    if total.ndim == 2:  # cv2 drops a single channel
        total = total[..., None]
    return total, density


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
    mean : HxWxC float32, sum_q g(p - q) w(q) c(q) / sum_q g(p - q) w(q) (0 where the denominator is at most
        `NO_DENSITY`)
    density : HxW float32, sum_q g(p - q) w(q): the weighted share of counted pixels round p, in [0, 1]
    """
    total, density = _weighted_sums(colours, weight, sigma)
    # divided only where there is a density: no temporaries for the rest, and the same quotients
    mean = np.zeros(total.shape, np.float32)
    np.divide(total, density[..., None], out=mean, where=density[..., None] > NO_DENSITY)
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
    small, p = shrunk(image, grid), shrunk(prob, grid)
    colours = small.astype(np.float32)
    s = sigma * max(p.shape)
    fg_mean, fg_density = local_mean_colour(colours, p >= foreground, s)
    bg_mean, bg_density = local_mean_colour(colours, p <= background, s)
    d_fg = np.linalg.norm(colours - fg_mean, axis=-1)
    d_bg = np.linalg.norm(colours - bg_mean, axis=-1)
    verdict = (d_fg > ratio * d_bg) & (fg_density >= min_density) & (bg_density >= min_density)
    return mask_resized(verdict, prob.shape)


# `_bilinear_at` reads its points in rows of this many (cv2.remap takes maps under 32767 px a side)
_REMAP_ROW = 1024


def _bilinear_at(values: np.ndarray, ys: np.ndarray, xs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, C) float32: `values` (hxwxC float32) resized bilinearly to `shape` (H, W), as cv2.resize would, read at
    the N pixels (ys, xs) only (a border pixel reads the edge values)."""
    n = ys.size
    rows = -(-n // _REMAP_ROW)
    pad = rows * _REMAP_ROW - n
    ky, kx = values.shape[0] / shape[0], values.shape[1] / shape[1]
    map_x = np.pad((xs + 0.5) * kx - 0.5, (0, pad)).astype(np.float32).reshape(rows, _REMAP_ROW)
    map_y = np.pad((ys + 0.5) * ky - 0.5, (0, pad)).astype(np.float32).reshape(rows, _REMAP_ROW)
    out = [
        cv2.remap(values[..., i : i + 3], map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        for i in range(0, values.shape[-1], 3)
    ]
    return np.concatenate([o.reshape(rows * _REMAP_ROW, -1)[:n] for o in out], axis=-1)


def background_through_hair(
    image: np.ndarray,
    trimap: np.ndarray,
    zone: np.ndarray,
    *,
    sigma: float = 0.03,
    ratio: float = 3.0,
    spread: float = 2.0,
    min_density: float = 1e-3,
    grid: int = 256,
) -> np.ndarray:
    """HxW bool: the pixels of `zone` whose colour is the local background's, not the person's round them.

    Parameters
    ----------
    image : HxWx3 uint8, the image the trimap belongs to (same grid)
    trimap : HxW uint8 {0, 128, 255}: its known background (0) gives the background's colours, its known
        foreground (255) outside `zone` the person's (deeper inside the person than the pixels judged)
    zone : HxW bool, the pixels judged (the route: known foreground near the mask's edge, on the head's side of
        the shoulders)
    sigma : float, the reach of "local": the Gaussian's standard deviation, fraction of the long side (the
        background's samples lie beyond the band round the person, so it is wider than
        `background_by_colour`'s)
    ratio : float, background where the colour distance to the local foreground mean exceeds this times the
        distance to the local background mean ...
    spread : float, ... and exceeds this many standard deviations of the local foreground's colours (the root
        of their mean squared distance to their mean): the person has no such colour round the pixel
    min_density : float, both kinds of samples must weigh at least this round the pixel (`local_mean_colour`'s
        density)
    grid : int, the local model is computed on a copy at most this many pixels long (image and sample weights
        shrunk by area; the means are smooth at this sigma) and read back bilinearly; each judged pixel's own
        colour is compared at full resolution

    Returns
    -------
    HxW bool, True where the colour says background (inside `zone` only).
    """
    verdict = np.zeros(zone.shape, bool)
    if not zone.any():
        return verdict
    small = shrunk(image, grid).astype(np.float32) / np.float32(255.0)
    person = shrunk(((trimap == 255) & ~zone).astype(np.float32), grid)
    s = sigma * max(small.shape[:2])
    fg_mean, fg_density = local_mean_colour(small, person, s)
    fg_square = local_mean_colour((small**2).sum(-1, keepdims=True), person, s)[0]
    bg_mean, bg_density = local_mean_colour(small, shrunk((trimap == 0).astype(np.float32), grid), s)
    # the model read at the judged pixels only, bilinearly (it is smooth), as a resize to the full grid would read it;
    # each pixel's own colour at full resolution
    model = np.concatenate([fg_mean, bg_mean, fg_square, fg_density[..., None], bg_density[..., None]], axis=-1)
    ys, xs = np.nonzero(zone)
    at = _bilinear_at(model, ys, xs, zone.shape)
    c = image[ys, xs].astype(np.float32) / np.float32(255.0)
    d_fg = np.linalg.norm(c - at[:, 0:3], axis=-1)
    d_bg = np.linalg.norm(c - at[:, 3:6], axis=-1)
    deviation = np.sqrt(np.maximum(at[:, 6] - (at[:, 0:3] ** 2).sum(-1), 0.0))
    sampled = (at[:, 7] >= min_density) & (at[:, 8] >= min_density)
    verdict[ys, xs] = sampled & (d_fg > ratio * d_bg) & (d_fg > spread * deviation)
    return verdict


def _disc(radius: int) -> np.ndarray:
    """uint8 elliptic structuring element of the given radius in pixels."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


# `background_in_gaps` searches the background's samples in this many groups of pixels of similar reach
_REACH_GROUPS = 8


def _distinct_colours(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, 3) float32 distinct rows of (N, 3) colours, sorted, and (N,) the index of each row among them."""
    if rows.dtype == np.uint8:  # one int32 per colour: far faster to sort than rows
        key = (rows[:, 0].astype(np.int32) << 16) | (rows[:, 1].astype(np.int32) << 8) | rows[:, 2]
        keys, which = np.unique(key, return_inverse=True)
        distinct = np.stack([keys >> 16, (keys >> 8) & 255, keys & 255], axis=1)
    else:
        distinct, which = np.unique(rows, axis=0, return_inverse=True)
    return distinct.astype(np.float32), which.ravel()


def background_in_gaps(
    image: np.ndarray,
    prob: np.ndarray,
    mask: np.ndarray,
    gaps: np.ndarray,
    *,
    smooth: float = GAP_SMOOTH,
    **knobs: Any,
) -> np.ndarray:
    """HxW bool: the pixels of `mask` inside `gaps` whose colour is the background's, by the nearest sample, taken
    in regions: `background_colour_in_gaps` (its arguments and keywords, `knobs`: ratio, ring, foreground,
    background, step) followed by `verdict_regions`.

    Parameters
    ----------
    smooth : float, the verdict is closed then opened with a disc of this radius (fraction of the long side):
        single pixels of a colour the background also has (a highlight on a sleeve) are not background, and a
        background region is taken whole (scattered holes in the mask would be filled again by matting)

    Returns
    -------
    HxW bool, True where the colour says background (inside `gaps` and `mask` only). Empty when either kind of
    sample is missing.
    """
    verdict = background_colour_in_gaps(image, prob, mask, gaps, **knobs)
    return verdict_regions(verdict, mask & gaps, round(smooth * max(mask.shape)))


def verdict_regions(verdict: np.ndarray, zone: np.ndarray, radius: int) -> np.ndarray:
    """HxW bool: a per-pixel `verdict` (HxW bool) closed with a disc of `radius` px and kept inside `zone` (HxW
    bool), then opened with the same disc: scattered marks joined into regions, specks too small for the disc
    dropped. `radius` 0 returns the verdict as given."""
    if radius <= 0:
        return verdict
    verdict = cv2.morphologyEx(verdict.astype(np.uint8), cv2.MORPH_CLOSE, _disc(radius)).astype(bool) & zone
    return cv2.morphologyEx(verdict.astype(np.uint8), cv2.MORPH_OPEN, _disc(radius)).astype(bool)


def background_colour_in_gaps(
    image: np.ndarray,
    prob: np.ndarray,
    mask: np.ndarray,
    gaps: np.ndarray,
    *,
    ratio: float = 2.0,
    ring: float = 0.1,
    foreground: float = 0.95,
    background: float = 0.35,
    step: int = 4,
) -> np.ndarray:
    """HxW bool: `background_in_gaps`'s verdict per pixel, before it is smoothed into regions.

    Parameters
    ----------
    image : HxWx3 uint8, the image the probability belongs to (same grid); smoothed by a 1 px Gaussian first
    prob : HxW float32 in [0, 1], the person prior
    mask : HxW bool, the person's mask: pixels of it inside `gaps` are judged, the background is sampled round it
    gaps : HxW bool, where background may be enclosed between limbs (`p3m.infer.priors.limb_gaps`)
    ratio : float, a pixel is background when (its colour distance to the nearest person sample + 1) exceeds
        this times (its distance to the nearest background sample + 1); distances in 8-bit RGB units
    ring : float, the background's samples: pixels outside `mask` with prob <= `background` within this of it
        (fraction of the long side: the background round the person, which the gaps show through)
    foreground : float, the person's samples: prob >= this outside `gaps` (inside them the prior is what is judged)
    background : float, see `ring`
    step : int, samples are taken on every `step`-th row and column (the colours, not their positions, count)

    Returns
    -------
    HxW bool, True where the colour says background (inside `gaps` and `mask` only). Empty when either kind of
    sample is missing.
    """
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
    # scipy.spatial loads here, not with the module: it costs ~0.2 s of start-up, which only a process that judges
    # a gap pays (a trusted pose with a visible gap polygon)
    from scipy.spatial import cKDTree

    colours = cv2.GaussianBlur(image, (0, 0), 1.0)
    # each distinct colour is judged once, against the distinct colours of each kind of sample (the same nearest
    # distances: an 8-bit image has far fewer colours than pixels)
    judged, which = _distinct_colours(colours[zone])
    d_fg = np.asarray(cKDTree(_distinct_colours(colours[person])[0]).query(judged)[0], np.float64)
    # background where d_fg + 1 > ratio (d_bg + 1): the background's nearest sample matters only within `reach`,
    # so the search is bounded, in groups of similar reach (a person-coloured pixel has almost none); an unbounded
    # search from a person colour crosses most of the background's tree
    reach = (d_fg + 1.0) / ratio - 1.0
    d_bg = np.full(len(judged), np.inf)
    todo = np.flatnonzero(reach > 0)
    if todo.size:
        tree = cKDTree(_distinct_colours(colours[around])[0])
        by_reach = todo[np.argsort(reach[todo], kind="stable")]
        for group in np.array_split(by_reach, min(_REACH_GROUPS, by_reach.size)):
            # a margin over the group's largest reach: a sample not found is surely beyond it, whatever the rounding
            bound = float(reach[group[-1]]) * (1 + 1e-6) + 1e-6
            d_bg[group] = tree.query(judged[group], distance_upper_bound=bound)[0]
    verdict[zone] = (d_fg + 1.0 > ratio * (d_bg + 1.0))[which]
    return verdict


def chromaticity(image: np.ndarray, blur: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Normalised rgb and intensity of an image: the colour with its brightness divided out.

    Parameters
    ----------
    image : HxWx3 uint8 (any colour order, used as given)
    blur : float, the image is smoothed by a Gaussian of this standard deviation in pixels first (0: not): a
        single pixel's chromaticity is noisy, the more so the darker it is

    Returns
    -------
    chroma : HxWx3 float32, (c + 1) / (c0 + c1 + c2 + 3) per channel c (8-bit units; each row sums to 1; the +1
        keeps black defined: grey, 1/3 each)
    intensity : HxW float32 in [0, 1], (c0 + c1 + c2) / (3 * 255)
    """
    f: np.ndarray = image.astype(np.float32)
    if blur > 0:
        f = cv2.GaussianBlur(f, (0, 0), blur)
    total = f.sum(axis=2)
    chroma = (f + 1.0) / (total + 3.0)[..., None]
    return chroma.astype(np.float32), (total / (3 * 255.0)).astype(np.float32)


def background_by_chromaticity(
    image: np.ndarray,
    person: np.ndarray,
    background: np.ndarray,
    *,
    ratio: float = 2.0,
    margin: float = 0.05,
    dark: float = 0.08,
    blur: float = 1.0,
    judged: np.ndarray | None = None,
) -> np.ndarray:
    """HxW bool: the pixels whose chromaticity is far nearer to the nearest background sample's than to the nearest
    person sample's.

    A shadow the person casts on the background, or the background's own shade, lowers the light's intensity much
    more than it changes its chromaticity (`chromaticity`: normalised rgb): the shaded wall beside a person keeps
    about the lit wall's chromaticity while its brightness falls to the clothes'. So where a colour test (RGB,
    Lab) calls a shade person-coloured, the chromaticity of the nearest person and background pixels can still
    tell them apart; where both have the same chromaticity (a grey photo, black clothes on a grey wall) nothing is
    decided (`margin`).

    Parameters
    ----------
    image : HxWx3 uint8
    person : HxW bool, the person's samples (the caller takes them where spill cannot be: deep inside the person)
    background : HxW bool, the background's samples
    ratio, margin : float, a pixel is background where ``d_person > ratio * d_background + margin``: d_* the L1
        distance of its chromaticity to that of the spatially nearest sample of each kind (Euclidean in pixels)
    dark : float, pixels darker than this (intensity in [0, 1]) are never background: their chromaticity is noise
    blur : float, `chromaticity`'s smoothing, in pixels
    judged : HxW bool, the pixels to judge (the others are False: the same answer, in less time); None: all

    Returns
    -------
    HxW bool, True where the chromaticity says background; all False when either kind of sample is missing.
    """
    verdict = np.zeros(person.shape, bool)
    if not (person.any() and background.any()):
        return verdict
    # scipy.ndimage loads here, not with the module (start-up), like `background_in_gaps`'s scipy.spatial
    from scipy import ndimage

    chroma, intensity = chromaticity(image, blur)
    ys, xs = np.nonzero(np.ones(person.shape, bool) if judged is None else judged)
    # the spatially nearest sample of each kind of every judged pixel (scipy's exact Euclidean feature transform)
    py, px = ndimage.distance_transform_edt(~person, return_distances=False, return_indices=True)[:, ys, xs]
    by, bx = ndimage.distance_transform_edt(~background, return_distances=False, return_indices=True)[:, ys, xs]
    here = chroma[ys, xs]
    d_person = np.abs(here - chroma[py, px]).sum(axis=1)
    d_background = np.abs(here - chroma[by, bx]).sum(axis=1)
    # a shade is darker than the lit background it falls on; a pixel as bright is not one, whatever its chromaticity
    shade = intensity[ys, xs] < intensity[by, bx]
    verdict[ys, xs] = (d_person > ratio * d_background + margin) & (intensity[ys, xs] >= dark) & shade
    return verdict


def parts_mostly(parts: np.ndarray, votes: np.ndarray, share: float = 0.5) -> np.ndarray:
    """HxW bool: the connected parts (8-connected) of `parts` (HxW bool) of which more than `share` of the pixels
    are True in `votes` (HxW bool)."""
    n, labels = cv2.connectedComponents(parts.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(parts.shape, bool)
    size = np.bincount(labels[parts], minlength=n)
    yes = np.bincount(labels[parts & votes], minlength=n)
    keep = yes > share * size
    keep[0] = False
    return keep[labels]


def background_in_hand_zone(
    image: np.ndarray, prob: np.ndarray, mask: np.ndarray, zone: np.ndarray, pose_person: np.ndarray
) -> np.ndarray:
    """HxW bool: the pixels of a hand's unknown zone outside the person's mask that the evidence says are background.

    The zone round a hand's bones (`p3m.infer.priors.hand_seeds`) is wide enough for fingers the selfie mask lost
    (a raised hand, spread fingers), so it also covers background beside the hand (sand next to a hanging hand)
    that the trimap had as known background; reopened, matting leaves haze there. A pixel of the zone is kept
    as background where two independent pieces of evidence agree: its colour is the background's round the person
    rather than the person's (`background_colour_in_gaps`, the zone judged as the gap) and the pose network's
    person mask says background too. A lost finger is skin-coloured or in the pose's mask, so the zone still opens
    there.

    Parameters
    ----------
    image : HxWx3 uint8, the image (same grid as the rest)
    prob : HxW float32 in [0, 1], the person prior
    mask : HxW bool, the person's mask
    zone : HxW bool, the hands' unknown zone
    pose_person : HxW float in [0, 1], the pose network's person mask (background below 0.5)

    Returns
    -------
    HxW bool, True only inside `zone` and outside `mask`. Empty when the colour test has no samples of either kind.
    """
    # only the pixels the pose's mask calls background are judged (the colour test's cost is in its pixels)
    judged = zone & ~mask & (pose_person < 0.5)
    if not judged.any():
        return judged
    return background_colour_in_gaps(image, prob, mask | judged, judged)
