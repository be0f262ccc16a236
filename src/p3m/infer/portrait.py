"""The built-in portrait route: a person-segmentation prior refined by closed-form matting.

No trained P3M-Net checkpoint is needed. For an RGB image (HxWx3 uint8), at a working resolution of at most
`matting_side` px on the long side (every step but the segmentation's input crops and the final upsampling):

1. **Prior**: MediaPipe's selfie segmentation (`p3m.models.selfie`, Apache-2.0, 256x256) on the whole image
   letterboxed to a square, then a second pass on a square crop around the person found by the first
   (averaged with its mirror image, blended into the first over a feathered edge). The network was trained on
   people filling the frame: the crop gives it 2-4x more pixels on the person, and it stops it from taking
   nearby person-like objects (statues, bushes) for the subject. When the person does not fit a square inside
   the image, the crop is the largest square that does, centred on the confident core of the person.
2. **Mask**: prior >= `threshold`, keeping the connected components that hold confident (>= `seed_threshold`)
   pixels, at least `min_component` of the most confident component's count (hysteresis: grey blobs with no
   confident pixel, the network's usual false positives, are dropped; an image without any is an image
   without a person, and gets an all-zero matte).
3. **Trimap**: unknown within `band` (fraction of the long side) of the mask's edge, widened where fine
   high-contrast structure (hair) continues beyond that band: outward up to `hair_out`, and inward up to
   `hair_in` next to such hair; "fine structure" is local high-pass energy above `hair_contrast` times the
   background's median (and above a noise floor), so textured backgrounds raise their own bar.
4. **Refinement**: closed-form matting (Levin et al. 2008) on the unknown pixels only
   (`p3m.infer.closed_form`), started from the mask; values within `clean` of 0 or 1 snapped to them (the
   solver's ripple in flat regions); bilinear upsampling to the image's size.

Measured on the 12 real test portraits: benchmarks/bench_portrait.py and benchmarks/RESULTS.md.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from p3m.infer.preprocess import array_to_rgb
from p3m.models.registry import create

__all__ = ["PortraitMatting", "PortraitSettings", "working_size"]

# high-pass energy below this (about one grey level) is noise: the bar for "fine structure" on a flat background
_NOISE_FLOOR = 0.005


@dataclass(frozen=True)
class PortraitSettings:
    """Knobs of the route; the defaults are the measured ones (benchmarks/bench_portrait.py).

    Lengths are fractions of the image's long side, so they mean the same at every resolution.
    """

    matting_side: int = 1024  # working resolution (long side) of the mask, trimap and closed-form solve
    crop_pass: bool = True  # second segmentation pass on a square crop around the person
    crop_margin: float = 0.1  # margin around the person's box, fraction of the box's long side
    crop_flip: bool = True  # average the crop pass with its mirror image
    feather: float = 0.05  # crop blended into the first pass over this fraction of the crop's side
    threshold: float = 0.5  # person where the prior is >= this ...
    seed_threshold: float = 0.9  # ... in components holding pixels >= this (hysteresis)
    min_component: float = 0.1  # ... at least this fraction of the largest such count
    band: float = 0.01  # trimap half-width on each side of the mask's edge
    hair_out: float = 0.03  # outward widening where fine structure continues (0 = off)
    hair_in: float = 0.02  # inward widening next to such structure (0 = off)
    hair_contrast: float = 5.0  # fine structure: high-pass energy > this x the background's median
    cf_eps: float = 1e-7  # closed-form regulariser (pymatting's default)
    rtol: float = 1e-4  # conjugate-gradient tolerance (relative residual)
    clean: float = 0.05  # alpha within this of 0 or 1 is set to 0 or 1 (the solver's ripple)


def working_size(height: int, width: int, side: int) -> tuple[int, int]:
    """(h, w) of the working resolution: long side at most `side`, never upscaled, at least 1 px."""
    scale = min(1.0, side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _distance_to(mask: np.ndarray) -> np.ndarray:
    """HxW float32: Euclidean distance of every pixel to the nearest True pixel of `mask` (inf if none)."""
    if not mask.any():
        return np.full(mask.shape, np.inf, np.float32)
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def _crop_box(
    core: np.ndarray, mask: np.ndarray, scale: tuple[float, float], image_hw: tuple[int, int], margin: float
) -> tuple[int, int, int]:
    """(top, left, side) in image pixels of the crop pass: the person's box with a margin, made square.

    When that square does not fit inside the image it becomes the largest square that does, centred on the
    confident core (the mean position of `core`, or of `mask` when the core is empty) and kept inside.
    """
    h, w = image_hw
    sy, sx = scale
    ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    y0, y1 = ys[0] / sy, (ys[-1] + 1) / sy
    x0, x1 = xs[0] / sx, (xs[-1] + 1) / sx
    grow = margin * max(y1 - y0, x1 - x0)
    y0, y1, x0, x1 = max(0.0, y0 - grow), min(h, y1 + grow), max(0.0, x0 - grow), min(w, x1 + grow)
    side = max(y1 - y0, x1 - x0, max(h, w) / 8)  # zoom at most 8x on the first pass: tiny blobs are noise
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    if side > min(h, w):
        side = min(h, w)
        py, px = np.nonzero(core if core.any() else mask)
        cy, cx = (py.mean() + 0.5) / sy, (px.mean() + 0.5) / sx
    side = max(1, round(side))
    top = round(min(max(cy - side / 2, 0), max(h - side, 0)))
    left = round(min(max(cx - side / 2, 0), max(w - side, 0)))
    return top, left, side


def _feather(
    top: int, left: int, side: int, image_hw: tuple[int, int], work_hw: tuple[int, int], width: float
) -> np.ndarray:
    """work-size float32 weight of the crop: 1 inside, ramping to 0 over `width` px at edges inside the image."""
    h, w = image_hw
    hw, ww = work_hw

    def ramp(n_work: int, n_image: int, start: int) -> np.ndarray:
        pos = (np.arange(n_work) + 0.5) * (n_image / n_work)  # work pixel centres, image coordinates
        end = start + side
        wgt = ((pos >= start) & (pos < end)).astype(np.float32)
        if width > 0:
            if start > 0:
                wgt = np.minimum(wgt, np.clip((pos - start) / width, 0, 1))
            if end < n_image:
                wgt = np.minimum(wgt, np.clip((end - pos) / width, 0, 1))
        return wgt.astype(np.float32)

    return np.minimum(ramp(hw, h, top)[:, None], ramp(ww, w, left)[None, :])


def _fine_structure(image: np.ndarray) -> np.ndarray:
    """HxW float32 local high-pass energy of the grey image (HxWx3 uint8): strands, edges, texture."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    detail = np.abs(grey - cv2.GaussianBlur(grey, (0, 0), 1.5))
    return cv2.blur(detail, (5, 5))


