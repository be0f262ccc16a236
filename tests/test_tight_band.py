"""The second, tight band of the route's closed-form solve (p3m.infer.tight_band, PortraitMatting.solve).

`tight_trimap` and `one_sided` against literal per-pixel references on random arrays; the route's two solves on a
drawn low-contrast step edge, where the one wide band leaves a ramp and haze, and on a gap enclosed by the person,
where the second solve has no background to draw against.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from p3m.infer.band_sampling import data_term
from p3m.infer.closed_form import solve_band
from p3m.infer.portrait import PortraitMatting, PortraitSettings
from p3m.infer.tight_band import one_sided, tight_trimap


def _random_band(seed: int, shape: tuple[int, int] = (24, 31)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(trimap with a wide unknown band across the middle, alpha in [0, 1] with plateaus at 0 and 1, keep)."""
    rng = np.random.default_rng(seed)
    w = shape[1]
    trimap = np.zeros(shape, np.uint8)
    trimap[:, w // 2 :] = 255
    trimap[:, w // 4 : 3 * w // 4] = 128
    trimap[rng.random(shape) < 0.05] = 128  # stray unknown pixels in the known regions too
    alpha = np.clip(rng.random(shape) * 3 - 1, 0, 1)  # a third each at 0, 1 and in between
    keep = rng.random(shape) < 0.05
    return trimap, alpha, keep


def _tight_trimap_literally(trimap, alpha, low, high, reach, keep):
    h, w = trimap.shape
    out = trimap.copy()
    for y in range(h):
        for x in range(w):
            if trimap[y, x] != 128:
                continue
            near = any(
                trimap[v, u] == 128 and low < alpha[v, u] < high and (v - y) ** 2 + (u - x) ** 2 <= reach**2
                for v in range(h)
                for u in range(w)
            )
            if near or (keep is not None and keep[y, x]):
                out[y, x] = 128
            else:
                out[y, x] = 255 if alpha[y, x] >= 0.5 else 0
    return out


@pytest.mark.parametrize(
    ("seed", "low", "high", "reach", "with_keep"),
    [(0, 0.2, 0.8, 2, True), (1, 0.1, 0.9, 1, False), (2, 0.3, 0.7, 3, True), (3, 0.2, 0.8, 0, False)],
)
def test_tight_trimap_matches_a_literal_reference(seed, low, high, reach, with_keep):
    trimap, alpha, keep = _random_band(seed)
    keep = keep if with_keep else None
    got = tight_trimap(trimap, alpha, low=low, high=high, reach=reach, keep=keep)
    assert got.dtype == np.uint8
    assert np.array_equal(got, _tight_trimap_literally(trimap, alpha, low, high, reach, keep))
    # the band only narrows: known pixels stay as they were, and nothing outside the first band becomes unknown
    assert np.array_equal(got[trimap != 128], trimap[trimap != 128])
    assert ((got == 128) <= (trimap == 128)).all()


def test_tight_trimap_refuses_bad_arguments():
    trimap, alpha, _ = _random_band(0)
    with pytest.raises(ValueError, match="low < high"):
        tight_trimap(trimap, alpha, low=0.8, high=0.2)
    with pytest.raises(ValueError, match="reach"):
        tight_trimap(trimap, alpha, reach=-1)
    with pytest.raises(ValueError, match="shape"):
        tight_trimap(trimap, alpha[:-1])


def _one_sided_literally(trimap):
    h, w = trimap.shape
    out = np.zeros(trimap.shape, bool)
    seen = np.zeros(trimap.shape, bool)
    for y0 in range(h):
        for x0 in range(w):
            if trimap[y0, x0] != 128 or seen[y0, x0]:
                continue
            part, stack, sides = [], [(y0, x0)], set()
            seen[y0, x0] = True
            while stack:
                y, x = stack.pop()
                part.append((y, x))
                for v in range(max(0, y - 1), min(h, y + 2)):
                    for u in range(max(0, x - 1), min(w, x + 2)):
                        if trimap[v, u] == 128 and not seen[v, u]:
                            seen[v, u] = True
                            stack.append((v, u))
                        elif trimap[v, u] != 128:
                            sides.add(int(trimap[v, u]))
            if sides != {0, 255}:
                for y, x in part:
                    out[y, x] = True
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_sided_matches_a_literal_reference(seed):
    rng = np.random.default_rng(seed)
    trimap = rng.choice(np.array([0, 128, 255], np.uint8), size=(20, 26), p=[0.3, 0.5, 0.2])
    trimap[:, :4] = 0  # a wide known background and foreground, so that both kinds of part occur
    trimap[:, -4:] = 255
    assert np.array_equal(one_sided(trimap), _one_sided_literally(trimap))


def test_one_sided_finds_a_gap_enclosed_by_the_person_and_not_the_edge():
    trimap = np.zeros((40, 60), np.uint8)
    trimap[:, 30:] = 255
    trimap[:, 26:34] = 128  # the edge: touches both sides
    trimap[15:25, 45:52] = 128  # a hole in the person: foreground all round
    trimap[0:3, 0:3] = 128  # a part in the background's corner: background only
    flagged = one_sided(trimap)
    assert flagged[15:25, 45:52].all() and flagged[0:3, 0:3].all()
    assert not flagged[:, 26:34].any()
    assert one_sided(np.full((5, 5), 128, np.uint8)).all()  # touching nothing: flagged too


# -- the route's two solves ------------------------------------------------------------------------------------


def low_contrast_scene(h: int = 160, w: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(HxWx3 uint8 image, HxW float alpha): an ellipse with a step edge (about 1 px), its shaded grey only 25 levels
    darker than the shaded grey background, both with mild noise: a dark suit on a dark stage."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.sqrt(((yy - h * 0.55) / (h * 0.32)) ** 2 + ((xx - w * 0.5) / (w * 0.22)) ** 2)
    alpha = np.clip((1.0 - r) * 40.0 + 0.5, 0.0, 1.0)
    fg = 110 + 20 * (xx / w)[..., None] + 6 * rng.standard_normal((h, w, 3))
    bg = 135 + 20 * (yy / h)[..., None] + 6 * rng.standard_normal((h, w, 3))
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), alpha


def test_second_tight_solve_draws_a_low_contrast_step_edge_the_wide_band_blurs():
    image, alpha = low_contrast_scene()
    mask = np.roll(alpha >= 0.5, 3, axis=1)  # the prior's edge 3 px off the true one
    errors = {}
    for tight in (False, True):
        pm = PortraitMatting(PortraitSettings(band=0.04, tight_band=tight))
        tri = pm.trimap(mask, image)
        assert (alpha[tri == 255] > 0.99).all() and (alpha[tri == 0] < 0.01).all()  # the band holds the edge
        result = pm.solve(image, tri, mask.astype(np.float32))
        assert result.method == "ic0" and result.alpha.dtype == np.float32
        errors[tight] = np.abs(result.alpha - alpha).sum()
    # measured: 204 with the one wide band (a ramp and haze over its 6 px on each side), 78 with the second solve
    assert errors[True] < 0.5 * errors[False], errors


def test_second_solve_keeps_the_first_alpha_where_the_narrow_band_has_one_side_only():
    image, alpha = low_contrast_scene(320, 400)
    gap = np.zeros(alpha.shape, np.uint8)
    cv2.circle(gap, (200, 190), 8, 1, -1)
    gap = gap.astype(bool)
    image[gap] = 150  # a gap in the person, the background's colour, too small for the band to reach past it
    mask = (alpha >= 0.5) & ~gap
    pm = PortraitMatting(PortraitSettings(band=0.04))
    tri = pm.trimap(mask, image)
    assert (tri[gap] == 128).all() and (tri[cv2.dilate(gap.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0] != 0).all()
    # started half-way, conjugate gradients stop while the enclosed part is still fractional (as on a real photo's
    # gap between an arm and the body): its narrow band touches known foreground only, where a second solve would
    # fill it with 1
    guess = np.where(tri == 128, 0.6, mask).astype(np.float32)
    coarse = PortraitSettings(band=0.04, tight_band=False, rtol=pm.settings.coarse_rtol)
    first = PortraitMatting(coarse).solve(image, tri, guess).alpha
    assert 0.3 < first[gap].mean() < 0.7
    got = pm.solve(image, tri, guess).alpha
    assert np.array_equal(got[gap], first[gap])
    rest = ~cv2.dilate(gap.astype(np.uint8), np.ones((41, 41), np.uint8)).astype(bool)
    assert np.abs(got - alpha)[rest].sum() < 0.7 * np.abs(first - alpha)[rest].sum()  # the outline is solved again


def test_band_marks_the_pixels_near_the_hair_widening_for_the_second_solve():
    h, w = 240, 240
    mask = np.zeros((h, w), bool)
    cv2.circle(mask.view(np.uint8), (120, 140), 60, 1, -1)
    image = np.full((h, w, 3), 200, np.uint8)
    for k in range(40):  # dark strands crossing the top of the head's edge outwards
        a = np.pi * (1.1 + 0.8 * k / 40)
        p0 = (int(120 + 50 * np.cos(a)), int(140 + 50 * np.sin(a)))
        p1 = (int(120 + 66 * np.cos(a)), int(140 + 66 * np.sin(a)))
        cv2.line(image, p0, p1, (40, 30, 20), 1)
    pm = PortraitMatting(PortraitSettings(band=0.01, hair_out=0.03, hair_in=0.02))
    tri, hair = pm.band(mask, image)
    plain = pm.trimap(mask) == 128
    assert np.array_equal(tri, pm.trimap(mask, image))
    assert hair.any() and (hair <= (tri == 128)).all()
    assert (tri == 128)[~plain].sum() <= hair.sum()  # every pixel the widening added is kept, ...
    assert hair[plain].any()  # ... with the plain band next to it
    ys, _ = np.nonzero(hair)
    assert ys.max() < 140  # only at the top, where the strands are
    assert not pm.band(mask)[1].any() and not pm.band(mask, np.full((h, w, 3), 200, np.uint8))[1].any()


def test_route_solve_is_the_two_solves_written_out():
    """`PortraitMatting.solve` with `tight_band`: the first solve to `coarse_rtol`, `tight_trimap` from its alpha,
    the second from it with the first's data term (its samples lie on pixels known in both trimaps), the first
    alpha kept on one-sided parts; the iterations are both solves'."""
    image, alpha = low_contrast_scene()
    mask = np.roll(alpha >= 0.5, 3, axis=1)
    s = PortraitSettings(band=0.04)
    pm = PortraitMatting(s)
    tri = pm.trimap(mask, image)
    keep = np.zeros(mask.shape, bool)
    keep[:, :40] = tri[:, :40] == 128  # a stand-in for the hair zone: the band's left end stays unknown
    guess = mask.astype(np.float32)
    data = data_term(image, tri, strength=s.band_data)
    first = solve_band(image, tri, guess, eps=s.cf_eps, rtol=s.coarse_rtol, data=data)
    reach = max(1, round(s.tight_reach * max(tri.shape)))
    narrow = tight_trimap(tri, first.alpha, low=s.tight_low, high=s.tight_high, reach=reach, keep=keep)
    second = solve_band(image, narrow, first.alpha, eps=s.cf_eps, rtol=s.rtol, data=data)
    expect = np.where(one_sided(narrow), first.alpha, second.alpha)
    got = pm.solve(image, tri, guess, keep)
    np.testing.assert_array_equal(got.alpha, expect)
    assert got.iterations == first.iterations + second.iterations and got.method == "ic0"
    assert (narrow == 128).sum() < 0.6 * (tri == 128).sum() and (narrow[keep] == 128).all()


def test_nothing_fractional_after_the_first_solve_gives_its_alpha_rounded():
    image = np.full((40, 50, 3), 90, np.uint8)  # one colour, foreground all round the band: no edge to draw
    trimap = np.full((40, 50), 255, np.uint8)
    trimap[10:30, 10:40] = 128
    result = PortraitMatting().solve(image, trimap)
    assert result.method == "ic0" and result.iterations >= 1
    assert (result.alpha == 1.0).all()
