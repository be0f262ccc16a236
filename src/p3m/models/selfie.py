"""MediaPipe selfie segmentation in PyTorch: person probability of a 256x256 (or 144x256) RGB image.

The network (a MobileNetV3-style encoder with squeeze-excitation and a small upsampling decoder, Apache-2.0,
Google) ships as `weights/selfie_segmentation*.safetensors`, converted once from MediaPipe's .tflite files by
`tools/convert_selfie_tflite.py`: every constant in PyTorch layout and fp16 as stored (exact), and the TFLite
operator list as JSON metadata. `SelfieSegmentation` executes that list op for op, with TensorFlow's SAME
padding and half-pixel bilinear resizing, so it is checkable against the TFLite graph (tests/test_selfie.py).

>>> from p3m import models
>>> net = models.create("mediapipe-selfie")            # 256x256 general model, weights included
>>> prob = net(torch.rand(1, 3, 256, 256))             # (1, 1, 256, 256) in [0, 1]
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

from p3m.models.registry import register_model

__all__ = ["WEIGHTS", "SelfieSegmentation", "weights_path"]

WEIGHTS_DIR = Path(__file__).with_name("weights")
WEIGHTS = {"general": "selfie_segmentation.safetensors", "landscape": "selfie_segmentation_landscape.safetensors"}


def weights_path(variant: str = "general") -> Path:
    """The shipped safetensors file of a variant ("general" 256x256, "landscape" 144x256)."""
    return WEIGHTS_DIR / WEIGHTS[variant]


def _same_pad(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    """NCHW -> NCHW padded as TensorFlow's SAME (the extra pixel goes after, not before)."""
    pads = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


def _activate(x: torch.Tensor, activation: str) -> torch.Tensor:
    return F.relu(x) if activation == "relu" else x


def _resize_bilinear(x: torch.Tensor, size: list[int], align_corners: bool, half_pixel: bool) -> torch.Tensor:
    """NCHW -> NCHW at `size`, TFLite RESIZE_BILINEAR (half-pixel centres = PyTorch's align_corners=False)."""
    if not half_pixel and not align_corners:
        raise NotImplementedError("legacy TFLite bilinear resizing (no half-pixel centres) is not ported")
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


class SelfieSegmentation(nn.Module):
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) person probability; H, W the graph's input size."""

    def __init__(self, graph: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.graph = graph
        self.input_size = tuple(graph["input_shape"][1:3])
        self._keys = {name: f"c{i}" for i, name in enumerate(sorted(tensors))}  # buffer names cannot hold '/'
        for name, value in tensors.items():
            self.register_buffer(self._keys[name], value.float())

    @classmethod
    def from_file(cls, path: str | Path) -> SelfieSegmentation:
        """Load a file written by tools/convert_selfie_tflite.py."""
        with safe_open(str(path), framework="pt") as f:
            graph = json.loads((f.metadata() or {})["graph"])
            names = f.keys()  # a safetensors file handle, not a dict: it is not iterable
            tensors = {k: f.get_tensor(k) for k in names}
        return cls(graph, tensors)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if tuple(image.shape[2:]) != self.input_size:
            raise ValueError(f"expected input of {self.input_size}, got {tuple(image.shape[2:])}")
        values: dict[str, torch.Tensor] = {self.graph["input"]: image}
        const = {name: getattr(self, key) for name, key in self._keys.items()}

        def get(name: str) -> torch.Tensor:
            return values[name] if name in values else const[name]

        for op in self.graph["ops"]:
            kind, args = op["op"], [get(n) for n in op["in"]]
            if kind in ("conv_2d", "depthwise_conv_2d"):
                x, w, b = args
                stride = tuple(op["stride"])
                if op["padding"] == "same":
                    x = _same_pad(x, tuple(w.shape[2:]), stride)
                groups = x.shape[1] if kind == "depthwise_conv_2d" else 1
                y = _activate(F.conv2d(x, w, b, stride=stride, groups=groups), op["activation"])
            elif kind == "conv_transpose_bias":
                x, w, b = args
                stride, kernel = tuple(op["stride"]), tuple(w.shape[2:])
                y = F.conv_transpose2d(x, w, b, stride=stride)
                if op["padding"] == "same":  # crop the full transposed output to in*stride, TF's way
                    h, wd = x.shape[2] * stride[0], x.shape[3] * stride[1]
                    top = max((x.shape[2] - 1) * stride[0] + kernel[0] - h, 0) // 2
                    left = max((x.shape[3] - 1) * stride[1] + kernel[1] - wd, 0) // 2
                    y = y[:, :, top : top + h, left : left + wd]
            elif kind == "average_pool_2d":
                (x,) = args
                if op["padding"] != "valid":
                    raise NotImplementedError("SAME average pooling is not ported")
                y = _activate(F.avg_pool2d(x, tuple(op["kernel"]), tuple(op["stride"])), op["activation"])
            elif kind == "mean":
                (x,) = args
                dims = [{1: 2, 2: 3, 3: 1}[a] for a in op["axes"]]  # NHWC axes -> NCHW dims
                y = x.mean(dim=dims, keepdim=op["keep_dims"])
            elif kind == "add":
                y = _activate(args[0] + args[1], op["activation"])
            elif kind == "mul":
                y = _activate(args[0] * args[1], op["activation"])
            elif kind == "hard_swish":
                y = F.hardswish(args[0])
            elif kind == "relu":
                y = F.relu(args[0])
            elif kind == "logistic":
                y = torch.sigmoid(args[0])
            elif kind == "resize_bilinear":
                y = _resize_bilinear(args[0], op["size"], op["align_corners"], op["half_pixel_centers"])
            else:
                raise NotImplementedError(f"operator {kind!r} is not ported")
            values[op["out"]] = y
        return values[self.graph["output"]]


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
