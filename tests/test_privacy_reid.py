"""Re-identification as the privacy measure (`p3m.privacy.reid`, `p3m audit --originals`): dlib's face recogniser
matches a mild blur of each real face and no anonymised one. Needs the optional extra ``p3m[audit]``; without it the
audit runs its other checks and says how to install it (tested without dlib too)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from p3m.errors import P3MError
from p3m.io import read_image, read_mask, write_image
from p3m.privacy import audit as audit_module
from p3m.privacy.anonymize import anonymize_image
from p3m.privacy.audit import audit_folder
from p3m.privacy.detect import CenterFaceDetector
from p3m.privacy.reid import SAME_PERSON, Reidentification, available, reidentify
from tests.paths import TEST_DATA

needs_recognizer = pytest.mark.skipif(not available(), reason="the face recogniser is not installed (p3m[audit])")
# the three P3M-10k demo portraits with open faces (tests/paths.py's shared data, when present)
OPEN_FACES = ("p_07141906", "p_818e689d", "p_bac3c1ff")


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(fh.read(), np.uint8), 1), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def recognizer():
    if not available():
        pytest.skip("the face recogniser is not installed (p3m[audit])")
    from p3m.privacy.reid import shared_recognizer

    return shared_recognizer()


@pytest.fixture(scope="module")
def detector() -> CenterFaceDetector:
    return CenterFaceDetector(0.2)


def _photos(shared: Path | None) -> dict[str, np.ndarray]:
    photos = {"astronaut": data.astronaut(), "grace_hopper": _grace_hopper()}
    if shared is not None:
        photos |= {stem: read_image(shared / "image" / f"{stem}.jpg") for stem in OPEN_FACES}
        photos["camera"] = np.repeat(data.camera()[..., None], 3, axis=2)
    return photos


def _check_photos(photos, recognizer, detector) -> list[str]:
    rows = []
    for name, image in photos.items():
        faces = detector.detect(image)
        assert faces, name
        result = anonymize_image(image, faces=faces)  # default settings
        r = reidentify(result.image, image, faces[0], recognizer)
        rows.append(f"{name}: anonymised {r.distance:.2f}, mild blur {r.control:.2f}, grey {r.blank:.2f}")
        assert r.control < SAME_PERSON, rows[-1]  # the recogniser works on this face: it matches a mild blur
        assert r.distance >= SAME_PERSON, rows[-1]  # and does not match the anonymised face
        assert not r.leaks()
    return rows


@needs_recognizer
@pytest.mark.slow
def test_recogniser_matches_a_mild_blur_and_no_anonymised_face(recognizer, detector):
    """Photos every installation has (scikit-image's astronaut, matplotlib's Grace Hopper): measured anonymised
    0.78 / 0.81, mild blur 0.37 / 0.16."""
    print("\n" + "\n".join(_check_photos(_photos(None), recognizer, detector)))


@needs_recognizer
@pytest.mark.slow
def test_no_real_face_of_the_shared_portraits_is_recognised_after_anonymisation(recognizer, detector, shared_portraits):
    """The three open P3M portraits (the upturned profile p_818e689d among them) and the cameraman, default
    settings; the full table is `python -m benchmarks.bench_privacy reid` (docs/privacy.md)."""
    photos = {k: v for k, v in _photos(shared_portraits).items() if k not in ("astronaut", "grace_hopper")}
    print("\n" + "\n".join(_check_photos(photos, recognizer, detector)))


@needs_recognizer
@pytest.mark.slow
def test_recogniser_tells_people_apart_and_matches_the_same_photo(recognizer, detector):
    astronaut, grace = data.astronaut(), _grace_hopper()
    face = detector.detect(astronaut)[0]
    same = reidentify(astronaut, astronaut, face, recognizer)
    assert same.distance < 1e-6 and same.leaks()  # an un-anonymised copy is recognised: the check can fail
    # someone else's face pasted at the same place is not the same person
    other = astronaut.copy()
    g = cv2.resize(grace[100:360, 150:390], (int(face.width) + 40, int(face.height) + 40))
    x0, y0 = int(face.box[0]) - 20, int(face.box[1]) - 20
    other[y0 : y0 + g.shape[0], x0 : x0 + g.shape[1]] = g
    assert reidentify(other, astronaut, face, recognizer).distance >= SAME_PERSON
    with pytest.raises(P3MError, match="differ in size"):
        reidentify(astronaut[:100], astronaut, face, recognizer)


def test_a_face_counts_only_where_both_controls_hold():
    assert Reidentification(distance=0.5, control=0.3, blank=0.8).leaks()
    assert not Reidentification(distance=0.7, control=0.3, blank=0.8).leaks()
    # the recogniser cannot match even a mild blur of the face, or matches a grey picture to it: no verdict
    assert not Reidentification(distance=0.5, control=0.65, blank=0.8).measurable()
    assert not Reidentification(distance=0.5, control=0.3, blank=0.55).measurable()
    assert not Reidentification(distance=0.5, control=0.3, blank=0.55).leaks()
    assert Reidentification(distance=0.5, control=0.3, blank=0.55).leaks(threshold=0.52)  # a stricter threshold


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@needs_recognizer
@pytest.mark.slow
def test_audit_reports_re_identification(tmp_path, detector):
    originals, anonymised = tmp_path / "originals", tmp_path / "anonymised"
    astronaut = data.astronaut()
    write_image(originals / "astronaut.png", astronaut)
    write_image(anonymised / "astronaut.png", anonymize_image(astronaut).image)
    report = audit_folder(anonymised, originals=originals)
    (row,) = _csv(anonymised / "audit_report.csv")
    assert report.exit_code() == 0 and not report.reid_skipped
    assert float(row["min_reid_distance"]) >= SAME_PERSON
    # the original itself, audited against itself: every check flags it, the recogniser among them
    report = audit_folder(originals, originals=originals, report_path=tmp_path / "self.csv")
    (row,) = _csv(tmp_path / "self.csv")
    assert report.exit_code() == 1 and float(row["min_reid_distance"]) < 0.01
    assert "still recognised" in row["reasons"]


def test_audit_without_the_recogniser_runs_the_other_checks_and_says_how_to_install_it(tmp_path, monkeypatch):
    def missing():
        raise P3MError("the re-identification check needs dlib: pip install 'p3m[audit]'")

    monkeypatch.setattr(audit_module, "shared_recognizer", missing)
    folder = tmp_path / "a"
    write_image(folder / "astronaut.png", anonymize_image(data.astronaut()).image)
    write_image(tmp_path / "o" / "astronaut.png", data.astronaut())
    report = audit_folder(folder, originals=tmp_path / "o")
    assert report.exit_code() == 0
    assert "pip install 'p3m[audit]'" in report.summary()
    (row,) = _csv(folder / "audit_report.csv")
    assert row["min_reid_distance"] == "" and row["max_ssim"] != ""  # the SSIM checks still ran
    # without --originals nothing is said about it
    assert not audit_folder(folder).reid_skipped


@needs_recognizer
def test_the_profile_photo_shipped_with_the_tests(recognizer, detector):
    """The upturned profile of the P3M demo photos at 640x400 (tests/data): the recogniser matches a grey picture
    to it (0.49), so it cannot tell this face from none and the audit says so instead of judging it."""
    image = read_image(TEST_DATA / "people_profile.jpg")
    face = detector.detect(image)[0]
    r = reidentify(anonymize_image(image, faces=[face]).image, image, face, recognizer)
    assert r.control < SAME_PERSON and r.blank < SAME_PERSON
    assert not r.measurable() and not r.leaks()


@needs_recognizer
@pytest.mark.slow
def test_the_profile_anonymised_with_its_matte_is_no_closer_than_a_grey_picture(recognizer, detector):
    """`p3m anonymize --alpha` on the shipped profile with its reference matte: its nose, lips and chin lie in the
    transition band, which is obfuscated where it crosses the face's identifying core. Measured: 0.53 against the
    grey picture's 0.49; keeping the whole band, as P3M's literal definition does, leaves 0.37 (recognised, and
    closer than the grey picture: this test fails without the core)."""
    from p3m.privacy.landmarks import FaceOutliner
    from tests.paths import REFERENCE_ALPHA

    image = read_image(TEST_DATA / "people_profile.jpg")
    alpha = read_mask(REFERENCE_ALPHA / "people_profile.png")
    face = detector.detect(image)[0]
    r = reidentify(anonymize_image(image, faces=[face], alpha=alpha).image, image, face, recognizer)
    assert r.control < SAME_PERSON  # the recogniser matches a mild blur of this face
    assert r.distance >= min(SAME_PERSON, r.blank), r

    literal = anonymize_image(image, faces=[face], alpha=alpha, outliner=FaceOutliner(core=False)).image
    assert reidentify(literal, image, face, recognizer).distance < r.blank
