"""MediaPipe's pose detector (BlazePose's person detector) in PyTorch: where a person is and how they stand.

The network (`pose_detection.tflite`, Apache-2.0, Google; 224x224 RGB in [-1, 1], 2254 anchors) is converted
once from the mediapipe 0.10.21 wheel by `tools/convert_tflite.py` (its pruned weights kept sparse) and run op
for op by `p3m.models.tflite_graph`. Like MediaPipe it finds a person by the head and upper body: a person whose
face is hidden (back views, hair over the face, a blurred face) is often not found.

Each `Detection` carries a box around the face and four `KEYPOINTS`: the hips' midpoint and a point whose
distance from it is the radius of a circle round the whole body (its direction: the body's up), and the same
for the upper body. `pose_roi` turns one into the crop MediaPipe's pose landmark network expects.

>>> people = PoseDetector().detect(rgb)          # (H, W, 3) uint8 RGB -> list of Detection, best first
>>> roi = pose_roi(people[0])                    # square crop round the body, rotated upright
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from p3m.models.blaze_detector import BlazeDetector, DetectorSpec
from p3m.models.graph_session import open_graph
from p3m.models.mediapipe_calculators import Detection, RotatedRect, rect_from_alignment_points, transform_rect
from p3m.models.registry import register_model
from p3m.models.shipped_weights import WEIGHTS_DIR

if TYPE_CHECKING:  # torch: loaded only where the torch port is built
    from p3m.models.tflite_graph import TFLiteGraph

__all__ = ["KEYPOINTS", "SPEC", "PoseDetector", "mediapipe_pose_detection", "pose_roi"]

KEYPOINTS = ("hips_center", "full_body_extent", "shoulders_center", "upper_body_extent")
SPEC = DetectorSpec(224, (8, 16, 32, 32, 32), 1.0, 0.5)

#: the converted network's file (its ONNX graph, where shipped, beside it)
WEIGHTS = WEIGHTS_DIR / "pose_detection.safetensors"


@register_model(
    "mediapipe-pose-detection", licence="Apache-2.0 (Google, MediaPipe pose)", normalisation="signed", size_multiple=0
)
def mediapipe_pose_detection() -> TFLiteGraph:
    """The pose detector network with its shipped weights: (B, 3, 224, 224) RGB in [-1, 1] -> (raw boxes
    (B, 2254, 12), score logits (B, 2254, 1))."""
    from p3m.models.tflite_graph import TFLiteGraph

    return TFLiteGraph.from_file(WEIGHTS)


def pose_roi(detection: Detection) -> RotatedRect:
    """MediaPipe's crop for the pose landmark network: centred on the hips' midpoint, 2.5x the full-body radius
    on a side (a square 1.25x the body's circle), rotated so the body stands upright."""
    rect = rect_from_alignment_points(detection, 0, 1, math.pi / 2)
    return transform_rect(rect, 1.25, square_long=True)


class PoseDetector(BlazeDetector):
    """People in an RGB image, as MediaPipe's pose detection finds them: `detect(rgb)` -> list of `Detection`
    (face box, the four `KEYPOINTS`, score), best first, in image pixels. ``min_score``: the detection threshold
    (MediaPipe's 0.5); ``device``: where the network runs; ``runtime``: as `p3m.models.graph_session.open_graph`."""

    def __init__(self, *, min_score: float | None = None, device: str = "cpu", runtime: str = "auto") -> None:
        super().__init__(open_graph(WEIGHTS, device=device, runtime=runtime), SPEC, min_score=min_score)
