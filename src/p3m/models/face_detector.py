"""MediaPipe face detection (BlazeFace) in PyTorch: face boxes with six keypoints, as MediaPipe 0.10.21 finds them.

Two networks (Apache-2.0, Google), converted once from the mediapipe 0.10.21 wheel by `tools/convert_tflite.py`
and run op for op by `p3m.models.tflite_graph`:

- ``"short"`` (`face_detection_short_range.tflite`, 128x128 input, 896 anchors): faces within about 2 m of the
  camera, i.e. faces that fill a fair part of the picture (MediaPipe's default, and face mesh's detector);
- ``"full"`` (`face_detection_full_range_sparse.tflite`, 192x192, 2304 anchors): faces up to about 5 m, i.e.
  small faces in a wide picture.

`FaceDetector.detect` is MediaPipe's FaceDetection graph: the whole image letterboxed (zero border) into the
square input with values in [-1, 1], SSD anchor decoding, sigmoid scores, weighted non-maximum suppression
(IoU 0.3), projection back to image pixels. tests/test_face_detector.py compares it with MediaPipe's own run.

>>> faces = FaceDetector().detect(rgb)          # (H, W, 3) uint8 RGB -> list of Detection, best first
>>> faces[0].box                                # (x0, y0, x1, y1) in image pixels
>>> faces[0].keypoints[KEYPOINTS.index("nose_tip")]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from p3m.models.blaze_detector import BlazeDetector, DetectorSpec
from p3m.models.graph_session import open_graph
from p3m.models.registry import register_model
from p3m.models.shipped_weights import WEIGHTS_DIR

if TYPE_CHECKING:  # torch: loaded only where the torch port is built
    from p3m.models.tflite_graph import TFLiteGraph

__all__ = ["KEYPOINTS", "VARIANTS", "FaceDetector", "mediapipe_face_detection"]

# the subject's own right and left: "right_eye" is the eye on the left of the picture of a face seen from the front
KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion", "left_ear_tragion")
# (file, how MediaPipe runs it); min_score is MediaPipe's default threshold for the model
VARIANTS = {
    "short": ("face_detection_short_range.safetensors", DetectorSpec(128, (8, 16, 16, 16), 1.0, 0.5)),
    "full": ("face_detection_full_range_sparse.safetensors", DetectorSpec(192, (4,), 0.0, 0.6)),
}


def _variant(variant: str) -> tuple[str, DetectorSpec]:
    """(weights file, spec) of a variant name; ValueError naming the choices for any other."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
    return VARIANTS[variant]


@register_model(
    "mediapipe-face-detection",
    licence="Apache-2.0 (Google, MediaPipe face detection)",
    normalisation="signed",
    size_multiple=0,
)
def mediapipe_face_detection(variant: str = "short") -> TFLiteGraph:
    """The BlazeFace network with its shipped weights: (B, 3, S, S) RGB in [-1, 1] -> (raw boxes (B, N, 16),
    score logits (B, N, 1)) for the N anchors."""
    file, _ = _variant(variant)
    from p3m.models.tflite_graph import TFLiteGraph

    return TFLiteGraph.from_file(WEIGHTS_DIR / file)


class FaceDetector(BlazeDetector):
    """Faces in an RGB image, as MediaPipe's face detection finds them: `detect(rgb)` -> list of `Detection`
    (box, the six `KEYPOINTS`, score), best first, in image pixels.

    ``variant``: "short" or "full" (see the module docstring); ``min_score``: the detection threshold (default
    MediaPipe's: 0.5 short, 0.6 full); ``device``: where the network runs; ``runtime``: "auto", "onnxruntime" or
    "torch" (`p3m.models.graph_session.open_graph`).
    """

    def __init__(
        self, variant: str = "short", *, min_score: float | None = None, device: str = "cpu", runtime: str = "auto"
    ) -> None:
        file, spec = _variant(variant)
        super().__init__(open_graph(WEIGHTS_DIR / file, device=device, runtime=runtime), spec, min_score=min_score)
