"""The built-in route's second prior, hands, person check and solver fallbacks (p3m.infer.priors, p3m.infer.portrait,
p3m.infer.closed_form.solve_band).

The pure rules are tested on drawn landmarks whose answer is known. Hand keeping is measured on the real photos
shipped in tests/data against MediaPipe's own hand landmarks for them (tests/data/mediapipe_hands.npz, stored
outputs of the original runtime, so the criterion does not come from the code under test): the share of each
hand's pixels (its bones, a tenth of the hand's size wide, and its palm) that the matte keeps above 0.5. The person
check on scikit-image's pictures without people (shipped with the package) and on the stored portraits.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from p3m.infer import closed_form
from p3m.infer.closed_form import solve_band
from p3m.infer.portrait import NO_PERSON, NOT_SURE, PortraitMatting, PortraitSettings
from p3m.infer.priors import (
    PersonEvidence,
    agreement,
    face_on_person,
    hand_roi_from_pose,
    hand_seeds,
    limb_gaps,
    person_verdict,
    square_around,
)
from p3m.infer.spill import background_in_hand_zone
from p3m.models.mediapipe_calculators import Detection
from p3m.models.pose_landmark import LANDMARKS
from tests.paths import REFERENCE_ALPHA, TEST_DATA
from tests.scenes import standing

PHOTOS = {"profile": "people_profile.jpg", "walking": "people_walking.jpg", "cap": "people_cap.jpg"}


def photo(name: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(TEST_DATA / PHOTOS[name])), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def route() -> PortraitMatting:
    """The default route: selfie prior, closed-form matting, the person check (face, then pose)."""
    return PortraitMatting()


@pytest.fixture(scope="module")
def hands_route() -> PortraitMatting:
    """The route that also looks for hands and limb gaps (`p3m matte --hands`, `Matter(hands=True)`)."""
    return PortraitMatting(PortraitSettings.for_limbs(True))


@pytest.fixture(scope="module")
def selfie_only() -> PortraitMatting:
    """The route before the second prior: selfie prior + closed-form matting only."""
    return PortraitMatting(PortraitSettings(pose=False, hands=False))


# -- pure rules ------------------------------------------------------------------------------------------------


def test_limb_gaps_are_the_polygons_between_arms_torso_and_legs():
    lm = standing()
    gaps = limb_gaps(lm, (300, 200))
    assert gaps[120, 150] and gaps[120, 50]  # between each arm and the torso
    assert gaps[230, 100]  # between the legs
    assert not gaps[20, 100] and not gaps[290, 100] and not gaps[120, 195]  # above the head, below, outside
    hidden = lm.copy()
    hidden[LANDMARKS.index("left_ankle"), 3] = 0.1  # one leg's ankle not visible: no leg polygon
    gaps = limb_gaps(hidden, (300, 200))
    assert not gaps[230, 100] and gaps[120, 150]


def test_hand_crop_from_pose_is_centred_past_the_knuckles_and_turned_with_the_hand():
    lm = np.zeros((33, 4), np.float32)
    lm[:, 3] = 1.0
    for side in ("left", "right"):  # fingers pointing up: no rotation
        lm[LANDMARKS.index(f"{side}_wrist"), :2] = (100, 100)
        lm[LANDMARKS.index(f"{side}_index"), :2] = (95, 70)
        lm[LANDMARKS.index(f"{side}_pinky"), :2] = (110, 70)
    rois = hand_roi_from_pose(lm, (200, 200))
    assert len(rois) == 2
    roi = rois[0]
    assert abs(roi.rotation) < 0.3 and roi.center_y < 70 and roi.width == pytest.approx(roi.height)
    assert roi.width == pytest.approx(2.7 * 2 * math.hypot(100 - 100, 100 - 70), rel=0.05)
    lm[LANDMARKS.index("left_wrist"), 3] = 0.2  # a wrist not visible: that hand is skipped
    lm[LANDMARKS.index("right_wrist"), :2] = (300, 100)  # a wrist outside the image: skipped
    assert hand_roi_from_pose(lm, (200, 200)) == []


def test_hand_seeds_cover_the_bones_and_the_zone_is_wider():
    hand = np.zeros((21, 3), np.float32)
    hand[:, 0] = 50
    hand[:, 1] = np.linspace(90, 10, 21)  # a straight hand, wrist at the bottom
    seeds, zone = hand_seeds([hand], (100, 100), bone_width=0.05, zone_width=0.2)
    assert seeds[50, 50] and zone[50, 50] and (zone >= seeds).all()
    assert zone.sum() > 2 * seeds.sum() and not zone[50, 5] and not zone[50, 95]


def test_square_around_and_agreement():
    mask = np.zeros((50, 80), bool)
    mask[10:30, 20:60] = True
    roi = square_around(mask, 0.125)
    assert (roi.center_x, roi.center_y, roi.width, roi.height) == (40.0, 20.0, 50.0, 50.0)
    assert square_around(np.zeros((4, 4), bool), 0.1) is None
    other = np.zeros_like(mask)
    other[10:30, 40:60] = True
    assert agreement(mask, other) == pytest.approx(0.5) and agreement(other[:0], other[:0]) == 1.0


def test_person_verdict_needs_a_face_or_both_priors():
    assert person_verdict(PersonEvidence(face=0.8), agree=0.4, confident=0.7) == "face"
    assert person_verdict(PersonEvidence(agreement=0.5, confident=0.9), agree=0.4, confident=0.7) == "two priors agree"
    assert person_verdict(PersonEvidence(agreement=0.5, confident=0.5), agree=0.4, confident=0.7) == ""
    assert person_verdict(PersonEvidence(agreement=0.2, confident=0.99), agree=0.4, confident=0.7) == ""


def test_a_face_counts_only_on_the_person_and_smaller_than_it():
    mask = np.zeros((100, 80), bool)
    mask[20:100, 20:60] = True  # a person 40 px wide from row 20 down: 3200 px
    rule = {"inside": 0.5, "largest": 0.5}
    assert face_on_person((28, 24, 52, 48), mask, **rule)  # a head's face: on the mask, 576 px of 3200
    assert not face_on_person((0, 0, 24, 24), mask, **rule)  # beside the person: 16 of its 576 px on the mask
    assert face_on_person((8, 30, 32, 54), mask, **rule)  # half of it on the mask
    assert not face_on_person((7, 30, 31, 54), mask, **rule)  # 13 of 24 columns off it
    assert not face_on_person((20, 20, 60, 70), mask, **rule)  # all on the mask, but 2000 of its 3200 px: a cat's face
    assert face_on_person((20, 20, 60, 60), mask, **rule) and not face_on_person(
        (20, 20, 60, 60), mask, inside=0.5, largest=0.4
    )
    # a face cut by the image's edge: its part inside the image is judged, its whole area is measured
    assert face_on_person((30, -10, 50, 30), np.pad(mask[20:], ((0, 20), (0, 0))), **rule)
    assert not face_on_person((90, 0, 120, 30), mask, **rule) and not face_on_person(
        (28, 24, 52, 48), mask * False, **rule
    )


def test_person_verdict_takes_a_face_on_the_person_only_through_its_evidence():
    """`PortraitMatting.faces_on_person` puts only faces on the person into the evidence (the cat's does not)."""
    route = PortraitMatting()
    mask = np.zeros((100, 80), bool)
    mask[20:100, 20:60] = True
    box = lambda x0, y0, x1, y1, score: Detection(np.array([x0, y0, x1, y1], float), np.zeros((6, 2)), score)  # noqa: E731
    route.faces = lambda image: iter([[box(20, 20, 60, 70, 0.9)], [box(28, 24, 52, 48, 0.7)]])
    assert route.faces_on_person(np.zeros((100, 80, 3), np.uint8), mask) == (0.7, 0.9)  # the full range's face
    route.faces = lambda image: iter([[box(20, 20, 60, 70, 0.9)], []])
    assert route.faces_on_person(np.zeros((100, 80, 3), np.uint8), mask) == (0.0, 0.9)


# -- hands -----------------------------------------------------------------------------------------------------


def hand_pixels(name: str, shape: tuple[int, int], mirrored: bool) -> list[np.ndarray]:
    """Each hand's pixels (HxW bool) from MediaPipe's own landmarks of the photo (normalised x, y)."""
    stored = np.load(TEST_DATA / "mediapipe_hands.npz")[f"hands/{name}/landmarks"].astype(np.float64)
    h, w = shape
    hands = []
    for points in stored:
        pixels = points.copy()
        pixels[:, 0] = (1.0 - points[:, 0] if mirrored else points[:, 0]) * w
        pixels[:, 1] *= h
        hands.append(hand_seeds([pixels], shape, bone_width=0.1, zone_width=0.1)[0])
    return hands


@pytest.mark.slow
@pytest.mark.parametrize("mirrored", [False, True])
@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_hands_are_kept(hands_route, name, mirrored):
    """At least 98% of each hand's pixels above alpha 0.5 (the selfie prior alone keeps 87% of the walking
    woman's hand in the mirrored photo, 97.5% of the capped man's; with the hand prior 99.2-100%)."""
    rgb = photo(name)[:, ::-1].copy() if mirrored else photo(name)
    result = hands_route.run(rgb)
    for hand in hand_pixels(name, rgb.shape[:2], mirrored):
        assert hand.sum() > 300
        kept = float((result.alpha[hand] > 0.5).mean())
        assert kept >= 0.98, (name, mirrored, kept, result.info)


def test_hand_zone_keeps_background_where_colour_and_pose_agree():
    """Sand beside the hand stays background; a skin-coloured lost finger, or sand the pose calls person, opens."""
    sand, skin, shirt = (200, 180, 150), (190, 120, 90), (30, 40, 160)
    image = np.zeros((120, 120, 3), np.uint8)
    image[:] = sand
    image[20:100, 30:70] = shirt  # the body
    image[20:35, 40:60] = skin  # the face: the person's skin colour
    image[60:64, 70:90] = skin  # a finger the mask lost, reaching out over the sand
    mask = np.zeros((120, 120), bool)
    mask[20:100, 30:70] = True
    prob = mask.astype(np.float32)
    zone = np.zeros_like(mask)
    zone[50:75, 60:95] = True  # the hand's zone: over the body's edge, the finger and the sand round it
    pose = np.zeros((120, 120), np.float32)
    pose[50:75, 88:95] = 1.0  # the pose's mask reaches over a strip of sand at the zone's far side
    kept = background_in_hand_zone(image, prob, mask, zone, pose)
    assert kept[52, 80] and kept[70, 75]  # sand in the zone, the pose says background
    assert not kept[61:63, 72:86].any()  # the finger: the person's colour
    assert not kept[52, 90] and not kept[70, 92]  # sand the pose's mask calls person
    assert not kept[mask].any() and not kept[~zone].any()  # only outside the mask, only in the zone
    assert not background_in_hand_zone(image, prob, mask, mask & zone, pose).any()  # no zone outside the mask


@pytest.mark.slow
def test_hand_zone_keep_takes_the_background_beside_the_hand_out_of_the_zone():
    """The walking woman's hanging hand (mirrored photo): with the zone's known background kept, the matte is
    nearer the reference (the road beside the fingers no longer reopened); the hand is kept as before."""
    rgb = photo("walking")[:, ::-1].copy()
    ref = cv2.imread(str(REFERENCE_ALPHA / "people_walking.png"), cv2.IMREAD_GRAYSCALE)[:, ::-1] / 255.0
    open_zone = PortraitMatting(PortraitSettings(hands=True, hand_zone_keep=False)).run(rgb)
    kept = PortraitMatting(PortraitSettings(hands=True)).run(rgb)
    assert kept.info["hands"] >= 1
    sad_open, sad_kept = (float(np.abs(r.alpha - ref).sum()) / 1000 for r in (open_zone, kept))
    assert sad_kept < sad_open - 0.005, (sad_open, sad_kept)
    for hand in hand_pixels("walking", rgb.shape[:2], True):
        assert float((kept.alpha[hand] > 0.5).mean()) >= 0.98


# -- person check ----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["coffee", "chelsea", "retina", "logo"])
def test_pictures_without_people_are_empty_or_flagged(route, name):
    image = getattr(skdata, name)()[..., :3]
    result = route.run(image)
    assert result.warning in (NO_PERSON, NOT_SURE), result.info
    assert result.alpha.any() == (result.warning == NOT_SURE) and result.info["person"] == ""


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_real_people_are_recognised(route, name):
    result = route.run(photo(name))
    assert result.warning == "" and result.info["person"], result.info


# -- solver fallback -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_palette_portrait_that_breaks_the_incomplete_factor_is_still_matted():
    """The walking woman at 480x270 with a 16-colour palette (PIL mode P): no incomplete Cholesky factor exists
    at pymatting's epsilon 1e-7 (the route before the fallback failed with 'not positive definite'); the stronger
    regularisation answers and says so. The default route's epsilon (1e-6) solves it at once, and says so too."""
    from p3m import Matter

    image = Image.open(TEST_DATA / PHOTOS["walking"]).resize((480, 270)).quantize(16)
    assert image.mode == "P"
    result = PortraitMatting(PortraitSettings(cf_eps=1e-7)).run(np.asarray(image.convert("RGB")))
    assert result.info["solver"] == "ic0, eps x10"
    assert result.alpha.shape == (270, 480) and 0.02 < (result.alpha > 0.5).mean() < 0.5
    default = Matter().matte(image)
    assert default.info["route"]["solver"] == "ic0"
    assert default.alpha.shape == (270, 480) and 0.02 < (default.alpha > 0.5).mean() < 0.5


@pytest.mark.slow
def test_the_tight_solve_starts_at_the_epsilon_the_first_solve_needed(monkeypatch):
    """The palette portrait at epsilon 1e-7: the first solve fails at x1 and answers at x10; the second (tight)
    solve, on a part of the same system, starts at x10 instead of failing at x1 again."""
    image = Image.open(TEST_DATA / PHOTOS["walking"]).resize((480, 270)).quantize(16).convert("RGB")
    asked = []
    real = closed_form.band_laplacian

    def recording(*args, **kwargs):
        asked.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(closed_form, "band_laplacian", recording)
    result = PortraitMatting(PortraitSettings(cf_eps=1e-7)).run(np.asarray(image))
    assert result.info["solver"] == "ic0, eps x10"
    assert asked == pytest.approx([1e-7, 1e-6, 1e-6])  # first solve: x1 fails, x10 answers; second: x10 at once


def _noise_band(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(20x24x3 uint8 noise, its trimap: background, six unknown columns, foreground)."""
    image = np.random.default_rng(seed).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    tri = np.zeros((20, 24), np.uint8)
    tri[:, 12:] = 255
    tri[:, 9:15] = 128
    return image, tri


def test_band_solver_starts_at_the_fallback_asked_for():
    image, tri = _noise_band(1)
    stronger = solve_band(image, tri, eps=1e-6, first_try="ic0, eps x10")
    assert stronger.method == "ic0, eps x10"  # named relative to the epsilon asked for
    np.testing.assert_array_equal(stronger.alpha, solve_band(image, tri, eps=1e-5).alpha)
    assert solve_band(image, tri, eps=1e-6, first_try="jacobi, eps x100").method == "jacobi, eps x100"
    with pytest.raises(ValueError, match="first_try must be one of"):
        solve_band(image, tri, first_try="guess")


def test_band_solver_falls_back_to_jacobi_then_to_the_guess(monkeypatch):
    image, tri = _noise_band(0)
    guess = np.full((20, 24), 0.25, np.float32)
    assert solve_band(image, tri, guess).method == "ic0"
    real = closed_form.conjugate_gradients

    def no_ic0(csr, rhs, x0, **kwargs):
        if kwargs.get("preconditioner", "ic0") == "ic0":
            raise np.linalg.LinAlgError("no incomplete Cholesky factor: the matrix is not positive definite")
        return real(csr, rhs, x0, **kwargs)

    monkeypatch.setattr(closed_form, "conjugate_gradients", no_ic0)
    jacobi = solve_band(image, tri, guess)
    assert jacobi.method == "jacobi, eps x100" and jacobi.fell_back and jacobi.iterations > 0
    assert ((jacobi.alpha >= 0) & (jacobi.alpha <= 1)).all()

    def nothing(*args, **kwargs):
        raise np.linalg.LinAlgError("nothing solves")

    monkeypatch.setattr(closed_form, "conjugate_gradients", nothing)
    last = solve_band(image, tri, guess)
    assert last.method == "guess" and last.iterations == 0
    assert np.array_equal(last.alpha[tri == 128], guess[tri == 128])
    assert np.array_equal(last.alpha[tri != 128], (tri[tri != 128] == 255).astype(np.float32))


# -- determinism -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_route_output_is_byte_identical_run_to_run(hands_route):
    rgb = photo("walking")  # pose prior trusted, hands found: every step runs
    first = hands_route.run(rgb)
    assert first.info["pose_prior"] and first.info["hands"] >= 1
    again = hands_route.run(rgb)
    fresh = PortraitMatting(PortraitSettings.for_limbs(True)).run(rgb)
    assert first.alpha.tobytes() == again.alpha.tobytes() == fresh.alpha.tobytes()
    assert first.info == again.info == fresh.info


@pytest.mark.slow
def test_a_false_face_on_a_cat_does_not_make_it_a_person(route):
    """Mirrored, scikit-image's cat gets a "face" from the short-range detector (0.58) whose box covers 60% of
    the cat's mask: not a person's face, which the mask holds with hair, chin and neck round it. The cat's matte
    is kept and flagged; the face set aside is reported."""
    result = route.run(skdata.chelsea()[:, ::-1].copy())
    assert result.warning == NOT_SURE and result.alpha.any(), result.info
    assert result.info["person"] == "" and result.info["face"] == 0.0 and result.info["face_off_person"] > 0.5
    assert result.info["pose_agreement"] < PortraitSettings().person_agree  # the pose does not see a person either


@pytest.mark.slow
def test_without_the_gaps_test_the_pose_network_runs_only_when_no_face_settles_the_person_check():
    """The pose network costs about what the selfie prior costs: without the gaps' colour test, the forearms' cores
    and the hair's gaps (on by default, each runs it on every image) it runs for the person check alone, and only
    when the face detectors find no face (a back view); a frontal face never pays for it."""
    route = PortraitMatting(PortraitSettings(gap_colour=False, forearm_core=0.0, hair_gaps=False))
    calls = []
    real = route.pose

    def counted(image, mask):
        calls.append(mask.shape)
        return real(image, mask)

    route.pose = counted
    try:
        frontal = route.run(photo("cap"))
        assert frontal.info["face"] > 0 and frontal.info["person"] == "face" and calls == []
        route.faces = lambda image: iter([[], []])  # as for a back view: the pose network decides
        faceless = route.run(photo("cap"))
        assert len(calls) == 1 and faceless.info["person"] == "two priors agree" and faceless.warning == ""
        assert np.array_equal(faceless.alpha, frontal.alpha)  # the check never changes the matte
    finally:
        del route.pose, route.faces
    assert "hands" in frontal.info and frontal.info["hands"] == 0


@pytest.mark.slow
def test_a_route_that_ran_the_pose_asks_it_first_and_the_faces_only_when_it_does_not_settle():
    """With the pose network run for the gaps, the person check's face detectors (5-17 ms) run only where the pose
    does not agree with the selfie mask; the verdict's warning and the matte are the same either way."""
    rgb = photo("cap")  # a frontal face, and a pose that agrees with the selfie mask
    results, faces = {}, {}
    for bar in (PortraitSettings().person_agree, 1.01):  # 1.01: the pose can never settle it
        route = PortraitMatting(PortraitSettings(gap_colour=True, person_agree=bar))
        calls = []
        real = route.faces_on_person
        route.faces_on_person = lambda image, mask, real=real, calls=calls: calls.append(1) or real(image, mask)
        results[bar], faces[bar] = route.run(rgb), len(calls)
    settled, unsettled = results[PortraitSettings().person_agree], results[1.01]
    assert settled.info["person"] == "two priors agree" and faces[PortraitSettings().person_agree] == 0
    assert "face" not in settled.info and settled.info["pose_agreement"] >= PortraitSettings().person_agree
    assert unsettled.info["person"] == "face" and faces[1.01] == 1 and unsettled.info["face"] > 0
    assert settled.warning == unsettled.warning == ""
    assert np.array_equal(settled.alpha, unsettled.alpha)


def test_hands_reach_the_route_from_matter_and_the_cli():
    from p3m import Matter
    from p3m.cli import build_parser

    limbs, plain = Matter(hands=True).session.route.settings, Matter().session.route.settings
    assert limbs.hands and limbs.gap_colour  # the gaps' colour test is the default, with or without the hands
    assert not plain.hands and plain.gap_colour
    args = build_parser().parse_args(["matte", "x.jpg", "-o", "out", "--hands"])
    assert args.hands
