"""Alpha estimated from sampled colours in a trimap's unknown band: the data term of Robust Matting.

Closed-form matting (`p3m.infer.closed_form`) follows each 3x3 window's colour line and has no notion of which
colours are the background's: between flying strands over foliage it keeps the leaves' texture as partial alpha,
and on dark strands over a dark background it fades the strands. Robust Matting (Wang & Cohen, "Optimized Color
Sampling for Robust Matting", CVPR 2007) adds a per-pixel estimate from the image's own known colours: for each
unknown pixel C, candidate foreground colours F and background colours B are sampled from the known regions
nearby, here as in Shared Sampling (Gastal & Oliveira, "Shared Sampling for Real-Time Alpha Matting", 2010) by
walking `rays` rays from the pixel to the first known pixel each meets, the rays' angles turned from pixel to
pixel so that neighbours see different samples. Each pair (F, B) explains C as a point on the segment F-B:

    alpha_hat = clip((C - B).(F - B) / |F - B|^2, 0, 1)
    R^2 = |C - (alpha_hat F + (1 - alpha_hat) B)|^2 / |F - B|^2       (Wang & Cohen's distance ratio)
    score = exp(-R^2 / sigma^2) w(F) w(B),   w(S) = exp(-closeness |S - C|^2 / D_S^2)

R is small when C lies on a well separated colour line between the samples; the sample weights (D_S the distance
of C to the farthest sample of S's kind) prefer samples whose colour is near C's, so that a foreground pixel whose
colour lies between a darker foreground sample and the background is explained by a foreground sample of its own
colour rather than as a mixture. The `keep` best pairs give the pixel's estimate (their mean alpha_hat) and
confidence (their mean score); a pixel without a foreground or a background sample, or whose samples coincide in
colour, gets confidence 0.

`data_term` turns the estimate into the weights and targets of `p3m.infer.closed_form.solve_band`'s data term,
(L + diag(weight)) alpha = -L_UK alpha_K + weight target: weight = strength x confidence where alpha_hat is
within `extreme` of 0 or 1, and 0 elsewhere. Measured on real portraits (benchmarks/RESULTS.md), the sampled
estimate is less accurate than closed-form matting's own where it says "partly transparent" (the nearest known
pixels rarely hold the exact colours of the two layers); where it says "pure background" (between strands over
foliage) or "pure foreground" (dark strands on a dark background) it is close to closed-form's, and pulling the
solve toward it there lowers the error. By default it samples every other pixel (a checkerboard) at twice the
strength: the Laplacian carries the pull to the pixels between, for half the time.

A ray's steps are integer offsets from its pixel (`ray_offsets`); it skips the steps that the distance to the
known region says cannot reach it (`_walk`), which finds the same pixel as a walk one step at a time.

Colours are RGB in [0, 1] (uint8 read as value / 255). Compiled with numba, ``nogil`` and not ``parallel``, as
the solver (`p3m.infer.closed_form`'s module doc says why).
"""

from __future__ import annotations

import cv2
import numpy as np
from numba import njit

from p3m.infer.closed_form import tiny_problem

__all__ = ["data_term", "ray_offsets", "sampled_alpha", "warm_up"]


def ray_offsets(rays: int, reach: int, turns: int = 4) -> np.ndarray:
    """(turns, rays, reach, 2) int32: the pixel offsets (dy, dx) of the steps t = 1 .. reach of `rays` rays evenly
    spread over the circle, floor(0.5 + t (sin, cos) of the ray's angle), in `turns` sets each turned by 1 / turns
    of the angle between two rays; pixel (y, x) walks set (x + 2 y) % turns."""
    base = 2.0 * np.pi * np.arange(rays) / rays
    angles = base[None, :] + (2.0 * np.pi / rays) * (np.arange(turns)[:, None] / turns)
    t = np.arange(1, reach + 1, dtype=np.float64)
    steps = np.stack([np.sin(angles), np.cos(angles)], axis=-1)  # (turns, rays, 2)
    return np.floor(0.5 + t[None, None, :, None] * steps[:, :, None, :]).astype(np.int32)


def _walk_state(trimap: np.ndarray) -> np.ndarray:
    """HxW uint8 of what a ray meets: 0 known background, 255 known foreground, and at unknown pixels their
    chessboard distance to the nearest known pixel (exact, and never more than the Euclidean one), at most 254."""
    state = cv2.distanceTransform((trimap == 128).astype(np.uint8), cv2.DIST_C, 3, dstType=cv2.CV_8U)
    np.minimum(state, 254, out=state)
    state[trimap == 255] = 255
    return state


