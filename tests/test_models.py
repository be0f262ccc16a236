"""Tests for p3m.models: R34 layout/counts, shared blocks, transformer decoder, registry, checkpoints, speed paths.

Reference numbers come from docs p3m-reference.md sections 3, 4, 5.2-5.4, 6.2-6.3, 7.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from p3m import models
from p3m.errors import CheckpointError, ModelArgumentError, P3MError, UnknownModelError
from p3m.infer.runtime import DTYPES, InferenceRunner, fold_batch_norms, prepare_for_inference, resolve_precision
from p3m.models import P3MOutput, fuse, registry
from p3m.models.checkpoint import load_checkpoint, load_model, read_state_dict, save_checkpoint
from p3m.models.counting import count_flops, count_parameters
from p3m.models.p3mnet_transformer import (
    SWIN_T_CHANNELS,
    VITAE_S_CHANNELS,
    TransformerMattingDecoder,
    TransformerP3MNet,
)
from tests.reference.p3mnet import published_fusion, published_r34_forward, published_transformer_decoder_forward

torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def r34_full() -> nn.Module:
    """The published-width R34 (built once: only its layout and counts are used)."""
    torch.manual_seed(0)
    return models.create("p3m-r34")


@pytest.fixture(scope="module")
def r34_small() -> nn.Module:
    torch.manual_seed(0)
    model = models.create("p3m-r34", width=16).eval()
    _randomise_bn(model)
    return model


def _randomise_bn(model: nn.Module, seed: int = 1) -> None:
    """Non-trivial BN statistics so checkpoint tests really compare buffers."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
            m.num_batches_tracked.fill_(7)


