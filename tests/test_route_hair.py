"""The background seen through hair inside the person's mask (`PortraitSettings.hair_gaps`).

`p3m.infer.priors.above_shoulders` against a literal per-pixel side test; `p3m.infer.spill.background_through_hair`
against its definition computed literally (the local moments as literal normalised convolutions); the trimap and
the whole route on a drawn head whose outer strands let an orange background through, above a shirt with a patch
of the background's colour at its edge.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from p3m.infer.portrait import PortraitMatting, PortraitSettings
from p3m.infer.priors import above_shoulders
from p3m.infer.spill import background_through_hair
from p3m.models.pose_landmark import LANDMARKS
from tests.reference.spill import literal_local_mean
from tests.scenes import given

SHOULDERS = (LANDMARKS.index("left_shoulder"), LANDMARKS.index("right_shoulder"))
NOSE = LANDMARKS.index("nose")


def landmarks(left: tuple[float, float], right: tuple[float, float], nose: tuple[float, float]) -> np.ndarray:
    """(33, 4) pose landmarks, all visible, with the shoulders and the nose where given (x, y)."""
    lm = np.zeros((33, 4), np.float32)
    lm[:, 3] = 1.0
    lm[SHOULDERS[0], :2], lm[SHOULDERS[1], :2], lm[NOSE, :2] = left, right, nose
    return lm


def literal_above(lm: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Per pixel: on the nose's side of the line through the shoulders (or on it), by the sign of a cross product."""
    (lx, ly), (rx, ry), (nx, ny) = (lm[i, :2].astype(float) for i in (*SHOULDERS, NOSE))

    def side(x: float, y: float) -> float:  # (right -> left) x (right -> point)
        return (lx - rx) * (y - ry) - (ly - ry) * (x - rx)

    nose_side = np.sign(side(nx, ny))
    out = np.zeros(shape, bool)
    for y in range(shape[0]):
        for x in range(shape[1]):
            out[y, x] = side(x, y) * nose_side >= 0
    return out


@pytest.mark.parametrize(
    "lm",
    [
        landmarks((30, 20), (10, 20), (20, 8)),  # upright
        landmarks((28, 12), (9, 25), (14, 6)),  # leaning: the line is tilted
        landmarks((10, 10), (30, 10), (20, 22)),  # upside down: the head below the shoulders
    ],
)
def test_above_shoulders_is_the_half_plane_on_the_noses_side(lm):
    half = above_shoulders(lm, (32, 40))
    assert half.dtype == bool and half.shape == (32, 40)
    literal = literal_above(lm, (32, 40))
    # pixels exactly on the line may round either way
    (lx, ly), (rx, ry) = lm[SHOULDERS[0], :2], lm[SHOULDERS[1], :2]
    y, x = np.mgrid[:32, :40]
    on_line = np.abs((lx - rx) * (y - ry) - (ly - ry) * (x - rx)) < 1e-6
    assert (half == literal)[~on_line].all()
    assert half[round(lm[NOSE, 1]), round(lm[NOSE, 0])]


def test_above_shoulders_is_empty_without_visible_shoulders_and_nose():
    lm = landmarks((30, 20), (10, 20), (20, 8))
    for hidden in (*SHOULDERS, NOSE):
        weak = lm.copy()
        weak[hidden, 3] = 0.3
        assert not above_shoulders(weak, (32, 40)).any()
        assert above_shoulders(weak, (32, 40), min_visibility=0.2).any()
    same = landmarks((20, 20), (20, 20), (20, 8))  # the shoulders coincide: no line
    assert not above_shoulders(same, (32, 40)).any()


def literal_through_hair(
    image: np.ndarray, trimap: np.ndarray, zone: np.ndarray, sigma: float, ratio: float, spread: float
) -> tuple[np.ndarray, np.ndarray]:
    """(verdict, margin) of `background_through_hair`'s definition on the full grid, in float64: the local means
    and mean squared norms as literal normalised convolutions; margin: how far each pixel is from flipping."""
    colours = image.astype(np.float64) / 255.0
    s = sigma * max(zone.shape)
    person = ((trimap == 255) & ~zone).astype(np.float64)
    fg_mean, fg_density = literal_local_mean(colours, person, s)
    fg_square, _ = literal_local_mean((colours**2).sum(-1, keepdims=True), person, s)
    bg_mean, bg_density = literal_local_mean(colours, (trimap == 0).astype(np.float64), s)
    d_fg = np.linalg.norm(colours - fg_mean, axis=-1)
    d_bg = np.linalg.norm(colours - bg_mean, axis=-1)
    deviation = np.sqrt(np.maximum(fg_square[..., 0] - (fg_mean**2).sum(-1), 0.0))
    sampled = (fg_density >= 1e-3) & (bg_density >= 1e-3)
    verdict = zone & sampled & (d_fg > ratio * d_bg) & (d_fg > spread * deviation)
    margin = np.minimum(np.abs(d_fg - ratio * d_bg), np.abs(d_fg - spread * deviation))
    return verdict, margin