@njit(cache=True, nogil=True)
def _walk(image, scale, state, y, x, offsets, turn, fg, bg):  # pragma: no cover - numba
    """Walk each ray of `offsets[turn]` (rays, reach, 2) from pixel (y, x) to the first known pixel of `state`
    (`_walk_state`); its colour goes into fg or bg (rows in ray order) -> (number of foreground samples, of
    background samples).

    An unknown pixel at distance g from the known pixels lets the ray skip the steps that cannot reach one: the
    pixels it would visit within g - 1.5 steps (1.5 > the diagonal of a pixel, which the ray's position and the
    next pixel's centre each add at most half of) are all unknown, so the pixel found is the one of a walk one step
    at a time."""
    h, w = state.shape
    reach = offsets.shape[2]
    nf = nb = 0
    for k in range(offsets.shape[1]):
        t = 0
        while t < reach:
            py = y + offsets[turn, k, t, 0]
            px = x + offsets[turn, k, t, 1]
            if py < 0 or py >= h or px < 0 or px >= w:
                break
            v = state[py, px]
            if v == 255:
                for ch in range(3):
                    fg[nf, ch] = image[py, px, ch] / scale
                nf += 1
                break
            if v == 0:
                for ch in range(3):
                    bg[nb, ch] = image[py, px, ch] / scale
                nb += 1
                break
            t += max(1, np.int64(v) - 2)  # int(g - 1.5) for an integer distance g
    return nf, nb


@njit(cache=True, nogil=True)
def _relative_distances(samples, count, c, closeness, out):  # pragma: no cover - numba
    """out[i] = closeness |samples[i] - c|^2 / the largest of them, i < count: minus the logarithm of Robust
    Matting's sample weight."""
    far = 1e-12
    for i in range(count):
        out[i] = (samples[i, 0] - c[0]) ** 2 + (samples[i, 1] - c[1]) ** 2 + (samples[i, 2] - c[2]) ** 2
        far = max(far, out[i])
    for i in range(count):
        out[i] *= closeness / far


@njit(cache=True, nogil=True)
def _estimate(
    image, scale, state, uy, ux, offsets, keep, inv_sigma2, closeness, alpha_out, conf_out
):  # pragma: no cover
    """For each unknown pixel (uy[n], ux[n]): the mean alpha_hat and the mean score of its `keep` best pairs into
    alpha_out[n], conf_out[n] (0.5 and 0 where no pair exists). Scores are compared as their negative logarithms,
    cost = R^2 / sigma^2 + closeness (|F - C|^2 / D_F^2 + |B - C|^2 / D_B^2), so that each pair costs no exp."""
    turns, rays = offsets.shape[0], offsets.shape[1]
    fg = np.empty((rays, 3))
    bg = np.empty((rays, 3))
    near_f = np.empty(rays)
    near_b = np.empty(rays)
    best_cost = np.empty(keep)
    best_a = np.empty(keep)
    c = np.empty(3)
    for n in range(uy.shape[0]):
        y, x = uy[n], ux[n]
        for ch in range(3):
            c[ch] = image[y, x, ch] / scale
        nf, nb = _walk(image, scale, state, y, x, offsets, (x + 2 * y) % turns, fg, bg)
        _relative_distances(fg, nf, c, closeness, near_f)
        _relative_distances(bg, nb, c, closeness, near_b)
        for m in range(keep):
            best_cost[m] = np.inf
            best_a[m] = 0.0
        for i in range(nf):
            for j in range(nb):
                e0, e1, e2 = fg[i, 0] - bg[j, 0], fg[i, 1] - bg[j, 1], fg[i, 2] - bg[j, 2]
                den = e0 * e0 + e1 * e1 + e2 * e2
                if den < 1e-12:  # the samples coincide: no colour line
                    continue
                d0, d1, d2 = c[0] - bg[j, 0], c[1] - bg[j, 1], c[2] - bg[j, 2]
                a = min(max((d0 * e0 + d1 * e1 + d2 * e2) / den, 0.0), 1.0)
                r0, r1, r2 = d0 - a * e0, d1 - a * e1, d2 - a * e2
                cost = (r0 * r0 + r1 * r1 + r2 * r2) / den * inv_sigma2 + near_f[i] + near_b[j]
                if cost < best_cost[keep - 1]:  # insert into the sorted list of the best
                    m = keep - 1
                    while m > 0 and best_cost[m - 1] > cost:
                        best_cost[m], best_a[m] = best_cost[m - 1], best_a[m - 1]
                        m -= 1
                    best_cost[m], best_a[m] = cost, a
        count = 0
        sa = sc = 0.0
        for m in range(keep):
            if best_cost[m] < np.inf:
                count += 1
                sa += best_a[m]
                sc += np.exp(-best_cost[m])
        alpha_out[n] = sa / count if count else 0.5
        conf_out[n] = sc / count if count else 0.0


