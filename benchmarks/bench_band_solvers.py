"""Alpha solvers compared on the built-in route's own trimaps (issue 24: hair inside the unknown band).

The route (`p3m.infer.portrait.PortraitMatting`, default settings) runs once per image up to its trimap (prior,
spill, mask, trimap: the steps before the solve); every solver then fills the same unknown band, on the band's
bounding box plus a margin (the rest of the image keeps the mask), and its alpha is finished as the route finishes
its own (values within `clean` of 0 or 1 snapped, bilinear upsampling). Per image: SAD / 1000 and MSE against the
reference over the whole image and in the band only (the band upsampled, nearest), and the solver's seconds.

Solvers (`SOLVERS`): the band-only closed-form solve (`cf`: `p3m.infer.closed_form.solve_band` at the route's
epsilon, 1e-6, without a data term) and at other epsilons (`cf-eps1e-7`: pymatting's, the route's before); the
route's solve (`cf-sampled`: `cf` with Robust Matting's data term from sampled colours,
`p3m.infer.band_sampling.data_term` at `PortraitSettings.band_data`, sampled on the crop the solver gets, with the
crop's long side as the rays' reach unit, and `sampled-<strength>` at other strengths); pymatting's
closed-form (radius 1 and 2), KNN, large-kernel (LKM), random-walk and LBDM matting; the mean of closed-form and
KNN in the band; closed-form with a data term pulling the band toward the prior's probability
((L + lambda D) a = -L_UK a_K + lambda D prior: D the identity, or the prior's confidence |2 prior - 1| on the
diagonal). Trimaps (`--trimap`, every solver but the first, the baseline): the route's, or
the route's widened where the prior is uncertain (0.2-0.95) within 3% of the long side of the mask's edge.

    P3M_TESTDATA=DIR .venv/bin/python -m benchmarks.bench_band_solvers [--solvers cf,knn] [--variants original]
        [--trimap route|uncertain] [--only p_09ba26b4] [--json F]

Needs the P3M demo portraits (`JizhiziLi/P3M` demo/imgs) in $P3M_TESTDATA; exits with a message without it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pymatting
import scipy.sparse as sp
import torch

from benchmarks.bench_route_priors import VARIANTS, portraits
from p3m.infer.band_sampling import data_term
from p3m.infer.closed_form import solve_band
from p3m.infer.portrait import PortraitMatting, PortraitSettings, _distance_to


@dataclass(frozen=True)
class Band:
    """The route up to its trimap, at the working size: image HxWx3 uint8, prior HxW float32, mask HxW bool,
    trimap HxW uint8 {0, 128, 255}."""

    image: np.ndarray
    prior: np.ndarray
    mask: np.ndarray
    trimap: np.ndarray


def route_band(route: PortraitMatting, rgb: np.ndarray) -> Band:
    """The default route's steps before the solve (`PortraitMatting.run` without pose, hands or limb gaps)."""
    s = route.settings
    prob = route.prior(rgb)
    hw, ww = prob.shape
    image = rgb if (hw, ww) == rgb.shape[:2] else cv2.resize(rgb, (ww, hw), interpolation=cv2.INTER_AREA)
    if s.spill_unsure > s.threshold:
        prob = route.unspill(prob, image)
    mask = route.mask(prob)
    return Band(image, prob, mask, route.trimap(mask, image))


def uncertain_trimap(band: Band, low: float = 0.2, high: float = 0.95, reach: float = 0.03) -> np.ndarray:
    """The route's trimap, also unknown where the prior is in (low, high) within `reach` (of the long side) of the
    mask's edge."""
    r = reach * max(band.mask.shape)
    near = np.where(band.mask, _distance_to(~band.mask), _distance_to(band.mask)) <= r
    tri = band.trimap.copy()
    tri[near & (band.prior > low) & (band.prior < high)] = 128
    return tri


TRIMAPS: dict[str, Callable[[Band], np.ndarray]] = {"route": lambda b: b.trimap, "uncertain": uncertain_trimap}

# a solver: (image crop HxWx3 uint8, trimap crop {0, 128, 255}, mask crop bool, prior crop float32) -> alpha crop
Solver = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _ours(eps: float) -> Solver:
    return lambda img, tri, mask, prior: solve_band(img, tri, mask.astype(np.float32), eps=eps).alpha


