"""The PyTorch ports of MediaPipe's pose detector and pose landmark network (BlazePose GHUM 3D full) against
MediaPipe 0.10.21's own outputs.

Network level: the TFLite interpreter's raw outputs on a stored 256x256 input (tight). Pipeline level:
`PoseLandmarker.run` against `mp.solutions.pose` (static image, model_complexity=1, segmentation on) on whole
photos (tests/mediapipe_reference.py). The pipeline cannot be matched bit for bit: MediaPipe computes the crop
rectangle in float32, and BlazePose is so sensitive to its crop that moving it by 1e-4 pixel moves single
landmarks by 0.1 pixel and flips mask pixels at the person's edge (measured, see docs/models.md); so the
pipeline comparison bounds the typical error tightly and the worst one loosely.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from p3m import models
from p3m.models.graph_session import open_graph
from p3m.models.mediapipe_calculators import Detection
from p3m.models.pose_detector import KEYPOINTS, PoseDetector, pose_roi
from p3m.models.pose_landmark import LANDMARKS, PoseLandmarker, refine_from_heatmap
from p3m.models.pose_landmark import WEIGHTS as POSE_WEIGHTS
from tests.mediapipe_reference import DATA, PHOTOS, centre, photo, read_rgb, reference


@pytest.fixture(scope="module", params=["onnxruntime", "torch"])
def landmarker(request) -> PoseLandmarker:
    return PoseLandmarker(runtime=request.param)


@pytest.fixture(scope="module")
def poses(landmarker) -> dict:
    return {name: landmarker.run(photo(name, "pose")) for name in PHOTOS}


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_landmark_network_matches_the_tflite_interpreter(runtime):
    ref = reference("pose")
    rgb = read_rgb(DATA / "pose_input_256.png")
    net = open_graph(POSE_WEIGHTS, runtime=runtime)  # the torch port, or the ONNX graph exported from it
    assert net.runtime == runtime
    landmarks, presence, segmentation, heatmap, world = net(rgb.transpose(2, 0, 1)[None] / np.float32(255.0))
    # measured on the 2-core dev machine: 3.8e-4 (landmarks, input pixels up to 256), 1.5e-6 (presence),
    # 3.2e-6 (world, metres), 1.9e-4 (heatmap logits), 1.2e-3 (segmentation probability, at the person's edge);
    # ONNX Runtime the same to within 1e-3 of the logits' range (tools/export_graph_onnx.py)
    np.testing.assert_allclose(landmarks[0], ref["net/pose_landmark_full/landmarks"], atol=5e-3)
    np.testing.assert_allclose(presence[0], ref["net/pose_landmark_full/presence"], atol=1e-4)
    np.testing.assert_allclose(world[0], ref["net/pose_landmark_full/world"], atol=1e-4)
    hm = heatmap[0].transpose(1, 2, 0)[::4, ::4]
    np.testing.assert_allclose(hm, ref["net/pose_landmark_full/heatmap"], atol=2e-3)
    mask = cv2.imread(str(DATA / "mediapipe_pose_net_mask.png"), cv2.IMREAD_UNCHANGED) / 65535
    np.testing.assert_allclose(1 / (1 + np.exp(-segmentation[0, 0].astype(np.float64))), mask, atol=5e-3)
    assert ref["net/pose_landmark_full/presence"][0] > 0.9 and (mask > 0.9).mean() > 0.05  # a person is in view


def test_detector_network_matches_the_tflite_interpreter():
    ref = reference("pose")
    rgb = centre(read_rgb(DATA / "pose_input_256.png"), 224)
    net = models.create("mediapipe-pose-detection").eval()
    with torch.no_grad():
        boxes, logits = net(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() * (2 / 255) - 1)
    top = ref["net/pose_detection/top"]
    # measured: 4.6e-4 (score logits), 6.1e-5 (boxes, input pixels)
    np.testing.assert_allclose(logits[0, :, 0].numpy(), ref["net/pose_detection/scores"], atol=5e-3)
    np.testing.assert_allclose(boxes[0].numpy()[top], ref["net/pose_detection/top_boxes"], atol=5e-3)
    assert ref["net/pose_detection/scores"].max() > 1  # the singer is found (p = 0.89)


@pytest.mark.parametrize("image", PHOTOS)
def test_pose_matches_mediapipe(poses, image):
    rgb = photo(image, "pose")
    ref = reference("pose")
    pose = poses[image]
    if f"pose/{image}/landmarks" not in ref:
        assert pose is None  # MediaPipe finds nobody (the walking woman's face is under her hair): neither do we
        return
    width, height = rgb.shape[1], rgb.shape[0]
    expected = ref[f"pose/{image}/landmarks"]
    assert pose.landmarks.shape == (33, 4) and pose.landmarks.dtype == np.float32
    error = np.linalg.norm(pose.landmarks[:, :2] - expected[:, :2] * [width, height], axis=1)
    # measured per photo: median 0.016-0.095 px, worst 1.2-4.4 px (crops of 655-1255 px); without the
    # heatmap refinement the median error is several pixels
    assert np.median(error) < 0.3 and error.max() < 0.01 * pose.roi.width
    assert np.median(np.abs(pose.landmarks[:, 2] - expected[:, 2] * width)) < 0.5
    np.testing.assert_allclose(pose.landmarks[:, 3], expected[:, 3], atol=0.01)  # measured <= 1e-3
    np.testing.assert_allclose(pose.world, ref[f"pose/{image}/world"], atol=5e-3)  # measured <= 5e-4 m
    mask = cv2.imread(str(DATA / f"mediapipe_pose_{image}_mask.png"), cv2.IMREAD_UNCHANGED) / 65535
    assert pose.segmentation.shape == mask.shape and pose.segmentation.dtype == np.float32
    difference = np.abs(pose.segmentation - mask)
    assert difference.mean() < 1e-4  # measured 0.7-1.4e-5
    both, either = ((pose.segmentation > 0.5) & (mask > 0.5)).sum(), ((pose.segmentation > 0.5) | (mask > 0.5)).sum()
    assert both / either > 0.999  # measured >= 0.9997
    assert 0.5 <= pose.score <= 1


def test_landmarks_name_the_body(poses):
    pose = poses["cap"]
    at = {name: pose.landmarks[LANDMARKS.index(name)] for name in LANDMARKS}
    assert at["nose"][1] < at["left_shoulder"][1] and at["nose"][1] < at["right_shoulder"][1]
    assert at["right_shoulder"][0] < at["left_shoulder"][0]  # facing the camera: the person's right on the left
    assert at["left_shoulder"][3] > 0.9 and at["left_ankle"][3] < 0.5  # shoulders in view, feet outside the photo
    person = pose.segmentation > 0.5
    x, y = np.round(at["nose"][:2]).astype(int)
    assert person[y, x] and not person[5, 5]  # the nose is on the person, the photo's corner is not
    assert pose.detection is not None and pose.detection.keypoints.shape == (len(KEYPOINTS), 2)


def test_detector_and_crop_follow_the_body(poses):
    rgb = photo("cap", "pose")
    (person, *_) = PoseDetector().detect(rgb)
    roi = pose_roi(person)
    assert roi == poses["cap"].roi
    hips, extent = person.keypoints[0], person.keypoints[1]
    assert roi.width == pytest.approx(2.5 * np.linalg.norm(extent - hips))
    assert abs(roi.rotation) < 0.3  # an upright man
    upside_down = Detection(person.box, np.array([hips, 2 * hips - extent, hips, hips]), 1.0)
    assert abs(abs(pose_roi(upside_down).rotation) - math.pi) < 0.3


def test_heatmap_refinement_moves_towards_the_peak():
    heatmap = np.full((2, 64, 64), -10.0)
    heatmap[0, 20, 33] = 5.0  # a confident peak one cell right of the point
    heatmap[1, 40:43, 10:13] = -0.5  # nothing reaching 0.5 probability: left alone
    points = np.array([[32.5 / 64, 20.5 / 64], [11.2 / 64, 41.3 / 64]])
    refined = refine_from_heatmap(points, heatmap)
    assert refined[0, 0] == pytest.approx(33 / 64, abs=1e-3) and refined[0, 1] == pytest.approx(20 / 64, abs=1e-3)
    np.testing.assert_array_equal(refined[1], points[1])
    outside = refine_from_heatmap(np.array([[-0.2, 0.5], [1.2, 0.5]]), heatmap)
    np.testing.assert_array_equal(outside, [[-0.2, 0.5], [1.2, 0.5]])


def test_nobody_and_bad_input(landmarker):
    assert landmarker.run(np.full((240, 320, 3), 90, np.uint8)) is None
    with pytest.raises(ValueError, match="uint8 RGB"):
        landmarker.run(np.zeros((64, 64, 3), np.float64))
