"""The second solve raised toward the priors where the colours cannot decide (p3m.infer.prior_pull, the route's
`prior_pull`, `p3m.infer.step_edges.colour_ambiguity`).

The pure functions against literal references (loops per pixel; the sum of two quadratics minimised in closed form);
the colour ambiguity against `colour_separation`; the route's solve written out; on a drawn edge whose person and
background colours coincide on one half, the pull draws that half's edge nearer the truth, leaves the other half as
it was, and does nothing where the prior is below the solve, on `away`, or with `prior_pull=0`.
"""

from __future__ import annotations

import numpy as np
import pytest

from p3m.infer.band_sampling import data_term
from p3m.infer.closed_form import solve_band
from p3m.infer.portrait import PortraitMatting, PortraitSettings
from p3m.infer.prior_pull import add_data_terms, raise_toward_prior
from p3m.infer.step_edges import AMBIGUOUS, colour_ambiguity, colour_separation, separation_at
from p3m.infer.tight_band import one_sided, tight_trimap

# -- the pure functions against literal references --------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("with_away", [False, True])
def test_raise_toward_prior_matches_a_literal_reference(seed, with_away):
    rng = np.random.default_rng(seed)
    h, w = 17, 23
    prior, alpha, ambiguity = (rng.random((h, w)).astype(np.float32) for _ in range(3))
    away = rng.random((h, w)) < 0.3 if with_away else None
    weight, target = raise_toward_prior(prior, alpha, ambiguity, strength=0.05, margin=0.1, away=away)
    assert weight.dtype == target.dtype == np.float32 and weight.shape == target.shape == (h, w)
    for y in range(h):
        for x in range(w):
            pulled = prior[y, x] > alpha[y, x] + np.float32(0.1) and not (with_away and away[y, x])
            assert weight[y, x] == pytest.approx(0.05 * ambiguity[y, x] if pulled else 0.0, abs=1e-7)
    np.testing.assert_array_equal(target, prior)
    assert (weight > 0).sum() > 10  # the case is not empty
    zero, _ = raise_toward_prior(prior, alpha, ambiguity, strength=0.0)
    assert not zero.any()


def test_raise_toward_prior_refuses_bad_arguments():
    a = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match="one shape"):
        raise_toward_prior(a, np.zeros((4, 6)), a, strength=0.03)
    with pytest.raises(ValueError, match="one shape"):
        raise_toward_prior(a, a, a, strength=0.03, away=np.zeros((5, 4), bool))
    with pytest.raises(ValueError, match=">= 0"):
        raise_toward_prior(a, a, a, strength=-1.0)


def test_add_data_terms_minimises_the_sum_of_both_quadratics():
    rng = np.random.default_rng(3)
    w1, t1, w2, t2 = (rng.random((9, 11)).astype(np.float32) for _ in range(4))
    w2[:3] = 0.0  # the second term absent on some pixels
    w1[:2] = 0.0  # ... and on two rows neither
    weight, target = add_data_terms((w1, t1), (w2, t2))
    np.testing.assert_allclose(weight, w1 + w2, rtol=1e-6)
    for y in range(9):
        for x in range(11):
            if w2[y, x] == 0:
                assert weight[y, x] == w1[y, x] and target[y, x] == t1[y, x]  # the first term, to the bit
                continue
            # w1 (a - t1)^2 + w2 (a - t2)^2 - weight (a - target)^2 is the same at every a: one quadratic
            values = [
                w1[y, x] * (a - t1[y, x]) ** 2 + w2[y, x] * (a - t2[y, x]) ** 2 - weight[y, x] * (a - target[y, x]) ** 2
                for a in (0.0, 0.37, 1.0)
            ]
            assert max(values) - min(values) < 1e-5
    assert add_data_terms(None, None) is None
    assert add_data_terms((w1, t1), None)[0] is w1 and add_data_terms(None, (w2, t2))[1] is t2


def test_colour_ambiguity_falls_with_the_colour_separation():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    alpha = np.zeros((40, 50), np.float32)
    alpha[:, :20] = 1.0
    alpha[:, 20:24] = 0.5
    ys, xs = np.nonzero(alpha == 0.5)
    sigma = 3.0 / 50  # 3 px: no shrinking (`separation_at` shrinks by int(sigma / 2 px))
    separation = colour_separation(image, alpha, 3.0)[ys, xs]
    np.testing.assert_allclose(separation_at(image, alpha, ys, xs, sigma, cap=0.7), np.minimum(separation, 0.7))
    lo, hi = AMBIGUOUS
    expect = np.clip((hi - separation) / (hi - lo), 0.0, 1.0)
    np.testing.assert_allclose(colour_ambiguity(image, alpha, ys, xs, sigma=sigma), expect, atol=1e-6)
    # two flat colours: the same colour on both sides is wholly ambiguous, far apart not at all
    for colours, want in (((120, 100, 90), (120, 100, 90)), 1.0), (((230, 200, 180), (20, 40, 120)), 0.0):
        flat = np.zeros((40, 50, 3), np.uint8)
        flat[:, :22], flat[:, 22:] = colours
        assert np.allclose(colour_ambiguity(flat, alpha, ys, xs, sigma=sigma), want)


# -- the route's solve ------------------------------------------------------------------------------------------


