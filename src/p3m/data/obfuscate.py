"""P3M-style face obfuscation: the private area and the blur / mosaic / zero operators (reference §2).

The private area is P = R_face \\ R_trans: the face region minus the matting transition band, so hair and
outline pixels that matter for matting stay untouched (§2.1). `obfuscate` replaces the pixels of P and
returns every other pixel bit-identical.

Operator scale. The P3M authors publish neither the blur σ nor the mosaic cell size (§2.2, "not published").
Here both scale with the size of each connected component of P, measured as ``sqrt(bbox_w * bbox_h)``
of the component (a band cut through the face leaves holes; the bounding box is robust to them):

- blur: Gaussian with ``sigma = 0.4 * strength * size`` (at least 2 px); on a 200 px face σ = 80 px, which
  leaves a nearly flat, skin-coloured patch as in the released P3M-10k data.
- mosaic: square cells of ``max(4, round(size * strength / 6))`` px (about six cells across a face), each
  filled with the mean colour of its private-area pixels.
- zero: black-out.

Blur and mosaic are *masked*: only pixels of the private area enter the averages (a normalised
convolution ``G*(I·M) / G*M``), so no background or hair colour bleeds into the face.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from p3m.choices import OBFUSCATION_METHODS
from p3m.errors import ImageError

METHODS = OBFUSCATION_METHODS

# Fractions of the component size; see the module docstring.
BLUR_SIGMA_FRACTION = 0.4
MOSAIC_CELLS_PER_FACE = 6.0
MIN_BLUR_SIGMA = 2.0
MIN_MOSAIC_CELL = 4


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
) -> np.ndarray:
    """P = R_face \\ R_trans (reference §2.1) as bool HxW.

    Without alpha and trimap the face region itself is returned (a copy). See `transition_band` for how the
    band is taken from each input and what ``band_dilation`` does (alpha only).
    """
    face_region = _check_region(face_region, None)
    if alpha is None and trimap is None:
        return face_region.copy()
    band = transition_band(alpha=alpha, trimap=trimap, band_dilation=band_dilation)
    if band.shape != face_region.shape:
        raise ImageError(f"alpha/trimap size {band.shape} differs from the face region {face_region.shape}")
    return face_region & ~band


def obfuscate(
    image: np.ndarray,
    region: np.ndarray,
    method: str = "blur",
    *,
    strength: float = 1.0,
    feather: float = 0.0,
) -> np.ndarray:
    """Obfuscate ``region`` of an HxWx3 uint8 image with ``method`` in {"blur", "mosaic", "zero"}.

    Pixels outside ``region`` are returned bit-identical, also with ``feather > 0``: feathering only blends
    *inside* the region, over its outer ``feather`` px (weight = distance to the region border / feather,
    capped at 1), so the region's border pixels keep part of the original. ``strength`` scales the blur σ and
    the mosaic cell (1.0 = defaults of the module docstring). An empty region returns a copy.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"image must be HxWx3 uint8, got shape {image.shape} dtype {image.dtype}")
    region = _check_region(region, image.shape[:2])
    if method not in METHODS:
        raise ImageError(f"unknown obfuscation method {method!r}; choose from {', '.join(METHODS)}")
    if not (math.isfinite(strength) and strength > 0):
        raise ImageError(f"strength must be a positive number, got {strength}")
    if not (math.isfinite(feather) and feather >= 0):
        raise ImageError(f"feather must be >= 0, got {feather}")

    out = image.copy()
    if not region.any():
        return out

    # Work on the region's bounding box (+1 px so the feather sees the region's outside neighbours): only
    # region pixels enter the averages, so nothing outside the box could change the result.
    bx, by, bw, bh = cv2.boundingRect(region.astype(np.uint8))
    x0, y0 = max(0, bx - 1), max(0, by - 1)
    x1, y1 = min(image.shape[1], bx + bw + 1), min(image.shape[0], by + bh + 1)
    sub_image = image[y0:y1, x0:x1]
    sub_region = region[y0:y1, x0:x1]
    replaced = np.zeros(sub_image.shape, np.float32)
    if method != "zero":  # zero: the replacement is the zeros already there
        n, labels, stats, _ = cv2.connectedComponentsWithStats(sub_region.astype(np.uint8), connectivity=8)
        for k in range(1, n):
            x, y, w, h = (int(v) for v in stats[k, :4])
            size = math.sqrt(w * h)
            if method == "blur":
                sigma = max(MIN_BLUR_SIGMA, BLUR_SIGMA_FRACTION * strength * size)
                _masked_blur(sub_image, labels, k, (x, y, w, h), sigma, replaced)
            else:
                cell = max(MIN_MOSAIC_CELL, round(float(size * strength / MOSAIC_CELLS_PER_FACE)))
                _masked_mosaic(sub_image, labels, k, (x, y, w, h), cell, replaced)

    if feather > 0:
        dist = cv2.distanceTransform(sub_region.astype(np.uint8), cv2.DIST_L2, 5)
        weight = np.clip(dist / feather, 0.0, 1.0)[sub_region][:, None]
        mixed = weight * replaced[sub_region] + (1.0 - weight) * sub_image[sub_region].astype(np.float32)
    else:
        mixed = replaced[sub_region]
    out[y0:y1, x0:x1][sub_region] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return out


