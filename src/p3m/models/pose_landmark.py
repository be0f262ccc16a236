"""MediaPipe pose landmarks (BlazePose GHUM 3D, "full") in PyTorch: 33 body landmarks and a person mask.

The network (`pose_landmark_full.tflite`, Apache-2.0, Google; 256x256 RGB in [0, 1]) is converted once from the
mediapipe 0.10.21 wheel by `tools/convert_tflite.py` and run op for op by `p3m.models.tflite_graph`. It sees a
square crop round one person, upright (from `pose_detector.pose_roi`), and answers with 39 landmarks (33 body
points and MediaPipe's auxiliary ones), a pose-presence score, 3-D world landmarks, 64x64 landmark heatmaps and a
256x256 person segmentation. `PoseLandmarker.run` is MediaPipe's Pose solution on a still image (the first
person its detector finds; MediaPipe follows one person): detector -> crop -> landmarks refined on the heatmaps
-> everything projected back onto the image. tests/test_pose.py compares it with MediaPipe's own run.

`Pose.landmarks` (33, 4) float32, rows in `LANDMARKS` order (MediaPipe's; "left"/"right" are the person's own):
x, y in image pixels (x right, y down, as MediaPipe scales its normalised ones: x = x_normalised * width), z in
pixels on the scale of x, relative to the hips' midpoint (smaller is nearer the camera), and visibility in [0, 1]
(the probability that the point is in view and not hidden). `Pose.segmentation`: (H, W) float32 in [0, 1], the
probability of "person" per image pixel, 0 outside the crop.

>>> pose = PoseLandmarker().run(rgb)                 # None when no person is found
>>> wrists = pose.landmarks[[LANDMARKS.index("left_wrist"), LANDMARKS.index("right_wrist")], :2]
>>> person = pose.segmentation > 0.5
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from p3m.models.graph_session import open_graph
from p3m.models.mediapipe_calculators import Detection, RotatedRect, crop, letterbox, to_image, warp_to_image
from p3m.models.pose_detector import PoseDetector, pose_roi
from p3m.models.registry import register_model
from p3m.models.shipped_weights import WEIGHTS_DIR

if TYPE_CHECKING:  # torch: loaded only where the torch port is built
    from p3m.models.tflite_graph import TFLiteGraph

__all__ = ["INPUT_SIZE", "LANDMARKS", "Pose", "PoseLandmarker", "mediapipe_pose_landmark", "refine_from_heatmap"]

INPUT_SIZE = 256
LANDMARKS = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)  # fmt: skip
_ALL = 39  # the network's points: the 33 above, 2 auxiliary (the crop of the next video frame), 4 unused
#: the converted network's file (its ONNX graph beside it)
WEIGHTS = WEIGHTS_DIR / "pose_landmark_full.safetensors"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80, 80)))


@dataclass(frozen=True)
class Pose:
    """One person: ``landmarks`` (33, 4) and ``segmentation`` (H, W) as in the module docstring; ``presence``
    (33,) the probability each point is in the crop; ``world`` (33, 3) MediaPipe's world landmarks in metres,
    origin at the hips' midpoint, y down; ``score`` the pose-presence score of the crop (MediaPipe keeps a pose at
    >= 0.5); ``roi`` the crop; ``detection`` what the detector found (None when the crop was given)."""

    landmarks: np.ndarray
    presence: np.ndarray
    world: np.ndarray
    segmentation: np.ndarray
    score: float
    roi: RotatedRect
    detection: Detection | None


@register_model(
    "mediapipe-pose-landmark", licence="Apache-2.0 (Google, MediaPipe pose)", normalisation="unit", size_multiple=0
)
def mediapipe_pose_landmark() -> TFLiteGraph:
    """The BlazePose GHUM 3D (full) network with its shipped weights: (B, 3, 256, 256) RGB in [0, 1] ->
    (landmarks (B, 195): x, y, z, visibility and presence logits of 39 points, in input pixels; pose presence
    (B, 1) in [0, 1]; segmentation logits (B, 1, 256, 256); heatmap logits (B, 39, 64, 64); world landmarks
    (B, 117) in metres)."""
    from p3m.models.tflite_graph import TFLiteGraph

    return TFLiteGraph.from_file(WEIGHTS)


def refine_from_heatmap(
    points: np.ndarray, heatmap: np.ndarray, kernel: int = 7, min_confidence: float = 0.5
) -> np.ndarray:
    """MediaPipe's RefineLandmarksFromHeatmapCalculator: each point (x, y normalised to the crop) moves to the
    sigmoid-weighted mean position of its heatmap (C, h, w logits) in a `kernel`-wide window round it, where the
    window's highest probability reaches `min_confidence`. -> a refined copy of ``points``."""
    out = np.array(points, dtype=np.float64, copy=True)
    channels, height, width = heatmap.shape
    half = (kernel - 1) // 2
    for i in range(channels):
        col, row = int(out[i, 0] * width), int(out[i, 1] * height)  # C++ float -> int: towards zero
        # MediaPipe's test compares the column against the height (a typo, harmless on square heatmaps)
        if col < 0 or col >= width or row < 0 or col >= height:
            continue
        rows = slice(max(0, row - half), min(height, row + half + 1))
        cols = slice(max(0, col - half), min(width, col + half + 1))
        confidence = _sigmoid(heatmap[i, rows, cols].astype(np.float64))
        total = confidence.sum()
        if confidence.size and confidence.max() >= min_confidence and total > 0:
            yy, xx = np.mgrid[rows, cols]
            out[i, 0] = (xx * confidence).sum() / width / total
            out[i, 1] = (yy * confidence).sum() / height / total
    return out


