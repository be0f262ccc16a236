"""The built-in route on black-and-white photos (p3m.infer.portrait: the pose detector where the selfie prior is
confident nowhere, and the pose network's mask as a second prior on a greyscale photo; p3m.infer.preprocess.
is_greyscale).

The selfie network, trained on colour, can lose a person in a greyscale photo: on the grey copy of the capped man
(tests/data/people_cap.jpg, a P3M-10k photo) no pixel of its prior is confident, and on the mirrored copy it sees
almost nothing, so the route without the rescue gives an empty matte ("no person found"). MediaPipe's pose
detector finds him (on the image or on its mirror image), and its person mask becomes the prior. Criterion: the
IoU of the matte's > 0.5 region with the photo's reference matte (tests/data/reference_alpha, the published P3M-Net
R34 predictions on the colour photo, so not from the code under test): 0.919 and 0.947 measured, 0.965 in colour.
Grey pictures without people (scikit-image's coins and moon, where the selfie prior is above its threshold on a
few pixels, so the detector is asked) still say "no person found". On the grey copy of the walking woman
(tests/data/people_walking.jpg, full body: the pose network's mask agrees with the selfie prior, IoU 0.97) the
lower of the two priors drops the selfie prior's spill: IoU 0.934 -> 0.958, SAD 3.31 -> 2.27.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from benchmarks.bench_portrait import scores
from benchmarks.bench_route_priors import greyscale_copy, portraits
from p3m.infer.portrait import NO_PERSON, PortraitMatting, PortraitSettings
from p3m.infer.preprocess import is_greyscale
from tests.paths import REFERENCE_ALPHA, TEST_DATA


@pytest.fixture(scope="module")
def route() -> PortraitMatting:
    return PortraitMatting()


def grey_photo(name: str, mirrored: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A shipped photo in grey (HxW uint8, as a scanned print is read) and its reference matte in [0, 1]."""
    grey = cv2.imread(str(TEST_DATA / f"people_{name}.jpg"), cv2.IMREAD_GRAYSCALE)
    ref = cv2.imread(str(REFERENCE_ALPHA / f"people_{name}.png"), cv2.IMREAD_GRAYSCALE) / 255.0
    return (grey[:, ::-1].copy(), ref[:, ::-1]) if mirrored else (grey, ref)


def iou(alpha: np.ndarray, ref: np.ndarray) -> float:
    a, b = alpha > 0.5, ref > 0.5
    return float((a & b).sum() / (a | b).sum())


def counted(route: PortraitMatting, calls: list, method: str = "find_person") -> None:
    """Record each call of the route's `method` (its pose detector, or its pose network on the person's box) in
    `calls` (undone by `del route.<method>`)."""
    real = getattr(route, method)

    def wrapper(*args):
        calls.append(method)
        return real(*args)

    setattr(route, method, wrapper)


@pytest.mark.slow
@pytest.mark.parametrize("mirrored", [False, True])
def test_a_grey_photo_whose_selfie_prior_is_unsure_is_matted_from_the_pose_detector(route, mirrored):
    grey, ref = grey_photo("cap", mirrored)
    without = PortraitMatting(PortraitSettings(pose_rescue=False)).run(grey)
    assert without.warning == NO_PERSON and not without.alpha.any()  # the failure this fixes
    result = route.run(grey)
    assert result.warning == "" and result.info["prior"] == "pose detector" and result.info["person"] == "pose detector"
    assert iou(result.alpha, ref) >= 0.9, result.info
    assert np.abs(result.alpha - ref).sum() / ref.size < 0.03  # mean |error| per pixel: 0.023 / 0.016 measured


