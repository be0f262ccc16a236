"""Limbs the band's solve loses and background it keeps between the legs (issue 24): `p3m.infer.priors.limb_cores`,
`limb_gaps(legs_cut=True)` (`legs_out_of_frame`), `p3m.infer.spill.background_colour_in_gaps` / `verdict_regions`,
and the route's use of them (`PortraitSettings.forearm_core`, `legs_cut`, `gap_known`).

The pure rules on drawn masks and landmarks whose answer is known, the core's width against a literal brute-force
distance; the route on drawn scenes with a given prior and a given pose (no network): a forearm's middle becomes
known person in the trimap, a strip of sand between thighs cut off by the frame becomes known background.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from p3m.infer.portrait import PortraitMatting, PortraitSettings
from p3m.infer.priors import agreement, legs_out_of_frame, limb_cores, limb_gaps
from p3m.infer.spill import background_colour_in_gaps, background_in_gaps, verdict_regions
from p3m.models.pose_landmark import LANDMARKS, Pose
from tests.reference.route_before import previous_background_in_gaps
from tests.scenes import standing

ELBOW, WRIST = LANDMARKS.index("left_elbow"), LANDMARKS.index("left_wrist")


def forearm(shape: tuple[int, int] = (120, 100), half_width: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(landmarks (33, 4), support HxW bool): an upright forearm, a bar `half_width` px either side of the bone
    elbow (50, 20) - wrist (50, 100), joined to a torso on its right (x >= 75); the other landmarks not visible."""
    lm = np.zeros((33, 4), np.float32)
    lm[ELBOW] = (50, 20, 0, 1)
    lm[WRIST] = (50, 100, 0, 1)
    support = np.zeros(shape, bool)
    support[10:111, 50 - half_width : 50 + half_width + 1] = True
    support[:, 75:] = True
    return lm, support


def literal_depth(support: np.ndarray, y: int, x: int) -> float:
    """Euclidean distance from pixel (y, x) to the nearest pixel outside `support` (beyond the image counts as
    inside: cv2's distance transform does not see the border), by trying every pixel."""
    ys, xs = np.nonzero(~support)
    return float(np.min(np.hypot(ys - y, xs - x))) if ys.size else math.inf


# -- limb_cores ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.8])
def test_the_core_is_the_bone_drawn_a_fraction_of_the_limbs_literal_width(fraction):
    lm, support = forearm()
    core = limb_cores(lm, support, fraction=fraction)
    depths = [literal_depth(support, y, 50) for y in range(20, 101)]
    expected = np.zeros(support.shape, np.uint8)
    cv2.line(expected, (50, 20), (50, 100), 1, max(1, round(2 * fraction * float(np.median(depths)))))
    np.testing.assert_array_equal(core, expected.astype(bool) & support)
    row = np.flatnonzero(core[60])
    # half-width 10 px: 11 px to the outside; cv2 draws a line of thickness t 1-2 px wider than t
    assert 2 * fraction * 11 - 1 <= row.size <= 2 * fraction * 11 + 3
    assert (core <= support).all()


def test_a_misplaced_or_hidden_bone_draws_no_core_outside_the_limb():
    lm, support = forearm()
    outside = lm.copy()
    outside[[ELBOW, WRIST], 0] = 25  # a bone beside the limb, on the background: depth 0
    assert not limb_cores(outside, support, fraction=0.5).any()
    hidden = lm.copy()
    hidden[WRIST, 3] = 0.3
    assert not limb_cores(hidden, support, fraction=0.5).any()
    assert limb_cores(hidden, support, fraction=0.5, min_visibility=0.2).any()
    # a bone along the limb's edge measures a thin limb: the core stays thin and inside
    edge = lm.copy()
    edge[[ELBOW, WRIST], 0] = 58
    core = limb_cores(edge, support, fraction=0.5)
    assert core.any() and (core <= support).all() and np.flatnonzero(core[60]).size <= 5
    # a bone leaving the image is measured on its pixels inside it
    off = lm.copy()
    off[WRIST, 1] = 400
    assert limb_cores(off, support, fraction=0.5)[60].sum() == limb_cores(lm, support, fraction=0.5)[60].sum()


