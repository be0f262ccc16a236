"""The built-in route's zoomed pass: the selfie network on tiles along the person's edge (p3m.infer.priors.edge_tiles,
p3m.infer.priors.thin_removals, `PortraitSettings.zoom_tiles`).

The pure rules on drawn masks whose answer is known; the pass in the route with a stand-in network that blurs
its input by a fixed number of network pixels (as a low-resolution segmenter does), so that its edge spills
onto the background by a fixed number of *network* pixels: fewer image pixels when the network sees a tile
than when it sees the whole person. Its quality on the shared portraits: benchmarks/bench_route_priors.py
--pair zoom.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from p3m.infer.portrait import PortraitMatting, PortraitSettings
from p3m.infer.priors import edge_tiles, thin_removals
from tests.paths import TEST_DATA

# -- where the tiles go ----------------------------------------------------------------------------------------


def test_tiles_sit_on_the_edge_where_the_prior_is_unsure_most_unsure_first():
    mask = np.zeros((100, 200), bool)
    mask[20:80, 40:160] = True
    prob = mask.astype(np.float32)
    prob[40:62, 150:160] = 0.6  # a wide unsure strip at the right edge ...
    prob[40:62, 40:44] = 0.6  # ... a narrower one at the left edge
    tiles = edge_tiles(prob, mask, 40, 3)
    assert len(tiles) == 2  # nothing unsure is left for a third
    (_, l0), (_, l1) = tiles
    assert l0 < 159 < l0 + 40 and l0 + 40 <= 200  # the first covers the right edge (inside the grid) ...
    assert l1 < 40 < l1 + 40  # ... the second the left one
    assert all(t <= 40 and t + 40 >= 62 for t, _ in tiles)
    assert edge_tiles(prob, mask, 40, 1) == tiles[:1]
    assert edge_tiles(mask.astype(np.float32), mask, 40, 3) == []  # a sure prior: no tile
    assert edge_tiles(prob, np.zeros_like(mask), 40, 3) == []  # no person: no tile


def test_tiles_with_too_little_of_the_person_are_dropped():
    mask = np.zeros((100, 200), bool)
    mask[40:60, 0:200] = True
    prob = mask.astype(np.float32)
    prob[60:100, :] = 0.3  # unsure background far below a thin band: a tile there holds a sliver of the person
    tiles = edge_tiles(prob, mask, 80, 3, min_person=0.3)
    assert tiles == []
    assert edge_tiles(prob, mask, 80, 3, min_person=0.1)  # below the bar they are kept


def test_tiles_are_clipped_to_the_grid():
    mask = np.zeros((50, 50), bool)
    mask[:, :20] = True
    prob = mask * np.float32(0.8)  # unsure everywhere on the person
    for top, left in edge_tiles(prob, mask, 80, 2):  # larger than the grid: as large as it allows
        assert (top, left) == (0, 0)


# -- which removals are believed -------------------------------------------------------------------------------


def _body_with_spill_and_arm() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coarse, fine, inside): a body with a 6 px spill strip along its right edge and a 4 px arm on its left,
    the fine mask without either; inside: the whole grid."""
    body = np.zeros((120, 160), bool)
    body[20:110, 50:110] = True
    coarse = body.copy()
    coarse[30:100, 110:116] = True  # spill: thin, between the body and the background
    coarse[60:64, 20:50] = True  # a thin arm held out, which the zoomed pass lost
    return coarse, body, np.ones_like(body)


def test_a_thin_strip_along_the_person_is_removed_a_lost_limb_is_not():
    coarse, fine, inside = _body_with_spill_and_arm()
    removed = thin_removals(coarse, fine, inside, reach=8, attach=0.3)
    assert removed[30:100, 110:116].all()  # the strip: touches the body on one side, the background on three
    assert not removed[60:64, 20:50].any()  # the arm: touches mostly background (both sides)
    assert not removed[~coarse].any() and not (removed & fine).any()


