"""The built-in route on black-and-white photos (p3m.infer.portrait: the pose detector where the selfie prior is
confident nowhere).

The selfie network, trained on colour, can lose a person in a greyscale photo: on the grey copy of the capped man
(tests/data/people_cap.jpg, a P3M-10k photo) no pixel of its prior is confident, and on the mirrored copy it sees
almost nothing, so the route without the rescue gives an empty matte ("no person found"). MediaPipe's pose
detector finds him (on the image or on its mirror image), and its person mask becomes the prior. Criterion: the
IoU of the matte's > 0.5 region with the photo's reference matte (tests/data/reference_alpha, the published P3M-Net
R34 predictions on the colour photo, so not from the code under test): 0.92 and 0.94 measured, 0.96 in colour.
Grey pictures without people (scikit-image's coins and moon, where the selfie prior is above its threshold on a
few pixels, so the detector is asked) still say "no person found".
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from p3m.infer.portrait import NO_PERSON, PortraitMatting, PortraitSettings
from tests.paths import PORTRAITS, REFERENCE_ALPHA, TEST_DATA

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def route() -> PortraitMatting:
    return PortraitMatting()


def grey_cap(mirrored: bool) -> tuple[np.ndarray, np.ndarray]:
    """The capped man in grey (HxW uint8, as a scanned print is read) and his reference matte in [0, 1]."""
    grey = cv2.imread(str(TEST_DATA / "people_cap.jpg"), cv2.IMREAD_GRAYSCALE)
    ref = cv2.imread(str(REFERENCE_ALPHA / "people_cap.png"), cv2.IMREAD_GRAYSCALE) / 255.0
    return (grey[:, ::-1].copy(), ref[:, ::-1]) if mirrored else (grey, ref)


def iou(alpha: np.ndarray, ref: np.ndarray) -> float:
    a, b = alpha > 0.5, ref > 0.5
    return float((a & b).sum() / (a | b).sum())


def counted(route: PortraitMatting, calls: list) -> None:
    """Record each call of the route's pose detector in `calls` (undone by `del route.find_person`)."""
    real = route.find_person

    def find_person(image):
        calls.append(image.shape)
        return real(image)

    route.find_person = find_person


@pytest.mark.parametrize("mirrored", [False, True])
def test_a_grey_photo_whose_selfie_prior_is_unsure_is_matted_from_the_pose_detector(route, mirrored):
    grey, ref = grey_cap(mirrored)
    without = PortraitMatting(PortraitSettings(pose_rescue=False)).run(grey)
    assert without.warning == NO_PERSON and not without.alpha.any()  # the failure this fixes
    result = route.run(grey)
    assert result.warning == "" and result.info["prior"] == "pose detector" and result.info["person"] == "pose detector"
    assert iou(result.alpha, ref) >= 0.9, result.info
    assert np.abs(result.alpha - ref).sum() / ref.size < 0.03  # mean |error| per pixel: 0.021 / 0.017 measured


def test_colour_photos_never_ask_the_pose_detector(route):
    """The rescue runs only where the selfie prior is confident nowhere: a colour portrait's matte is the selfie
    route's, untouched."""
    calls: list = []
    counted(route, calls)
    try:
        result = route.run(cv2.cvtColor(cv2.imread(str(TEST_DATA / "people_cap.jpg")), cv2.COLOR_BGR2RGB))
    finally:
        del route.find_person
    assert calls == [] and result.info["prior"] == "selfie" and result.warning == ""


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


def test_quality_on_grey_copies_of_the_shared_real_portraits(route):
    """The 12 shared portraits turned grey (as benchmarks/bench_route_priors.py makes them): measured mean SAD
    15.94, worst 33.79 (before the pose detector's rescue 38.33 / 285.63: p_07141906 got an empty matte)."""
    paths = sorted((PORTRAITS / "image").glob("*.jpg"))
    if not paths:
        pytest.skip(f"no shared test portraits under {PORTRAITS}")
    sads = {}
    for path in paths:
        grey = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY)
        ref = cv2.imread(str(PORTRAITS / "reference_alpha" / f"{path.stem}.png"), cv2.IMREAD_GRAYSCALE) / 255.0
        sads[path.stem] = float(np.abs(route(np.repeat(grey[..., None], 3, 2)) - ref).sum() / 1000)
    assert np.mean(list(sads.values())) <= 16.5 and max(sads.values()) <= 35.0, sads
