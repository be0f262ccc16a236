"""MediaPipe's single-shot detectors (BlazeFace, BlazePose's detector) on a whole image: one shared pipeline.

A detector network scores a fixed grid of SSD anchors on a square input; MediaPipe letterboxes the whole
image into that square (zero border), decodes the boxes and keypoints relative to the anchors, merges
overlapping ones with weighted non-maximum suppression (IoU 0.3) and projects them back onto the image.
`BlazeDetector` does exactly that for any `DetectorSpec`; `face_detector` and `pose_detector` hold the specs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from p3m.models.graph_session import GraphSession
from p3m.models.mediapipe_calculators import (
    Detection,
    RotatedRect,
    crop,
    decode_detections,
    letterbox,
    ssd_anchors,
    to_image,
    weighted_nms,
)

__all__ = ["BlazeDetector", "DetectorSpec"]


@dataclass(frozen=True)
class DetectorSpec:
    """How MediaPipe runs one detector: its input size, anchor strides, default threshold, input value range."""

    input_size: int
    strides: tuple[int, ...]
    interpolated_scale_aspect_ratio: float
    min_score: float
    value_range: tuple[float, float] = (-1.0, 1.0)


class BlazeDetector:
    """Detections of `net` (a `GraphSession` of a converted detector: outputs raw boxes (1, N, 4 + 2K), score
    logits (1, N, 1)) in an RGB image."""

    def __init__(self, net: GraphSession, spec: DetectorSpec, *, min_score: float | None) -> None:
        self.net = net
        self.spec = spec
        self.min_score = spec.min_score if min_score is None else float(min_score)
        self.anchors = ssd_anchors(
            spec.input_size, list(spec.strides), interpolated_scale_aspect_ratio=spec.interpolated_scale_aspect_ratio
        )

    def input_tensor(self, rgb: np.ndarray) -> tuple[np.ndarray, RotatedRect]:
        """The network's (S, S, 3) uint8 input: the whole image letterboxed; and the rectangle it covers."""
        size = self.spec.input_size
        rect = letterbox(RotatedRect.whole_image(rgb.shape[1], rgb.shape[0]), (size, size))
        return crop(rgb, rect, (size, size), border="zero"), rect

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """(H, W, 3) uint8 RGB -> detections in image pixels, best first (boxes may reach past the image edge)."""
        pixels, rect = self.input_tensor(rgb)
        low, high = self.spec.value_range
        x = pixels.transpose(2, 0, 1)[None].astype(np.float32) * np.float32((high - low) / 255.0) + np.float32(low)
        raw_boxes, raw_scores = self.net(x)
        boxes, keypoints, scores = decode_detections(
            raw_boxes[0],
            raw_scores[0, :, 0],
            self.anchors,
            self.spec.input_size,
            self.min_score,
        )
        found = []
        for box, points, score in weighted_nms(boxes, keypoints, scores):
            found.append(Detection(to_image(box.reshape(2, 2), rect).reshape(4), to_image(points, rect), score))
        return found