def test_removals_deeper_than_reach_or_outside_the_tile_are_not_believed():
    coarse, fine, inside = _body_with_spill_and_arm()
    assert not thin_removals(coarse, fine, inside, reach=2, attach=0.3).any()  # the strip is 6 px deep
    fine = fine.copy()
    fine[20:110, 50:110] = False  # the zoomed pass loses the whole body: 30 px deep
    assert not thin_removals(coarse, fine, inside, reach=8, attach=0.0)[40:100, 60:100].any()
    coarse, fine, inside = _body_with_spill_and_arm()
    inside = np.zeros_like(inside)
    inside[:, :80] = True  # the tile's middle ends before the strip
    assert not thin_removals(coarse, fine, inside, reach=8, attach=0.3).any()


# -- the pass in the route -------------------------------------------------------------------------------------


class BlurringNetwork:
    """Stand-in selfie network: 'probability' = the red channel blurred by 6 network px and scaled so that its
    0.5 level lies outside the red region's edge: a spill of a fixed number of network pixels."""

    runtime = "numpy"
    input_size = (256, 256)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        out = np.stack([cv2.GaussianBlur(np.ascontiguousarray(b[0]), (0, 0), 6) for b in x])[:, None]
        return (np.clip(out * 1.6, 0.0, 1.0).astype(np.float32),)


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """(600x400x3 uint8 image, 600x400 bool person): a standing figure (head, body, legs) in red on black."""
    person = np.zeros((600, 400), np.uint8)
    cv2.circle(person, (200, 110), 50, 1, -1)
    cv2.rectangle(person, (130, 160), (270, 400), 1, -1)
    cv2.rectangle(person, (140, 400), (190, 580), 1, -1)
    cv2.rectangle(person, (210, 400), (260, 580), 1, -1)
    rgb = np.zeros((600, 400, 3), np.uint8)
    rgb[..., 0] = person * 255
    return rgb, person.astype(bool)