def _image(b: int = 1, h: int = 96, w: int = 64, seed: int = 0) -> torch.Tensor:
    """A smooth, normalised-looking input (a random-weight net on noise is a poor proxy)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(b, 3, h // 16, w // 16, generator=g)
    img = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (img - mean) / std


# ---------------------------------------------------------------------------------------------- R34 layout

R34_PREFIX_COUNTS = {
    "resnet": 218, "encoder0": 6, "encoder1": 36, "encoder2": 54, "encoder3": 78, "encoder4": 42,
    "tfi_3": 7, "tfi_2": 7, "tfi_1": 7, "tfi_0": 7,
    "sbfi_2": 8, "sbfi_1": 8, "sbfi_0": 8,
    "dbfi_2": 9, "dbfi_1": 9, "dbfi_0": 9,
    "decoder4_g": 21, "decoder3_g": 21, "decoder2_g": 21, "decoder1_g": 21, "decoder0_g": 16,
    "decoder4_l": 21, "decoder3_l": 21, "decoder2_l": 21, "decoder1_l": 21, "decoder0_l": 14,
    "decoder_final_l": 2,
}  # fmt: skip

R34_MODULE_PARAMS_M = {
    "resnet": 21.798, "decoder4_g": 5.902, "decoder4_l": 5.902, "decoder3_g": 1.476, "decoder3_l": 1.476,
    "decoder2_g": 0.370, "decoder2_l": 0.370, "decoder1_g": 0.111, "decoder1_l": 0.111,
    "decoder0_g": 0.076, "decoder0_l": 0.074, "decoder_final_l": 0.001,
    "tfi_3": 0.918, "tfi_2": 0.230, "tfi_1": 0.057, "tfi_0": 0.057,
    "sbfi_2": 0.160, "sbfi_1": 0.041, "sbfi_0": 0.041, "dbfi_2": 0.192, "dbfi_1": 0.057, "dbfi_0": 0.057,
}  # fmt: skip


def test_r34_parameter_count(r34_full):
    assert count_parameters(r34_full) == 39_478_060
    assert sum(p.numel() for p in r34_full.parameters()) == 39_478_060  # aliases counted once
    assert count_parameters(r34_full) - count_parameters(r34_full.resnet.fc) == 38_965_060


def test_r34_module_parameter_counts(r34_full):
    for name, expected in R34_MODULE_PARAMS_M.items():
        got = count_parameters(getattr(r34_full, name)) / 1e6
        assert round(got, 3) == pytest.approx(expected, abs=1e-9), name


def test_r34_state_dict_keys_per_prefix(r34_full):
    sd = r34_full.state_dict()
    assert len(sd) == 713
    assert dict(Counter(k.split(".")[0] for k in sd)) == R34_PREFIX_COUNTS


def test_r34_state_dict_exact_names(r34_full):
    keys = set(r34_full.state_dict())
    expected = [
        "resnet.conv1.weight", "resnet.bn1.running_var", "resnet.bn1.num_batches_tracked",
        "resnet.layer1.2.conv2.weight", "resnet.layer2.0.downsample.0.weight",
        "resnet.layer2.0.downsample.1.running_mean", "resnet.layer3.5.bn2.bias",
        "resnet.layer4.0.downsample.1.num_batches_tracked", "resnet.fc.weight", "resnet.fc.bias",
        "encoder0.0.weight", "encoder0.1.weight", "encoder0.1.num_batches_tracked",
        "encoder1.0.0.conv1.weight", "encoder1.0.2.bn2.running_var",
        "encoder2.0.downsample.0.weight", "encoder2.3.conv2.weight", "encoder3.5.bn1.bias",
        "encoder4.2.bn2.num_batches_tracked",
        "tfi_3.transform.weight", "tfi_0.conv1.weight", "tfi_2.bn1.num_batches_tracked",
        "sbfi_2.transform1.weight", "sbfi_1.transform2.weight", "sbfi_0.bn1.running_mean",
        "dbfi_2.transform2.weight", "dbfi_1.conv2.weight", "dbfi_0.bn1.weight",
        "decoder4_g.0.weight", "decoder4_g.0.bias", "decoder4_g.7.running_var", "decoder1_g.6.bias",
        "decoder0_g.6.weight", "decoder0_g.6.bias", "decoder0_g.4.num_batches_tracked",
        "decoder4_l.7.weight", "decoder0_l.3.bias", "decoder0_l.4.running_mean",
        "decoder_final_l.weight", "decoder_final_l.bias",
    ]  # fmt: skip
    missing = [k for k in expected if k not in keys]
    assert not missing
    absent = [
        "decoder0_g.7.weight",
        "decoder0_l.6.weight",
        "decoder_final_g.weight",
        "tfi_3.conv1.bias",
        "sbfi_2.conv1.bias",
        "dbfi_2.conv2.bias",
        "resnet.conv1.bias",
        "resnet.maxpool1.weight",
    ]
    assert not [k for k in absent if k in keys]


def test_r34_shapes_of_key_tensors(r34_full):
    sd = r34_full.state_dict()
    assert sd["resnet.conv1.weight"].shape == (64, 3, 7, 7)
    assert sd["resnet.fc.weight"].shape == (1000, 512)
    assert sd["tfi_3.transform.weight"].shape == (128, 256, 1, 1)
    assert sd["tfi_3.conv1.weight"].shape == (256, 384, 3, 3)
    assert sd["sbfi_2.transform2.weight"].shape == (64, 64, 1, 1)
    assert sd["dbfi_0.transform2.weight"].shape == (32, 512, 1, 1)
    assert sd["dbfi_0.conv2.weight"].shape == (3, 64, 3, 3)
    assert sd["decoder0_g.6.weight"].shape == (3, 64, 3, 3)
    assert sd["decoder4_l.6.weight"].shape == (256, 512, 3, 3)


def test_r34_aliases_share_modules(r34_full):
    m = r34_full
    assert m.encoder0[0] is m.resnet.conv1 and m.encoder0[1] is m.resnet.bn1
    assert m.encoder1[0] is m.resnet.layer1
    assert m.encoder2 is m.resnet.layer2 and m.encoder3 is m.resnet.layer3 and m.encoder4 is m.resnet.layer4
    assert [m.mp0, m.mp1, m.mp2, m.mp3, m.mp4] == [
        m.resnet.maxpool1,
        m.resnet.maxpool2,
        m.resnet.maxpool3,
        m.resnet.maxpool4,
        m.resnet.maxpool5,
    ]
    sd = m.state_dict()
    assert sd["encoder3.4.conv1.weight"].data_ptr() == sd["resnet.layer3.4.conv1.weight"].data_ptr()


@pytest.mark.slow
def test_r34_flops_at_512(r34_full):
    flops = count_flops(r34_full, (1, 3, 512, 512))
    assert flops == pytest.approx(117.3e9, rel=5e-3)


@pytest.mark.slow  # keeps the fast loop under a minute (about 1 s of CPU); make test runs it
def test_count_flops_matches_hand_formula():
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=4)
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            y = self.dw(self.conv(x))  # [1,8,6,4]
            t = y.flatten(2).transpose(1, 2)  # [1,24,8]
            a = t @ t.transpose(1, 2)  # [1,24,24]: 24*24*8 MACs
            return self.fc(torch.matmul(a, t))  # [1,24,8]: 24*8*24 MACs; fc 24*5*8 MACs

    macs = 8 * 6 * 4 * 3 * 9 + 8 * 6 * 4 * 2 * 9 + 24 * 24 * 8 + 24 * 8 * 24 + 24 * 5 * 8
    assert count_flops(Tiny(), (1, 3, 6, 4)) == 2 * macs
    assert count_flops(Tiny(), (1, 3, 6, 4), matmuls=False) == 2 * (macs - 2 * 24 * 24 * 8)
    assert count_flops(Tiny(), (1, 3, 6, 4), device="cpu") == 2 * macs


@pytest.mark.slow
def test_count_flops_einsum_and_sdpa():
    class Attn(nn.Module):
        def forward(self, x):
            q = k = v = x.flatten(2).transpose(1, 2).reshape(1, 2, 12, 4)  # [B=1, heads 2, L=12, E=4]
            w = torch.ones(2, 3, 4)
            p = torch.einsum("bhtd,hmd->bhtm", q, w)  # 2*12*3*4 MACs
            return F.scaled_dot_product_attention(q, k, v) + p.sum()  # 2 heads * (12*12*4 + 12*12*4) MACs

    macs = 2 * 12 * 3 * 4 + 2 * (12 * 12 * 4 * 2)
    assert count_flops(Attn(), (1, 8, 3, 4)) == 2 * macs
    assert count_flops(Attn(), (1, 8, 3, 4), matmuls=False) == 0
    assert torch.einsum is not None and F.scaled_dot_product_attention.__name__ == "scaled_dot_product_attention"


def test_width_scales_channels():
    m = models.create("p3m-r34", width=16)
    sd = m.state_dict()
    assert len(sd) == 713
    assert sd["resnet.conv1.weight"].shape == (16, 3, 7, 7)
    assert sd["decoder4_g.0.weight"].shape == (128, 128, 3, 3)
    assert sd["decoder0_g.6.weight"].shape == (3, 16, 3, 3)
    assert sd["dbfi_2.transform2.weight"].shape == (16, 128, 1, 1)
    assert m.arch_kwargs == {"width": 16}
    with pytest.raises(ValueError, match="width"):
        models.create("p3m-r34", width=15)


# ---------------------------------------------------------------------------------------------- forward


def test_integration_modules_match_literal_formulas():
    torch.manual_seed(3)
    tfi, sbfi, dbfi = models.blocks.TFI(8), models.blocks.SBFI(8, 6, 4), models.blocks.DBFI(8, 12, 8)
    for m in (tfi, sbfi, dbfi):
        _randomise_bn(m)
        m.eval()
    s, mm, e = torch.randn(3, 2, 8, 4, 4).unbind(0)
    e0 = torch.randn(2, 6, 16, 16)
    deep = torch.randn(2, 12, 1, 1)

    def bn(mod, x):
        return F.batch_norm(x, mod.running_mean, mod.running_var, mod.weight, mod.bias, False, 0.0, mod.eps)

    phi = tfi.transform.weight
    cat = torch.cat([F.conv2d(s, phi), F.conv2d(mm, phi), F.conv2d(e, phi)], 1)
    ref = F.relu(bn(tfi.bn1, F.conv2d(cat, tfi.conv1.weight, padding=1)))
    torch.testing.assert_close(tfi(s, mm, e), ref)

    sub = F.max_pool2d(e0, kernel_size=2, stride=4)
    cat = torch.cat([F.conv2d(mm, sbfi.transform1.weight), F.conv2d(sub, sbfi.transform2.weight)], 1)
    ref = mm + F.relu(bn(sbfi.bn1, F.conv2d(cat, sbfi.conv1.weight, padding=1)))
    torch.testing.assert_close(sbfi(mm, e0), ref)

    g = torch.randn(2, 8, 8, 8)  # semantic map at 1/4; deep 1x1 at 1/32 -> x8
    x2 = F.interpolate(F.conv2d(deep, dbfi.transform2.weight), scale_factor=8, mode="bilinear", align_corners=False)
    cat = torch.cat([F.conv2d(g, dbfi.transform1.weight), x2], 1)
    out = g + F.relu(bn(dbfi.bn1, F.conv2d(cat, dbfi.conv1.weight, padding=1)))
    side = F.interpolate(F.conv2d(out, dbfi.conv2.weight, padding=1), scale_factor=4, mode="bilinear",
                         align_corners=False)  # fmt: skip
    got_out, got_side = dbfi(g, deep)
    torch.testing.assert_close(got_out, out)
    torch.testing.assert_close(got_side, side)
    assert got_side.shape == (2, 3, 32, 32)


def test_forward_shapes_and_order(r34_small):
    x = _image(2, 96, 64)
    with torch.no_grad():
        out = r34_small(x)
    assert isinstance(out, P3MOutput) and isinstance(out, tuple) and len(out) == 6
    assert out._fields == ("global_logits", "local_alpha", "fused_alpha", "side2", "side1", "side0")
    shapes = [tuple(t.shape) for t in out]
    assert shapes == [(2, 3, 96, 64), (2, 1, 96, 64), (2, 1, 96, 64), (2, 3, 96, 64), (2, 3, 96, 64), (2, 3, 96, 64)]
    assert out[0] is out.global_logits and out[2] is out.fused_alpha
    assert out.local_alpha.min() >= 0 and out.local_alpha.max() <= 1


def test_forward_matches_published_wiring(r34_small):
    x = _image(1, 64, 96, seed=5)
    with torch.no_grad():
        ours = r34_small(x)
        ref = published_r34_forward(r34_small, x)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_fusion_rule_matches_published_code():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 16, 8, generator=g)
    local = torch.rand(2, 1, 16, 8, generator=g)
    fused = fuse(logits, local)
    torch.testing.assert_close(fused, published_fusion(logits, local), rtol=0, atol=0)
    cls = logits.argmax(1, keepdim=True)
    assert torch.all(fused[cls == 0] == 0) and torch.all(fused[cls == 2] == 1)
    assert torch.equal(fused[cls == 1], local[cls == 1])


def test_fused_output_is_rule_applied_to_outputs(r34_small):
    with torch.no_grad():
        out = r34_small(_image(1, 64, 64, seed=2))
    torch.testing.assert_close(out.fused_alpha, published_fusion(out.global_logits, out.local_alpha), rtol=0, atol=0)


@pytest.mark.parametrize(
    "shape, pattern",
    [
        ((1, 3, 100, 64), r"100x64.*height 96 or 128"),
        ((1, 3, 64, 70), r"64x70.*width 64 or 96"),
        ((1, 3, 16, 64), r"16x64.*height 32"),
        ((3, 64, 64), r"\[B,3,H,W\].*\(3, 64, 64\)"),
        ((1, 1, 64, 64), r"\[B,3,H,W\].*\(1, 1, 64, 64\)"),
    ],
)
def test_bad_input_size_raises_clear_error(r34_small, shape, pattern):
    with pytest.raises(ValueError, match=pattern):
        r34_small(torch.zeros(shape))


def test_deterministic_in_eval(r34_small):
    x = _image(1, 64, 64, seed=9)
    with torch.no_grad():
        a = r34_small(x)
        b = r34_small(x)
    for t, u in zip(a, b, strict=True):
        assert torch.equal(t, u)
    torch.manual_seed(0)
    twin = models.create("p3m-r34", width=16).eval()
    _randomise_bn(twin)
    with torch.no_grad():
        c = twin(x)
    for t, u in zip(a, c, strict=True):
        assert torch.equal(t, u)


# ---------------------------------------------------------------------------------------------- transformer decoder


def _decoder_prefix_counts() -> dict[str, int]:
    counts = {f"tfi_{i}": 7 for i in range(4)} | {f"sbfi_{i}": 8 for i in range(3)} | {f"dbfi_{i}": 9 for i in range(3)}
    counts |= {f"decoder{i}_{b}": 21 for i in range(1, 5) for b in "gl"}
    counts |= {"decoder0_g": 16, "decoder0_l": 14, "decoder_final_g": 2, "decoder_final_l": 2}
    return counts


@pytest.mark.parametrize("channels, params_m", [(SWIN_T_CHANNELS, 18.653), (VITAE_S_CHANNELS, 8.297)])
def test_transformer_decoder_counts(channels, params_m):
    dec = TransformerMattingDecoder(channels)
    assert round(count_parameters(dec) / 1e6, 3) == params_m
    sd = dec.state_dict()
    assert len(sd) == 281
    assert dict(Counter(k.split(".")[0] for k in sd)) == _decoder_prefix_counts()
    c_deep, c3, c2, _c1, c0, stem = channels
    assert sd["decoder4_g.0.weight"].shape == (c3, c_deep, 3, 3)  # first conv changes channels
    assert sd["decoder0_g.6.weight"].shape == (stem, stem, 3, 3) and "decoder0_g.6.bias" in sd
    assert sd["decoder_final_g.weight"].shape == (3, stem, 3, 3)
    assert sd["decoder0_l.3.weight"].shape == (stem, stem, 3, 3)
    assert sd["sbfi_2.transform2.weight"].shape == (c2 // 2, stem, 1, 1)
    assert sd["dbfi_0.transform2.weight"].shape == (c0 // 2, c_deep, 1, 1)


class _FakeEncoder(nn.Module):
    """Encoder with the p3m.models.swin/vitae interface: convs + 2x2 max-pools with indices."""

    def __init__(self, stem: int, c: tuple[int, int, int, int], deep: int) -> None:
        super().__init__()
        self.proj1 = nn.Conv2d(3, stem, 3, padding=1)
        self.proj2 = nn.Conv2d(stem, c[0], 3, padding=1)
        self.proj3 = nn.Conv2d(c[0], c[1], 3, padding=1)
        self.proj4 = nn.Conv2d(c[1], c[2], 3, padding=1)
        self.proj5 = nn.Conv2d(c[2], c[3], 3, padding=1)
        self.proj6 = nn.Conv2d(c[3], deep, 1)

    def forward(self, x):
        feas, indices = [], []
        for proj in (self.proj1, self.proj2, self.proj3, self.proj4, self.proj5):
            x = torch.relu(proj(x))
            feas.append(x)
            x, idx = F.max_pool2d(x, 2, 2, return_indices=True)
            indices.append(idx)
        return self.proj6(x), indices, feas


def test_transformer_wrapper_forward_and_wiring():
    torch.manual_seed(0)
    channels = (48, 24, 16, 8, 8, 6)  # (deep, c3, c2, c1, c0, stem), a tiny stand-in
    enc = _FakeEncoder(stem=6, c=(8, 8, 16, 24), deep=48)
    dec = TransformerMattingDecoder(channels)
    model = TransformerP3MNet(enc, dec).eval()
    _randomise_bn(model)
    x = _image(2, 64, 96)
    with torch.no_grad():
        out = model(x)
        deep, indices, feas = enc(x)
        ref = published_transformer_decoder_forward(dec, deep, indices, feas)
    assert [tuple(t.shape) for t in out] == [(2, 3, 64, 96), (2, 1, 64, 96), (2, 1, 64, 96)] + [(2, 3, 64, 96)] * 3
    for a, b in zip(out, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert set(k.split(".")[0] for k in model.state_dict()) == {"encoder", "decoder"}
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.zeros(1, 3, 64, 80))


# ---------------------------------------------------------------------------------------------- registry


def test_registry_lists_and_creates():
    assert {"p3m-r34", "p3m-swin-t", "p3m-vitae-s"} <= set(models.list_architectures())
    assert models.list_architectures() == sorted(models.list_architectures())
    m = models.create("p3m-r34", width=16)
    assert m.arch == "p3m-r34" and m.arch_kwargs == {"width": 16}
    assert models.create("p3m-r34").arch_kwargs == {}  # exactly the kwargs given to create
    direct = models.p3mnet_r34.P3MNetR34(width=16)  # built without the registry: still named
    assert direct.arch == "p3m-r34" and direct.arch_kwargs == {"width": 16}
    with pytest.raises(UnknownModelError, match="p3m-r34"):
        models.create("p3m-r50")
    with pytest.raises(P3MError):
        models.create("nope")


def test_arch_modules_register_exactly_the_names_the_registry_gives_them():
    import importlib

    for module in set(registry.ARCH_MODULES.values()):
        importlib.import_module(module)
    from_files = {n: f.__module__ for n, f in registry._BUILDERS.items() if f.__module__.startswith("p3m.models.")}
    assert from_files == registry.ARCH_MODULES
    assert models.list_architectures() == sorted(registry.ARCH_MODULES)


# a fresh interpreter, so that what the command imports is not hidden by what this test session imported
_NO_TORCH = """
import contextlib, io, sys
from p3m.cli import main
from p3m import models
from p3m.models.store import builtin_entry, list_unusable, list_weights
names = models.list_architectures()
assert "p3m-r34" in names and "mediapipe-selfie" in names, names
assert builtin_entry().path.is_file() and list_weights() and list_unusable() == []
with contextlib.redirect_stdout(io.StringIO()) as out:
    assert main(["models"]) == 0
    assert main(["models", "--json"]) == 0
    with contextlib.suppress(SystemExit):
        main(["--help"])
