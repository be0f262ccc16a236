"""MediaPipe's palm detector ("full") in PyTorch: hands, found by the palm, with seven keypoints.

The network (`palm_detection_full.tflite`, Apache-2.0, Google; 192x192 RGB in [0, 1], 2016 anchors) is
converted once from the mediapipe 0.10.21 wheel by `tools/convert_tflite.py` and run op for op by
`p3m.models.tflite_graph`; `PalmDetector.detect` is MediaPipe's PalmDetection graph (the shared pipeline of
`blaze_detector`). Each `Detection` has a box round the palm and `KEYPOINTS` in image pixels; `hand_roi` turns
one into the crop MediaPipe's hand landmark network expects.

>>> palms = PalmDetector().detect(rgb)        # (H, W, 3) uint8 RGB -> list of Detection, best first
>>> roi = hand_roi(palms[0])                  # square crop round the whole hand, fingers up
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from p3m.models.blaze_detector import BlazeDetector, DetectorSpec
from p3m.models.graph_session import open_graph
from p3m.models.mediapipe_calculators import Detection, RotatedRect, rect_from_keypoints, transform_rect
from p3m.models.registry import register_model
from p3m.models.shipped_weights import WEIGHTS_DIR

if TYPE_CHECKING:  # torch: loaded only where the torch port is built
    from p3m.models.tflite_graph import TFLiteGraph

__all__ = ["KEYPOINTS", "SPEC", "PalmDetector", "hand_roi", "mediapipe_palm_detection"]

KEYPOINTS = (
    "wrist", "index_finger_mcp", "middle_finger_mcp", "ring_finger_mcp", "pinky_mcp", "thumb_cmc", "thumb_mcp",
)  # fmt: skip
SPEC = DetectorSpec(192, (8, 16, 16, 16), 1.0, 0.5, value_range=(0.0, 1.0))

#: the converted network's file (its ONNX graph, where shipped, beside it)
WEIGHTS = WEIGHTS_DIR / "palm_detection_full.safetensors"


@register_model(
    "mediapipe-palm-detection", licence="Apache-2.0 (Google, MediaPipe hands)", normalisation="unit", size_multiple=0
)
def mediapipe_palm_detection() -> TFLiteGraph:
    """The palm detector network with its shipped weights: (B, 3, 192, 192) RGB in [0, 1] -> (raw boxes
    (B, 2016, 18), score logits (B, 2016, 1))."""
    from p3m.models.tflite_graph import TFLiteGraph

    return TFLiteGraph.from_file(WEIGHTS)


def hand_roi(palm: Detection) -> RotatedRect:
    """MediaPipe's crop for the hand landmark network: the palm box turned so the wrist -> middle finger line
    points up, moved half its size towards the fingers, squared and enlarged 2.6x."""
    rect = rect_from_keypoints(palm, 0, 2, math.pi / 2)
    return transform_rect(rect, 2.6, square_long=True, shift=(0.0, -0.5))


class PalmDetector(BlazeDetector):
    """Palms in an RGB image, as MediaPipe's palm detection finds them: `detect(rgb)` -> list of `Detection`
    (palm box, the seven `KEYPOINTS`, score), best first, in image pixels. ``min_score``: the detection threshold
    (MediaPipe's 0.5); ``device``: where the network runs; ``runtime``: as `p3m.models.graph_session.open_graph`."""

    def __init__(self, *, min_score: float | None = None, device: str = "cpu", runtime: str = "auto") -> None:
        super().__init__(open_graph(WEIGHTS, device=device, runtime=runtime), SPEC, min_score=min_score)
