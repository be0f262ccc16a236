"""The local colour model that tells where the person prior spills onto the background (p3m.infer.spill).

`local_mean_colour` against a literal per-pixel normalised convolution; `background_by_colour` on drawn scenes
whose answer is known (a wall next to a person, a limb of the person's colour, samples out of reach); the route's
use of it (`PortraitMatting.unspill`): the matte's spill onto a wall shrinks, a limb stays.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from p3m.infer.portrait import PortraitMatting, PortraitSettings
from p3m.infer.priors import limb_gaps
from p3m.infer.spill import background_by_colour, background_in_gaps, gaussian_kernel, local_mean_colour
from p3m.models.pose_landmark import LANDMARKS
from tests.reference.spill import literal_local_mean
from tests.scenes import standing


def test_gaussian_kernel_is_normalised_symmetric_and_reaches_three_sigma():
    for sigma in (0.3, 1.0, 2.5):
        k = gaussian_kernel(sigma)
        assert k.dtype == np.float32 and len(k) % 2 == 1 and len(k) >= 3
        assert abs(float(k.sum()) - 1.0) < 1e-6 and np.allclose(k, k[::-1])
    assert len(gaussian_kernel(2.5)) == 2 * 8 + 1


@pytest.mark.parametrize("sigma", [0.8, 1.7])
def test_local_mean_colour_matches_the_literal_normalised_convolution(sigma):
    rng = np.random.default_rng(4)
    colours = (rng.random((9, 13, 3)) * 255).astype(np.float32)
    weight = (rng.random((9, 13)) > 0.6).astype(np.float32)
    weight[:, 9:] = 0.0  # a region without samples: density 0 far from the others
    mean, density = local_mean_colour(colours, weight, sigma)
    ref_mean, ref_density = literal_local_mean(colours, weight, sigma)
    assert mean.shape == colours.shape and density.shape == weight.shape
    assert np.abs(density - ref_density).max() < 1e-5
    assert np.abs(mean - ref_mean).max() < 1e-2  # float32 colours in [0, 255]


def scene(
    strip_colour: tuple[int, int, int], h: int = 60, w: int = 90, edge: int = 40, strip: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """(HxWx3 uint8 image, HxW float32 prior): a person (red, prior 1) left of column `edge`, a blue-grey wall
    (prior 0) right of it, and `strip` columns of `strip_colour` beyond the edge where the prior is unsure (0.7):
    the wall's colour makes it the prior's spill, the person's a limb the prior is unsure of."""
    rng = np.random.default_rng(0)
    image = np.zeros((h, w, 3), np.float64)
    image[:, :edge] = (200, 50, 40)
    image[:, edge:] = (150, 170, 200)
    image[:, edge : edge + strip] = strip_colour
    image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
    prob = np.zeros((h, w), np.float32)
    prob[:, :edge] = 1.0
    prob[:, edge : edge + strip] = 0.7
    return image, prob


def test_background_by_colour_marks_the_wall_next_to_the_person_not_the_person():
    image, prob = scene((150, 170, 200))  # the unsure strip is wall
    verdict = background_by_colour(image, prob, sigma=0.04)
    assert verdict.shape == prob.shape and verdict.dtype == bool
    assert verdict[:, 40:44].mean() > 0.95  # the spill onto the wall
    assert not verdict[:, :38].any()  # the person
    assert verdict[:, 44].mean() > 0.9  # the wall just beyond, within reach of both kinds of samples


def test_background_by_colour_keeps_a_strip_of_the_persons_colour():
    image, prob = scene((200, 50, 40))  # the unsure strip is the person's (an arm the prior is unsure of)
    assert not background_by_colour(image, prob, sigma=0.04)[:, 40:44].any()


def test_background_by_colour_needs_both_kinds_of_samples_within_reach():
    image, prob = scene((150, 170, 200))
    verdict = background_by_colour(image, prob, sigma=0.04)  # 3.6 px
    assert not verdict[:, 75:].any()  # the wall far from the person: no foreground sample to compare with
    assert not background_by_colour(image, np.zeros_like(prob), sigma=0.04).any()


def test_background_by_colour_samples_the_background_in_the_priors_tail():
    # a shaded wall beside the person (the prior's tail, 0.2) and a lit wall further off (0): the strip where
    # the prior spills is shaded wall, far from the lit wall's colour, and is told apart only by the tail
    image, prob = scene((70, 80, 100))
    image[:, 44:60] = image[:, 40:44].mean((0, 1)).astype(np.uint8)
    prob[:, 44:60] = 0.2
    assert background_by_colour(image, prob, sigma=0.04)[:, 40:44].mean() > 0.95
    assert not background_by_colour(image, prob, sigma=0.04, background=0.05)[:, 40:44].any()


def test_background_by_colour_works_on_a_reduced_grid_and_resizes_back():
    image, prob = scene((150, 170, 200))
    big_image = image.repeat(8, 0).repeat(8, 1)  # 480x720: the model runs at 256 px and comes back
    big_prob = prob.repeat(8, 0).repeat(8, 1)
    verdict = background_by_colour(big_image, big_prob, sigma=0.04)
    assert verdict.shape == big_prob.shape
    assert verdict[:, 330:350].mean() > 0.9 and not verdict[:, :300].any()