# -- legs cut off by the frame ---------------------------------------------------------------------------------


def cut_legs() -> np.ndarray:
    """`standing`'s landmarks for an image cut at y 240 (its ankles at y 270 outside it), knees and ankles not
    visible (as BlazePose reports points at or past the frame's edge)."""
    lm = standing()
    for name in ("left_knee", "right_knee", "left_ankle", "right_ankle"):
        lm[LANDMARKS.index(name), 3] = 0.1
    return lm


def test_the_legs_polygon_is_drawn_where_the_frame_cuts_the_legs_off():
    lm, shape = cut_legs(), (240, 200)
    assert legs_out_of_frame(lm, shape)
    assert not limb_gaps(lm, shape)[225, 100]  # the knees and ankles are not visible: no polygon before
    gaps = limb_gaps(lm, shape, legs_cut=True)
    assert gaps[225, 100] and gaps[170, 100] and not gaps[225, 20] and not gaps[225, 180]
    # the whole legs in the frame (ankles inside), a knee folded back beyond its hip, or hidden hips: no polygon
    assert not legs_out_of_frame(lm, (300, 200)) and not limb_gaps(lm, (300, 200), legs_cut=True)[225, 100]
    folded = lm.copy()
    folded[LANDMARKS.index("left_knee"), :2] = (120, 100)
    assert not legs_out_of_frame(folded, shape)
    hidden = lm.copy()
    hidden[LANDMARKS.index("right_hip"), 3] = 0.2
    assert not legs_out_of_frame(hidden, shape) and not limb_gaps(hidden, shape, legs_cut=True)[225, 100]
    # mirrored (landmarks and image): the same polygon, mirrored
    flipped = lm.copy()
    flipped[:, 0] = 199 - flipped[:, 0]
    assert agreement(limb_gaps(flipped, shape, legs_cut=True)[:, ::-1], gaps) > 0.98


# -- the gaps' verdict per pixel and in regions ------------------------------------------------------------------


def drawn_person(height: int, joints: tuple[str, str, str], width: int) -> tuple[np.ndarray, dict]:
    """(person HxW bool on a `height` x 200 grid, landmark positions by name): `standing`'s torso and head, and the
    limbs through `joints` on both sides, `width` px wide."""
    lm = standing()
    at = {name: tuple(int(v) for v in lm[LANDMARKS.index(name), :2]) for name in LANDMARKS}
    person = np.zeros((height, 200), np.uint8)
    cv2.rectangle(person, (80, 55), (120, 150), 1, -1)
    cv2.circle(person, (100, 35), 18, 1, -1)
    for side in ("left", "right"):
        cv2.polylines(person, [np.array([at[f"{side}_{joint}"] for joint in joints])], False, 1, width)
    return person.astype(bool), at