@pytest.mark.slow
def test_colour_photos_never_take_the_greyscale_steps(route):
    """The rescue runs only where the selfie prior is confident nowhere, the pose prior only on a greyscale photo: a
    colour portrait's prior is the selfie route's, untouched (the pose network runs once, for the gaps' colour
    test, and its agreement settles the person check)."""
    calls: list = []
    counted(route, calls, "find_person")
    counted(route, calls, "pose")
    try:
        result = route.run(cv2.cvtColor(cv2.imread(str(TEST_DATA / "people_cap.jpg")), cv2.COLOR_BGR2RGB))
    finally:
        del route.find_person, route.pose
    assert calls == ["pose"] and result.info["prior"] == "selfie" and result.info["person"] == "two priors agree"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["coins", "moon"])
def test_grey_pictures_without_people_still_have_no_person(route, name):
    image = getattr(skdata, name)()
    assert image.ndim == 2
    calls: list = []
    counted(route, calls)
    try:
        result = route.run(image)
    finally:
        del route.find_person
    assert len(calls) == 1  # the selfie prior saw something: the detector was asked, and found nobody
    assert result.warning == NO_PERSON and not result.alpha.any() and result.info == {"person": ""}


@pytest.mark.slow
def test_quality_on_grey_copies_of_the_shared_real_portraits(route, shared_portraits):
    """The 12 shared portraits turned grey (as benchmarks/bench_route_priors.py makes them): measured mean SAD
    15.19, worst 33.79 (38.33 / 285.63 before the pose detector's rescue, when p_07141906 got an empty matte;
    15.94 before the pose prior on grey photos). The bars catch half a point on the mean."""
    sads = {name: scores(route(greyscale_copy(rgb)), ref)["sad"] for name, rgb, ref in portraits()}
    assert np.mean(list(sads.values())) <= 15.7 and max(sads.values()) <= 35.0, sads


@pytest.mark.slow
def test_a_grey_full_body_photo_takes_the_lower_of_the_selfie_and_pose_priors(route):
    grey, ref = grey_photo("walking")
    without = PortraitMatting(PortraitSettings(grey_pose=False)).run(grey)
    result = route.run(grey)
    assert result.info["prior"] == "selfie and pose (greyscale)" and result.info["pose_agreement"] >= 0.9
    assert without.info["prior"] == "selfie" and iou(without.alpha, ref) < 0.94  # 0.934: the selfie prior's spill
    assert iou(result.alpha, ref) >= 0.95, result.info  # 0.958 measured
    assert np.abs(result.alpha - ref).sum() <= np.abs(without.alpha - ref).sum() - 500  # SAD 3.31 -> 2.27 (/1000)


def test_is_greyscale_against_a_literal_count():
    """A pixel is off grey when its channels are more than `tolerance` apart; the image is grey when at most
    `share` of its pixels are."""
    rng = np.random.default_rng(5)

    def literal(rgb, tolerance, share):
        off = 0
        for r, g, b in rgb.reshape(-1, 3).tolist():
            off += max(r, g, b) - min(r, g, b) > tolerance
        return off <= share * rgb.shape[0] * rgb.shape[1]

    for trial in range(30):
        grey = rng.integers(0, 256, (23, 31, 1))
        noise = rng.integers(-12, 13, (23, 31, 3)) * (rng.random((23, 31, 1)) < trial / 30)
        rgb = np.clip(grey + noise, 0, 255).astype(np.uint8)
        for tolerance, share in ((8, 0.001), (8, 0.2), (3, 0.05), (0, 0.0)):
            assert is_greyscale(rgb, tolerance=tolerance, share=share) == literal(rgb, tolerance, share)
    colour = cv2.cvtColor(cv2.imread(str(TEST_DATA / "people_cap.jpg")), cv2.COLOR_BGR2RGB)
    assert not is_greyscale(colour)
    grey = cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY)
    assert is_greyscale(np.repeat(grey[..., None], 3, 2))
    _, jpeg = cv2.imencode(".jpg", np.repeat(grey[..., None], 3, 2), [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert is_greyscale(cv2.imdecode(jpeg, cv2.IMREAD_COLOR))  # stored in colour: chroma noise of a level or two