def test_the_zoomed_pass_takes_back_the_spill_of_the_coarse_prior():
    rgb, person = _scene()
    coarse = PortraitMatting(PortraitSettings(zoom_tiles=0))
    zoomed = PortraitMatting(PortraitSettings(zoom_tiles=3))
    coarse.net = zoomed.net = BlurringNetwork()
    before, after = coarse.prior(rgb), zoomed.prior(rgb)
    truth = cv2.resize(person.astype(np.uint8), before.shape[::-1], interpolation=cv2.INTER_NEAREST).astype(bool)
    m0, m1 = coarse.mask(before), zoomed.mask(after)
    spill0, spill1 = np.count_nonzero(m0 & ~truth), np.count_nonzero(m1 & ~truth)
    # measured: 9854 -> 7014 spilled pixels (the person: 60185)
    assert spill1 < 0.8 * spill0
    # the person is kept: a rounded corner may lose a pixel or two to the sharper zoomed edge
    assert np.count_nonzero(truth & ~m1) <= np.count_nonzero(truth & ~m0) + 0.001 * np.count_nonzero(truth)
    # only removals, only next to the coarse edge: within zoom_reach of the background
    assert not (m1 & ~m0).any()
    reach = PortraitSettings().zoom_reach * max(before.shape)
    depth = cv2.distanceTransform(m0.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    assert depth[m0 & ~m1].max() <= reach + 1e-3


def _strip_scene(hand: float) -> tuple[PortraitMatting, np.ndarray, np.ndarray]:
    """(route, coarse prior, what the zoomed tiles see) on a 200x200 grid: a body, a strip of spill beside it
    (5 px from the background) that the tiles call background, and past the strip a hand whose prior is `hand`."""
    prob = np.zeros((200, 200), np.float32)
    prob[40:200, 20:100] = 1.0  # body
    prob[100:110, 100:104] = 0.7  # the strip, touching the body and the hand
    prob[84:124, 104:144] = hand
    fine = prob.copy()
    fine[100:110, 100:104] = 0.1
    route = PortraitMatting(PortraitSettings(matting_side=200, zoom_tiles=2))
    route._segment = lambda *args, **kwargs: fine  # type: ignore[method-assign]
    return route, prob, fine


def test_a_removal_that_would_cut_off_part_of_the_person_is_taken_back():
    rgb = np.zeros((200, 200, 3), np.uint8)
    route, prob, _ = _strip_scene(hand=1.0)  # a confident hand: its own component once the strip goes
    after = route.mask(route._zoom(rgb, prob, 200))
    assert not after[100:110, 100:104].any() and after[84:124, 104:144].all()
    route, prob, _ = _strip_scene(hand=0.7)  # an unsure hand (no confident pixel): cut off, hysteresis drops it
    after = route._zoom(rgb, prob, 200)
    assert (route.mask(after) == route.mask(prob)).all()  # the strip is kept, and with it the hand


def test_zoom_tiles_zero_is_the_two_pass_prior_and_the_route_runs_with_the_pass():
    rgb = cv2.cvtColor(cv2.imread(str(TEST_DATA / "selfie_general_input.png")), cv2.COLOR_BGR2RGB)
    off = PortraitMatting(PortraitSettings(zoom_tiles=0))
    on = PortraitMatting(PortraitSettings(zoom_tiles=2))
    p0, p1 = off.prior(rgb), on.prior(rgb)
    assert p1.shape == p0.shape and p1.dtype == np.float32
    assert (p1 <= p0).all()  # the pass only removes
    alpha = on(rgb)
    assert alpha.shape == rgb.shape[:2] and alpha.min() >= 0.0 and alpha.max() <= 1.0
    # a selfie fills the frame: the stored portrait's mask moves by well under 1% of its pixels
    assert np.count_nonzero(off.mask(p0) != on.mask(p1)) < 0.01 * p0.size


@pytest.mark.parametrize("shape", [(40, 30), (70, 500)])
def test_zoomed_pass_on_small_and_thin_images(shape):
    rgb, _ = _scene()
    small = cv2.resize(rgb, shape[::-1], interpolation=cv2.INTER_AREA)
    route = PortraitMatting(PortraitSettings(zoom_tiles=3))
    route.net = BlurringNetwork()
    prob = route.prior(small)
    assert prob.shape == small.shape[:2] and np.isfinite(prob).all()


# -- farther where the coarse prior is unsure, where the chromaticity says shade --------------------------------


def _shade_scene(shade: tuple[int, int, int]) -> tuple[PortraitMatting, np.ndarray, np.ndarray, np.ndarray]:
    """(route, image, coarse prior, strip) on a 200x200 grid: a person (dark red trousers, prior 1) with a strip
    9 px wide beside it (prior 0.8: unsure; deeper than `zoom_reach`'s 6 px, within `zoom_unsure_reach`'s 10) that
    the tiles call background, of colour `shade`, and a lit wall (prior 0) beyond."""
    prob = np.zeros((200, 200), np.float32)
    prob[40:200, 20:100] = 1.0
    strip = np.zeros((200, 200), bool)
    strip[110:200, 100:109] = True
    prob[strip] = 0.8
    image = np.zeros((200, 200, 3), np.uint8)
    image[...] = (200, 205, 215)
    image[40:200, 20:100] = (130, 30, 50)
    image[strip] = shade
    fine = prob.copy()
    fine[strip] = 0.1
    route = PortraitMatting(PortraitSettings(matting_side=200, zoom_tiles=2))
    route._segment = lambda *args, **kwargs: fine  # type: ignore[method-assign]
    return route, image, prob, strip


def test_a_shade_of_the_wall_beyond_the_reach_is_removed_where_the_prior_is_unsure():
    route, image, prob, strip = _shade_scene((62, 64, 68))  # the wall's chromaticity, a third of its light
    before, after = route.mask(prob), route.mask(route._zoom(image, prob, 200))
    gone = before & ~after
    assert gone[strip].mean() > 0.9 and not (gone & ~strip).any()
    off = PortraitMatting(PortraitSettings(matting_side=200, zoom_tiles=2, zoom_unsure=0))
    off._segment = route._segment  # type: ignore[method-assign]
    assert (off.mask(off._zoom(image, prob, 200)) == before).all()  # 9 px deep: beyond the plain pass's reach
    prob = prob.copy()
    prob[strip] = 0.995  # a confident prior is not questioned
    assert (route.mask(route._zoom(image, prob, 200)) == route.mask(prob)).all()


@pytest.mark.parametrize("shade", [(120, 28, 46), "grey"])
def test_a_strip_of_the_persons_chromaticity_or_a_grey_photo_is_kept(shade):
    route, image, prob, _ = _shade_scene((120, 28, 46) if shade != "grey" else (62, 64, 68))
    if shade == "grey":  # black-and-white: the shade and the trousers have one chromaticity, nothing is decided
        image = np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    assert (route.mask(route._zoom(image, prob, 200)) == route.mask(prob)).all()
