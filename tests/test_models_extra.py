"""Tests for the benchmark's extra models: BASIC (P3M-Net R34 without TFI/sBFI/dBFI) and MODNet-MobileNetV2.

Reference figures: MODNet 6.46 M parameters (landscape.md, the MODNet paper); torchvision's MobileNetV2
(alpha 1.0) has 3,504,872 parameters, of which 1,281,000 are the 1280->1000 classifier, so its feature
extractor has 2,223,872.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from p3m import models
from p3m.models import P3MOutput, fuse
from p3m.models.basic import BasicR34
from p3m.models.modnet import MobileNetV2, MODNet, make_divisible
from p3m.train.losses import p3m_loss

torch.set_num_threads(1)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _batch(h: int = 64, w: int = 96, b: int = 2):
    torch.manual_seed(0)
    x = torch.randn(b, 3, h, w)
    alpha = torch.rand(b, 1, h, w)
    trimap = torch.full((b, 1, h, w), 128.0)
    trimap[..., : h // 4, :] = 0.0
    trimap[..., -h // 4 :, :] = 255.0
    return x, alpha, trimap


# ------------------------------------------------------------------------------------------ registry


def test_registry_builds_both_models():
    assert {"basic-r34", "modnet-mbv2"} <= set(models.list_architectures())
    basic = models.create("basic-r34", width=8)
    modnet = models.create("modnet-mbv2", width=8)
    assert isinstance(basic, BasicR34) and basic.arch == "basic-r34" and basic.arch_kwargs == {"width": 8}
    assert isinstance(modnet, MODNet) and modnet.arch == "modnet-mbv2" and modnet.arch_kwargs == {"width": 8}


@pytest.mark.parametrize("arch,width", [("basic-r34", 3), ("basic-r34", 0), ("modnet-mbv2", 2), ("modnet-mbv2", 7)])
def test_invalid_width_is_rejected(arch, width):
    with pytest.raises(ValueError, match="width"):
        models.create(arch, width=width)


# ------------------------------------------------------------------------------------------ MODNet


def test_mobilenetv2_matches_torchvision_feature_count():
    backbone = MobileNetV2(alpha=1.0)
    assert _count(backbone) == 3_504_872 - 1_281_000
    assert backbone.channels == [16, 24, 32, 96, 1280]


def test_make_divisible_matches_mobilenetv2_rule():
    assert [make_divisible(c * 0.25) for c in (32, 16, 24, 32, 64, 96, 160, 320)] == [8, 8, 8, 8, 16, 24, 40, 80]
    assert make_divisible(32 * 1.0) == 32 and make_divisible(1280 * 1.4) == 1792


def test_modnet_parameter_count_matches_paper():
    net = models.create("modnet-mbv2")  # width 32 = alpha 1.0, hr_channels 32
    n = _count(net)
    assert n == 6_487_653  # 6,487,075 with MODNet's 1-channel semantic head + 578 for the 3-class head
    assert abs(n - 6.46e6) / 6.46e6 < 0.005  # the paper's 6.46 M


@pytest.mark.parametrize("width", [8, 16])
def test_modnet_forward_shapes_and_range(width):
    net = models.create("modnet-mbv2", width=width).eval()
    x, _, _ = _batch()
    with torch.no_grad():
        out = net(x)
    assert isinstance(out, P3MOutput)
    assert out.global_logits.shape == (2, 3, 64, 96)
    for alpha in (out.local_alpha, out.fused_alpha):
        assert alpha.shape == (2, 1, 64, 96)
        assert float(alpha.min()) >= 0.0 and float(alpha.max()) <= 1.0
    # one semantic prediction: the three side slots repeat it (global loss = one cross-entropy of G)
    for side in (out.side2, out.side1, out.side0):
        assert torch.equal(side, out.global_logits)


def test_modnet_rejects_sizes_not_multiple_of_32():
    with pytest.raises(ValueError, match="multiples of 32"):
        models.create("modnet-mbv2", width=8)(torch.zeros(1, 3, 50, 64))


def test_modnet_trains_with_the_p3m_loss():
    net = models.create("modnet-mbv2", width=8).train()
    x, alpha, trimap = _batch()
    terms = p3m_loss(net(x), alpha, trimap, x, x, x)
    terms.total.backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None]
    assert not missing, missing
    assert torch.isfinite(terms.total)


# ------------------------------------------------------------------------------------------ BASIC


@pytest.mark.slow  # keeps the fast loop under a minute (about 1 s of CPU); make test runs it
def test_basic_is_p3mnet_without_integration_modules():
    """BASIC = P3M-Net R34 minus TFI/sBFI/dBFI plus side heads identical to the dBFI side convs."""
    for width in (8, 64):
        p3m = models.create("p3m-r34", width=width)
        basic = models.create("basic-r34", width=width)
        integration = [
            getattr(p3m, n)
            for n in ("tfi_3", "tfi_2", "tfi_1", "tfi_0", "sbfi_2", "sbfi_1", "sbfi_0", "dbfi_2", "dbfi_1", "dbfi_0")
        ]
        side_convs = [p3m.dbfi_2.conv2, p3m.dbfi_1.conv2, p3m.dbfi_0.conv2]
        expected = _count(p3m) - sum(_count(m) for m in integration) + sum(_count(m) for m in side_convs)
        assert _count(basic) == expected
    # published width: 39,478,060 (reference 4.4) minus the integration modules
    assert _count(models.create("basic-r34")) == 37_673_772


def test_basic_shares_encoder_and_decoder_layout_with_p3mnet():
    p3m_state = models.create("p3m-r34", width=8).state_dict()
    basic_state = models.create("basic-r34", width=8).state_dict()
    shared = [k for k in basic_state if not k.startswith("side_")]
    assert shared and all(k in p3m_state and p3m_state[k].shape == basic_state[k].shape for k in shared)
    assert {k.split(".")[0] for k in basic_state} - {k.split(".")[0] for k in p3m_state} == {
        "side_2",
        "side_1",
        "side_0",
    }


def test_basic_forward_outputs_and_fusion():
    net = models.create("basic-r34", width=8).eval()
    x, _, _ = _batch()
    with torch.no_grad():
        out = net(x)
    assert isinstance(out, P3MOutput) and len(out) == 6
    for logits in (out.global_logits, out.side2, out.side1, out.side0):
        assert logits.shape == (2, 3, 64, 96)
    assert out.local_alpha.shape == out.fused_alpha.shape == (2, 1, 64, 96)
    assert float(out.local_alpha.min()) >= 0 and float(out.local_alpha.max()) <= 1
    assert torch.equal(out.fused_alpha, fuse(out.global_logits, out.local_alpha))
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.zeros(1, 3, 64, 40))


def test_basic_trains_with_the_p3m_loss_and_all_parameters_get_gradients():
    net = models.create("basic-r34", width=8).train()
    x, alpha, trimap = _batch()
    p3m_loss(net(x), alpha, trimap, x, x, x).total.backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None and not name.startswith("resnet.fc")]
    assert not missing, missing