def _pymatting(estimate: Callable[..., np.ndarray], **laplacian: Any) -> Solver:
    def solve(img: np.ndarray, tri: np.ndarray, mask: np.ndarray, prior: np.ndarray) -> np.ndarray:
        kwargs = {"laplacian_kwargs": laplacian} if laplacian else {}
        alpha = estimate(img / 255.0, tri / 255.0, **kwargs)
        return np.clip(alpha, 0, 1).astype(np.float32)

    return solve


def _sampled(strength: float) -> Solver:
    """Closed-form (the route's epsilon) with the data term from sampled colours at `strength`."""

    def solve(img: np.ndarray, tri: np.ndarray, mask: np.ndarray, prior: np.ndarray) -> np.ndarray:
        data = data_term(img, tri, strength=strength)
        return solve_band(img, tri, mask.astype(np.float32), eps=PortraitSettings().cf_eps, data=data).alpha

    return solve


def _mean(a: Solver, b: Solver) -> Solver:
    return lambda *args: (a(*args) + b(*args)) / 2


def _toward(lam: float) -> Solver:
    """Closed-form with a flat data term toward the prior: (L + lam I) a = -L_UK a_K + lam prior on the band
    (`solve_band`'s ridge, whose target is its guess), at epsilon 1e-7 as measured."""
    return lambda img, tri, mask, prior: solve_band(img, tri, prior, eps=1e-7, ridge=lam).alpha


def _toward_weighted(lam: float) -> Solver:
    """Closed-form with a data term toward the prior weighted by its confidence |2 prior - 1|: pymatting's
    Laplacian of the crop (epsilon 1e-7), pymatting's CG with its incomplete Cholesky preconditioner."""

    def solve(img: np.ndarray, tri: np.ndarray, mask: np.ndarray, prior: np.ndarray) -> np.ndarray:
        unknown, known = (tri == 128).ravel(), (tri != 128).ravel()
        lap = pymatting.cf_laplacian(img / 255.0).tocsr()
        weight = lam * np.abs(2.0 * prior.ravel()[unknown].astype(np.float64) - 1.0)
        a_u = lap[unknown][:, unknown] + sp.diags(weight)
        b = -lap[unknown][:, known] @ (tri.ravel()[known] / 255.0) + weight * prior.ravel()[unknown]
        x = pymatting.cg(a_u.tocsr(), b, M=pymatting.ichol(a_u.tocsr()))
        alpha = (tri / 255.0).ravel().copy()
        alpha[unknown] = x
        return np.clip(alpha, 0, 1).reshape(tri.shape).astype(np.float32)

    return solve


SOLVERS: dict[str, Solver] = {
    "cf": _ours(PortraitSettings().cf_eps),  # the route's solve without the sampled data term
    "cf-sampled": _sampled(PortraitSettings().band_data),  # the route's solve
    **{f"sampled-{k}": _sampled(float(k)) for k in ("0.01", "0.02", "0.05", "0.1")},
    **{f"cf-eps{e}": _ours(float(e)) for e in ("1e-7", "3e-7", "1e-6", "2e-6", "3e-6", "1e-5", "1e-4")},
    "pm-cf": _pymatting(pymatting.estimate_alpha_cf),
    "pm-cf-r2": _pymatting(pymatting.estimate_alpha_cf, radius=2),
    "knn": _pymatting(pymatting.estimate_alpha_knn),
    "lkm": _pymatting(pymatting.estimate_alpha_lkm),
    "rw": _pymatting(pymatting.estimate_alpha_rw),
    "lbdm": _pymatting(pymatting.estimate_alpha_lbdm),
    "cf+knn": _mean(_ours(1e-7), _pymatting(pymatting.estimate_alpha_knn)),  # as measured: before 1e-6
}
for _lam in ("1e-4", "1e-3", "1e-2", "1e-1"):
    SOLVERS[f"toward-{_lam}"] = _toward(float(_lam))
    SOLVERS[f"toward-conf-{_lam}"] = _toward_weighted(float(_lam))


def crop_box(unknown: np.ndarray, margin: int) -> tuple[slice, slice]:
    """The bounding box of `unknown` grown by `margin` px, clipped to the image."""
    ys, xs = np.flatnonzero(unknown.any(1)), np.flatnonzero(unknown.any(0))
    h, w = unknown.shape
    return slice(max(0, ys[0] - margin), min(h, ys[-1] + 1 + margin)), slice(
        max(0, xs[0] - margin), min(w, xs[-1] + 1 + margin)
    )


