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
from p3m.infer.spill import (
    background_by_chromaticity,
    background_by_colour,
    background_in_gaps,
    chromaticity,
    gaussian_kernel,
    local_mean_colour,
    parts_mostly,
)
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
        pm.prior = lambda rgb, image=None: prob  # the given prior in place of the network's
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
        pm.prior = lambda rgb, image=None: prob  # the given prior in place of the network's

        def pose(image, mask):  # a trusted pose (its mask is the selfie mask) with the drawn landmarks
            return Pose(standing(), np.ones(33), np.zeros((33, 3)), mask.astype(np.float32), 1.0, None, None)

        pm.pose = pose
        alpha = pm(image)
        kept[on] = float(alpha[gap].mean())
        assert alpha[limbs].min() > 0.99
    assert kept[False] > 0.9 and kept[True] < 0.1  # the sand between the arm and the body leaves the matte


# -- the shade told by chromaticity (the zoomed pass's further removals) ----------------------------------------


def literal_chromaticity(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the definition on the unsmoothed image: (c + 1) / (sum + 3), intensity sum / 765."""
    h, w, _ = image.shape
    chroma, intensity = np.zeros((h, w, 3)), np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            c = [float(v) for v in image[y, x]]
            chroma[y, x] = [(v + 1) / (sum(c) + 3) for v in c]
            intensity[y, x] = sum(c) / 765
    return chroma, intensity


def test_chromaticity_matches_the_literal_definition_and_greys_are_a_third():
    image = np.random.default_rng(3).integers(0, 256, (9, 11, 3)).astype(np.uint8)
    image[0, 0], image[0, 1] = (0, 0, 0), (77, 77, 77)
    chroma, intensity = chromaticity(image, blur=0)
    ref_chroma, ref_intensity = literal_chromaticity(image)
    assert chroma.dtype == np.float32 and intensity.shape == image.shape[:2]
    assert np.abs(chroma - ref_chroma).max() < 1e-6 and np.abs(intensity - ref_intensity).max() < 1e-6
    assert np.allclose(chroma[0, :2], 1 / 3)  # black and grey: no hue
    # brightness divided out: a colour and its shade (every channel halved) have nearly the same chromaticity
    lit, shade = np.array([[[200, 120, 80]]], np.uint8), np.array([[[100, 60, 40]]], np.uint8)
    assert np.abs(chromaticity(lit, 0)[0] - chromaticity(shade, 0)[0]).sum() < 0.01


def literal_shade_votes(
    image: np.ndarray, person: np.ndarray, background: np.ndarray, ratio: float, margin: float, dark: float
) -> np.ndarray:
    """Per pixel, every nearest sample of each kind searched by brute force: 1 (background) / 0 (not) where all
    equally near samples give the same answer, -1 where ties between samples leave it open."""
    chroma, intensity = literal_chromaticity(image)
    py, px = np.nonzero(person)
    by, bx = np.nonzero(background)
    h, w = person.shape
    out = np.zeros((h, w), int)
    for y in range(h):
        for x in range(w):
            dp, db = (py - y) ** 2 + (px - x) ** 2, (by - y) ** 2 + (bx - x) ** 2
            answers = set()
            for i in np.flatnonzero(dp == dp.min()):
                for j in np.flatnonzero(db == db.min()):
                    d_p = np.abs(chroma[y, x] - chroma[py[i], px[i]]).sum()
                    d_b = np.abs(chroma[y, x] - chroma[by[j], bx[j]]).sum()
                    shade = intensity[y, x] < intensity[by[j], bx[j]]
                    answers.add(bool(d_p > ratio * d_b + margin and intensity[y, x] >= dark and shade))
            out[y, x] = answers.pop() if len(answers) == 1 else -1
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_background_by_chromaticity_matches_the_literal_nearest_samples(seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (14, 17, 3)).astype(np.uint8)
    where = rng.random((14, 17))
    person, background = where < 0.15, where > 0.85
    votes = background_by_chromaticity(image, person, background, ratio=1.5, margin=0.02, dark=0.1, blur=0)
    ref = literal_shade_votes(image, person, background, 1.5, 0.02, 0.1)
    decided = ref >= 0
    assert decided.mean() > 0.5 and votes.dtype == bool
    assert (votes[decided] == ref[decided].astype(bool)).all()
    assert 0 < ref[decided].sum() < decided.sum()  # both answers occur: the comparison is not vacuous
    judged = rng.random((14, 17)) < 0.5  # judging some pixels only: the same answer there, False elsewhere
    some = background_by_chromaticity(
        image, person, background, ratio=1.5, margin=0.02, dark=0.1, blur=0, judged=judged
    )
    assert (some == (votes & judged)).all()


def shade_scene(
    shade: tuple[int, int, int], person_colour: tuple[int, int, int] = (130, 30, 50)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, person samples, background samples), 40x90: a person (dark red trousers) left of column 30, a
    shade of `shade` in columns 30-50, a lit wall (200, 205, 215) right of it; the person's samples deep in the
    trousers (columns < 20), the background's the wall."""
    rng = np.random.default_rng(0)
    image = np.zeros((40, 90, 3), np.float64)
    image[:, :30] = person_colour
    image[:, 30:50] = shade
    image[:, 50:] = (200, 205, 215)
    image = np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
    person = np.zeros((40, 90), bool)
    person[:, :20] = True
    background = np.zeros_like(person)
    background[:, 50:] = True
    return image, person, background


def test_a_shade_of_the_wall_is_background_the_persons_colour_is_not():
    image, person, background = shade_scene((62, 64, 68))  # the wall's chromaticity at a third of its light
    votes = background_by_chromaticity(image, person, background)
    assert votes[:, 32:50].mean() > 0.95 and not votes[:, :28].any()
    image, person, background = shade_scene((120, 28, 46))  # the trousers' colour beyond the edge: person
    assert not background_by_chromaticity(image, person, background)[:, 30:50].any()


def test_equal_chromaticities_bright_or_dark_pixels_decide_nothing():
    grey = shade_scene((60, 60, 60), person_colour=(30, 30, 30))  # black clothes against a grey wall
    image = np.repeat(grey[0].mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    assert not background_by_chromaticity(image, grey[1], grey[2]).any()
    # (columns 30 and 49 are smoothed with their neighbours: mixtures)
    image, person, background = shade_scene((230, 236, 247))  # the wall's chromaticity, brighter: no shade
    assert not background_by_chromaticity(image, person, background)[:, 32:50].any()
    image, person, background = shade_scene((12, 12, 14))  # too dark for its chromaticity to mean anything
    assert not background_by_chromaticity(image, person, background, dark=0.08)[:, 32:48].any()
    assert background_by_chromaticity(image, person, background, dark=0.0)[:, 32:50].mean() > 0.5
    assert not background_by_chromaticity(image, np.zeros_like(person), background).any()


def test_parts_mostly_keeps_the_parts_of_which_more_than_the_share_voted():
    parts = np.zeros((20, 30), bool)
    parts[2:6, 2:12] = True  # 40 px, 21 votes
    parts[10:14, 2:12] = True  # 40 px, 20 votes: exactly half is not more than half
    parts[10:12, 20:25] = parts[12:14, 25:28] = True  # one part (8-connected at the corner), 16 px, 9 votes
    votes = np.zeros_like(parts)
    votes[2:4, 2:12] = True
    votes[4, 2] = True
    votes[10:12, 2:12] = True
    votes[10:12, 20:24] = True
    votes[13, 27] = True
    votes[18, :] = True  # votes outside every part count for nothing
    kept = parts_mostly(parts, votes, 0.5)
    assert kept[2:6, 2:12].all() and not kept[10:14, 2:12].any() and kept[10:14, 20:28].sum() == 16
    assert not (kept & ~parts).any()
    assert not parts_mostly(np.zeros_like(parts), votes).any()