def legs_scene(leg_width: int = 70) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(image 240x200, prior, person, strip): `standing`'s torso and thick blue legs cut off by the frame at y 240,
    on a sand-coloured road; between the thighs a strip of road up to 20 px wide opens down to the frame's edge
    (the legs' lines are 80-90 px apart there), which the prior fills."""
    person, at = drawn_person(240, ("hip", "knee", "ankle"), leg_width)
    between = np.zeros((240, 200), np.uint8)
    legs = ("left_hip", "left_knee", "left_ankle", "right_ankle", "right_knee", "right_hip")
    cv2.fillPoly(between, [np.array([at[name] for name in legs])], 1)
    strip = between.astype(bool) & ~person
    image = np.zeros((240, 200, 3), np.uint8)
    image[:] = (200, 180, 140)
    image[person] = (40, 60, 160)
    # textured (a road, not flat sand): on flat colours closed-form matting's colour-line model tells the strip from
    # the legs by itself
    image = np.clip(image + np.random.default_rng(7).normal(0, 30, image.shape), 0, 255).astype(np.uint8)
    return image, (person | strip).astype(np.float32), person, strip


def test_the_verdict_in_regions_is_the_per_pixel_verdict_smoothed():
    image, prob, person, strip = legs_scene()
    mask = prob >= 0.5
    gaps = limb_gaps(cut_legs(), mask.shape, legs_cut=True)
    marked = background_colour_in_gaps(image, prob, mask, gaps)
    # the per-pixel verdict is the previous code's without its smoothing
    np.testing.assert_array_equal(marked, previous_background_in_gaps(image, prob, mask, gaps, smooth=0.0))
    assert strip.any() and marked[strip & gaps].mean() > 0.9 and not (marked & person).any()
    for smooth in (0.0, 0.005, 0.02):
        radius = round(smooth * 240)
        np.testing.assert_array_equal(
            background_in_gaps(image, prob, mask, gaps, smooth=smooth), verdict_regions(marked, mask & gaps, radius)
        )
    # the smoothing's disc drops a strip narrower than itself; the per-pixel verdict keeps it
    assert not verdict_regions(marked, mask & gaps, 12)[strip].any()
    np.testing.assert_array_equal(verdict_regions(marked, mask & gaps, 0), marked)


# -- the route -------------------------------------------------------------------------------------------------


def given(pm: PortraitMatting, prob: np.ndarray, landmarks: np.ndarray, segmentation: np.ndarray) -> PortraitMatting:
    """`pm` with a given prior and a given trusted pose in place of the networks'."""
    pm.prior = lambda rgb: prob

    def pose(image, mask):
        return Pose(landmarks, np.ones(33), np.zeros((33, 3)), segmentation.astype(np.float32), 1.0, None, None)

    pm.pose = pose
    return pm


def test_route_takes_the_sand_between_thighs_cut_off_by_the_frame_as_known_background():
    image, prob, person, strip = legs_scene()
    legs = (cv2.erode(person.astype(np.uint8), np.ones((5, 5))) > 0) & (np.arange(240)[:, None] >= 150)
    alphas = {}
    for legs_cut, known in ((False, False), (True, False), (True, True)):
        # a band (5% of the long side) wider than the strip: it holds no known background of its own
        settings = PortraitSettings(band=0.05, person_check=False, legs_cut=legs_cut, gap_known=known)
        alphas[legs_cut, known] = alpha = given(PortraitMatting(settings), prob, cut_legs(), person)(image)
        assert alpha[legs].mean() > 0.99
    kept = {k: float(a[strip].mean()) for k, a in alphas.items()}
    # without the polygon nothing is judged; judged but only taken out of the mask, matting fills the strip again
    assert kept[False, False] > 0.9 and kept[True, False] > 0.9 and kept[True, True] < 0.05, kept


def test_route_holds_the_forearms_middle_as_known_person():
    """A forearm inside the band (the whole limb unknown): its middle is known person in the trimap with
    `forearm_core`, and only inside the pose's mask; nothing else of the trimap changes."""
    lm = standing()
    person, at = drawn_person(300, ("shoulder", "elbow", "wrist"), 12)
    image = np.zeros((300, 200, 3), np.uint8)
    image[:] = (200, 180, 140)
    image[person] = (190, 150, 120)  # skin on sand
    prob = person.astype(np.float32)
    trimaps = {}
    for fraction in (0.0, 0.5):
        pm = given(
            PortraitMatting(PortraitSettings(band=0.05, person_check=False, forearm_core=fraction)), prob, lm, person
        )
        solve = pm.solve

        def spy(image, trimap, *args, _solve=solve, _fraction=fraction):
            trimaps[_fraction] = trimap.copy()
            return _solve(image, trimap, *args)

        pm.solve = spy
        pm(image)
    mid = tuple((np.array(at["left_elbow"]) + np.array(at["left_wrist"])) // 2)
    assert trimaps[0.0][mid[1], mid[0]] == 128 and trimaps[0.5][mid[1], mid[0]] == 255
    core = (trimaps[0.5] == 255) & (trimaps[0.0] == 128)
    assert core.any() and not (core & ~person).any()
    assert (trimaps[0.5] != trimaps[0.0]).sum() == core.sum()  # only the forearms change