def split_scene(h: int = 240, w: int = 320) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(image, true alpha, mask, prior): a person on the left half; the background is blue in the top half and the
    person's own colour in the bottom half (the colours cannot decide there); the mask's edge drawn 5 px inside (as
    a 256 px prior's edge drifts), the prior a soft ramp centred on the true edge."""
    rng = np.random.default_rng(5)
    x = np.arange(w)[None, :].repeat(h, 0)
    alpha = (x < w // 2).astype(np.float32)
    person = np.array([150, 120, 100], np.float32)
    background = np.where(np.arange(h)[:, None, None] < h // 2, np.array([20, 60, 220], np.float32), person)
    image = alpha[..., None] * person + (1 - alpha[..., None]) * background + 2 * rng.standard_normal((h, w, 3))
    prior = np.clip((w // 2 - x) / 8 + 0.5, 0, 1).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), alpha, x < w // 2 - 5, prior


def test_the_pull_draws_the_edge_the_colours_cannot_and_leaves_the_rest():
    image, alpha, mask, prior = split_scene()
    pm = PortraitMatting(PortraitSettings(band=0.02))
    tri = pm.trimap(mask)
    assert (alpha[tri == 255] == 1).all() and (alpha[tri == 0] == 0).all()  # the band holds the true edge
    guess = mask.astype(np.float32)
    off = pm.solve(image, tri, guess).alpha
    on = pm.solve(image, tri, guess, prior=prior).alpha
    ambiguous, clear = np.s_[140:, :], np.s_[:100, :]
    err_off, err_on = np.abs(off - alpha)[ambiguous].sum(), np.abs(on - alpha)[ambiguous].sum()
    wrong_off = ((off[ambiguous] > 0.5) != (alpha[ambiguous] > 0.5)).sum()
    wrong_on = ((on[ambiguous] > 0.5) != (alpha[ambiguous] > 0.5)).sum()
    # measured: 499 -> 455 and 500 -> 430 wrong pixels (the solve's ramp inside the person raised toward the prior)
    assert err_on < 0.95 * err_off and wrong_on < 0.9 * wrong_off, (err_on, err_off, wrong_on, wrong_off)
    assert np.abs(on - off)[clear].max() < 1e-3  # where the colours decide, the pull has no weight
    # no pull: with the knob at 0, on the `away` pixels, or where the prior says less person than the first solve
    np.testing.assert_array_equal(
        PortraitMatting(PortraitSettings(band=0.02, prior_pull=0)).solve(image, tri, guess, prior=prior).alpha, off
    )
    np.testing.assert_array_equal(pm.solve(image, tri, guess, prior=prior, away=np.ones_like(mask)).alpha, off)
    np.testing.assert_array_equal(pm.solve(image, tri, guess, prior=np.zeros_like(prior)).alpha, off)


def test_route_solve_with_a_prior_is_the_two_solves_written_out():
    image, _, mask, prior = split_scene()
    s = PortraitSettings(band=0.02)
    pm = PortraitMatting(s)
    tri = pm.trimap(mask)
    away = np.zeros(mask.shape, bool)
    away[:, :150] = True
    guess = mask.astype(np.float32)
    data = data_term(image, tri, strength=s.band_data)
    first = solve_band(image, tri, guess, eps=s.cf_eps, rtol=s.coarse_rtol, data=data)
    reach = max(1, round(s.tight_reach * max(tri.shape)))
    narrow = tight_trimap(tri, first.alpha, low=s.tight_low, high=s.tight_high, reach=reach)
    ys, xs = np.nonzero(narrow == 128)
    ambiguity = np.zeros(tri.shape, np.float32)
    ambiguity[ys, xs] = colour_ambiguity(image, tri / np.float32(255), ys, xs, separated=s.pull_separated)
    pull = raise_toward_prior(prior, first.alpha, ambiguity, strength=s.prior_pull, margin=s.pull_margin, away=away)
    assert pull[0].any() and not pull[0][away].any()
    second = solve_band(image, narrow, first.alpha, eps=s.cf_eps, rtol=s.rtol, data=add_data_terms(data, pull))
    expect = np.where(one_sided(narrow), first.alpha, second.alpha)
    np.testing.assert_array_equal(pm.solve(image, tri, guess, prior=prior, away=away).alpha, expect)


def test_refine_stage_pulls_only_with_the_heads_side_known():
    """Without the pose's landmarks nothing says where hair can be (where the prior's blur is wrong): no pull."""
    image, _, mask, prior = split_scene()
    pm = PortraitMatting(PortraitSettings(band=0.02))
    tri = pm.trimap(mask)
    hair = np.zeros(mask.shape, bool)
    plain, _ = PortraitMatting(PortraitSettings(band=0.02, prior_pull=0))._refine_stage(image, tri, mask, hair)
    blind, _ = pm._refine_stage(image, tri, mask, hair, prior, None)
    np.testing.assert_array_equal(blind, plain)
    pulled, _ = pm._refine_stage(image, tri, mask, hair, prior, np.zeros_like(mask))
    assert not np.array_equal(pulled, plain)
    head = np.ones_like(mask)  # all on the head's side: all kept off
    np.testing.assert_array_equal(pm._refine_stage(image, tri, mask, hair, prior, head)[0], plain)
