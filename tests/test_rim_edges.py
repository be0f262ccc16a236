"""The band's person-side rim opened past a colour edge (p3m.infer.rim_edges, PortraitMatting's trimap stage).

`colour_gradient` on steps whose size is known; `past_rim_edges` on drawn scenes: a plain person whose edge lies on
the band's inner rim (opened exactly `reach` px deep along it), the same person's edge deeper than the reach or a
soft ramp (no edge on the rim: nothing opened), a printed person (its own edges all round: nothing), a person of
the background's colour (nothing); the route's trimap stage opens those pixels on a colour photo and none on a
greyscale one.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from p3m.infer.portrait import PortraitMatting, PortraitSettings, _PoseStage
from p3m.infer.rim_edges import colour_gradient, past_rim_edges
from tests.reference.rim_edges import gradient_whole, past_rim_edges_whole

_BACKGROUND = (170, 180, 200)  # a pale, bluish wall
_PERSON = (60, 80, 120)  # denim
_H, _W = 60, 120
_RIM = 59  # the last known person column
_BAND = (60, 80)  # the unknown columns: the mask spilled by the band's half-width onto the wall


def _trimap() -> np.ndarray:
    trimap = np.zeros((_H, _W), np.uint8)
    trimap[:, : _RIM + 1] = 255
    trimap[:, _BAND[0] : _BAND[1]] = 128
    return trimap


def _scene(edge_at: int = _RIM + 1, person: tuple[int, int, int] = _PERSON) -> np.ndarray:
    """The person left of column `edge_at`, the wall right of it."""
    image = np.empty((_H, _W, 3), np.uint8)
    image[:] = _BACKGROUND
    image[:, :edge_at] = person
    return image


def _opened(image: np.ndarray, trimap: np.ndarray | None = None, **kwargs) -> np.ndarray:
    args = {"reach": 3, "edge": 0.08, "texture": 0.1, "window": 21, "colour": 0.2, **kwargs}
    return past_rim_edges(image, _trimap() if trimap is None else trimap, **args)


def _random_scene(seed: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(image, trimap): a person blob (plain in part, striped in part) on a noisy wall, its mask spilled by 0-5 px,
    the band 4 px on each side of the mask's edge, with stray unknown pixels."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    ry, rx = rng.uniform(0.2, 0.6) * h, rng.uniform(0.2, 0.6) * w
    person = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    image = (rng.normal(0, 4, (h, w, 3)) + rng.uniform(80, 220, 3)).clip(0, 255)
    image[person] = rng.uniform(0, 160, 3)
    stripes = person & (xx > cx) & ((yy // 3) % 2 == 0)
    image[stripes] = rng.uniform(120, 255, 3)
    spill = int(rng.integers(0, 6))
    mask = cv2.dilate(person.astype(np.uint8), np.ones((2 * spill + 1, 2 * spill + 1), np.uint8)).astype(bool)
    outside = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
    inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    trimap = np.where(mask, 255, 0).astype(np.uint8)
    trimap[np.where(mask, inside <= 4, outside <= 4) | (rng.random((h, w)) < 0.002)] = 128
    return image.astype(np.uint8), trimap


def test_colour_gradient_matches_the_whole_image_reference():
    image, _ = _random_scene(0, (50, 70))
    np.testing.assert_allclose(colour_gradient(image), gradient_whole(image), atol=2e-6)


@pytest.mark.parametrize(
    ("seed", "shape"), [(0, (90, 140)), (1, (120, 90)), (2, (200, 260)), (3, (64, 64)), (4, (150, 300))]
)
def test_past_rim_edges_on_the_box_is_the_whole_images_answer(seed, shape):
    image, trimap = _random_scene(seed, shape)
    args = {"reach": 2, "edge": 0.08, "texture": 0.2, "window": 11, "colour": 0.15}
    got = past_rim_edges(image, trimap, **args)
    np.testing.assert_array_equal(got, past_rim_edges_whole(image, trimap, **args))
    assert got.any()  # the scene opens something: the comparison is not between two empty answers


def test_colour_gradient_is_zero_on_flat_colour_and_symmetric_in_channels_and_axes():
    flat = np.full((20, 30, 3), 77, np.uint8)
    assert np.all(colour_gradient(flat) < 1e-6)
    step = np.zeros((20, 30, 3), np.uint8)
    step[:, 15:, 0] = 200
    along_x = colour_gradient(step)
    assert along_x[:, 14:16].min() > 0.2 and np.all(along_x[:, :10] < 1e-6) and np.all(along_x[:, 21:] < 1e-6)
    green = np.roll(step, 1, axis=2)  # the same step in the green channel
    np.testing.assert_allclose(colour_gradient(green), along_x, atol=1e-6)
    np.testing.assert_allclose(colour_gradient(step.transpose(1, 0, 2).copy()), along_x.T, atol=1e-6)
    grey = step.copy()
    grey[..., 1] = grey[..., 2] = grey[..., 0]  # the step in all three channels: sqrt(3) times one channel's
    np.testing.assert_allclose(colour_gradient(grey), np.sqrt(3) * along_x, rtol=1e-5, atol=1e-6)


def test_a_plain_person_whose_edge_lies_on_the_rim_is_opened_reach_px_deep():
    opened = _opened(_scene())
    expected = np.zeros((_H, _W), bool)
    expected[:, _RIM - 2 : _RIM + 1] = True  # 3 px: the rim and the two columns behind it
    np.testing.assert_array_equal(opened, expected)
    deeper = _opened(_scene(), reach=5)
    assert deeper[:, _RIM - 4 : _RIM + 1].all() and not deeper[:, : _RIM - 4].any() and not deeper[:, _RIM + 1 :].any()


@pytest.mark.parametrize("reach", [0, -1])
def test_no_reach_opens_nothing(reach):
    assert not _opened(_scene(), reach=reach).any()


def test_a_trimap_without_one_of_its_three_parts_opens_nothing():
    image = _scene()
    for missing in (0, 128, 255):
        trimap = _trimap()
        trimap[trimap == missing] = 255 if missing != 255 else 0
        assert not _opened(image, trimap).any()


def test_an_edge_deeper_than_the_reach_or_a_soft_ramp_opens_nothing():
    # the wall reaches 10 px into the known person: no edge within 3 px of the rim (the rule does not follow it)
    assert not _opened(_scene(edge_at=_RIM - 9)).any()
    # a soft ramp from the person's colour to the wall's over 40 px (skin against a road of its colour, a shadow on
    # clothes): no strong edge anywhere
    image = _scene()
    ramp = np.linspace(0.0, 1.0, 40)[None, :, None]
    image[:, 30:70] = np.round((1 - ramp) * np.array(_PERSON) + ramp * np.array(_BACKGROUND)).astype(np.uint8)
    assert colour_gradient(image).max() < 0.08
    assert not _opened(image).any()


def test_a_printed_person_keeps_its_rim_known():
    image = _scene()
    yy, xx = np.mgrid[:_H, : _RIM + 1]
    print_ = (yy // 4 + xx // 4) % 2 == 0  # a 4 px check of denim and white on the person
    image[:, : _RIM + 1][print_] = (235, 235, 240)
    assert _opened(image, texture=1.0).any()  # its rim does touch strong edges
    assert not _opened(image).any()  # ... but they are the print's, all round


def test_a_person_of_the_background_colour_keeps_its_rim_known():
    image = _scene()
    np.testing.assert_array_equal(_opened(image, colour=0.0), _opened(image))  # denim is far from the wall's colour
    # the same scene judged as if the person's colour were within the bar of the wall's: nothing is opened
    distance = np.linalg.norm((np.array(_PERSON) - np.array(_BACKGROUND)) / 255.0)
    assert not _opened(image, colour=distance + 0.01).any()
    # the rim's own colour is blurred with the wall's (2 px): at a bar between the two, the rim column is kept
    # and the columns behind it are opened
    between = _opened(image, colour=0.8 * distance)
    assert not between[:, _RIM].any() and between[:, _RIM - 2].all()


def _stage(mask: np.ndarray, greyscale: bool) -> _PoseStage:
    prob = mask.astype(np.float32)
    none = np.zeros_like(mask)
    return _PoseStage(None, 0.0, False, prob, mask, none, none, greyscale)


def test_the_route_opens_the_rim_on_colour_photos_only():
    # a person 3 band half-widths wide whose mask spilled by the band's half-width: the band's inner rim is its edge
    side = 1000  # the band's half-width 10 px, the reach 3 px
    image = np.empty((60, side, 3), np.uint8)
    image[:] = _BACKGROUND
    image[:, :500] = _PERSON
    settings = PortraitSettings(hair_out=0, hair_in=0, hair_gaps=False)
    r = round(settings.band * side)
    mask = np.zeros((60, side), bool)
    mask[:, : 500 + r] = True  # the spill
    route = PortraitMatting(settings)
    plain = route.trimap(mask)
    tri, _, _, _ = route._trimap_stage(image, _stage(mask, greyscale=False), [])
    opened = (plain == 255) & (tri == 128)
    np.testing.assert_array_equal(opened, route.rim(image, plain))
    reach = round(settings.rim_reach * side)
    np.testing.assert_array_equal(np.flatnonzero(opened.any(0)), np.arange(500 - reach, 500))
    assert opened[:, 500 - reach : 500].all()
    assert np.array_equal(tri[~opened], plain[~opened])
    grey_tri, _, _, _ = route._trimap_stage(image, _stage(mask, greyscale=True), [])
    np.testing.assert_array_equal(grey_tri, plain)
    off, _, _, _ = PortraitMatting(PortraitSettings(hair_out=0, hair_in=0, hair_gaps=False, rim_reach=0))._trimap_stage(
        image, _stage(mask, greyscale=False), []
    )
    np.testing.assert_array_equal(off, plain)
