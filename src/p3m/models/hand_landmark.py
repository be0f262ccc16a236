"""MediaPipe hand landmarks ("full") in PyTorch: 21 points per hand, as MediaPipe 0.10.21's Hands gives them.

The network (`hand_landmark_full.tflite`, Apache-2.0, Google; 224x224 RGB in [0, 1]) is converted once from the
mediapipe 0.10.21 wheel by `tools/convert_tflite.py` and run op for op by `p3m.models.tflite_graph`. It sees a
square crop round one hand, fingers up (`palm_detector.hand_roi`), and answers with 21 landmarks, a
hand-presence score, a handedness score and 3-D world landmarks. `HandLandmarker.run` is MediaPipe's Hands
solution on a still image: palm detector -> one crop per palm -> landmarks. tests/test_hands.py compares it with
MediaPipe's own run.

`Hand.landmarks` (21, 3) float32, rows in `LANDMARKS` order: x, y in image pixels (as MediaPipe scales its
normalised ones: x = x_normalised * width), z on a pixel-like scale relative to the wrist (smaller is nearer the
camera). `Hand.right` is the probability that it is the person's right hand in an ordinary photo (MediaPipe
labels it "Left": its handedness assumes a mirrored selfie).

>>> hands = HandLandmarker().run(rgb)             # up to two hands, best palm first
>>> tips = hands[0].landmarks[[LANDMARKS.index(f) for f in FINGERTIPS], :2]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from p3m.models.graph_session import open_graph
from p3m.models.mediapipe_calculators import Detection, RotatedRect, crop, letterbox, to_image
from p3m.models.palm_detector import PalmDetector, hand_roi
from p3m.models.registry import register_model
from p3m.models.shipped_weights import WEIGHTS_DIR

if TYPE_CHECKING:  # torch: loaded only where the torch port is built
    from p3m.models.tflite_graph import TFLiteGraph

__all__ = ["FINGERTIPS", "INPUT_SIZE", "LANDMARKS", "Hand", "HandLandmarker", "mediapipe_hand_landmark"]

INPUT_SIZE = 224
LANDMARKS = (
    "wrist", "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_finger_mcp", "index_finger_pip", "index_finger_dip", "index_finger_tip",
    "middle_finger_mcp", "middle_finger_pip", "middle_finger_dip", "middle_finger_tip",
    "ring_finger_mcp", "ring_finger_pip", "ring_finger_dip", "ring_finger_tip",
    "pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip",
)  # fmt: skip
FINGERTIPS = ("thumb_tip", "index_finger_tip", "middle_finger_tip", "ring_finger_tip", "pinky_tip")
_NORMALIZE_Z = 0.4  # MediaPipe's TensorsToLandmarks option for this model
#: the converted network's file (its ONNX graph, NAME.onnx, ships beside it: `p3m.models.graph_session.open_graph`)
WEIGHTS = WEIGHTS_DIR / "hand_landmark_full.safetensors"


@dataclass(frozen=True)
class Hand:
    """One hand: ``landmarks`` (21, 3) as in the module docstring; ``world`` (21, 3) MediaPipe's world landmarks
    in metres round the hand's centre; ``score`` the hand-presence score of the crop (MediaPipe keeps a hand at
    >= 0.5); ``right`` see the module docstring; ``roi`` the crop; ``palm`` the palm detection (None when the
    crop was given)."""

    landmarks: np.ndarray
    world: np.ndarray
    score: float
    right: float
    roi: RotatedRect
    palm: Detection | None


@register_model(
    "mediapipe-hand-landmark", licence="Apache-2.0 (Google, MediaPipe hands)", normalisation="unit", size_multiple=0
)
def mediapipe_hand_landmark() -> TFLiteGraph:
    """The hand landmark network with its shipped weights: (B, 3, 224, 224) RGB in [0, 1] -> (landmarks (B, 63):
    x, y, z of 21 points in input pixels; hand presence (B, 1) and handedness (B, 1), both in [0, 1]; world
    landmarks (B, 63) in metres)."""
    from p3m.models.tflite_graph import TFLiteGraph

    return TFLiteGraph.from_file(WEIGHTS)


class HandLandmarker:
    """21 landmarks per hand, as MediaPipe's Hands solution gives them. ``max_hands``: MediaPipe's
    ``max_num_hands`` (2); ``min_score``: the hand-presence threshold of `run` (MediaPipe's 0.5); ``detector``:
    the `PalmDetector` (default MediaPipe's); ``device``: where the networks run; ``runtime``: as
    `p3m.models.graph_session.open_graph`."""

    def __init__(
        self,
        *,
        max_hands: int = 2,
        min_score: float = 0.5,
        detector: PalmDetector | None = None,
        device: str = "cpu",
        runtime: str = "auto",
    ) -> None:
        self.net = open_graph(WEIGHTS, device=device, runtime=runtime)
        self.detector = detector or PalmDetector(device=device, runtime=runtime)
        self.max_hands = int(max_hands)
        self.min_score = float(min_score)
        self.device = device

    def run(self, rgb: np.ndarray) -> list[Hand]:
        """(H, W, 3) uint8 RGB -> the hands of the best ``max_hands`` palms, each kept at score >= ``min_score``."""
        palms = self.detector.detect(rgb)[: self.max_hands]
        hands = self.landmarks(rgb, [hand_roi(p) for p in palms])
        return [
            Hand(h.landmarks, h.world, h.score, h.right, h.roi, palm)
            for h, palm in zip(hands, palms, strict=True)
            if h.score >= self.min_score
        ]

    def landmarks(self, rgb: np.ndarray, rois: Sequence[RotatedRect]) -> list[Hand]:
        """The hand in each given crop (`RotatedRect`s in image pixels, fingers up), one batch, whatever the
        scores."""
        if not rois:
            return []
        rects = [letterbox(roi, (INPUT_SIZE, INPUT_SIZE)) for roi in rois]
        pixels = np.stack([crop(rgb, rect, (INPUT_SIZE, INPUT_SIZE)) for rect in rects])
        x = pixels.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
        raw, presence, handedness, world = self.net(x)
        hands = []
        for i, rect in enumerate(rects):
            points = raw[i].reshape(21, 3).astype(np.float64) / INPUT_SIZE
            landmarks = np.zeros((21, 3), np.float32)
            landmarks[:, :2] = to_image(points, rect)
            landmarks[:, 2] = points[:, 2] / _NORMALIZE_Z * rect.width
            c, s = math.cos(rect.rotation), math.sin(rect.rotation)
            w = world[i].reshape(21, 3).astype(np.float64)
            world_xyz = np.stack([c * w[:, 0] - s * w[:, 1], s * w[:, 0] + c * w[:, 1], w[:, 2]], axis=1)
            hands.append(
                Hand(
                    landmarks, world_xyz.astype(np.float32), float(presence[i, 0]), float(handedness[i, 0]), rect, None
                )
            )
        return hands
