"""Inference-only module swaps that compute what a layer computes, with CPU kernels that run it faster.

`rewrite_for_inference(model, dtype)` replaces, in place:

- every `nn.MaxPool2d(2, stride=s)` without padding or indices (P3M-Net's sBFI subsampling of the stem) by
  `StridedMax2x2`: the maximum of four strided views. The same numbers in every dtype (a maximum has no rounding),
  faster than torch's channels_last pooling kernel (0.12 s less for R34 at 1056x1600 on the 2-core CPU dev
  machine, benchmarks/bench_rewrites.py).
- in bf16/fp16 only, every 3x3 `nn.Conv2d` with one output channel (P3M-Net's `decoder_final_l`, at full
  resolution) by `OneChannelConv3x3`: a matrix product over the channels giving the 9 taps of each pixel, then the
  9 shifted planes summed in fp32. oneDNN has no good kernel for a single output channel (12 GFLOP/s on the 2-core
  CPU dev machine, 0.16-0.3 s for R34 at 1056x1600; 0.1-0.2 s less this way). The sum is rounded per tap instead
  of once, which in bf16 is within the precision's own rounding; fp32 keeps the convolution, op for op.

Tried and left out: the RGB stem with a fourth, zero input channel (a 7x7 conv from 3 channels runs at ~50 GFLOP/s
in bf16; padded, no faster end to end once the padding copy is paid).

Why here and not in the architectures: the model files stay the published computation (their state dicts load
the published checkpoints); these swaps are a property of where a network runs, like BatchNorm folding
(`p3m.infer.runtime.fold_batch_norms`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["OneChannelConv3x3", "StridedMax2x2", "replace_children", "rewrite_for_inference"]


class StridedMax2x2(nn.Module):
    """`nn.MaxPool2d(kernel_size=2, stride=s)` ([B,C,H,W] -> [B,C,(H-2)//s+1,(W-2)//s+1]) as the elementwise maximum
    of its four strided views: the same values, NaN included (both propagate it)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        s = self.stride
        h, w = (x.shape[-2] - 2) // s + 1, (x.shape[-1] - 2) // s + 1
        rows0, rows1 = slice(0, (h - 1) * s + 1, s), slice(1, (h - 1) * s + 2, s)
        cols0, cols1 = slice(0, (w - 1) * s + 1, s), slice(1, (w - 1) * s + 2, s)
        top = torch.maximum(x[..., rows0, cols0], x[..., rows0, cols1])
        bottom = torch.maximum(x[..., rows1, cols0], x[..., rows1, cols1])
        return torch.maximum(top, bottom)


class OneChannelConv3x3(nn.Module):
    """A 3x3, stride-1, padding-1 convolution to one channel: [B,C,H,W] -> [B,1,H,W] in the input's dtype.

    taps = x (pixels x C) @ W (C x 9), one matrix product for the whole image; out[y, x] = bias + the sum over the
    kernel offsets (dy, dx) of taps[y + dy - 1, x + dx - 1, (dy, dx)], accumulated in fp32 (zero outside).
    """

    taps: Tensor
    bias: Tensor | None

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not _is_one_channel_3x3(conv):
            raise ValueError("OneChannelConv3x3 takes a 3x3, stride-1, padding-1, ungrouped conv to one channel")
        # [9, C]: row k = dy*3 + dx holds the weights of kernel offset (dy, dx)
        self.register_buffer("taps", conv.weight.detach()[0].permute(1, 2, 0).reshape(9, -1).contiguous())
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        taps = F.linear(x.permute(0, 2, 3, 1), self.taps)  # [B,H,W,9]; a view without a copy when channels_last
        out = torch.zeros(b, h, w, dtype=torch.float32, device=x.device)
        if self.bias is not None:
            out += self.bias.float()
        for k in range(9):
            dy, dx = divmod(k, 3)
            y0, y1, x0, x1 = max(0, 1 - dy), min(h, h + 1 - dy), max(0, 1 - dx), min(w, w + 1 - dx)
            out[:, y0:y1, x0:x1] += taps[:, y0 + dy - 1 : y1 + dy - 1, x0 + dx - 1 : x1 + dx - 1, k]
        return out.unsqueeze(1).to(x.dtype)


def _is_one_channel_3x3(conv: nn.Conv2d) -> bool:
    return (
        conv.out_channels == 1
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def _is_plain_2x2_max(pool: nn.MaxPool2d) -> bool:
    k, s = pool.kernel_size, pool.stride
    return (
        k in (2, (2, 2))
        and isinstance(s, int)
        and s >= 2
        and pool.padding in (0, (0, 0))
        and pool.dilation in (1, (1, 1))
        and not pool.return_indices
        and not pool.ceil_mode
    )


def rewrite_for_inference(model: nn.Module, dtype: torch.dtype) -> dict[str, int]:
    """Swap the layers named in the module docstring for their faster equivalents, in place; `dtype` is the one the
    model runs in (its weights already cast). Returns how many of each kind were swapped (zeros for a model with
    none). Eval mode only: the swapped modules keep no gradients."""
    low_precision = dtype in (torch.bfloat16, torch.float16)
    counts = {"strided_max": 0, "one_channel_conv": 0}
    swapped: dict[nn.Module, nn.Module] = {}  # a module registered twice (P3M-Net's aliases) gets one replacement
    for module in model.modules():  # each module once, however often it is registered
        new, kind = _faster_equivalent(module, low_precision) if module is not model else (None, "")
        if new is not None:
            swapped[module] = new
            counts[kind] += 1
    replace_children(model, swapped)
    return counts


def replace_children(model: nn.Module, swap: dict[nn.Module, nn.Module]) -> None:
    """Replace each child module found in `swap` by its value, wherever it is attached (modules can be shared)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if child in swap:
                setattr(parent, name, swap[child])


def _faster_equivalent(module: nn.Module, low_precision: bool) -> tuple[nn.Module | None, str]:
    """(the replacement, its kind) for a module `rewrite_for_inference` swaps, else (None, "")."""
    if isinstance(module, nn.MaxPool2d) and _is_plain_2x2_max(module):
        return StridedMax2x2(int(module.stride)), "strided_max"  # type: ignore[arg-type]  # an int, checked
    if low_precision and isinstance(module, nn.Conv2d) and _is_one_channel_3x3(module):
        return OneChannelConv3x3(module), "one_channel_conv"
    return None, ""