def _check_region(region: np.ndarray, shape: tuple[int, int] | None) -> np.ndarray:
    """Validate a region mask: bool HxW (0/1 or 0/255 integer masks are accepted and binarised at > 0)."""
    region = np.asarray(region)
    if region.ndim != 2:
        raise ImageError(f"region must be a HxW mask, got shape {region.shape}")
    if region.dtype != bool:
        if not np.issubdtype(region.dtype, np.integer):
            raise ImageError(f"region must be a bool mask, got dtype {region.dtype}")
        region = region > 0
    if shape is not None and region.shape != tuple(shape):
        raise ImageError(f"region size {region.shape} differs from the image size {tuple(shape)}")
    return region


def _masked_blur(
    image: np.ndarray, labels: np.ndarray, k: int, bbox: tuple[int, int, int, int], sigma: float, out: np.ndarray
) -> None:
    """Normalised Gaussian blur of component ``k`` (only its pixels contribute), written into ``out``."""
    x, y, w, h = bbox
    # A large σ on full resolution is slow: blur a copy downscaled so that σ is ~4 px there, then upscale.
    # The result is smooth at the scale σ anyway, so nothing recognisable is lost or gained.
    factor = max(1.0, sigma / 4.0)
    pad = math.ceil(3 * sigma)
    H, W = labels.shape
    x0, y0, x1, y1 = max(0, x - pad), max(0, y - pad), min(W, x + w + pad), min(H, y + h + pad)
    mask = (labels[y0:y1, x0:x1] == k).astype(np.float32)
    crop = image[y0:y1, x0:x1].astype(np.float32)
    cw, ch = x1 - x0, y1 - y0
    sw, sh = max(1, round(float(cw / factor))), max(1, round(float(ch / factor)))
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
    # Where the normalised weights vanish numerically fall back to the component's mean colour.
    mean = crop[inside].mean(axis=0)
    weak = blur_mask[inside] < 1e-4
    values[weak] = mean
    sub = out[y0:y1, x0:x1]
    sub[inside] = values


def _masked_mosaic(
    image: np.ndarray, labels: np.ndarray, k: int, bbox: tuple[int, int, int, int], cell: int, out: np.ndarray
) -> None:
    """Pixelate component ``k``: each ``cell`` px square (grid anchored at its bbox) gets its pixels' mean."""
    x, y, w, h = bbox
    mask = labels[y : y + h, x : x + w] == k
    crop = image[y : y + h, x : x + w].astype(np.float64)
    ny, nx = -(-h // cell), -(-w // cell)
    pad_h, pad_w = ny * cell - h, nx * cell - w
    m = np.pad(mask, ((0, pad_h), (0, pad_w))).astype(np.float64)
    c = np.pad(crop * mask[..., None], ((0, pad_h), (0, pad_w), (0, 0)))
    cnt = m.reshape(ny, cell, nx, cell).sum(axis=(1, 3))
    tot = c.reshape(ny, cell, nx, cell, 3).sum(axis=(1, 3))
    means = tot / np.maximum(cnt, 1)[..., None]
    full = np.repeat(np.repeat(means, cell, axis=0), cell, axis=1)[:h, :w]
    sub = out[y : y + h, x : x + w]
    sub[mask] = full[mask]