def sampled_alpha(
    image: np.ndarray,
    trimap: np.ndarray,
    *,
    rays: int = 6,
    reach: float = 0.1,
    keep: int = 3,
    sigma: float = 0.1,
    turns: int = 4,
    closeness: float = 1.0,
    checkerboard: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(alpha_hat, confidence), each HxW float32 in [0, 1]: Robust Matting's estimate of every unknown pixel of a
    {0, 128, 255} trimap from the colours of known pixels sampled round it (module doc); with `checkerboard`, of
    the unknown pixels where x + y is even only (half the time), the others getting 0.5 and confidence 0.

    image: HxWx3 uint8, or float in [0, 1]. `rays` directions per pixel (`ray_offsets`, `turns` sets turned
    from pixel to pixel), each walked at most `reach` (a fraction of the image's long side) to the first known
    pixel; the `keep` best pairs of a foreground and a background sample are averaged; `sigma` sets how fast the
    confidence falls with the pairs' distortion, `closeness` how strongly samples of colours near the pixel's are
    preferred (0: not at all). Known pixels get their trimap value and confidence 0.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != trimap.shape:
        raise ValueError(f"image must be HxWx3 and trimap HxW of the same size, got {image.shape} and {trimap.shape}")
    if rays < 1 or keep < 1 or turns < 1 or sigma <= 0:
        raise ValueError("rays, keep and turns must be at least 1 and sigma positive")
    trimap = np.ascontiguousarray(trimap, dtype=np.uint8)
    alpha = (trimap == 255).astype(np.float32)
    confidence = np.zeros(trimap.shape, np.float32)
    uy, ux = np.nonzero(trimap == 128)
    if checkerboard:
        even = (uy + ux) % 2 == 0
        alpha[uy[~even], ux[~even]] = 0.5
        uy, ux = uy[even], ux[even]
    if uy.size == 0:
        return alpha, confidence
    uint8 = image.dtype == np.uint8
    a = np.empty(uy.size)
    c = np.empty(uy.size)
    _estimate(
        np.ascontiguousarray(image) if uint8 else np.ascontiguousarray(image, dtype=np.float64),
        255.0 if uint8 else 1.0,
        _walk_state(trimap),
        uy.astype(np.int64),
        ux.astype(np.int64),
        ray_offsets(rays, max(1, round(reach * max(trimap.shape))), turns),
        int(keep),
        1.0 / (sigma * sigma),
        float(closeness),
        a,
        c,
    )
    alpha[uy, ux] = a
    confidence[uy, ux] = c
    return alpha, confidence


def data_term(
    image: np.ndarray,
    trimap: np.ndarray,
    *,
    strength: float = 0.03,
    extreme: float = 0.05,
    checkerboard: bool = True,
    **sampling: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(weight, target), each HxW float32, for `p3m.infer.closed_form.solve_band`'s ``data``: the sampled
    estimate (`sampled_alpha(image, trimap, **sampling)`) as the target, weighted by strength x its confidence
    where it is within `extreme` of 0 or 1 and 0 elsewhere (module doc); weight 0 on known pixels.

    image: HxWx3 uint8, or float in [0, 1]; trimap: HxW {0, 128, 255}; strength: lambda, against the matting
    Laplacian's entries (of order 1 per pixel at an edge). `checkerboard`: the estimate on every other pixel only,
    each weighted 2 x strength (half the time; on the 12 test portraits as good as every pixel at strength,
    benchmarks/RESULTS.md).
    """
    target, confidence = sampled_alpha(image, trimap, checkerboard=checkerboard, **sampling)  # type: ignore[arg-type]
    sure = (target <= extreme) | (target >= 1.0 - extreme)
    scale = np.float32(strength * (2.0 if checkerboard else 1.0))
    weight = np.where(sure, scale * confidence, np.float32(0.0)).astype(np.float32)
    return weight, target


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels on the solver's tiny problem: `make setup` runs it."""
    sampled_alpha(*tiny_problem())
