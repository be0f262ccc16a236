"""The inference-only layer swaps of `p3m.infer.rewrites`: each against the torch layer it replaces, and the
swapped P3M-Net against the eager fp32 network (the bf16 tolerance of tests/test_models.py)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from p3m import models
from p3m.infer.rewrites import OneChannelConv3x3, StridedMax2x2, rewrite_for_inference
from p3m.infer.runtime import InferenceRunner


def _random(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def r34_small() -> nn.Module:
    torch.manual_seed(0)
    return models.create("p3m-r34", width=16).eval()


@pytest.mark.parametrize("stride", [2, 3, 4, 8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [True, False])
def test_strided_max_is_max_pool(stride, dtype, channels_last):
    x = torch.relu(_random(2, 5, 37, 50, seed=stride)).to(dtype)  # odd sizes; many exact ties at zero
    x[0, 1, 1, 0] = float("nan")  # inside the first window at every stride
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    want = nn.MaxPool2d(2, stride=stride)(x)
    got = StridedMax2x2(stride)(x)
    assert got.shape == want.shape and got.dtype == dtype
    assert torch.equal(got.isnan(), want.isnan()) and got.isnan().any()
    assert torch.equal(got.nan_to_num(), want.nan_to_num())


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 16, 32, 48), (2, 7, 9, 5)])
def test_one_channel_conv_is_the_convolution(bias, shape):
    conv = nn.Conv2d(shape[1], 1, 3, padding=1, bias=bias)
    x = _random(*shape, seed=1).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        want = conv(x)
        got = OneChannelConv3x3(conv)(x)
    assert got.shape == want.shape == (shape[0], 1, *shape[2:])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)  # fp32: the same sum, another order
    # bf16: within what bf16 itself rounds (each of the 9 taps is rounded once, the sum is fp32)
    with torch.no_grad():
        low = conv.to(torch.bfloat16)
        got16 = OneChannelConv3x3(low)(x.to(torch.bfloat16))
        exact = F.conv2d(
            x.to(torch.bfloat16).float(), low.weight.float(), None if low.bias is None else low.bias.float(), padding=1
        )
    assert got16.dtype == torch.bfloat16
    assert (got16.float() - exact).abs().max() <= 2**-6 * exact.abs().max()


def test_one_channel_conv_refuses_other_convolutions():
    for conv in (nn.Conv2d(4, 2, 3, padding=1), nn.Conv2d(4, 1, 3), nn.Conv2d(4, 1, 5, padding=2)):
        with pytest.raises(ValueError, match="3x3"):
            OneChannelConv3x3(conv)


def _swapped(model: nn.Module) -> list[str]:
    return sorted(type(m).__name__ for m in model.modules() if type(m).__module__ == "p3m.infer.rewrites")


def test_rewrite_counts_by_precision(r34_small):
    fp32 = InferenceRunner(r34_small, "cpu", precision="fp32").model
    assert _swapped(fp32) == ["StridedMax2x2"] * 3  # the three sBFI subsamplings: exact, so fp32 gets them too
    bf16 = InferenceRunner(r34_small, "cpu", precision="bf16").model
    assert _swapped(bf16) == ["OneChannelConv3x3"] + ["StridedMax2x2"] * 3
    assert isinstance(bf16.decoder_final_l, OneChannelConv3x3)
    assert _swapped(InferenceRunner(r34_small, "cpu", precision="bf16", rewrite=False).model) == []
    assert _swapped(r34_small) == []  # the caller's model untouched
    assert rewrite_for_inference(nn.Sequential(nn.Conv2d(4, 4, 1)), torch.bfloat16) == {
        "strided_max": 0,
        "one_channel_conv": 0,
    }


def test_rewritten_network_matches_the_eager_one(r34_small):
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 8, generator=torch.Generator().manual_seed(3)), (96, 128))
    x = (x - 0.45) / 0.225
    swapped = copy.deepcopy(r34_small)
    assert rewrite_for_inference(swapped, torch.float32)["strided_max"] == 3
    with torch.no_grad():
        ref = r34_small(x)
        for a, b in zip(swapped(x), ref, strict=True):  # fp32: exact swaps only, the same numbers
            assert torch.equal(a, b)
    out = InferenceRunner(r34_small, "cpu", precision="bf16")(x)
    # the bf16 tolerance of tests/test_models.py::test_runner_bf16_close_to_fp32
    assert (out.local_alpha - ref.local_alpha).abs().max() < 2e-2
    same = out.global_logits.argmax(1) == ref.global_logits.argmax(1)
    assert same.float().mean() > 0.98
