"""MediaPipe face mesh in PyTorch: 468 3-D face landmarks and a face-presence score, as MediaPipe 0.10.21 gives them.

The network (`face_landmark.tflite`, Apache-2.0, Google; 192x192 RGB in [0, 1]) is converted once from the
mediapipe 0.10.21 wheel by `tools/convert_tflite.py` and run op for op by `p3m.models.tflite_graph`.
It expects a square crop around one face, upright: MediaPipe takes the face detector's box, rotates it so the
eyes are level, and enlarges it 1.5x on its long side (`face_roi`). `FaceMesh.landmarks` runs it on one face,
`FaceMesh.detect` is MediaPipe's whole FaceMesh solution on a still image (detector -> crops -> landmarks).
tests/test_face_mesh.py compares both with MediaPipe's own runs.

Landmarks: (468, 3) float32, x and y in image pixels (x right, y down, pixel centres at +0.5), z in pixels on
the same scale as x, relative: smaller is nearer the camera, roughly zero at the face's centre plane. The index
layout is MediaPipe's canonical face mesh; `FACE_OVAL` (the outline from the forehead round the jaw),
`RIGHT_EYEBROW` and `LEFT_EYEBROW` (upper edges, outer to inner end) name the ones a face region is drawn from.

>>> mesh = FaceMesh()
>>> faces = mesh.detect(rgb)                              # all faces MediaPipe would find, best first
>>> one = mesh.landmarks(rgb, (x0, y0, x1, y1))           # a face box from any detector
>>> jaw_to_brows = one.points[list(FACE_OVAL), :2]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from p3m.models.face_detector import FaceDetector
from p3m.models.graph_session import open_graph
from p3m.models.mediapipe_calculators import (
    Detection,
    RotatedRect,
    crop,
    rect_from_keypoints,
    to_image,
    transform_rect,
)
from p3m.models.registry import register_model
from p3m.models.shipped_weights import WEIGHTS_DIR

if TYPE_CHECKING:  # torch: loaded only where the torch port is built
    from p3m.models.tflite_graph import TFLiteGraph

#: the converted network's file (no ONNX graph is shipped: the privacy tools run it on torch)
WEIGHTS = WEIGHTS_DIR / "face_landmark.safetensors"

__all__ = [
    "FACE_OVAL",
    "INPUT_SIZE",
    "LEFT_EYEBROW",
    "RIGHT_EYEBROW",
    "FaceLandmarks",
    "FaceMesh",
    "face_roi",
    "mediapipe_face_mesh",
]

INPUT_SIZE = 192
NUM_LANDMARKS = 468
# MediaPipe's FACEMESH_FACE_OVAL as one closed loop, clockwise on screen from the top of the forehead (10), down
# the face's left side (image right) to the chin (152) and back up its right side
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
# upper edges of the eyebrows, outer end to inner end (the subject's right brow is on the image left)
RIGHT_EYEBROW = (70, 63, 105, 66, 107)
LEFT_EYEBROW = (300, 293, 334, 296, 336)


@dataclass(frozen=True)
class FaceLandmarks:
    """``points`` (468, 3) float32 in image pixels (see the module docstring); ``score`` the face-presence
    probability of the crop in [0, 1] (MediaPipe keeps a face at >= 0.5); ``roi`` the crop they come from."""

    points: np.ndarray
    score: float
    roi: RotatedRect


@register_model(
    "mediapipe-face-mesh", licence="Apache-2.0 (Google, MediaPipe face mesh)", normalisation="unit", size_multiple=0
)
def mediapipe_face_mesh() -> TFLiteGraph:
    """The face mesh network with its shipped weights: (B, 3, 192, 192) RGB in [0, 1] -> (landmarks
    (B, 1404, 1, 1): x, y, z per point in input pixels; presence logit (B, 1, 1, 1))."""
    from p3m.models.tflite_graph import TFLiteGraph

    return TFLiteGraph.from_file(WEIGHTS)


def face_roi(
    face: Detection | Sequence[float], eyes: tuple[Sequence[float], Sequence[float]] | None = None
) -> RotatedRect:
    """The crop MediaPipe's face mesh expects for a face: its box made square on the long side, enlarged 1.5x,
    rotated so the eyes are level.

    ``face``: a `Detection` of `FaceDetector` (its first two keypoints are the eyes), or a box (x0, y0, x1, y1)
    in image pixels from any detector; ``eyes``: for a box, the (x, y) of the eye on the image left and of the
    one on the image right, when known (without them the crop is not rotated).
    """
    if not isinstance(face, Detection):
        box = np.asarray(face, dtype=np.float64)
        if box.shape != (4,) or not (box[2] > box[0] and box[3] > box[1]):
            raise ValueError(f"a face box must be (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {tuple(face)}")
        level = ((0.0, 0.0), (1.0, 0.0))  # no eyes known: an upright crop
        face = Detection(box, np.asarray(eyes if eyes is not None else level, dtype=np.float64), 1.0)
    rect = rect_from_keypoints(face, 0, 1, 0.0)
    return transform_rect(rect, 1.5, square_long=True)


class FaceMesh:
    """468 face landmarks per face. ``min_score``: the presence threshold of `detect` (MediaPipe's 0.5);
    ``device``: where the network runs; ``runtime``: as `p3m.models.graph_session.open_graph`."""

    def __init__(self, *, min_score: float = 0.5, device: str = "cpu", runtime: str = "auto") -> None:
        self.net = open_graph(WEIGHTS, device=device, runtime=runtime)
        self.min_score = float(min_score)
        self.device, self.runtime = device, runtime

    def run(self, rgb: np.ndarray, rois: Sequence[RotatedRect]) -> list[FaceLandmarks]:
        """Landmarks in each crop of the (H, W, 3) uint8 RGB image, one batch; every crop answers, whatever its
        score."""
        if not rois:
            return []
        crops = np.stack([crop(rgb, roi, (INPUT_SIZE, INPUT_SIZE)) for roi in rois])
        x = crops.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
        raw, logit = self.net(x)
        raw = raw.reshape(len(rois), NUM_LANDMARKS, 3) / INPUT_SIZE
        scores = 1.0 / (1.0 + np.exp(-logit.reshape(-1)))
        faces = []
        for points, score, roi in zip(raw, scores, rois, strict=True):
            xy = to_image(points, roi)
            z = points[:, 2:] * roi.width
            faces.append(FaceLandmarks(np.concatenate([xy, z], axis=1).astype(np.float32), float(score), roi))
        return faces

    def landmarks(
        self,
        rgb: np.ndarray,
        face: Detection | RotatedRect | Sequence[float],
        eyes: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> FaceLandmarks:
        """Landmarks of one face: a `Detection`, a box (x0, y0, x1, y1) in pixels (with ``eyes`` when known, as in
        `face_roi`), or the crop itself as a `RotatedRect`."""
        roi = face if isinstance(face, RotatedRect) else face_roi(face, eyes)
        return self.run(rgb, [roi])[0]

    def detect(
        self, rgb: np.ndarray, detector: FaceDetector | None = None, max_faces: int | None = None
    ) -> list[FaceLandmarks]:
        """MediaPipe's face mesh on a still image: the faces `detector` finds (default: a short-range
        `FaceDetector`, as MediaPipe), best first, at most ``max_faces``, each kept if its presence score reaches
        ``min_score``."""
        detections = (detector or FaceDetector(device=self.device, runtime=self.runtime)).detect(rgb)[:max_faces]
        faces = self.run(rgb, [face_roi(d) for d in detections])
        return [f for f in faces if f.score >= self.min_score]
