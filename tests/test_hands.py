"""The PyTorch ports of MediaPipe's palm detector and hand landmark network ("full") against MediaPipe 0.10.21.

Network level: the TFLite interpreter's raw outputs on a stored 224x224 hand crop. Pipeline level:
`HandLandmarker.run` against `mp.solutions.hands` (static images, two hands, model_complexity=1) on whole
photos (tests/mediapipe_reference.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from p3m import models
from p3m.models.hand_landmark import FINGERTIPS, LANDMARKS, HandLandmarker
from p3m.models.mediapipe_calculators import Detection
from p3m.models.palm_detector import KEYPOINTS, PalmDetector, hand_roi
from tests.mediapipe_reference import DATA, PHOTOS, centre, photo, read_rgb, reference


@pytest.fixture(scope="module")
def landmarker() -> HandLandmarker:
    return HandLandmarker()


def test_networks_match_the_tflite_interpreter():
    ref = reference("hands")
    rgb = read_rgb(DATA / "hand_input_224.png")
    with torch.no_grad():
        outputs = models.create("mediapipe-hand-landmark").eval()(torch.from_numpy(rgb).permute(2, 0, 1)[None] / 255.0)
        palm = centre(rgb, 192)
        boxes, logits = models.create("mediapipe-palm-detection").eval()(
            torch.from_numpy(palm).permute(2, 0, 1)[None] / 255.0
        )
    # measured on the 2-core dev machine: 9.2e-5 (landmarks, input pixels), <= 3e-7 (presence, handedness,
    # world), 2.2e-5 (palm score logits), 5.8e-5 (palm boxes)
    for value, key, tolerance in zip(
        outputs, ("landmarks", "presence", "handedness", "world"), (2e-3, 1e-4, 1e-4, 1e-4), strict=True
    ):
        np.testing.assert_allclose(value[0].numpy(), ref[f"net/hand_landmark_full/{key}"], atol=tolerance)
    assert ref["net/hand_landmark_full/presence"][0] > 0.9  # a hand fills the crop
    top = ref["net/palm_detection_full/top"]
    np.testing.assert_allclose(logits[0, :, 0].numpy(), ref["net/palm_detection_full/scores"], atol=2e-3)
    np.testing.assert_allclose(boxes[0].numpy()[top], ref["net/palm_detection_full/top_boxes"], atol=2e-3)


@pytest.mark.parametrize("image", PHOTOS)
def test_hands_match_mediapipe(landmarker, image):
    rgb = photo(image, "hands")
    ref = reference("hands")
    hands = landmarker.run(rgb)
    expected = ref[f"hands/{image}/landmarks"]
    assert len(hands) == len(expected)
    width = rgb.shape[1]
    for hand, points, world, left_label in zip(
        hands, expected, ref[f"hands/{image}/world"], ref[f"hands/{image}/left_label_score"], strict=True
    ):
        assert hand.landmarks.shape == (21, 3) and hand.landmarks.dtype == np.float32
        # measured: <= 0.015 px (x, y), 0.004 (z); 4e-5 (handedness); 4e-5 m (world)
        np.testing.assert_allclose(hand.landmarks[:, :2], points[:, :2] * [width, rgb.shape[0]], atol=0.1)
        np.testing.assert_allclose(hand.landmarks[:, 2], points[:, 2] * width, atol=0.1)
        assert hand.right == pytest.approx(float(left_label), abs=1e-3)
        np.testing.assert_allclose(hand.world, world, atol=1e-3)
        assert hand.score >= 0.5


def test_the_singers_hands(landmarker):
    rgb = photo("profile", "hands")
    hands = sorted(landmarker.run(rgb), key=lambda h: h.landmarks[0, 0])
    assert len(hands) == 2
    mic, open_hand = hands  # his right hand holds the microphone on the image left; his left hand is open
    assert mic.right > 0.9 and open_hand.right < 0.1
    tips = open_hand.landmarks[[LANDMARKS.index(f) for f in FINGERTIPS], :2]
    wrist = open_hand.landmarks[LANDMARKS.index("wrist"), :2]
    # an open hand held up: every fingertip above the wrist, the fingertips spread across more than 15 px
    assert (tips[:, 1] < wrist[1]).all() and np.ptp(tips[:, 0]) > 15
    assert open_hand.palm is not None and open_hand.palm.keypoints.shape == (len(KEYPOINTS), 2)


def test_hand_crop_points_the_fingers_up():
    palm = Detection(
        np.array([90.0, 90.0, 110.0, 110.0]), np.array([[100.0, 110.0], [0, 0], [100.0, 90.0], *[[0, 0]] * 4]), 0.9
    )
    roi = hand_roi(palm)
    assert roi.rotation == pytest.approx(0.0)  # wrist below the middle finger: already upright
    assert (roi.center_x, roi.center_y, roi.width) == pytest.approx((100.0, 90.0, 52.0))  # half a box up, 2.6x
    sideways = Detection(palm.box, np.array([[110.0, 100.0], [0, 0], [90.0, 100.0], *[[0, 0]] * 4]), 0.9)
    assert hand_roi(sideways).rotation == pytest.approx(-np.pi / 2)  # fingers to the left: turn the crop back


def test_no_hands(landmarker):
    assert landmarker.run(np.full((200, 200, 3), 40, np.uint8)) == []
    assert PalmDetector().detect(np.full((100, 300, 3), 200, np.uint8)) == []
    assert landmarker.landmarks(np.zeros((50, 50, 3), np.uint8), []) == []
