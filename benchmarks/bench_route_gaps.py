"""Background the route keeps as person, told by path or by nearest colour: three verdicts measured (issue 24).

The built-in route (`p3m.infer.portrait`) keeps some background where its 256 px selfie prior is high: a shaded
wall beside a person's legs, beach or road between an arm and the body. Each verdict here marks pixels of the
route's mask as background; the route then drops them before the trimap is drawn (as `PortraitMatting.unspill`
drops the colour model's), and closed-form matting draws the edge in the band round the moved mask.

- `path` (`background_by_path`): geodesic distance (Bai & Sapiro, "Geodesic Matting", IJCV 2009; Criminisi,
  Sharp & Blake, "GeoS", ECCV 2008) to the confident person (prior >= 0.95, eroded) and to the confident
  background (prior <= 0.35), over the 8-connected grid of a 384 px copy, each step costing its length and its
  colour change (`geodesic_distance`); in a zone round the mask's edge, a pixel `ratio` times closer by path to
  the background is background. `tau` makes the colour change free up to that many grey levels per pixel of
  step (smooth shading crosses for nothing, an outline does not).
- `nearest` (`background_by_nearest`): a multi-modal local colour model: where the prior is in [0.5, 0.95),
  the distance in colour (CIE Lab, lightness weighted 0.3) to the nearest confident sample of each side within
  5% of the long side (nearest neighbour in colour and position, on a 192 px copy): `ratio` times closer to
  a background sample is background. Unlike the means of `p3m.infer.spill`, a two-coloured surrounding (a lit
  and a shaded wall) is modelled as two colours.
- `gaps` (`p3m.infer.spill.background_in_gaps`, kept in the route as `PortraitSettings(gap_colour=True)`): only
  inside the pose network's polygons between the arms and the torso and between the legs
  (`p3m.infer.priors.limb_gaps`, landmarks visible, pose mask trusted): a nearest-colour test against the
  background in a ring round the person (10% of the long side) and the confident person outside the polygons
  (the background inside a gap has no confident background next to it), the verdict closed and opened over
  0.5% of the long side; `gaps-scattered` without that smoothing.

Per verdict: which of its pixels are wrong (background in the reference) and which right, beyond the trimap's
band too (the pixels the band cannot take back); then the route with and without it on the 12 shared portraits
and their variants (`benchmarks.bench_route_priors.quality`: mirrored, half-size, JPEG-60, greyscale,
scikit-image's astronaut); and the verdict's own seconds per image.

    P3M_TESTDATA=DIR .venv/bin/python -m benchmarks.bench_route_gaps [--verdicts path,nearest,gaps] [--json F]

Needs the P3M demo portraits (`JizhiziLi/P3M` demo/imgs) in $P3M_TESTDATA; exits with a message without it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from benchmarks.bench_route_priors import portraits, quality
from p3m.infer.portrait import PortraitMatting, _distance_to
from p3m.infer.priors import agreement, limb_gaps
from p3m.infer.resize import mask_resized, shrunk
from p3m.infer.spill import background_in_gaps

Verdict = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (image HxWx3 uint8, prior HxW) -> HxW bool


def geodesic_distance(colours: np.ndarray, seeds: np.ndarray, gamma: float, *, tau: float = 0.0) -> np.ndarray:
    """HxW float64: length of the shortest 8-connected path from each pixel to a seed (inf where none is reachable).

    A step from a pixel to a neighbour costs ``sqrt(l^2 + gamma^2 * max(0, ||c_p - c_q|| - tau * l)^2)``, l = 1 or
    sqrt(2) its length in pixels, c the HxWxC `colours`: colour changes above `tau` per pixel of step add to the
    length, `gamma` per unit of colour. Dijkstra's algorithm from all `seeds` (HxW bool) at once (scipy).
    """
    colours = np.asarray(colours, np.float64)
    if colours.ndim == 2:
        colours = colours[..., None]
    h, w = seeds.shape
    index = np.arange(h * w).reshape(h, w)
    rows, cols, costs = [], [], []
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        y0, y1 = 0, h - dy
        x0, x1 = max(0, -dx), w - max(0, dx)
        a = index[y0:y1, x0:x1]
        b = index[y0 + dy : y1 + dy, x0 + dx : x1 + dx]
        step = float(np.hypot(dy, dx))
        change = np.linalg.norm(colours[y0:y1, x0:x1] - colours[y0 + dy : y1 + dy, x0 + dx : x1 + dx], axis=-1)
        change = np.maximum(0.0, change - tau * step)
        rows.append(a.ravel())
        cols.append(b.ravel())
        costs.append(np.sqrt(step * step + (gamma * change.ravel()) ** 2))  # >= 1: never an absent (zero) edge
    graph = sp.csr_matrix((np.concatenate(costs), (np.concatenate(rows), np.concatenate(cols))), shape=(h * w, h * w))
    if not seeds.any():
        return np.full((h, w), np.inf)
    dist = dijkstra(graph, directed=False, indices=np.flatnonzero(seeds), min_only=True)
    return np.asarray(dist).reshape(h, w)


def _colours(image: np.ndarray, lightness: float | None, blur: float = 0.0) -> np.ndarray:
    """HxWx3 float32: RGB as given (`lightness` None) or CIE Lab with L scaled by `lightness`; smoothed first."""
    if blur > 0:
        image = cv2.GaussianBlur(image, (0, 0), blur)
    if lightness is None:
        return image.astype(np.float32)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 0] *= lightness
    return lab


def background_by_path(
    image: np.ndarray,
    prob: np.ndarray,
    *,
    gamma: float = 10.0,
    tau: float = 0.0,
    ratio: float = 2.0,
    reach: float = 0.05,
    foreground: float = 0.95,
    background: float = 0.35,
    erode: float = 0.01,
    blur: float = 1.0,
    grid: int = 384,
) -> np.ndarray:
    """HxW bool: pixels of the mask (prob >= 0.5) within `reach` of its edge, not in the person's seeds, whose path
    to the person's seeds (prob >= `foreground`, eroded by `erode`) is `ratio` times the path to the background's
    (prob <= `background`); `geodesic_distance` with `gamma`, `tau` per grey level on a `blur`red `grid` px copy."""
    small, p = shrunk(image, grid), shrunk(prob, grid)
    colours = _colours(small, None, blur)
    side = max(p.shape)
    mask, core, outside = p >= 0.5, p >= foreground, p <= background
    r = round(erode * side)
    if r > 0:
        core = cv2.erode(core.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2)) > 0
    verdict = np.zeros(p.shape, bool)
    if core.any() and outside.any():
        zone = mask & ~core & (_distance_to(~mask) <= reach * side)
        d_fg = geodesic_distance(colours, core, gamma, tau=tau)
        d_bg = geodesic_distance(colours, outside, gamma, tau=tau)
        verdict = zone & (d_fg > ratio * d_bg)
    return mask_resized(verdict, prob.shape)


def _nearer_background(
    colours: np.ndarray, zone: np.ndarray, fg: np.ndarray, bg: np.ndarray, radius: float, ratio: float
) -> np.ndarray:
    """HxW bool: pixels of `zone` whose colour is `ratio` times nearer (+1 grey level) to a sample of `bg` than to one
    of `fg` (HxW bool), samples within `radius` px (nearest neighbour in colour and position, position scaled so
    that `radius` px weighs 30 colour units); both kinds within `radius`, else no verdict."""
    out = np.zeros(zone.shape, bool)
    if not (zone.any() and fg.any() and bg.any()):
        return out
    where = [np.stack(np.nonzero(m), 1) for m in (zone, fg, bg)]
    points = [np.concatenate([colours[tuple(yx.T)], 30.0 * yx / radius], 1) for yx in where]
    d_fg = cKDTree(points[1]).query(points[0])[0]
    d_bg = cKDTree(points[2]).query(points[0])[0]
    near = (cKDTree(where[1]).query(where[0])[0] <= radius) & (cKDTree(where[2]).query(where[0])[0] <= radius)
    out[tuple(where[0].T)] = near & (d_fg + 1 > ratio * (d_bg + 1))
    return out


def background_by_nearest(
    image: np.ndarray,
    prob: np.ndarray,
    *,
    ratio: float = 2.0,
    radius: float = 0.05,
    lightness: float | None = 0.3,
    unsure: float = 0.95,
    background: float = 0.35,
    grid: int = 192,
) -> np.ndarray:
    """HxW bool: where the prior is in [0.5, `unsure`), pixels whose colour is `ratio` times nearer to a confident
    background sample (prob <= `background`) than to a confident person sample (>= 0.95) within `radius` (fraction
    of the long side); colours CIE Lab with L x `lightness` (None: RGB), on a `grid` px copy."""
    small, p = shrunk(image, grid), shrunk(prob, grid)
    zone = (p >= 0.5) & (p < unsure)
    verdict = _nearer_background(
        _colours(small, lightness), zone, p >= 0.95, p <= background, radius * max(p.shape), ratio
    )
    return mask_resized(verdict, prob.shape)


class WithVerdict(PortraitMatting):
    """The default route with one verdict's pixels dropped from the mask after the colour model on the spill."""

    def __init__(self, verdict: Verdict | None = None, *, pose_gaps: bool = False, smooth: float = 0.005) -> None:
        super().__init__()
        self.verdict, self.pose_gaps, self.smooth = verdict, pose_gaps, smooth
        self.seconds: list[float] = []

    def marked(self, prob: np.ndarray, image: np.ndarray) -> np.ndarray:
        """HxW bool: the verdict's background pixels (for `gaps`: none unless the pose is trusted and sees gaps)."""
        start = time.perf_counter()
        if self.pose_gaps:
            mask = self.mask(prob)
            pose = self.pose(image, mask) if mask.any() else None
            trusted = pose is not None and agreement(pose.segmentation >= 0.5, mask) >= self.settings.pose_agree
            gaps = limb_gaps(pose.landmarks, mask.shape) if trusted and pose is not None else np.zeros_like(mask)
            marked = background_in_gaps(image, prob, mask, gaps, smooth=self.smooth)
        else:
            assert self.verdict is not None
            marked = self.verdict(image, prob) & (prob >= self.settings.threshold)
        self.seconds.append(time.perf_counter() - start)
        return marked

    def unspill(self, prob: np.ndarray, image: np.ndarray) -> np.ndarray:
        prob = super().unspill(prob, image)
        return self._drop(prob, self.marked(prob, image))