class PoseLandmarker:
    """33 body landmarks and a person mask per image, as MediaPipe's Pose solution gives them.

    ``min_score``: the pose-presence threshold of `run` (MediaPipe's 0.5); ``detector``: the `PoseDetector` to
    find the person with (default: MediaPipe's, loaded on the first `run`: `landmarks` on a given crop needs
    none); ``device``: where the networks run; ``runtime``: as `p3m.models.graph_session.open_graph`.
    """

    def __init__(
        self,
        *,
        min_score: float = 0.5,
        detector: PoseDetector | None = None,
        device: str = "cpu",
        runtime: str = "auto",
    ) -> None:
        self.net = open_graph(WEIGHTS, device=device, runtime=runtime)
        self._detector = detector
        self.min_score = float(min_score)
        self.device, self.runtime = device, runtime

    @property
    def detector(self) -> PoseDetector:
        """The person detector of `run`."""
        if self._detector is None:
            self._detector = PoseDetector(device=self.device, runtime=self.runtime)
        return self._detector

    def run(self, rgb: np.ndarray) -> Pose | None:
        """(H, W, 3) uint8 RGB -> the pose of the first person the detector finds, or None (nobody found, or the
        landmark network not confident, score < ``min_score``)."""
        detections = self.detector.detect(rgb)
        if not detections:
            return None
        pose = self.landmarks(rgb, pose_roi(detections[0]))
        if pose.score < self.min_score:
            return None
        return Pose(pose.landmarks, pose.presence, pose.world, pose.segmentation, pose.score, pose.roi, detections[0])

    def landmarks(self, rgb: np.ndarray, roi: RotatedRect) -> Pose:
        """The pose in a given crop (a `RotatedRect` in image pixels, upright body inside), whatever its score."""
        rect = letterbox(roi, (INPUT_SIZE, INPUT_SIZE))
        pixels = crop(rgb, rect, (INPUT_SIZE, INPUT_SIZE))
        x = pixels.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0)
        raw, presence, segmentation, heatmap, world = (t[0] for t in self.net(x))
        raw = raw.reshape(_ALL, 5).astype(np.float64)
        points = refine_from_heatmap(raw[:, :2] / INPUT_SIZE, heatmap)[:33]
        landmarks = np.zeros((33, 4), np.float32)
        landmarks[:, :2] = to_image(points, rect)
        landmarks[:, 2] = raw[:33, 2] / INPUT_SIZE * rect.width
        landmarks[:, 3] = _sigmoid(raw[:33, 3])
        c, s = math.cos(rect.rotation), math.sin(rect.rotation)
        w = world.reshape(_ALL, 3)[:33].astype(np.float64)
        world_xyz = np.stack([c * w[:, 0] - s * w[:, 1], s * w[:, 0] + c * w[:, 1], w[:, 2]], axis=1)
        mask = warp_to_image(_sigmoid(segmentation[0].astype(np.float64)), rect, (rgb.shape[1], rgb.shape[0]))
        return Pose(
            landmarks,
            _sigmoid(raw[:33, 4]).astype(np.float32),
            world_xyz.astype(np.float32),
            mask,
            float(presence[0]),
            rect,
            None,
        )