def _touching(extra: np.ndarray, base: np.ndarray) -> np.ndarray:
    """The pixels of `extra` in connected components (8-connected) of `extra | base` that contain `base`."""
    n, labels = cv2.connectedComponents((extra | base).astype(np.uint8), connectivity=8)
    keep = np.zeros(n, dtype=bool)
    keep[np.unique(labels[base])] = True
    keep[0] = False
    return extra & keep[labels]


class PortraitMatting:
    """Callable: HxWx3 uint8 RGB -> HxW float32 alpha in [0, 1] (thread-safe: the network call is locked).

    Steps are public for tests and tools; all but `prior`'s input work at the working resolution
    (`working_size(h, w, settings.matting_side)`): `prior(rgb)` -> prob, `mask(prob)` -> bool,
    `trimap(mask, image)` -> {0, 128, 255}, `refine(image, trimap, guess)` -> alpha.
    """

    def __init__(self, settings: PortraitSettings | None = None, *, device: str = "cpu") -> None:
        self.settings = settings or PortraitSettings()
        self.device = device
        self.net: Any = create("mediapipe-selfie").eval().to(device)  # a SelfieSegmentation (tests swap in others)
        self._lock = threading.Lock()
        self.last_timings: dict[str, float] = {}

    # -- 1. prior ---------------------------------------------------------------------------------------

    def _segment(
        self, rgb: np.ndarray, top: int, left: int, side: int, work_hw: tuple[int, int], flip: bool
    ) -> np.ndarray:
        """Person probability of the square box (top, left, side) of rgb (zeros outside the image), sampled
        at the work-size grid of the whole image (values outside the box are the box's edge values)."""
        h, w = rgb.shape[:2]
        nh, nw = self.net.input_size
        y0, y1, x0, x1 = max(top, 0), min(top + side, h), max(left, 0), min(left + side, w)
        # the image part of the box, resized into its place on a zero canvas of the network's size
        cy0, cy1 = round((y0 - top) * nh / side), round((y1 - top) * nh / side)
        cx0, cx1 = round((x0 - left) * nw / side), round((x1 - left) * nw / side)
        cy1, cx1 = min(max(cy1, cy0 + 1), nh), min(max(cx1, cx0 + 1), nw)
        cy0, cx0 = min(cy0, cy1 - 1), min(cx0, cx1 - 1)
        canvas = np.zeros((nh, nw, 3), np.uint8)
        canvas[cy0:cy1, cx0:cx1] = cv2.resize(rgb[y0:y1, x0:x1], (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_AREA)
        x = torch.from_numpy(canvas).permute(2, 0, 1)[None].float().div_(255.0)
        if flip:
            x = torch.cat([x, x.flip(-1)])
        with self._lock, torch.inference_mode():
            y = self.net(x.to(self.device)).float().cpu()
        prob = ((y[0, 0] + y[1, 0].flip(-1)) / 2 if flip else y[0, 0]).numpy()
        # work pixel centre -> image coordinate -> canvas coordinate, per axis with the placement used above
        hw, ww = work_hw
        ky, kx = (cy1 - cy0) / (y1 - y0), (cx1 - cx0) / (x1 - x0)
        ay, ax = ky * h / hw, kx * w / ww
        m = np.array([[ax, 0, 0.5 * ax - x0 * kx + cx0 - 0.5], [0, ay, 0.5 * ay - y0 * ky + cy0 - 0.5]])
        return cv2.warpAffine(
            prob, m, (ww, hw), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
        )

    def prior(self, rgb: np.ndarray) -> np.ndarray:
        """Working-size float32 person probability of an HxWx3 uint8 image (two passes, see the module doc)."""
        s = self.settings
        rgb = array_to_rgb(rgb)
        h, w = rgb.shape[:2]
        work_hw = working_size(h, w, s.matting_side)
        side = max(h, w)
        prob = self._segment(rgb, (h - side) // 2, (w - side) // 2, side, work_hw, flip=False)
        if s.crop_pass:
            mask = self.mask(prob)
            if mask.any():
                scale = (work_hw[0] / h, work_hw[1] / w)
                top, left, side = _crop_box(prob >= s.seed_threshold, mask, scale, (h, w), s.crop_margin)
                crop = self._segment(rgb, top, left, side, work_hw, flip=s.crop_flip)
                weight = _feather(top, left, side, (h, w), work_hw, s.feather * side)
                prob = weight * crop + (1 - weight) * prob
        return np.clip(prob, 0.0, 1.0).astype(np.float32)

    # -- 2. mask ----------------------------------------------------------------------------------------

    def mask(self, prob: np.ndarray) -> np.ndarray:
        """HxW bool: prior >= threshold, in components with enough confident (>= seed_threshold) pixels."""
        s = self.settings
        binary = (prob >= s.threshold).astype(np.uint8)
        n, labels = cv2.connectedComponents(binary, connectivity=8)
        seeds = np.bincount(labels[prob >= max(s.seed_threshold, s.threshold)], minlength=n).astype(np.float64)
        seeds[0] = 0  # background label
        keep = (seeds > 0) & (seeds >= s.min_component * seeds.max())
        return keep[labels]

    # -- 3. trimap --------------------------------------------------------------------------------------

    def trimap(self, mask: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
        """HxW uint8 {0, 128, 255}: band around the mask's edge, widened at hair when `image` (HxWx3) is given."""
        s = self.settings
        side = max(mask.shape)
        mask = mask.astype(bool)
        d_out = _distance_to(mask)  # background pixels: distance to the person
        d_in = _distance_to(~mask)  # person pixels: distance to the background
        r = max(1.0, s.band * side)
        unknown = np.where(mask, d_in <= r, d_out <= r)
        if image is not None and mask.any() and (s.hair_out > 0 or s.hair_in > 0):
            unknown |= self._hair(mask, d_out, d_in, r, _fine_structure(array_to_rgb(image)), unknown)
        tri = np.where(mask, 255, 0).astype(np.uint8)
        tri[unknown] = 128
        return tri

    def _hair(
        self, mask: np.ndarray, d_out: np.ndarray, d_in: np.ndarray, r: float, energy: np.ndarray, band: np.ndarray
    ) -> np.ndarray:
        """HxW bool: the extra unknown pixels where fine structure (hair) crosses the band (see the module doc)."""
        s = self.settings
        side = max(mask.shape)
        r_out, r_in = max(r, s.hair_out * side), max(1.0, s.hair_in * side)
        background = ~mask & (d_out > r_out)
        if not background.any():
            return np.zeros_like(mask)
        # the bar: a multiple of the background's typical texture, so busy backgrounds do not widen
        bar = max(s.hair_contrast * float(np.median(energy[background])), _NOISE_FLOOR)
        fine = energy > bar
        outward = ~mask & (d_out <= r_out) & fine
        # inward only next to structure seen beyond the band (strands leaving the head), never at bare
        # clothing edges whose own texture fills the band
        beyond = outward & (d_out > r)
        inward = mask & (d_in <= r_in) & fine & (_distance_to(beyond) <= 2 * r_in)
        return _touching(outward | inward, band)

    # -- 4. refinement ----------------------------------------------------------------------------------

    def refine(self, image: np.ndarray, trimap: np.ndarray, guess: np.ndarray | None = None) -> np.ndarray:
        """HxW float32 alpha: closed-form matting of the trimap's unknown pixels (image HxWx3 uint8)."""
        # numba (the solver's compiler) loads only when the route solves: the network routes never pay for it
        from p3m.infer.closed_form import solve_alpha

        s = self.settings
        if guess is None:
            guess = (trimap == 255).astype(np.float32)
        return solve_alpha(array_to_rgb(image), trimap, guess, eps=s.cf_eps, rtol=s.rtol)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """HxW float32 alpha of an RGB image array (any range of `p3m.infer.preprocess.array_to_rgb`: grey, RGBA,
        16-bit, float in [0, 1]); step times in `last_timings`."""
        rgb = array_to_rgb(rgb)
        h, w = rgb.shape[:2]
        t0 = time.perf_counter()
        prob = self.prior(rgb)
        t1 = time.perf_counter()
        hw, ww = prob.shape
        image = rgb if (hw, ww) == (h, w) else cv2.resize(rgb, (ww, hw), interpolation=cv2.INTER_AREA)
        mask = self.mask(prob)
        tri = self.trimap(mask, image)
        t2 = time.perf_counter()
        alpha = self.refine(image, tri, mask.astype(np.float32))
        if self.settings.clean > 0:
            alpha[alpha < self.settings.clean] = 0.0
            alpha[alpha > 1.0 - self.settings.clean] = 1.0
        t3 = time.perf_counter()
        if (hw, ww) != (h, w):  # bilinear: stays in [0, 1]; one full-size array, nothing else at full size
            alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
        t4 = time.perf_counter()
        self.last_timings = {"prior": t1 - t0, "trimap": t2 - t1, "refine": t3 - t2, "upsample": t4 - t3}
        return alpha