VERDICTS: dict[str, Callable[[], WithVerdict]] = {
    "path": lambda: WithVerdict(background_by_path),
    "path-shading": lambda: WithVerdict(partial(background_by_path, tau=3.0)),
    "nearest": lambda: WithVerdict(background_by_nearest),
    "gaps-scattered": lambda: WithVerdict(pose_gaps=True, smooth=0.0),
    "gaps": lambda: WithVerdict(pose_gaps=True),
}


def accounting(route: WithVerdict, data: list[tuple[str, np.ndarray, np.ndarray]]) -> list[dict[str, Any]]:
    """Per original: the verdict's pixels in the route's mask (working size) that the reference calls background
    ("wrong", what it should find) and person ("right", what it should not), all and beyond the trimap's band."""
    rows = []
    for name, rgb, ref in data:
        prob = route.prior(rgb)
        hw, ww = prob.shape
        image = cv2.resize(rgb, (ww, hw), interpolation=cv2.INTER_AREA)
        prob = PortraitMatting.unspill(route, prob, image)
        mask = route.mask(prob)
        target = cv2.resize(ref, (ww, hw), interpolation=cv2.INTER_AREA) >= 128
        marked = route.marked(prob, image) & mask
        deep = _distance_to(~mask) > route.settings.band * max(hw, ww)
        rows.append(
            {
                "image": name,
                "kept_background": int((mask & ~target).sum()),
                "kept_background_deep": int((mask & ~target & deep).sum()),
                "wrong": int((marked & ~target).sum()),
                "right": int((marked & target).sum()),
                "wrong_deep": int((marked & ~target & deep).sum()),
                "right_deep": int((marked & target & deep).sum()),
            }
        )
    print(f"\n{'image':12s} {'kept bg':>8s} {'marked bg / person':>19s} {'beyond the band':>16s}")
    for r in rows:
        print(
            f"{r['image']:12s} {r['kept_background']:8d} {r['wrong']:9d} / {r['right']:<7d} "
            f"{r['wrong_deep']:6d} / {r['right_deep']:<7d}"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verdicts", default=",".join(VERDICTS), help="comma-separated, of: " + ", ".join(VERDICTS))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    names = [v for v in args.verdicts.split(",") if v]
    unknown = sorted(set(names) - set(VERDICTS))
    if unknown:
        raise SystemExit(f"unknown verdict(s) {', '.join(unknown)}: choose from {', '.join(VERDICTS)}")
    data = portraits()
    torch.set_num_threads(args.threads)
    old = PortraitMatting()
    out: dict[str, Any] = {}
    for name in names:
        print(f"\n=== verdict {name}")
        new = VERDICTS[name]()
        rows = accounting(new, data)
        new.seconds.clear()
        figures = quality(old, new, data)
        seconds = statistics.median(new.seconds) if new.seconds else 0.0
        print(f"verdict's own seconds per image: median {seconds:.3f} (of {len(new.seconds)} calls)")
        out[name] = {"accounting": rows, "quality": figures, "verdict_seconds_median": seconds}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
