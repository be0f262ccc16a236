"""The PyTorch port of MediaPipe's face mesh against MediaPipe 0.10.21's own outputs, and its crop geometry.

Network level: the TFLite interpreter's raw outputs on a stored 192x192 face crop. Pipeline level:
`FaceMesh.detect` against `mp.solutions.face_mesh` (static images) on whole photos (tests/mediapipe_reference.py).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from p3m import models
from p3m.models.face_detector import FaceDetector
from p3m.models.face_mesh import FACE_OVAL, LEFT_EYEBROW, RIGHT_EYEBROW, FaceMesh, face_roi
from p3m.models.mediapipe_calculators import RotatedRect
from tests.mediapipe_reference import DATA, PHOTOS, photo, read_rgb, reference


@pytest.fixture(scope="module")
def mesh() -> FaceMesh:
    return FaceMesh()


def test_network_matches_the_tflite_interpreter():
    ref = reference("face")
    rgb = read_rgb(DATA / "face_input_192.png")
    net = models.create("mediapipe-face-mesh").eval()
    with torch.no_grad():
        landmarks, presence = net(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)
    # measured on the 2-core dev machine: 1.5e-4 (landmarks, in input pixels; values up to 192), 0 (presence)
    np.testing.assert_allclose(landmarks.reshape(-1).numpy(), ref["net/face_landmark/landmarks"], atol=2e-3)
    np.testing.assert_allclose(presence.reshape(-1).numpy(), ref["net/face_landmark/presence"], atol=1e-3)
    assert ref["net/face_landmark/presence"][0] > 3  # a face fills the crop: the landmarks mean something


@pytest.mark.parametrize("image", PHOTOS)
def test_landmarks_match_mediapipe(mesh, image):
    rgb = photo(image, "face")
    expected = reference("face")[f"face_mesh/{image}/landmarks"]
    faces = mesh.detect(rgb, max_faces=4)
    assert len(faces) == len(expected)
    width, height = rgb.shape[1], rgb.shape[0]
    for face, ref in zip(faces, expected, strict=True):
        assert face.points.shape == (468, 3) and face.points.dtype == np.float32
        # measured: <= 0.004 px (x, y) and 0.003 px (z) on all 468 points; the crops are MediaPipe's bit for bit
        np.testing.assert_allclose(face.points[:, :2], ref[:, :2] * [width, height], atol=0.05)
        np.testing.assert_allclose(face.points[:, 2], ref[:, 2] * width, atol=0.05)
        assert face.score >= 0.5


def test_face_outline_and_brows_are_where_they_belong(mesh):
    rgb = photo("astronaut", "face")
    (face,) = mesh.detect(rgb)
    p = face.points
    assert len(set(FACE_OVAL)) == 36 and max(FACE_OVAL) < 468
    outline = p[list(FACE_OVAL), :2].astype(np.float32)
    # the outline is one simple loop around the eyes, nose tip (1) and mouth (13)
    for inner in (1, 13, 33, 263):
        assert cv2.pointPolygonTest(outline, tuple(map(float, p[inner, :2])), False) > 0
    assert p[list(RIGHT_EYEBROW), 0].mean() < p[1, 0] < p[list(LEFT_EYEBROW), 0].mean()
    assert p[list(RIGHT_EYEBROW), 1].max() < p[33, 1]  # brows above the eyes' outer corners
    assert p[152, 1] == pytest.approx(p[list(FACE_OVAL), 1].max(), abs=3)  # 152 is the chin, the lowest point


def test_rotated_face_follows_the_rotation(mesh):
    rgb = photo("astronaut", "face")
    (upright,) = mesh.detect(rgb)
    angle = 25.0  # counter-clockwise on screen
    centre = (256.0, 256.0)
    turn = cv2.getRotationMatrix2D(centre, angle, 1.0)
    rotated = cv2.warpAffine(rgb, turn, (512, 512), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    (tilted,) = mesh.detect(rotated)
    expected = np.c_[upright.points[:, :2], np.ones(468)] @ turn.T
    # the crop is turned back by about the angle (clockwise positive; the detector's eye points are coarse)
    assert tilted.roi.rotation == pytest.approx(upright.roi.rotation - math.radians(angle), abs=0.15)
    assert np.median(np.linalg.norm(tilted.points[:, :2] - expected, axis=1)) < 1.5


def test_any_box_gives_the_mediapipe_crop(mesh):
    rgb = photo("astronaut", "face")
    (detection,) = FaceDetector().detect(rgb)
    with_eyes = face_roi(detection.box, eyes=(detection.keypoints[0], detection.keypoints[1]))
    assert with_eyes == face_roi(detection)
    upright = face_roi((100, 50, 140, 110))  # no eyes: square on the long side, 1.5x, not rotated
    assert upright == RotatedRect(120.0, 80.0, 90.0, 90.0, 0.0)
    from_box = mesh.landmarks(rgb, detection.box, eyes=(detection.keypoints[0], detection.keypoints[1]))
    from_detection = mesh.landmarks(rgb, detection)
    np.testing.assert_array_equal(from_box.points, from_detection.points)
    plain = mesh.landmarks(rgb, detection.box)  # small tilt left uncorrected: still the same face, near enough
    assert np.median(np.linalg.norm(plain.points[:, :2] - from_detection.points[:, :2], axis=1)) < 3
    assert plain.score > 0.9


def test_batches_run_each_crop_on_its_own(mesh):
    rgb = photo("cap", "face")
    (detection,) = FaceDetector().detect(rgb)
    roi = face_roi(detection)
    empty = RotatedRect(40.0, 40.0, 60.0, 60.0)  # a patch of background
    single = mesh.run(rgb, [roi])[0]
    both = mesh.run(rgb, [empty, roi])
    np.testing.assert_allclose(both[1].points, single.points, atol=1e-3)
    assert both[0].score < 0.5 < both[1].score
    assert mesh.run(rgb, []) == []


def test_bad_input_is_refused(mesh):
    with pytest.raises(ValueError, match="face box"):
        face_roi((10, 10, 5, 20))
    with pytest.raises(ValueError, match="uint8 RGB"):
        mesh.landmarks(np.zeros((100, 100, 3), np.float32), (10, 10, 50, 50))
    with pytest.raises(ValueError, match="positive size"):
        mesh.run(np.zeros((100, 100, 3), np.uint8), [RotatedRect(50, 50, 0, 0)])