@pytest.mark.parametrize("spill", [True, False])
def test_route_drops_the_priors_spill_onto_a_wall_of_another_colour_and_keeps_a_limb(spill):
    # 160x240, the prior 0.7 over 5 columns beyond the person's edge: twice the band (1% of the long side)
    image, prob = scene((150, 170, 200) if spill else (200, 50, 40), 160, 240, 100, 5)
    alphas = {}
    for unsure in (0.5, 0.8):  # off (the threshold), the default
        pm = PortraitMatting(PortraitSettings(spill_unsure=unsure, pose=False, person_check=False))
        pm.prior = lambda rgb: prob  # the given prior in place of the network's
        alphas[unsure] = pm(image)
    on_strip = {k: float(a[:, 100:105].sum()) for k, a in alphas.items()}
    if spill:  # without the colour model the band cannot reach back to the person's edge: the spill stays
        assert on_strip[0.5] > 0.5 * 160 * 5 and on_strip[0.8] < 0.1 * on_strip[0.5]
    else:  # the strip has the person's colour: kept either way
        assert min(on_strip.values()) > 0.9 * 160 * 5
    assert (alphas[0.8][:, :98] > 0.99).all() and (alphas[0.8][:, 108:] < 0.01).all()


def gap_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(image 300x200, prior, person, gap): a person standing with arms held out (`standing`'s landmarks: blue
    shirt, red sleeves, grey trousers) on sand; the prior is 1 on the person and also fills the sand enclosed
    between the left arm and the torso (`gap`), 0 elsewhere."""
    lm = standing()
    at = {name: tuple(int(v) for v in lm[LANDMARKS.index(name), :2]) for name in LANDMARKS}
    image = np.zeros((300, 200, 3), np.uint8)
    image[:] = (200, 180, 140)

    def limbs(joints: tuple[str, str, str], width: int) -> np.ndarray:
        drawn = np.zeros((300, 200), np.uint8)
        for side in ("left", "right"):
            cv2.polylines(drawn, [np.array([at[f"{side}_{joint}"] for joint in joints])], False, 1, width)
        return drawn.astype(bool)

    arms = limbs(("shoulder", "elbow", "wrist"), 12)
    torso = np.zeros((300, 200), np.uint8)
    cv2.rectangle(torso, (80, 55), (120, 155), 1, -1)
    cv2.circle(torso, (100, 35), 18, 1, -1)
    person = torso.astype(bool) | arms | limbs(("hip", "knee", "ankle"), 16)
    image[person] = (40, 60, 160)
    image[arms] = (180, 40, 40)
    image[person & (np.arange(300)[:, None] > 155)] = (90, 90, 95)
    enclosed = np.zeros((300, 200), np.uint8)
    cv2.fillPoly(enclosed, [np.array([at["left_shoulder"], at["left_elbow"], at["left_wrist"], at["left_hip"]])], 1)
    gap = enclosed.astype(bool) & ~person
    rng = np.random.default_rng(5)
    image = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    prob = (person | gap).astype(np.float32)
    return image, prob, person, gap


def test_background_in_gaps_finds_the_enclosed_background_and_keeps_the_limbs():

    image, prob, person, gap = gap_scene()
    polygons = limb_gaps(standing(), prob.shape)
    mask = prob >= 0.5
    verdict = background_in_gaps(image, prob, mask, polygons)
    assert verdict.shape == prob.shape and verdict.dtype == bool
    assert verdict[gap].mean() > 0.9  # the sand the prior filled between the arm and the torso
    assert not (verdict & person).any()  # the sleeve and the shirt, inside the polygon too
    assert not (verdict & ~polygons).any()
    # a speck of the sand's colour on the shirt (a highlight) is not a region of background
    speck = image.copy()
    speck[100:102, 110:112] = (200, 180, 140)
    assert not background_in_gaps(speck, prob, mask, polygons)[100:102, 110:112].any()
    # no background round the person to compare with: no verdict
    assert not background_in_gaps(image, np.ones_like(prob), np.ones_like(mask), polygons).any()


def test_route_drops_the_background_enclosed_between_arm_and_body_with_gap_colour():
    from p3m.models.pose_landmark import Pose

    image, prob, person, gap = gap_scene()
    inner = cv2.erode(person.astype(np.uint8), np.ones((5, 5))) > 0
    limbs = inner & limb_gaps(standing(), prob.shape)  # the sleeve and shirt inside the polygon, off their edges
    kept = {}
    for on in (False, True):
        pm = PortraitMatting(PortraitSettings(gap_colour=on, person_check=False))
        pm.prior = lambda rgb: prob  # the given prior in place of the network's

        def pose(image, mask):  # a trusted pose (its mask is the selfie mask) with the drawn landmarks
            return Pose(standing(), np.ones(33), np.zeros((33, 3)), mask.astype(np.float32), 1.0, None, None)

        pm.pose = pose
        alpha = pm(image)
        kept[on] = float(alpha[gap].mean())
        assert alpha[limbs].min() > 0.99
    assert kept[False] > 0.9 and kept[True] < 0.1  # the sand between the arm and the body leaves the matte