def test_background_through_hair_matches_its_literal_definition():
    rng = np.random.default_rng(11)
    h, w = 14, 18
    trimap = np.full((h, w), 255, np.uint8)
    trimap[:, :4] = 0
    trimap[:, 4:6] = 128
    image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    image[:, :4] = (200, 120, 40)  # the background
    image[:, 10:] = (50, 25, 15)  # the person deeper in
    image[:, 10:] += rng.integers(0, 20, (h, w - 10, 3)).astype(np.uint8)
    zone = np.zeros((h, w), bool)
    zone[:, 6:10] = True  # judged: random colours, some near the background's, some near the person's
    verdict = background_through_hair(image, trimap, zone, sigma=0.15, ratio=2.0, spread=1.5, grid=64)
    literal, margin = literal_through_hair(image, trimap, zone, 0.15, 2.0, 1.5)
    assert verdict.dtype == bool and not (verdict & ~zone).any()
    sure = margin > 1e-4  # float32 moments against float64: only pixels at a hair's breadth from a bar may differ
    assert sure[zone].mean() > 0.95
    assert (verdict == literal)[sure].all()
    assert 0 < literal.sum() < zone.sum()  # the scene tests both outcomes


def hair_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(image HxWx3 uint8, prior HxW, pose landmarks, regions): a dark head whose outer ring of radial strands lets
    an orange background through, over a blue shirt with a patch of the background's colour at its left edge."""
    h, w = 240, 200
    y, x = np.mgrid[:h, :w]
    rng = np.random.default_rng(3)
    background, hair, shirt = (200, 120, 40), (50, 25, 15), (60, 90, 160)
    image = np.empty((h, w, 3))
    image[:] = background
    r, angle = np.hypot(y - 90, x - 100), np.arctan2(y - 90, x - 100)
    torso = (y >= 150) & (np.abs(x - 100) <= 55)
    solid = r <= 50
    strands = (r > 50) & (r <= 62) & (np.cos(angle * 36) > 0.3)
    image[torso] = shirt
    image[solid | strands] = hair
    patch = (y >= 200) & (y < 212) & (x >= 46) & (x < 56)
    image[patch] = background
    image = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    prior = ((r <= 62) | torso).astype(np.float32)  # the coarse prior covers the strands' outline
    regions = {
        "gaps": (r > 52) & (r <= 60) & (np.cos(angle * 36) < -0.3) & (y < 140),  # background between strands
        "hair": r < 40,
        "patch": patch,
    }
    return image, prior, landmarks((150, 150), (50, 150), (100, 95)), regions


def route(prior: np.ndarray, lm: np.ndarray, **settings) -> PortraitMatting:
    """The route (no person check) with `prior` in place of the selfie network's and a pose with the landmarks `lm`
    whose mask is the selfie mask."""
    return given(PortraitMatting(PortraitSettings(person_check=False, **settings)), prior, lm, prior >= 0.5)


def test_trimap_opens_the_background_between_strands_on_the_heads_side_only():
    image, prior, lm, regions = hair_scene()
    pm = route(prior, lm)
    mask = prior >= 0.5
    head = above_shoulders(lm, mask.shape)
    plain, plain_hair = pm.band(mask, image)
    tri, hair = pm.band(mask, image, head)
    opened = (tri == 128) & (plain == 255)
    assert (plain[regions["gaps"]] == 255).mean() > 0.6  # most of the gaps lie deeper than the band ...
    assert (tri[regions["gaps"]] == 128).mean() > 0.95  # ... and are unknown now
    assert not opened[regions["hair"]].any()  # the solid hair deeper in
    assert (tri[~head] == plain[~head]).all()  # nothing below the shoulders
    assert (hair == plain_hair | opened).all()  # the tight solve keeps them unknown
    # the shoulders lower: the patch of the background's colour at the shirt's edge would be opened too
    low = above_shoulders(landmarks((150, 235), (50, 235), (100, 95)), mask.shape)
    assert (pm.band(mask, image, low)[0][regions["patch"]] == 128).mean() > 0.8
    assert (pm.band(mask, image, None)[0] == plain).all()
    assert (route(prior, lm, hair_gaps=False).band(mask, image, head)[0] == plain).all()


def test_route_draws_the_background_between_strands_and_keeps_the_rest():
    image, prior, lm, regions = hair_scene()
    off = route(prior, lm, hair_gaps=False)(image)
    on = route(prior, lm)(image)
    assert off[regions["gaps"]].mean() > 0.9  # the coarse prior's outline, drawn solid
    assert on[regions["gaps"]].mean() < 0.1
    assert on[regions["hair"]].min() == 1.0
    # below the shoulders: untouched (but for the conjugate gradients' tolerance: one system for the whole band)
    assert np.abs(on[regions["patch"]] - off[regions["patch"]]).max() < 1e-3
    # the shoulders lower (the pose's head side reaches the patch): the patch, at the shirt's edge, opens too
    lowered = route(prior, landmarks((150, 235), (50, 235), (100, 95)))(image)
    assert lowered[regions["patch"]].mean() < 0.1 < off[regions["patch"]].mean()


def test_background_through_hair_on_a_reduced_grid_finds_what_the_full_grid_finds():
    image, prior, lm, regions = hair_scene()
    pm = route(prior, lm)
    trimap = pm.band(prior >= 0.5, image)[0]
    person = trimap == 255
    depth = cv2.distanceTransform(person.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    zone = person & above_shoulders(lm, trimap.shape) & (depth <= 0.04 * 240)  # the route's judged pixels
    full = background_through_hair(image, trimap, zone, grid=240)  # the scene's own size: nothing shrunk
    small = background_through_hair(image, trimap, zone, grid=60)  # the model on a quarter-size copy
    judged = zone & (regions["gaps"] | regions["hair"])
    assert full[zone & regions["gaps"]].mean() > 0.95 and not full[regions["hair"]].any()
    assert (small == full)[judged].mean() > 0.98
