"""EXPERIMENTAL: portrait route with knobs (being tuned)."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

__all__ = ["PortraitSettings", "PortraitMatting", "ROUTE_NAME"]

ROUTE_NAME = "portrait-cf"


@dataclass(frozen=True)
class PortraitSettings:
    flip: bool = False
    guided_radius: float = 0.0
    guided_eps: float = 1e-3
    threshold: float = 0.5
    seed_threshold: float = 0.5     # hysteresis: components must hold a pixel >= this
    reach: float = 0.0              # >0: keep only >=threshold pixels within reach (x long side) of seeds
    min_component: float = 0.1
    band: float = 0.01
    uncertain: tuple[float, float] = (1.0, 1.0)  # prior values in (lo, hi) become unknown
    uncertain_reach: float = 0.03   # ... only within this distance (fraction of long side) of the mask edge
    crop_pass: bool = False
    crop_margin: float = 0.1
    crop_merge: str = "replace"     # replace | mean | max
    variant: str = "general"
    matting_side: int = 1024
    work_side: int = 0              # 0: prior/mask/trimap at full size; else at this long side
    solver: str = "cf"
    cf_eps: float = 1e-7
    clean: float = 0.0              # alpha < clean -> 0, > 1 - clean -> 1
    upsample_guided: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def with_(self, **changes: Any) -> "PortraitSettings":
        return replace(self, **changes)


def _guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    ksize = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, ksize, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(guide), box(src)
    cov_ip = box(guide * src) - mean_i * mean_p
    var_i = box(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def _square_box(h, w, y0, y1, x0, x1, margin):
    """Square (top, left, side) around the box grown by margin (clipped to the image), shifted inside when it fits."""
    my, mx = margin * (y1 - y0), margin * (x1 - x0)
    m = max(my, mx)
    y0, y1 = max(0, y0 - m), min(h, y1 + m)
    x0, x1 = max(0, x0 - m), min(w, x1 + m)
    side = int(round(max(y1 - y0, x1 - x0)))
    side = max(side, 16)
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    top, left = int(round(cy - side / 2)), int(round(cx - side / 2))
    top = min(max(top, 0), h - side) if side <= h else (h - side) // 2
    left = min(max(left, 0), w - side) if side <= w else (w - side) // 2
    return top, left, side


class PortraitMatting:
    def __init__(self, settings: PortraitSettings | None = None, *, device: str = "cpu") -> None:
        import torch

        from p3m import models

        self.settings = settings or PortraitSettings()
        self.device = device
        self.nets = {v: models.create("mediapipe-selfie", variant=v).eval().to(device) for v in ("general", "landscape")}
        self.net = self.nets["general"]
        self._torch = torch
        self._lock = threading.Lock()
        self.last_timings: dict[str, float] = {}

    def _segment(self, rgb: np.ndarray, top: int, left: int, side_h: int, side_w: int, net=None) -> np.ndarray:
        """Network on the box (top, left, side_h, side_w) of rgb (zero outside); HxW prob of the image part."""
        torch = self._torch
        net = net or self.net
        h, w = rgb.shape[:2]
        nh, nw = net.input_size
        # crop the part of the box inside the image, place it in a zero canvas at net scale
        y0, y1 = max(top, 0), min(top + side_h, h)
        x0, x1 = max(left, 0), min(left + side_w, w)
        sy, sx = nh / side_h, nw / side_w
        canvas = np.zeros((nh, nw, 3), np.uint8)
        cy0, cy1 = int(round((y0 - top) * sy)), int(round((y1 - top) * sy))
        cx0, cx1 = int(round((x0 - left) * sx)), int(round((x1 - left) * sx))
        cy1, cx1 = max(cy1, cy0 + 1), max(cx1, cx0 + 1)
        canvas[cy0:cy1, cx0:cx1] = cv2.resize(rgb[y0:y1, x0:x1], (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_AREA)
        x = torch.from_numpy(canvas).permute(2, 0, 1)[None].float().div_(255.0)
        if self.settings.flip:
            x = torch.cat([x, x.flip(-1)])
        with self._lock, torch.inference_mode():
            y = net(x.to(self.device)).float().cpu()
        if self.settings.flip:
            prob = torch.minimum(y[0, 0], y[1, 0].flip(-1)) if self.settings.extra.get("flip_min") else (y[0, 0] + y[1, 0].flip(-1)) / 2
        else:
            prob = y[0, 0]
        prob = prob.numpy()
        # map the image part of the box back: dst pixel (u, v) in image -> src (u - left + .5) * sx - .5
        m = np.array([[sx, 0, (x0 - left + 0.5) * sx - 0.5], [0, sy, (y0 - top + 0.5) * sy - 0.5]], np.float64)
        out = cv2.warpAffine(prob, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REPLICATE)
        return out, (y0, y1, x0, x1)

    def with_thr(self, t):
        o = object.__new__(PortraitMatting)
        o.settings = self.settings.with_(threshold=t)
        return o

    def prior(self, rgb: np.ndarray) -> np.ndarray:
        s = self.settings
        h, w = rgb.shape[:2]
        outs = []
        for v in s.variant.split("+"):
            net = self.nets[v]
            nh, nw = net.input_size
            # letterbox: box of aspect nh:nw containing the image, centred
            k = max(h / nh, w / nw)
            bh, bw = nh * k, nw * k
            if s.extra.get("stretch"):
                bh, bw = h, w
            top, left = int(round((h - bh) / 2)), int(round((w - bw) / 2))
            outs.append(self._segment(rgb, top, left, int(round(bh)), int(round(bw)), net)[0])
        full = np.mean(outs, 0) if s.extra.get("vmerge", "mean") == "mean" else np.min(outs, 0)
        if s.crop_pass:
            bt = s.extra.get("box_thr", s.threshold)
            m = self.with_thr(bt).mask(full) if bt != s.threshold else self.mask(full)
            if m.any():
                ys, xs = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
                t, l, side = _square_box(h, w, ys[0], ys[-1] + 1, xs[0], xs[-1] + 1, s.crop_margin)
                sh = sw = side
                if s.extra.get("centroid"):
                    short = min(h, w)
                    if side > short:
                        side = sh = sw = short
                        core = full >= s.extra.get("core", 0.9)
                        yy, xx = np.nonzero(core) if core.any() else np.nonzero(m)
                        cy, cx = yy.mean(), xx.mean()
                        t = int(min(max(round(cy - side / 2), 0), h - side))
                        l = int(min(max(round(cx - side / 2), 0), w - side))
                if s.extra.get("crop_stretch"):
                    y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
                    mm = s.crop_margin * max(y1 - y0, x1 - x0)
                    t, l = int(max(0, y0 - mm)), int(max(0, x0 - mm))
                    sh, sw = int(min(h, y1 + mm)) - t, int(min(w, x1 + mm)) - l
                    side = max(sh, sw) if (sh < h or sw < w) else 10 ** 9
                if side < max(h, w) * 0.95:
                    crop, (y0, y1, x0, x1) = self._segment(rgb, t, l, sh, sw)
                    region = full[y0:y1, x0:x1]
                    if s.extra.get("outside") == "zero":
                        keep = region.copy()
                        full[...] = 0
                        region = full[y0:y1, x0:x1]
                        region[...] = keep
                    if s.crop_merge == "replace":
                        region[...] = crop
                    elif s.crop_merge == "mean":
                        region[...] = (region + crop) / 2
                    elif s.crop_merge == "min":
                        np.minimum(region, crop, out=region)
                    elif s.crop_merge == "geo":
                        region[...] = np.sqrt(region * crop)
                    else:
                        np.maximum(region, crop, out=region)
        if s.guided_radius > 0:
            grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
            radius = max(1, round(s.guided_radius * max(h, w)))
            full = _guided_filter(grey, np.ascontiguousarray(full, dtype=np.float32), radius, s.guided_eps)
        return np.clip(full, 0.0, 1.0).astype(np.float32)

    def mask(self, prob: np.ndarray) -> np.ndarray:
        s = self.settings
        binary = (prob >= s.threshold).astype(np.uint8)
        if s.reach > 0:
            strong = (prob >= s.seed_threshold).astype(np.uint8)
            rr = max(1, round(s.reach * max(prob.shape)))
            k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rr + 1, 2 * rr + 1))
            binary &= cv2.dilate(strong, k)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        if n <= 1:
            return binary.astype(bool)
        seeds = np.bincount(labels[prob >= max(s.seed_threshold, s.threshold)], minlength=n).astype(np.float64)
        seeds[0] = 0
        keep = seeds > 0
        keep &= seeds >= s.min_component * seeds.max()
        keep[0] = False
        return keep[labels]

    def trimap(self, mask: np.ndarray, prob: np.ndarray | None = None) -> np.ndarray:
        s = self.settings
        side = max(mask.shape)
        r = max(1, round(s.band * side))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        m = mask.astype(np.uint8)
        fg = cv2.erode(m, kernel)
        grown = cv2.dilate(m, kernel)
        unknown = grown != fg
        if prob is not None and s.uncertain[0] < s.uncertain[1]:
            lo, hi = s.uncertain
            rr = max(1, round(s.uncertain_reach * side))
            k2 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rr + 1, 2 * rr + 1))
            near = cv2.dilate(m, k2) != cv2.erode(m, k2)
            unknown |= near & (prob > lo) & (prob < hi)
        tri = np.where(m > 0, 255, 0).astype(np.uint8)
        tri[unknown] = 128
        return tri

    def refine(self, rgb: np.ndarray, trimap: np.ndarray) -> np.ndarray:
        from p3m.pymatting_import import import_pymatting

        estimate_alpha_cf = import_pymatting().estimate_alpha_cf

        s = self.settings
        h, w = trimap.shape
        scale = min(1.0, s.matting_side / max(h, w))
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            img = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            tri = cv2.resize(trimap, size, interpolation=cv2.INTER_NEAREST)
        else:
            img, tri = rgb, trimap
        unk = tri == 128
        alpha = (tri == 255).astype(np.float64)
        if unk.any():
            ys, xs = np.nonzero(unk.any(1))[0], np.nonzero(unk.any(0))[0]
            y0, y1 = max(ys[0] - 3, 0), min(ys[-1] + 4, tri.shape[0])
            x0, x1 = max(xs[0] - 3, 0), min(xs[-1] + 4, tri.shape[1])
            sub = estimate_alpha_cf(img[y0:y1, x0:x1].astype(np.float64) / 255.0,
                                    tri[y0:y1, x0:x1].astype(np.float64) / 255.0,
                                    laplacian_kwargs={"epsilon": s.cf_eps})
            alpha[y0:y1, x0:x1] = sub
        alpha = np.clip(alpha, 0.0, 1.0).astype(np.float32)
        if s.clean > 0:
            alpha[alpha < s.clean] = 0
            alpha[alpha > 1 - s.clean] = 1
        if scale < 1.0:
            alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
            if s.upsample_guided > 0:
                grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
                radius = max(1, round(s.upsample_guided * max(h, w)))
                alpha = np.clip(_guided_filter(grey, alpha, radius, 1e-4), 0, 1)
        alpha[trimap == 255] = 1.0
        alpha[trimap == 0] = 0.0
        return alpha

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        prob = self.prior(rgb)
        t1 = time.perf_counter()
        tri = self.trimap(self.mask(prob), prob)
        t2 = time.perf_counter()
        alpha = self.refine(rgb, tri)
        t3 = time.perf_counter()
        self.last_timings = {"prior": t1 - t0, "trimap": t2 - t1, "refine": t3 - t2}
        return alpha
