"""P3M-style face obfuscation: the private area and the blur / mosaic / zero operators (Li et al., ACM MM 2021; figure
demo/face_obfuscation.jpg of `JizhiziLi/P3M`).

The private area is P = R_face \\ R_trans: the face region minus the matting transition band, so hair and
outline pixels that matter for matting stay untouched; `private_area` can leave the band in P where it crosses
a face's identifying core (its ``core``), where a kept band would show the face itself. `obfuscate` replaces the
pixels of P and returns every other pixel bit-identical. P is a bool mask (a hard edge, as in P3M's released
images) or float weights in [0, 1] (the anti-aliased regions of `p3m.privacy.region.soft_mask`): a pixel of weight
w becomes ``w * O(I) + (1 - w) * I``.

Operator scale. The P3M authors publish neither the blur σ nor the mosaic cell size.
Here both scale with the size of each connected component of P, measured as ``sqrt(bbox_w * bbox_h)``
of the component (a band cut through the face leaves holes; the bounding box is robust to them):

- blur: Gaussian with ``sigma = 0.15 * strength * size``, at least 4 px. On a 200 px face σ = 30 px: the eyes,
  brows and mouth are gone, the coarse shading of the face (darker eye sockets, a lit cheek) stays, as in
  P3M's released images (their shading range inside the face, 16-70 grey levels, is what σ = 0.15 leaves on
  real faces: 20-108; σ = 0.4 leaves a flat patch, 4-42). The 4 px floor flattens faces under ~27 px, which
  p3m's audit measures at their native size.
- mosaic: square cells of ``max(8, round(size * strength / 6))`` px (about six cells across a face, never under
  8 px: with smaller cells more than half of a small face's pixels touch a cell edge, and the mosaic itself
  reads as detail to `p3m audit`; a 48 px face gets 8 px cells and passes).
- zero: black-out.

Blur and mosaic are *masked*: only pixels of the private area enter the averages, weighted by their weight
(a normalised convolution ``G*(I·w) / G*w``), so no background or hair colour bleeds into the face.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from p3m.choices import OBFUSCATION_METHODS
from p3m.errors import ImageError

METHODS = OBFUSCATION_METHODS

# Fractions of the component size; see the module docstring.
BLUR_SIGMA_FRACTION = 0.15
MOSAIC_CELLS_PER_FACE = 6.0
MIN_BLUR_SIGMA = 4.0
MIN_MOSAIC_CELL = 8


def transition_band(
    *, alpha: np.ndarray | None = None, trimap: np.ndarray | None = None, band_dilation: int = 3
) -> np.ndarray:
    """Return the matting transition band R_trans as bool HxW.

    trimap: pixels equal to 128 (the P3M unknown value), used as given.
    alpha: pixels with 0 < alpha < 1 (float in [0, 1]) or 1..254 (uint8), dilated by ``band_dilation`` px
    (elliptic kernel): a predicted or compressed matte saturates to 0/1 a pixel or two early in fine hair,
    and those hair pixels must stay untouched as well. With both, the union is returned.
    """
    if alpha is None and trimap is None:
        raise ImageError("transition_band needs an alpha matte or a trimap")
    if band_dilation < 0:
        raise ImageError(f"band_dilation must be >= 0, got {band_dilation}")
    band: np.ndarray | None = None
    if trimap is not None:
        trimap = np.asarray(trimap)
        if trimap.ndim != 2:
            raise ImageError(f"trimap must be HxW, got shape {trimap.shape}")
        band = trimap == 128
    if alpha is not None:
        alpha = np.asarray(alpha)
        if alpha.ndim != 2:
            raise ImageError(f"alpha must be HxW, got shape {alpha.shape}")
        if alpha.dtype == np.uint8:
            alpha_band = (alpha > 0) & (alpha < 255)
        elif np.issubdtype(alpha.dtype, np.floating):
            if alpha.size and (np.nanmin(alpha) < 0.0 or np.nanmax(alpha) > 1.0):
                raise ImageError("float alpha must lie in [0, 1]; pass uint8 for 0..255 mattes")
            alpha_band = (alpha > 0.0) & (alpha < 1.0)
        else:
            raise ImageError(f"alpha must be uint8 or float in [0, 1], got dtype {alpha.dtype}")
        if band_dilation > 0:
            k = 2 * band_dilation + 1
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
            alpha_band = cv2.dilate(alpha_band.astype(np.uint8), kernel).astype(bool)
        if band is not None and band.shape != alpha_band.shape:
            raise ImageError(f"alpha {alpha_band.shape} and trimap {band.shape} differ in size")
        band = alpha_band if band is None else (band | alpha_band)
    assert band is not None  # an alpha or a trimap was given (checked above)
    return band


def private_area(
    face_region: np.ndarray,
    *,
    alpha: np.ndarray | None = None,
    trimap: np.ndarray | None = None,
    band_dilation: int = 3,
    band_edge: float = 0.0,
    core: np.ndarray | None = None,
) -> np.ndarray:
    """P = R_face \\ R_trans (Li et al., ACM MM 2021; figure demo/face_obfuscation.jpg of `JizhiziLi/P3M`): bool HxW for
    a bool face region, float32 weights for a soft one.

    ``core`` (bool HxW, or float weights in [0, 1] for a soft edge): where the band is **not** kept, e.g. the
    identifying core of each face (`p3m.privacy.landmarks.identifying_core`: eyes, brows, nose, lips, chin), so
    that a profile whose nose and lips lie in the band is obfuscated there too: P = R_face \\ (R_trans \\ core),
    for weights ``region * max(keep, core)`` with ``keep`` the band's weight factor below.

    A soft region's weights are 0 on the band and, with ``band_edge`` > 1 px, rise over that many px from it
    (``min(1, d / band_edge)``, d the distance to the nearest band pixel), so the obfuscation also fades out
    smoothly where it meets the kept hair instead of along the band's pixel steps. Without alpha and trimap the
    face region itself is returned (a copy). See `transition_band` for how the band is taken from each input and
    what ``band_dilation`` does (alpha only).
    """
    if alpha is None and trimap is None:
        return _check_region(face_region, None).copy()
    band = transition_band(alpha=alpha, trimap=trimap, band_dilation=band_dilation)
    return private_area_outside(face_region, band, band_edge=band_edge, core=core)


def private_area_outside(
    face_region: np.ndarray, band: np.ndarray, *, band_edge: float = 0.0, core: np.ndarray | None = None
) -> np.ndarray:
    """`private_area` for a transition band already taken (`transition_band`, bool HxW), for a caller that also
    uses the band itself (`p3m.privacy.anonymize` measures how much of each face's core it crosses)."""
    face_region = _check_region(face_region, None)
    if band.shape != face_region.shape:
        raise ImageError(f"alpha/trimap size {band.shape} differs from the face region {face_region.shape}")
    if core is not None:
        core = _check_region(core, band.shape)
    if face_region.dtype == bool:
        kept = band if core is None else band & ~(core > 0)
        return face_region & ~kept
    if band_edge <= 1.0:
        keep = (~band).astype(np.float32)
    else:
        distance = cv2.distanceTransform((~band).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        keep = np.minimum(distance / np.float32(band_edge), np.float32(1.0))
    if core is not None:
        keep = np.maximum(keep, core.astype(np.float32))
    return face_region * keep


def obfuscate(image: np.ndarray, region: np.ndarray, method: str = "blur", *, strength: float = 1.0) -> np.ndarray:
    """Obfuscate ``region`` of an HxWx3 uint8 image with ``method`` in {"blur", "mosaic", "zero"}.

    ``region``: a bool HxW mask (a hard edge, as P3M's released images) or float32 HxW weights in [0, 1] (the
    anti-aliased, feathered masks of `p3m.privacy.region.soft_mask`): each pixel becomes
    ``w * O(I) + (1 - w) * I``, and only pixels with ``w > 0`` enter the blur's and the mosaic's averages,
    weighted by ``w``. Pixels with weight 0 (outside the region) are returned bit-identical. ``strength``
    scales the blur σ and the mosaic cell (1.0 = the module's defaults). An empty region returns a copy.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"image must be HxWx3 uint8, got shape {image.shape} dtype {image.dtype}")
    weight = _check_region(region, image.shape[:2])
    if method not in METHODS:
        raise ImageError(f"unknown obfuscation method {method!r}; choose from {', '.join(METHODS)}")
    if not (math.isfinite(strength) and strength > 0):
        raise ImageError(f"strength must be a positive number, got {strength}")

    out = image.copy()
    support = weight > 0
    if not support.any():
        return out

    # Work on the region's bounding box: only region pixels enter the averages, so nothing outside the box
    # could change the result.
    bx, by, bw, bh = cv2.boundingRect(support.astype(np.uint8))
    sub_image = image[by : by + bh, bx : bx + bw]
    sub_support = support[by : by + bh, bx : bx + bw]
    sub_weight = weight[by : by + bh, bx : bx + bw]
    replaced = np.zeros(sub_image.shape, np.float32)
    if method != "zero":  # zero: the replacement is the zeros already there
        n, labels, stats, _ = cv2.connectedComponentsWithStats(sub_support.astype(np.uint8), connectivity=8)
        for k in range(1, n):
            x, y, w, h = (int(v) for v in stats[k, :4])
            size = math.sqrt(w * h)
            component = np.where(labels == k, sub_weight, 0.0).astype(np.float32)
            if method == "blur":
                sigma = max(MIN_BLUR_SIGMA, BLUR_SIGMA_FRACTION * strength * size)
                _masked_blur(sub_image, component, (x, y, w, h), sigma, replaced)
            else:
                cell = max(MIN_MOSAIC_CELL, round(size * strength / MOSAIC_CELLS_PER_FACE))
                _masked_mosaic(sub_image, component, (x, y, w, h), cell, replaced)

    w_in = sub_weight[sub_support][:, None]
    mixed = w_in * replaced[sub_support] + (1.0 - w_in) * sub_image[sub_support].astype(np.float32)
    out[by : by + bh, bx : bx + bw][sub_support] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return out


def _check_region(region: np.ndarray, shape: tuple[int, int] | None) -> np.ndarray:
    """Validate a region: bool HxW (0/1 or 0/255 integer masks are binarised at > 0) or float weights in [0, 1]."""
    region = np.asarray(region)
    if region.ndim != 2:
        raise ImageError(f"region must be a HxW mask, got shape {region.shape}")
    if np.issubdtype(region.dtype, np.floating):
        if region.size and not (np.all(np.isfinite(region)) and region.min() >= 0.0 and region.max() <= 1.0):
            raise ImageError("float region weights must lie in [0, 1]")
        region = region.astype(np.float32, copy=False)
    elif region.dtype != bool:
        if not np.issubdtype(region.dtype, np.integer):
            raise ImageError(f"region must be a bool mask or float weights, got dtype {region.dtype}")
        region = region > 0
    if shape is not None and region.shape != tuple(shape):
        raise ImageError(f"region size {region.shape} differs from the image size {tuple(shape)}")
    return region


def _masked_blur(
    image: np.ndarray, weight: np.ndarray, bbox: tuple[int, int, int, int], sigma: float, out: np.ndarray
) -> None:
    """Normalised Gaussian blur G*(I·w) / G*w of one component (``weight`` > 0 on it, 0 elsewhere), written into
    ``out`` where ``weight`` > 0."""
    x, y, w, h = bbox
    # A large σ on full resolution is slow: blur a copy downscaled so that σ is ~4 px there, then upscale.
    # The result is smooth at the scale σ anyway, so nothing recognisable is lost or gained.
    factor = max(1.0, sigma / 4.0)
    pad = math.ceil(3 * sigma)
    H, W = weight.shape
    x0, y0, x1, y1 = max(0, x - pad), max(0, y - pad), min(W, x + w + pad), min(H, y + h + pad)
    mask = weight[y0:y1, x0:x1]
    crop = image[y0:y1, x0:x1].astype(np.float32)
    cw, ch = x1 - x0, y1 - y0
    sw, sh = max(1, round(cw / factor)), max(1, round(ch / factor))
    small_mask = cv2.resize(mask, (sw, sh), interpolation=cv2.INTER_AREA)
    small_num = cv2.resize(crop * mask[..., None], (sw, sh), interpolation=cv2.INTER_AREA)
    s = sigma / factor
    blur_mask = cv2.GaussianBlur(small_mask, (0, 0), s, borderType=cv2.BORDER_CONSTANT)
    blur_num = cv2.GaussianBlur(small_num, (0, 0), s, borderType=cv2.BORDER_CONSTANT)
    if (sw, sh) != (cw, ch):
        blur_mask = cv2.resize(blur_mask, (cw, ch), interpolation=cv2.INTER_LINEAR)
        blur_num = cv2.resize(blur_num, (cw, ch), interpolation=cv2.INTER_LINEAR)
    inside = mask > 0
    denom = np.maximum(blur_mask[inside], 1e-6)[:, None]
    values = blur_num[inside] / denom
    # Where the normalised weights vanish numerically fall back to the component's weighted mean colour.
    wi = mask[inside][:, None]
    mean = (crop[inside] * wi).sum(axis=0) / max(float(wi.sum()), 1e-12)
    weak = blur_mask[inside] < 1e-4
    values[weak] = mean
    sub = out[y0:y1, x0:x1]
    sub[inside] = values


def _masked_mosaic(
    image: np.ndarray, weight: np.ndarray, bbox: tuple[int, int, int, int], cell: int, out: np.ndarray
) -> None:
    """Pixelate one component (``weight`` > 0 on it): each ``cell`` px square of a grid anchored at its bbox gets
    the ``weight``-weighted mean of its pixels."""
    x, y, w, h = bbox
    m = weight[y : y + h, x : x + w].astype(np.float64)
    crop = image[y : y + h, x : x + w].astype(np.float64)
    ny, nx = -(-h // cell), -(-w // cell)
    pad_h, pad_w = ny * cell - h, nx * cell - w
    mp = np.pad(m, ((0, pad_h), (0, pad_w)))
    c = np.pad(crop * m[..., None], ((0, pad_h), (0, pad_w), (0, 0)))
    cnt = mp.reshape(ny, cell, nx, cell).sum(axis=(1, 3))
    tot = c.reshape(ny, cell, nx, cell, 3).sum(axis=(1, 3))
    means = tot / np.maximum(cnt, 1e-12)[..., None]
    full = np.repeat(np.repeat(means, cell, axis=0), cell, axis=1)[:h, :w]
    inside = m > 0
    sub = out[y : y + h, x : x + w]
    sub[inside] = full[inside]
