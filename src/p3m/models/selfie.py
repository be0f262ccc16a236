"""MediaPipe selfie segmentation in PyTorch: person probability of a 256x256 (or 144x256) RGB image.

The network (a MobileNetV3-style encoder with squeeze-excitation and a small upsampling decoder, Apache-2.0,
Google) ships as `weights/selfie_segmentation*.safetensors`, converted once from MediaPipe's .tflite files by
`tools/convert_tflite.py`: every constant in PyTorch layout and fp16 as stored (exact), and the TFLite operator
list as JSON metadata. `SelfieSegmentation` executes that list op for op (`p3m.models.tflite_graph`), so it is
checkable against the TFLite graph (tests/test_selfie.py).

>>> from p3m import models
>>> net = models.create("mediapipe-selfie")            # 256x256 general model, weights included
>>> prob = net(torch.rand(1, 3, 256, 256))             # (1, 1, 256, 256) in [0, 1]
"""

from __future__ import annotations

import torch

from p3m.models.registry import register_model
from p3m.models.shipped_weights import SELFIE_WEIGHTS, selfie_weights_path
from p3m.models.tflite_graph import TFLiteGraph

__all__ = ["WEIGHTS", "SelfieSegmentation", "weights_path"]

WEIGHTS = SELFIE_WEIGHTS
weights_path = selfie_weights_path


class SelfieSegmentation(TFLiteGraph):
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) person probability; H, W the graph's input size."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (prob,) = super().forward(image)
        return prob


@register_model(
    "mediapipe-selfie",
    licence="Apache-2.0 (Google, MediaPipe selfie segmentation)",
    normalisation="unit",
    size_multiple=0,
)
def mediapipe_selfie(variant: str = "general") -> SelfieSegmentation:
    """MediaPipe selfie segmentation with its shipped weights (variant "general" or "landscape")."""
    if variant not in WEIGHTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(WEIGHTS)}")
    return SelfieSegmentation.from_file(weights_path(variant))