assert "portrait-cf" in out.getvalue()
loaded = sorted(m for m in ("torch", "numba", "scipy", "safetensors") if m in sys.modules)
assert not loaded, loaded
model = models.create("p3m-r34", width=8)  # the registry imports the architecture's file when it is named
assert model.arch == "p3m-r34" and "torch" in sys.modules
assert models.registry.find_config("mediapipe-face-mesh").size_multiple == 0
assert models.load_model and models.P3MOutput._fields[0] == "global_logits"
print("ok")
"""


@pytest.mark.subprocess
def test_listing_models_imports_no_torch(tmp_path):
    import subprocess
    import sys

    env = dict(os.environ, P3M_HOME=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", _NO_TORCH], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stdout + run.stderr


def test_register_model_decorator():
    @models.register_model("test-tiny")
    def tiny(channels: int = 4) -> nn.Module:
        return nn.Conv2d(3, channels, 1)

    try:
        m = models.create("test-tiny", channels=2)
        assert m.out_channels == 2 and m.arch == "test-tiny" and m.arch_kwargs == {"channels": 2}
        with pytest.raises(ValueError, match="already registered"):
            models.register_model("test-tiny")(lambda: nn.Identity())
    finally:
        for table in (registry._BUILDERS, registry._LIMITS, registry._CONFIGS):
            table.pop("test-tiny", None)


@pytest.mark.slow
def test_vitae_s_full_counts():
    torch.manual_seed(0)
    m = models.create("p3m-vitae-s")
    assert count_parameters(m) == 27_463_052
    assert count_flops(m, (1, 3, 512, 512)) == pytest.approx(142.3e9, rel=5e-3)
    sd = m.state_dict()
    assert len(sd) == 808
    assert sum(k.startswith("decoder.") for k in sd) == 281


@pytest.mark.slow
def test_swin_t_full_counts(tmp_path):
    torch.manual_seed(0)
    m = models.create("p3m-swin-t")
    assert count_parameters(m) == 45_128_206
    assert count_flops(m, (1, 3, 512, 512)) == pytest.approx(178.0e9, rel=5e-3)
    sd = m.state_dict()
    assert len(sd) == 480 and sum(k.startswith("decoder.") for k in sd) == 281
    path = tmp_path / "swin.pth"
    torch.save({"state_dict": sd}, path)
    try:
        load_checkpoint(models.create("p3m-swin-t"), path)  # strict, whatever the attn_mask handling
    finally:
        path.unlink()


# ---------------------------------------------------------------------------------------------- checkpoints


def _outputs(model, x):
    with torch.no_grad():
        return model.eval()(x)


def _assert_same_outputs(a, b):
    for t, u in zip(a, b, strict=True):
        assert torch.equal(t, u)


def _fresh_small(seed: int = 123) -> nn.Module:
    torch.manual_seed(seed)
    return models.create("p3m-r34", width=16).eval()


@pytest.mark.parametrize("layout", ["state_dict", "bare", "module_prefix", "state_dict_ema"])
def test_load_published_layouts(r34_small, tmp_path, layout):
    sd = r34_small.state_dict()
    if layout == "state_dict":
        obj = {"state_dict": sd}
    elif layout == "bare":
        obj = sd
    elif layout == "module_prefix":
        obj = {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 12}
    else:
        obj = {"state_dict_ema": sd}
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)  # as the published code saves it
    model = _fresh_small()
    report = load_checkpoint(model, path)
    assert report["missing_keys"] == [] and report["unexpected_keys"] == []
    assert report["format"] == "pth"
    x = _image(1, 64, 64)
    _assert_same_outputs(_outputs(model, x), _outputs(r34_small, x))
    assert model.state_dict()["resnet.bn1.num_batches_tracked"].item() == 7
    if layout == "module_prefix":
        assert report["extra"] == {"epoch": 12}


def test_load_published_checkpoint_without_aliases(r34_small, tmp_path):
    # a state dict with the duplicates dropped (reference 4.5 alternative layout) also loads strictly
    sd = {k: v for k, v in r34_small.state_dict().items() if not k.startswith("encoder")}
    assert len(sd) == 713 - 6 - 36 - 54 - 78 - 42
    torch.save({"state_dict": sd}, tmp_path / "noalias.pth")
    model = _fresh_small()
    load_checkpoint(model, tmp_path / "noalias.pth")
    x = _image(1, 64, 64)
    _assert_same_outputs(_outputs(model, x), _outputs(r34_small, x))


def test_renamed_and_missing_keys_give_readable_error(r34_small, tmp_path):
    sd = dict(r34_small.state_dict())
    sd["tfi_3.transform_renamed.weight"] = sd.pop("tfi_3.transform.weight")
    del sd["decoder_final_l.bias"]
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(_fresh_small(), path)
    msg = str(info.value)
    assert "\n" not in msg and "bad.pth" in msg
    assert "2 missing" in msg and "tfi_3.transform.weight" in msg and "decoder_final_l.bias" in msg
    assert "1 unexpected" in msg and "tfi_3.transform_renamed.weight" in msg


def test_shape_mismatch_and_non_strict_load(r34_small, tmp_path):
    path = tmp_path / "w16.pth"
    torch.save({"state_dict": r34_small.state_dict()}, path)
    torch.manual_seed(0)
    wide = models.create("p3m-r34", width=32)
    with pytest.raises(
        CheckpointError,
        match=r"shape mismatches: resnet\.conv1\.weight \(checkpoint \(16, 3, 7, 7\), model \(32, 3, 7, 7\)\)",
    ):
        load_checkpoint(wide, path)
    report = load_checkpoint(wide, path, strict=False)
    assert "resnet.conv1.weight" in report["unexpected_keys"]
    # non-strict load of a partial checkpoint loads what matches and reports the rest
    partial = {k: v for k, v in r34_small.state_dict().items() if k.startswith("decoder")}
    torch.save(partial, tmp_path / "partial.pth")
    model = _fresh_small()
    report = load_checkpoint(model, tmp_path / "partial.pth", strict=False)
    assert "resnet.conv1.weight" in report["missing_keys"]
    assert torch.equal(model.decoder4_g[0].weight, r34_small.decoder4_g[0].weight)


def test_corrupt_files_give_readable_errors(r34_small, tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"state_dict": r34_small.state_dict()}, good)
    data = good.read_bytes()
    cases = {
        "truncated.pth": data[: len(data) // 3],
        "random.pth": os.urandom(4096),
        "empty.pth": b"",
        "text.pth": b"hello, I am not a checkpoint\n",
        "broken.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}xxxxxxx",
    }
    for name, payload in cases.items():
        path = tmp_path / name
        path.write_bytes(payload)
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(_fresh_small(), path)
        assert name in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(_fresh_small(), tmp_path / "absent.pth")
    torch.save({"weights": [1, 2, 3]}, tmp_path / "nostate.pth")
    with pytest.raises(CheckpointError, match="no state dict found"):
        load_checkpoint(_fresh_small(), tmp_path / "nostate.pth")


class _Exploit:
    """Pickling this object stores a call that creates a marker file when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_pickle_is_refused_and_not_executed(r34_small, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": r34_small.state_dict(), "payload": _Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match=r"refused.*arbitrary code"):
        load_checkpoint(_fresh_small(), path)
    assert not marker.exists()
    raw = tmp_path / "evil.pkl"
    with open(raw, "wb") as fh:
        pickle.dump(_Exploit(marker), fh, protocol=2)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(_fresh_small(), raw)
    assert not marker.exists()
    # sanity: the payload really would run under a plain unpickle
    pickle.loads(pickle.dumps(_Exploit(marker)))
    assert marker.exists()


def test_safetensors_round_trip(r34_small, tmp_path):
    out = save_checkpoint(r34_small, tmp_path / "run" / "best", metadata={"epoch": 3, "metrics": {"SAD": 9.5}})
    assert out == tmp_path / "run" / "best.safetensors" and out.is_file()
    meta = json.loads((tmp_path / "run" / "best.json").read_text())
    assert meta == {"arch": "p3m-r34", "arch_kwargs": {"width": 16}, "format_version": 1,
                    "epoch": 3, "metrics": {"SAD": 9.5}}  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["best.json", "best.safetensors"]  # no temp files
    from safetensors.torch import load_file

    stored = load_file(out)
    assert len(stored) == 713 - 216 and not any(k.startswith("encoder") for k in stored)  # aliases stored once
    model, metadata = load_model(out)
    assert model.arch == "p3m-r34" and metadata["epoch"] == 3 and not model.training
    x = _image(1, 64, 96)
    _assert_same_outputs(_outputs(model, x), _outputs(r34_small, x))
    assert torch.equal(
        model.state_dict()["encoder2.1.bn1.running_var"], r34_small.state_dict()["resnet.layer2.1.bn1.running_var"]
    )
    # explicit name ending in .safetensors, and loading into an existing model
    out2 = save_checkpoint(r34_small, tmp_path / "w.safetensors")
    assert out2.name == "w.safetensors" and (tmp_path / "w.json").is_file()
    target = _fresh_small()
    report = load_checkpoint(target, out2)
    assert report["format"] == "safetensors" and report["metadata"]["arch"] == "p3m-r34"
    _assert_same_outputs(_outputs(target, x), _outputs(r34_small, x))


def test_load_model_from_published_pth(r34_small, tmp_path):
    path = tmp_path / "p3mnet_pretrained_on_p3m10k.pth"
    torch.save({"state_dict": r34_small.state_dict()}, path)
    with pytest.raises(CheckpointError, match="arch="):
        load_model(path)
    model, meta = load_model(path, arch="p3m-r34", arch_kwargs={"width": 16})
    assert meta["arch"] == "p3m-r34"
    x = _image(1, 64, 64)
    _assert_same_outputs(_outputs(model, x), _outputs(r34_small, x))
    # published width by default: a width-16 file into the 64-wide model is a readable error
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_model(path, arch="p3m-r34")


def test_load_model_arch_conflict(r34_small, tmp_path):
    out = save_checkpoint(r34_small, tmp_path / "m")
    with pytest.raises(CheckpointError, match="p3m-vitae-s"):
        load_model(out, arch="p3m-vitae-s")


def test_read_state_dict_strips_module_prefix(tmp_path):
    torch.save({"module.a.weight": torch.ones(2)}, tmp_path / "m.pth")
    sd, info = read_state_dict(tmp_path / "m.pth")
    assert list(sd) == ["a.weight"] and info["container"] is None


class _MaskedBlock(nn.Module):
    """Stand-in for a Swin block: an `attn_mask` buffer whose shape depends on the construction size."""

    def __init__(self, windows: int, persistent: bool = True) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.register_buffer("attn_mask", torch.zeros(windows, 49, 49), persistent=persistent)


def test_recomputable_attn_mask_entries(tmp_path):
    saved = _MaskedBlock(361)
    saved.attn_mask.fill_(-100.0)
    torch.save({"state_dict": saved.state_dict()}, tmp_path / "s.pth")
    # mask of another construction size: the model keeps its own (deterministic) mask
    other = _MaskedBlock(100)
    load_checkpoint(other, tmp_path / "s.pth")
    assert other.attn_mask.shape == (100, 49, 49) and torch.equal(other.proj.weight, saved.proj.weight)
    # a model that recomputes its masks (non-persistent buffer) drops the stored entries
    recompute = _MaskedBlock(361, persistent=False)
    load_checkpoint(recompute, tmp_path / "s.pth")
    assert torch.equal(recompute.proj.weight, saved.proj.weight)
    # same construction size: stored mask loads
    same = _MaskedBlock(361)
    load_checkpoint(same, tmp_path / "s.pth")
    assert same.attn_mask.min() == -100


# ---------------------------------------------------------------------------------------------- speed paths


def test_resolve_precision():
    assert DTYPES[resolve_precision("fp32", "cpu")] == torch.float32
    assert DTYPES[resolve_precision("bf16", "cpu")] == torch.bfloat16
    assert DTYPES[resolve_precision("auto", "cpu")] in (torch.float32, torch.bfloat16)
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("int8", "cpu")


def test_runner_fp32_matches_eager(r34_small):
    x = _image(2, 64, 96, seed=4)
    runner = InferenceRunner(r34_small, "cpu", precision="fp32", cuda_graphs=True)  # graphs ignored on CPU
    out = runner(x)
    ref = _outputs(r34_small, x)
    for a, b in zip(out, ref, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert runner.captured_shapes == []
    with pytest.raises(ValueError, match="multiples of 32"):
        runner(torch.zeros(1, 3, 50, 64))


def test_runner_bf16_close_to_fp32(r34_small):
    x = _image(1, 96, 64, seed=6)
    ref = _outputs(r34_small, x)
    runner = InferenceRunner(r34_small, "cpu", precision="bf16")
    out = runner(x)
    assert all(t.dtype == torch.float32 for t in out)
    assert next(r34_small.parameters()).dtype == torch.float32  # caller's model untouched
    assert (out.local_alpha - ref.local_alpha).abs().max() < 2e-2
    # fused alpha: identical class decision almost everywhere, and close where the classes agree
    same = out.global_logits.argmax(1, keepdim=True) == ref.global_logits.argmax(1, keepdim=True)
    assert same.float().mean() > 0.98
    assert (out.fused_alpha - ref.fused_alpha)[same].abs().max() < 2e-2
    torch.testing.assert_close(out.fused_alpha, fuse(out.global_logits, out.local_alpha))


def test_runner_autocast_mode(r34_small):
    x = _image(1, 64, 64, seed=10)
    ref = _outputs(r34_small, x)
    runner = InferenceRunner(r34_small, "cpu", precision="bf16", autocast=True)
    assert next(runner.model.parameters()).dtype == torch.float32
    out = runner(x)
    assert all(t.dtype == torch.float32 for t in out)
    assert (out.local_alpha - ref.local_alpha).abs().max() < 2e-2
    assert (out.local_alpha - ref.local_alpha).abs().max() > 0  # really ran in bf16


def test_runner_bf16_fused_alpha_with_confident_semantics(r34_small):
    # a semantic head with clear class margins (as a trained model has): fused alpha within 2e-2 everywhere
    model = _fresh_small(7)
    model.load_state_dict(r34_small.state_dict())
    with torch.no_grad():
        model.decoder0_g[6].weight.mul_(0.01)
        model.decoder0_g[6].bias.copy_(torch.tensor([0.0, 4.0, 0.0]))
    x = _image(1, 64, 64, seed=8)
    ref = _outputs(model, x)
    out = InferenceRunner(model, "cpu", precision="bf16")(x)
    assert (out.fused_alpha - ref.fused_alpha).abs().max() < 2e-2
    assert (out.local_alpha - ref.local_alpha).abs().max() < 2e-2


class _ConvBnReadTwice(nn.Module):
    """A conv output that something besides its BatchNorm reads: folding would change what that reader sees."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.conv, self.bn, self.how = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), how

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x)
        if self.how == "in place":  # changed between the conv and its BatchNorm
            return self.bn(y.mul_(2.0))
        if self.how == "returned":  # the model's own output
            return self.bn(y), y
        return self.bn(y) + y  # "tensor code": read by an operator that is no module


def _bn_count(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_fold_batch_norms_folds_every_conv_bn_pair(r34_small):
    folded = _fresh_small(2)
    folded.load_state_dict(r34_small.state_dict())
    folded.eval()
    pairs = fold_batch_norms(folded, torch.randn(1, 3, 64, 64))
    assert pairs == _bn_count(r34_small) > 0 and _bn_count(folded) == 0
    x = _image(2, 64, 96, seed=4)
    ref = _outputs(r34_small, x)
    with torch.no_grad():
        out = folded(x)
    # the semantic branch has no unpooling: the same to rounding
    torch.testing.assert_close(out.global_logits, ref.global_logits, rtol=1e-4, atol=1e-4)
    # the matting branch reuses max-pool indices, which rounding can move inside windows of exact zeros: a few pixels
    diff = (out.local_alpha - ref.local_alpha).abs()
    assert diff.mean() < 1e-3 and diff.max() < 0.05 and (diff < 1e-4).float().mean() > 0.6


@pytest.mark.parametrize("how", ["tensor code", "in place", "returned"])
def test_fold_batch_norms_leaves_pairs_whose_conv_output_is_used_otherwise(how):
    torch.manual_seed(0)
    model = _ConvBnReadTwice(how).eval()
    _randomise_bn(model)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        ref = model(x.clone())
    assert fold_batch_norms(model, torch.randn(1, 3, 8, 8)) == 0
    assert isinstance(model.bn, nn.BatchNorm2d)
    with torch.no_grad():
        torch.testing.assert_close(model(x.clone()), ref)


def test_fold_batch_norms_leaves_a_model_that_cannot_run_the_example():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 30 * 30, 2)).eval()
    assert fold_batch_norms(model, torch.randn(1, 3, 8, 8)) == 0  # the Linear wants a 32x32 input
    assert isinstance(model[1], nn.BatchNorm2d)


def test_prepare_for_inference_takes_a_model_without_weights():
    assert isinstance(prepare_for_inference(nn.Identity(), "cpu", precision="bf16"), nn.Identity)


def test_runner_folds_batch_norms_for_bf16_only(r34_small):
    assert _bn_count(InferenceRunner(r34_small, "cpu", precision="fp32").model) == _bn_count(r34_small)
    assert _bn_count(InferenceRunner(r34_small, "cpu", precision="bf16").model) == 0
    assert _bn_count(r34_small) > 0  # the caller's model untouched


def test_prepare_for_inference_in_place():
    model = _fresh_small(1).train()
    prepared = prepare_for_inference(model, "cpu", precision="bf16", channels_last=True)
    assert prepared is model and not model.training
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model.resnet.layer1[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out = model(_image(1, 64, 64).to(torch.bfloat16))
    assert out.local_alpha.dtype == torch.bfloat16


# ---------------------------------------------------------------------------------------------- branch selection


def _check_branch(full: P3MOutput, part: P3MOutput, outputs: str) -> None:
    kept = {"global": "global_logits", "local": "local_alpha"}[outputs]
    for name in P3MOutput._fields:
        value = getattr(part, name)
        if name == kept:
            assert torch.equal(value, getattr(full, name)), name
        else:
            assert value is None, name


@pytest.mark.parametrize("outputs", ["global", "local"])
def test_r34_branch_selection_computes_the_same_tensor(r34_small, outputs):
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        _check_branch(r34_small(x), r34_small(x, outputs=outputs), outputs)
        with pytest.raises(ValueError, match="outputs must be one of"):
            r34_small(x, outputs="fused")


def test_local_pass_skips_the_last_dbfi(r34_small):
    # dBFI level 0 feeds only the semantic head: a "local" pass must not run it, the others must
    calls: list[str] = []
    handle = r34_small.dbfi_0.register_forward_hook(lambda *_: calls.append("dbfi_0"))
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    try:
        with torch.no_grad():
            for outputs, runs in (("local", 0), ("global", 1), ("all", 1)):
                calls.clear()
                r34_small(x, outputs=outputs)
                assert len(calls) == runs, outputs
    finally:
        handle.remove()


def test_transformer_branch_selection_computes_the_same_tensors():
    torch.manual_seed(0)
    model = models.create("p3m-vitae-s").eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(x)
        for outputs in ("global", "local"):
            _check_branch(full, model(x, outputs=outputs), outputs)


def test_runner_branch_selection(r34_small):
    runner = InferenceRunner(r34_small, "cpu", precision="fp32", channels_last=False)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    full = runner(x)
    _check_branch(full, runner(x, outputs="local"), "local")
    _check_branch(full, runner(x, outputs="global"), "global")


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"width": 40000}, r"width=40000 is outside the accepted range 2\.\.256"),  # would allocate ~57 GB
        ({"width": 16, "depth": 3}, r"takes no argument 'depth'; it takes width"),
        ({"width": "16"}, r"width must be int"),
        ({"width": True}, r"width must be int"),
        ({"width": 15}, r"width must be an even integer"),  # the builder's own check, as a CheckpointError
        ([16], r"must be a mapping"),
    ],
)
def test_sidecar_arch_kwargs_are_validated_before_building(r34_small, tmp_path, monkeypatch, kwargs, needle):
    out = save_checkpoint(r34_small, tmp_path / "m")
    meta = json.loads(out.with_suffix(".json").read_text())
    meta["arch_kwargs"] = kwargs
    out.with_suffix(".json").write_text(json.dumps(meta))
    import functools

    built = []
    real = registry._BUILDERS["p3m-r34"]

    @functools.wraps(real)  # same signature: what the check inspects
    def spy(**kw):
        built.append(kw)
        assert not isinstance(kw.get("width"), int) or kw["width"] <= 256, "a 57 GB model must never be built"
        return real(**kw)

    monkeypatch.setitem(registry._BUILDERS, "p3m-r34", spy)
    with pytest.raises(CheckpointError, match=needle) as info:
        load_model(out)
    assert "\n" not in str(info.value) and str(info.value).startswith(str(out))
    assert built in ([], [{"width": 15}])  # nothing is allocated for names, types or ranges that are refused


def test_create_validates_arguments_against_the_builder():
    with pytest.raises(P3MError, match="takes no argument 'depth'"):  # was a TypeError from the builder
        models.create("p3m-r34", width=8, depth=3)
    with pytest.raises(ModelArgumentError, match=r"width=4096 is outside the accepted range 4\.\.128"):
        models.check_arch_kwargs("modnet-mbv2", {"width": 4096})
    with pytest.raises(ModelArgumentError, match="takes no argument 'width'"):
        models.check_arch_kwargs("p3m-vitae-s", {"width": 16})
    assert models.check_arch_kwargs("p3m-swin-t", {"img_size": 256}) == {"img_size": 256}
    with pytest.raises(ModelArgumentError, match="img_size=8192"):
        models.check_arch_kwargs("p3m-swin-t", {"img_size": 8192})


def test_cli_reports_bad_sidecar_kwargs_in_one_line(r34_small, tmp_path, capsys, monkeypatch):
    from p3m.cli import main

    out = save_checkpoint(r34_small, tmp_path / "m")
    meta = json.loads(out.with_suffix(".json").read_text())
    meta["arch_kwargs"] = {"width": 16, "depth": 3}  # was "internal error: TypeError: ... unexpected keyword"
    out.with_suffix(".json").write_text(json.dumps(meta))
    assert main(["export", "--weights", str(out), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "p3m-r34 takes no argument 'depth'" in err and "internal" not in err


# ---------------------------------------------------------------------------------------------- registry configs


def test_every_architecture_registers_its_input_contract_and_licence():
    for name in models.list_architectures():
        config = models.arch_config(name)
        assert config.licence and config.normalisation in registry.NORMALISATIONS, name
    for name in ("p3m-r34", "basic-r34", "modnet-mbv2", "p3m-swin-t", "p3m-vitae-s"):  # the strategies' input
        assert (models.arch_config(name).normalisation, models.arch_config(name).size_multiple) == ("imagenet", 32)
    selfie = models.arch_config("mediapipe-selfie")
    assert (selfie.normalisation, selfie.size_multiple) == ("unit", 0) and selfie.licence.startswith("Apache-2.0")
    assert models.arch_config("p3m-r34").licence.startswith("MIT")
    with pytest.raises(UnknownModelError, match="unknown model 'nope'"):
        models.arch_config("nope")
    assert registry.find_config("nope") is None and registry.find_config(None) is None
    assert registry.find_config("p3m-r34") == models.arch_config("p3m-r34")
    with pytest.raises(UnknownModelError):  # a JSON list where a name belongs: one clear line, no TypeError
        models.check_arch_kwargs(["p3m-r34"], {})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- the sidecar


@pytest.mark.parametrize(
    "text, needle",
    [
        ('{"arch": "p3m-r34", "format_version": 999}', "format_version 999 is not one this p3m reads"),
        (
            '{"arch": ["p3m-r34"], "format_version": 1}',
            r"'arch' must be an architecture name \(a string\), got \[\"p3m-r34\"\]",
        ),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("[1, 2]", "must be a JSON object"),
        ("{oops", "unreadable checkpoint metadata"),
    ],
)
def test_the_sidecar_is_read_and_validated_in_one_place(r34_small, home, text, needle):
    from p3m.models import store
    from p3m.models.checkpoint import read_sidecar, sidecar_path

    out = save_checkpoint(r34_small, home / "models" / "m")
    assert sidecar_path(out) == out.with_suffix(".json") and read_sidecar(out)["arch"] == "p3m-r34"
    sidecar_path(out).write_text(text)
    for load in (read_sidecar, load_model):
        with pytest.raises(CheckpointError, match=needle) as info:
            load(out)
        assert "\n" not in str(info.value)
    # the entry is listed as unusable with the reason, left out of the usable ones; the default route is unaffected
    assert "m" not in {e.name for e in store.list_weights()} and store.default_model().name == store.BUILTIN
    (bad,) = store.list_unusable()
    assert bad.name == "m" and re.search(needle, bad.problem) and "\n" not in bad.problem
    with pytest.raises(CheckpointError, match="'m' .* cannot be used: .*" + needle):
        store.resolve("m")
    assert not store.trained_on_synthetic(out)
