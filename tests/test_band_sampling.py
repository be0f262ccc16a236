"""Robust Matting's sampled data term (p3m.infer.band_sampling) and the band solve with it (closed_form.solve_band's
``data``): the sampling and alpha_hat against a per-pixel Python loop, the data-term solve against scipy's direct
solve of (L + lambda D), and on a drawn scene of thin strands over a two-coloured texture, a lower band error
than closed-form matting alone."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from p3m.infer.band_sampling import data_term, ray_offsets, sampled_alpha
from p3m.infer.closed_form import solve_band
from p3m.infer.portrait import PortraitMatting, PortraitSettings
from tests.reference.closed_form import reference_system
from tests.scenes import small_problem


def literal_sampled_alpha(image, trimap, rays, reach, keep, sigma, turns, closeness):
    """The module doc, pixel by pixel: every ray walked one step at a time, every pair scored, the best kept."""
    h, w = trimap.shape
    alpha = (trimap == 255).astype(np.float64)
    confidence = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            if trimap[y, x] != 128:
                continue
            c = image[y, x] / 255.0
            fg, bg = [], []
            for k in range(rays):
                angle = 2 * math.pi * k / rays + (2 * math.pi / rays) * (((x + 2 * y) % turns) / turns)
                dy, dx = math.sin(angle), math.cos(angle)
                for t in range(1, reach + 1):
                    py, px = y + math.floor(0.5 + t * dy), x + math.floor(0.5 + t * dx)
                    if not (0 <= py < h and 0 <= px < w):
                        break
                    if trimap[py, px] != 128:
                        (fg if trimap[py, px] == 255 else bg).append(image[py, px] / 255.0)
                        break
            far_f = max([1e-12] + [float(np.sum((f - c) ** 2)) for f in fg])
            far_b = max([1e-12] + [float(np.sum((b - c) ** 2)) for b in bg])
            pairs = []
            for f in fg:
                for b in bg:
                    den = float(np.sum((f - b) ** 2))
                    if den < 1e-12:
                        continue
                    a = min(max(float(np.dot(c - b, f - b)) / den, 0.0), 1.0)
                    ratio = float(np.sum((c - (a * f + (1 - a) * b)) ** 2)) / den
                    w_f = math.exp(-closeness * float(np.sum((f - c) ** 2)) / far_f)
                    w_b = math.exp(-closeness * float(np.sum((b - c) ** 2)) / far_b)
                    pairs.append((math.exp(-ratio / sigma**2) * w_f * w_b, a))
            best = sorted(pairs, key=lambda p: -p[0])[:keep]  # stable: the first pair of equal scores wins
            alpha[y, x] = np.mean([a for _, a in best]) if best else 0.5
            confidence[y, x] = np.mean([s for s, _ in best]) if best else 0.0
    return alpha, confidence


def textured_problem(h: int = 30, w: int = 34, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(image HxWx3 uint8, trimap): random colours, a person block at the bottom, a 12 px wide unknown band above it
    (wide enough that rays skip steps) and a pixel row of band that touches no background (no pair)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    trimap = np.zeros((h, w), np.uint8)
    trimap[18:, :] = 255
    trimap[6:18, 3:-3] = 128
    return image, trimap


@pytest.mark.parametrize(
    ("rays", "keep", "sigma", "closeness", "reach"), [(8, 3, 0.1, 1.0, 0.5), (5, 1, 0.3, 0.0, 0.2)]
)
def test_sampled_alpha_is_the_literal_per_pixel_loop(rays, keep, sigma, closeness, reach):
    image, trimap = textured_problem()
    alpha, confidence = sampled_alpha(
        image, trimap, rays=rays, reach=reach, keep=keep, sigma=sigma, turns=4, closeness=closeness
    )
    ref_alpha, ref_conf = literal_sampled_alpha(image, trimap, rays, round(reach * 34), keep, sigma, 4, closeness)
    assert alpha.dtype == confidence.dtype == np.float32
    np.testing.assert_allclose(alpha, ref_alpha, atol=1e-6)
    np.testing.assert_allclose(confidence, ref_conf, atol=1e-6)
    unknown = trimap == 128
    assert (confidence[unknown] > 0).any() and np.ptp(alpha[unknown]) > 0.5  # a test of something
    assert (confidence[~unknown] == 0).all() and np.array_equal(alpha[~unknown], (trimap == 255)[~unknown])


def test_sampled_alpha_recovers_a_mixture_of_two_flat_colours():
    h, w = 60, 40
    truth = np.clip((np.arange(w) - 10) / 20, 0, 1)[None, :].repeat(h, 0)  # a ramp from background to foreground
    fg, bg = np.array([230.0, 80.0, 40.0]), np.array([30.0, 60.0, 200.0])
    image = truth[..., None] * fg + (1 - truth[..., None]) * bg
    trimap = np.where(truth >= 1, 255, np.where(truth <= 0, 0, 128)).astype(np.uint8)
    alpha, confidence = sampled_alpha(image / 255.0, trimap, reach=1.0)
    middle = np.zeros_like(trimap, dtype=bool)
    middle[20:40] = trimap[20:40] == 128  # rows whose rays reach both sides before leaving the image
    np.testing.assert_allclose(alpha[middle], truth[middle], atol=1e-6)
    assert (confidence[middle] > 0).all()


def test_pixels_without_both_kinds_of_sample_get_no_confidence():
    image = np.full((10, 10, 3), 128, np.uint8)
    trimap = np.full((10, 10), 128, np.uint8)
    trimap[:, :2] = 0  # background only: no foreground sample for any pixel
    alpha, confidence = sampled_alpha(image, trimap)
    assert (confidence == 0).all() and (alpha[:, 2:] == 0.5).all()


def test_ray_offsets_step_along_evenly_spread_turned_rays():
    offsets = ray_offsets(8, 30, 4)
    assert offsets.shape == (4, 8, 30, 2) and offsets.dtype == np.int32
    np.testing.assert_array_equal(offsets[0, 0, :, 1], np.arange(1, 31))  # the first ray of set 0: along +x
    np.testing.assert_array_equal(offsets[0, 0, :, 0], 0)
    np.testing.assert_array_equal(offsets[0, 2, :, 0], np.arange(1, 31))  # a quarter turn on: along +y
    far = offsets[:, :, -1].astype(float)  # 30 steps out: the rays' angles, each set turned by 1/4 of 45 degrees
    angles = np.degrees(np.arctan2(far[..., 0], far[..., 1])) % 360
    expected = (np.arange(8)[None, :] * 45 + np.arange(4)[:, None] * 11.25) % 360
    assert np.abs((angles - expected + 180) % 360 - 180).max() < 2.0


def test_data_term_weighs_only_near_pure_estimates():
    image, trimap = textured_problem()
    target, confidence = sampled_alpha(image, trimap)
    weight, target2 = data_term(image, trimap, strength=0.5, extreme=0.05, checkerboard=False)
    np.testing.assert_array_equal(target2, target)
    sure = (target <= 0.05) | (target >= 0.95)
    np.testing.assert_allclose(weight[sure], 0.5 * confidence[sure], rtol=1e-6)
    assert (weight[~sure] == 0).all() and (weight[trimap != 128] == 0).all()
    assert (weight > 0).any()


def test_checkerboard_samples_every_other_pixel_at_twice_the_strength():
    image, trimap = textured_problem()
    full_weight, full_target = data_term(image, trimap, strength=0.5, checkerboard=False)
    weight, target = data_term(image, trimap, strength=0.5)
    even = (np.add.outer(np.arange(trimap.shape[0]), np.arange(trimap.shape[1])) % 2 == 0) | (trimap != 128)
    np.testing.assert_array_equal(target[even], full_target[even])  # a pixel's estimate needs no other's
    np.testing.assert_allclose(weight[even], 2 * full_weight[even], rtol=1e-6)
    assert (weight[~even] == 0).all() and (target[~even] == 0.5).all()


def test_sampled_alpha_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="HxWx3"):
        sampled_alpha(np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4), np.uint8))


def test_solve_band_with_a_data_term_is_scipys_direct_solve():
    image, unknown, known = small_problem()
    ref, ref_rhs = reference_system(image, unknown, known)
    trimap = np.where(known > 0.5, 255, 0).astype(np.uint8)
    trimap[unknown] = 128
    rng = np.random.default_rng(0)
    weight = np.where(unknown, rng.random(unknown.shape) * 0.1, 0.0)
    target = rng.random(unknown.shape)
    u = unknown.ravel()
    exact = sla.spsolve((ref + sp.diags(weight.ravel()[u])).tocsc(), ref_rhs + weight.ravel()[u] * target.ravel()[u])
    solution = solve_band(image, trimap, eps=1e-7, rtol=1e-10, ridge=0.0, data=(weight, target))
    assert solution.method == "ic0"
    assert np.abs(solution.alpha[unknown] - np.clip(exact, 0, 1)).max() < 1e-4
    plain = solve_band(image, trimap, eps=1e-7, rtol=1e-10, ridge=0.0).alpha
    assert np.abs(plain - solution.alpha).max() > 1e-2  # the data term changed the answer


def strands_scene(h: int = 90, w: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image HxWx3 uint8, true alpha, trimap): a dark head below thin dark strands (1-2 px, partly transparent)
    over a checkerboard of two background colours; the band covers the strands and the texture round them."""
    yy, xx = np.mgrid[:h, :w]
    alpha = (yy >= 60).astype(np.float64)
    for k, x0 in enumerate(range(8, w - 8, 9)):  # strands rising from the head, slanted, of varying opacity
        centre = x0 + (60 - yy) * 0.25 * (-1) ** k
        strand = np.clip(1.2 - np.abs(xx - centre), 0, 1) * (0.7 + 0.3 * (k % 2))
        alpha = np.maximum(alpha, np.where((yy >= 25) & (yy < 60), strand, 0.0))
    checker = ((yy // 4 + xx // 4) % 2)[..., None]
    background = np.where(checker == 1, [200.0, 170.0, 120.0], [120.0, 140.0, 90.0])
    foreground = np.array([40.0, 30.0, 25.0])
    image = alpha[..., None] * foreground + (1 - alpha[..., None]) * background
    trimap = np.zeros((h, w), np.uint8)
    trimap[65:] = 255
    trimap[18:65] = 128
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), alpha, trimap


def test_data_term_lowers_the_band_error_on_strands_over_a_textured_background():
    image, truth, trimap = strands_scene()
    unknown = trimap == 128
    plain = solve_band(image, trimap, eps=1e-6).alpha
    weighted = solve_band(image, trimap, eps=1e-6, data=data_term(image, trimap, reach=0.5)).alpha
    sad_plain = np.abs(plain - truth)[unknown].sum()
    sad_weighted = np.abs(weighted - truth)[unknown].sum()
    assert sad_weighted < 0.8 * sad_plain, (sad_plain, sad_weighted)


def test_the_routes_refine_step_uses_the_data_term_at_band_data_and_not_at_zero():
    image, _, trimap = strands_scene(90, 480)  # the route's rays reach 10% of the long side: across the band
    guess = (trimap == 255).astype(np.float32)
    # one solve (the second, tight one reuses the same data term: tests/test_tight_band.py)
    off = PortraitMatting(PortraitSettings(band_data=0.0, tight_band=False)).refine(image, trimap, guess)
    on = PortraitMatting(PortraitSettings(band_data=0.03, tight_band=False)).refine(image, trimap, guess)
    np.testing.assert_array_equal(off, solve_band(image, trimap, guess, eps=PortraitSettings().cf_eps).alpha)
    data = data_term(image, trimap, strength=0.03)
    np.testing.assert_array_equal(on, solve_band(image, trimap, guess, eps=PortraitSettings().cf_eps, data=data).alpha)
    assert np.abs(on - off).max() > 1e-3  # and it is not the plain solve
