"""Execute a TFLite operator list in PyTorch, op for op: the runtime of p3m's ported MediaPipe networks.

`tools/convert_tflite.py` converts a MediaPipe .tflite file once into safetensors: every constant in PyTorch
layout at its stored precision (fp16 in MediaPipe's files, so the conversion is exact; weights the file stores
sparse as their non-zero values and a bit mask, listed under "packed"), DEQUANTIZE and DENSIFY folded into the
constants, and the remaining operators as a JSON list in the metadata under "graph"::

    {"inputs": [{"name": "input_1", "shape": [1, 256, 256, 3]}],     # NHWC, as in the TFLite file
     "outputs": ["Identity", "Identity_1"],
     "ops": [{"op": "conv_2d", "in": ["input_1", "w", "b"], "out": "conv", "stride": [2, 2],
              "padding": "same", "activation": "relu6"}, ...]}

`TFLiteGraph` runs that list. 4-D tensors are held NCHW (PyTorch's layout), every other rank as TFLite holds it,
so the layout-sensitive operators (RESHAPE, CONCATENATION, MEAN, PAD, DEPTH_TO_SPACE, FULLY_CONNECTED) translate
their NHWC axes here. TensorFlow's conventions are kept where PyTorch's differ: SAME padding puts the odd pixel
after (bottom/right), SAME max pooling pads with -inf, half-pixel bilinear resizing, the transposed convolution
of MediaPipe's custom Convolution2DTransposeBias cropped TensorFlow's way. The leading (batch) dimension of
RESHAPE targets follows the input, so a graph exported for batch 1 runs on any batch.

>>> net = TFLiteGraph.from_file(path)                  # a file written by tools/convert_tflite.py
>>> outputs = net(torch.rand(1, 3, *net.input_size))   # one tensor per graph output, in the graph's order
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from p3m.models.shipped_weights import WEIGHTS_DIR

__all__ = ["ACTIVATIONS", "WEIGHTS_DIR", "TFLiteGraph", "depth_to_space", "load_graph", "same_pad", "unpack"]


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "none": lambda x: x,
    "relu": F.relu,
    "relu6": F.relu6,
    "relu_n1_to_1": lambda x: x.clamp(-1.0, 1.0),
    "tanh": torch.tanh,
}
# NHWC axis -> NCHW dimension, for 4-D tensors
_NHWC_TO_NCHW = {0: 0, 1: 2, 2: 3, 3: 1}


def same_pad(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], value: float = 0.0) -> torch.Tensor:
    """NCHW -> NCHW padded as TensorFlow's SAME (the extra pixel goes after, not before), with `value`."""
    pads = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


def depth_to_space(x: torch.Tensor, block: int) -> torch.Tensor:
    """TensorFlow's DEPTH_TO_SPACE on NCHW: channel (i*block + j)*C + c goes to pixel (i, j) of channel c.

    (PyTorch's pixel_shuffle orders the channels the other way, c*block*block + i*block + j.)
    """
    b, ch, h, w = x.shape
    c = ch // (block * block)
    y = x.reshape(b, block, block, c, h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(b, c, h * block, w * block)


def _to_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1) if x.dim() == 4 else x


def _from_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2).contiguous() if x.dim() == 4 else x