def solve_in_box(solver: Solver, band: Band, trimap: np.ndarray, margin: int = 8) -> tuple[np.ndarray, float]:
    """(working-size alpha, seconds): `solver` on the band's bounding box, the mask elsewhere."""
    alpha = band.mask.astype(np.float32)
    unknown = trimap == 128
    if not unknown.any():
        return alpha, 0.0
    ys, xs = crop_box(unknown, margin)
    t = time.perf_counter()
    inner = solver(band.image[ys, xs], trimap[ys, xs], band.mask[ys, xs], band.prior[ys, xs])
    seconds = time.perf_counter() - t
    inner = np.where(trimap[ys, xs] == 128, inner, trimap[ys, xs] / 255.0)
    alpha[ys, xs] = inner
    return alpha, seconds


def finish(alpha: np.ndarray, clean: float, hw: tuple[int, int]) -> np.ndarray:
    """The route's finishing: snap within `clean` of 0 or 1, bilinear upsampling to `hw`."""
    alpha = alpha.copy()
    if clean > 0:
        alpha[alpha < clean] = 0.0
        alpha[alpha > 1.0 - clean] = 1.0
    if alpha.shape != hw:
        alpha = cv2.resize(alpha, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)
    return alpha


def band_scores(alpha: np.ndarray, ref: np.ndarray, unknown: np.ndarray) -> dict[str, float]:
    """SAD / 1000 and MSE over the image and in the band (`unknown` at the working size, upsampled nearest)."""
    ref = ref / 255.0
    diff = np.abs(alpha.astype(np.float64) - ref)
    band = cv2.resize(unknown.astype(np.uint8), (ref.shape[1], ref.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    return {
        "sad": float(diff.sum() / 1000),
        "mse": float((diff**2).mean()),
        "sad_band": float(diff[band].sum() / 1000),
        "mse_band": float((diff[band] ** 2).mean()) if band.any() else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--solvers", default="cf-eps1e-7,cf", help=f"comma-separated, first is the baseline: {', '.join(SOLVERS)}"
    )
    parser.add_argument("--variants", default="original", help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--trimap", choices=sorted(TRIMAPS), default="route", help="trimap of every solver but cf")
    parser.add_argument("--only", help="comma-separated image stems (default: all 12)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    solvers = args.solvers.split(",")
    for name in solvers:
        if name not in SOLVERS:
            raise SystemExit(f"unknown solver {name!r}: one of {', '.join(SOLVERS)}")
    torch.set_num_threads(args.threads)
    data = portraits(args.only.split(",") if args.only else None)
    route = PortraitMatting(PortraitSettings())
    clean = route.settings.clean
    out: dict[str, Any] = {}
    for variant in args.variants.split(","):
        rows = []
        for stem, rgb, ref in data:
            image, target = VARIANTS[variant](rgb, ref)
            band = route_band(route, image)
            row: dict[str, Any] = {"image": stem}
            for k, name in enumerate(solvers):
                # the baseline keeps the route's trimap; the others get --trimap
                trimap = band.trimap if k == 0 else TRIMAPS[args.trimap](band)
                alpha, seconds = solve_in_box(SOLVERS[name], band, trimap)
                # band figures over the route's band, so that every solver is scored on the same pixels
                row[name] = {
                    **band_scores(finish(alpha, clean, target.shape), target, band.trimap == 128),
                    "s": seconds,
                }
            rows.append(row)
            print(
                f"{variant:9s} {stem}: "
                + "  ".join(
                    f"{n} {row[n]['sad']:.2f} ({row[n]['sad_band']:.2f} band, {row[n]['s']:.2f} s)" for n in solvers
                ),
                flush=True,
            )
        base = [r[solvers[0]]["sad"] for r in rows]
        print(f"\n{variant}: SAD mean / worst, band SAD mean, largest rise vs {solvers[0]}, mean s")
        for name in solvers:
            sad = [r[name]["sad"] for r in rows]
            rise = max((a - b, r["image"]) for a, b, r in zip(sad, base, rows, strict=True))
            band_sad = np.mean([r[name]["sad_band"] for r in rows])
            print(
                f"  {name:18s} {np.mean(sad):6.2f} / {max(sad):6.2f}  {band_sad:6.2f}"
                f"  {rise[0]:+6.2f} {rise[1]}  {np.mean([r[name]['s'] for r in rows]):6.3f}"
            )
        print(flush=True)
        out[variant] = rows
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