def _conv(op: dict[str, Any], x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    stride = (int(op["stride"][0]), int(op["stride"][1]))
    if op["padding"] == "same":
        x = same_pad(x, (int(w.shape[2]), int(w.shape[3])), stride)
    groups = x.shape[1] if op["op"] == "depthwise_conv_2d" else 1
    return ACTIVATIONS[op["activation"]](F.conv2d(x, w, b, stride=stride, groups=groups))


def _conv_transpose_bias(op: dict[str, Any], x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    stride, kernel = tuple(op["stride"]), tuple(w.shape[2:])
    y = F.conv_transpose2d(x, w, b, stride=stride)
    if op["padding"] == "same":  # crop the full transposed output to in*stride, TensorFlow's way
        h, wd = x.shape[2] * stride[0], x.shape[3] * stride[1]
        top = max((x.shape[2] - 1) * stride[0] + kernel[0] - h, 0) // 2
        left = max((x.shape[3] - 1) * stride[1] + kernel[1] - wd, 0) // 2
        y = y[:, :, top : top + h, left : left + wd]
    return y


def _pool(op: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    kernel, stride = (int(op["kernel"][0]), int(op["kernel"][1])), (int(op["stride"][0]), int(op["stride"][1]))
    if op["op"] == "max_pool_2d":
        if op["padding"] == "same":
            x = same_pad(x, kernel, stride, value=-math.inf)
        y = F.max_pool2d(x, kernel, stride)
    else:
        if op["padding"] != "valid":  # TFLite's SAME average excludes the padding; no ported graph uses it
            raise NotImplementedError("SAME average pooling is not ported")
        y = F.avg_pool2d(x, kernel, stride)
    return ACTIVATIONS[op["activation"]](y)


def _reshape(op: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    shape = [x.shape[0], *op["shape"][1:]]  # the exported batch of 1 follows the input
    return _from_nhwc(_to_nhwc(x).reshape(shape))


def _concatenation(op: dict[str, Any], *xs: torch.Tensor) -> torch.Tensor:
    axis = op["axis"] % xs[0].dim()
    dim = _NHWC_TO_NCHW[axis] if xs[0].dim() == 4 else axis
    return ACTIVATIONS[op["activation"]](torch.cat(xs, dim=dim))


def _mean(op: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    dims = [_NHWC_TO_NCHW[a % 4] if x.dim() == 4 else a for a in op["axes"]]
    y = x.mean(dim=dims, keepdim=op["keep_dims"])
    if x.dim() == 4 and y.dim() not in (2, 4):  # (B, C) reads the same in both layouts; 3-D would not
        raise NotImplementedError("MEAN of a 4-D tensor to a 3-D tensor is not ported")
    return y


def _pad(op: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    pads = op["paddings"]  # [[before, after]] per axis, in TFLite (NHWC) order
    if x.dim() == 4:
        pads = [pads[i] for i in (0, 3, 1, 2)]  # -> NCHW
    flat = [p for pair in reversed(pads) for p in pair]  # F.pad lists the last dimension first
    return F.pad(x, flat)


def _fully_connected(op: dict[str, Any], x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    if op["keep_num_dims"]:
        raise NotImplementedError("FULLY_CONNECTED with keep_num_dims is not ported")
    x = _to_nhwc(x).reshape(x.shape[0], -1)  # TFLite flattens in NHWC order
    return ACTIVATIONS[op["activation"]](F.linear(x, w, b))


def _resize_bilinear(op: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    """TFLite RESIZE_BILINEAR: half-pixel centres are PyTorch's align_corners=False."""
    if not op["half_pixel_centers"] and not op["align_corners"]:
        raise NotImplementedError("legacy TFLite bilinear resizing (no half-pixel centres) is not ported")
    return F.interpolate(x, size=tuple(op["size"]), mode="bilinear", align_corners=op["align_corners"])


_OPS: dict[str, Callable[..., torch.Tensor]] = {
    "conv_2d": _conv,
    "depthwise_conv_2d": _conv,
    "conv_transpose_bias": _conv_transpose_bias,
    "max_pool_2d": _pool,
    "average_pool_2d": _pool,
    "mean": _mean,
    "add": lambda op, a, b: ACTIVATIONS[op["activation"]](a + b),
    "mul": lambda op, a, b: ACTIVATIONS[op["activation"]](a * b),
    "prelu": lambda op, x, alpha: F.prelu(x, alpha),
    "hard_swish": lambda op, x: F.hardswish(x),
    "relu": lambda op, x: F.relu(x),
    "relu6": lambda op, x: F.relu6(x),
    "logistic": lambda op, x: torch.sigmoid(x),
    "tanh": lambda op, x: torch.tanh(x),
    "resize_bilinear": _resize_bilinear,
    "reshape": _reshape,
    "concatenation": _concatenation,
    "pad": _pad,
    "depth_to_space": lambda op, x: depth_to_space(x, op["block_size"]),
    "fully_connected": _fully_connected,
}


def unpack(values: torch.Tensor, mask: torch.Tensor, shape: list[int]) -> torch.Tensor:
    """A constant stored sparse (its non-zero values in order, and `numpy.packbits` of where they go) -> dense."""
    count = math.prod(shape)
    where = torch.from_numpy(np.unpackbits(mask.numpy())[:count].astype(bool))
    if int(where.sum()) != values.numel():
        raise ValueError(f"packed constant: {values.numel()} values for {int(where.sum())} places")
    dense = torch.zeros(count, dtype=values.dtype)
    dense[where] = values
    return dense.reshape(shape)


def load_graph(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, str]]:
    """A file written by tools/convert_tflite.py -> (graph, constants by name, the other metadata)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    if "graph" not in metadata:
        raise ValueError(f"{path}: no operator list in the metadata (not written by tools/convert_tflite.py)")
    graph = json.loads(metadata.pop("graph"))
    for name, shape in graph.get("packed", {}).items():
        tensors[name] = unpack(tensors.pop(name + ":values"), tensors.pop(name + ":mask"), shape)
    return graph, tensors, metadata


_Graph = TypeVar("_Graph", bound="TFLiteGraph")


class TFLiteGraph(nn.Module):
    """(B, C, H, W) float input -> the graph's outputs (4-D ones NCHW), computed in float32.

    ``graph`` is the operator list (see the module docstring), ``tensors`` its constants by name (any float
    dtype; held as float32 buffers, so `.to(device)` moves them). ``input_size`` is the (H, W) the graph was
    exported for; other sizes are refused, since the graph's RESHAPE and RESIZE sizes are fixed.
    """

    def __init__(self, graph: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        super().__init__()
        unknown = sorted({op["op"] for op in graph["ops"]} - set(_OPS))
        if unknown:
            raise NotImplementedError(f"operators not ported: {', '.join(unknown)}")
        if len(graph["inputs"]) != 1:
            raise NotImplementedError("graphs with more than one input are not ported")
        self.graph = graph
        self.input_name: str = graph["inputs"][0]["name"]
        shape = graph["inputs"][0]["shape"]
        self.input_size: tuple[int, int] = (int(shape[1]), int(shape[2]))
        self.input_channels = int(shape[3])
        self.output_names: list[str] = list(graph["outputs"])
        self._keys = {name: f"c{i}" for i, name in enumerate(sorted(tensors))}  # buffer names cannot hold '/'
        for name, value in tensors.items():
            self.register_buffer(self._keys[name], value.float())

    @classmethod
    def from_file(cls: type[_Graph], path: str | Path) -> _Graph:
        """Load a file written by tools/convert_tflite.py."""
        graph, tensors, _ = load_graph(path)
        return cls(graph, tensors)

    def run(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every graph output by name."""
        expected = (self.input_channels, *self.input_size)
        if image.dim() != 4 or tuple(image.shape[1:]) != expected:
            raise ValueError(f"expected input of (B, {', '.join(map(str, expected))}), got {tuple(image.shape)}")
        values: dict[str, torch.Tensor] = {self.input_name: image}
        const = {name: getattr(self, key) for name, key in self._keys.items()}
        for op in self.graph["ops"]:
            args = [values[n] if n in values else const[n] for n in op["in"]]
            values[op["out"]] = _OPS[op["op"]](op, *args)
        return {name: values[name] for name in self.output_names}

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.run(image)
        return tuple(outputs[name] for name in self.output_names)
