"""MODNet (Ke et al., AAAI 2022, `ZHKKKe/MODNet`) with a hand-written MobileNetV2 backbone (no torchvision).

Three branches on a MobileNetV2 encoder (features at 1/2, 1/4, 1/8, 1/16, 1/32):

- low-resolution **semantic** branch: SE block on the 1/32 feature, two 5x5 conv-IBNorm-ReLU at 1/16
  and 1/8, prediction head at 1/16;
- high-resolution **detail** branch: image + 1/2 and 1/4 encoder features + the semantic feature,
  predicts the detail (boundary) alpha at full resolution;
- **fusion** branch: semantic feature + detail feature + image -> final alpha matte.

Module layout and channel counts follow the published code. At width 32 (= MobileNetV2 alpha 1.0,
`hr_channels` 32) the network has 6.46 M parameters, the paper's figure; `width` w scales the
MobileNetV2 width multiplier to w/32 and `hr_channels` to w (the 1280-channel last layer is kept
below alpha 1, as in MobileNetV2).

Adapter to the P3M-Net training loss (so the existing trainer trains it unchanged): `forward`
returns a `P3MOutput`:

- `global_logits`: the semantic head predicts 3-class trimap logits (bg / transition / fg) instead
  of MODNet's 1-channel sigmoid at 1/16; the logits are bilinearly upsampled to full resolution.
  MODNet supervises this head with an L2 loss on a blurred, downsampled alpha; here it gets the
  P3M cross-entropy on the trimap classes (+578 parameters at width 32 for the two extra channels).
- `side2`, `side1`, `side0`: the same tensor as `global_logits` (MODNet has one semantic
  prediction), so the P3M global loss (sides + 3 G) / 6 reduces to one cross-entropy of G.
- `local_alpha`: the detail branch (P3M's unknown-region losses = MODNet's transition-region
  detail loss).
- `fused_alpha`: the fusion branch output (P3M's whole-image alpha, Laplacian and composition
  losses = MODNet's matte loss). The argmax fusion rule of P3M-Net is not used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m.models.blocks import P3MOutput, check_input, check_width
from p3m.models.registry import register_model

__all__ = [
    "Conv2dIBNormRelu",
    "FusionBranch",
    "HRBranch",
    "IBNorm",
    "InvertedResidual",
    "LRBranch",
    "MODNet",
    "MobileNetV2",
    "SEBlock",
    "make_divisible",
    "modnet_mbv2",
]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to the nearest multiple of `divisor`, never below 90 % of `value` (MobileNetV2)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def _conv_bn(inp: int, oup: int, kernel: int, stride: int, groups: int = 1, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(inp, oup, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(oup),
    ]
    if relu:
        layers.append(nn.ReLU6(inplace=True))
    return layers


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [B,inp,H,W] -> [B,oup,H/s,W/s] (expand 1x1, depthwise 3x3, project 1x1; residual if
    s=1, inp=oup)."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += _conv_bn(inp, hidden, 1, 1)
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += _conv_bn(hidden, oup, 1, 1, relu=False)
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 feature extractor: [B,3,H,W] -> 5 features at 1/2, 1/4, 1/8, 1/16, 1/32 (no classifier)."""

    # expansion t, channels c, repeats n, first stride s
    SETTINGS = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )
    # indices into `features` after which the 1/2, 1/4, 1/8, 1/16, 1/32 outputs are taken
    TAPS = (1, 3, 6, 13, 18)

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        channels = make_divisible(32 * alpha)
        last = make_divisible(1280 * alpha) if alpha > 1.0 else 1280
        features: list[nn.Module] = [nn.Sequential(*_conv_bn(3, channels, 3, 2))]
        for t, c, n, s in self.SETTINGS:
            out = make_divisible(c * alpha)
            for i in range(n):
                features.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
        features.append(nn.Sequential(*_conv_bn(channels, last, 1, 1)))
        self.features = nn.Sequential(*features)
        self.channels = [self._out_channels(i) for i in self.TAPS]
        self._init_weights()

    def _out_channels(self, index: int) -> int:
        convs = [m for m in self.features[index].modules() if isinstance(m, nn.Conv2d)]
        return convs[-1].out_channels

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        taps, out = set(self.TAPS), []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in taps:
                out.append(x)
        return out


class IBNorm(nn.Module):
    """Half BatchNorm (affine), half InstanceNorm (no affine) over the channels: [B,C,H,W] -> [B,C,H,W]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bnorm_channels = channels // 2
        self.bnorm = nn.BatchNorm2d(self.bnorm_channels, affine=True)
        self.inorm = nn.InstanceNorm2d(channels - self.bnorm_channels, affine=False)

    def forward(self, x: Tensor) -> Tensor:
        b = self.bnorm(x[:, : self.bnorm_channels].contiguous())
        i = self.inorm(x[:, self.bnorm_channels :].contiguous())
        return torch.cat((b, i), 1)


class Conv2dIBNormRelu(nn.Module):
    """Conv (with bias) -> optional IBNorm -> optional ReLU: [B,Cin,H,W] -> [B,Cout,H/s,W/s]."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        padding: int = 0,
        with_ibn: bool = True,
        with_relu: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, padding, bias=True)]
        if with_ibn:
            layers.append(IBNorm(cout))
        if with_relu:
            layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class SEBlock(nn.Module):
    """Squeeze-and-excitation channel attention: [B,C,H,W] -> [B,C,H,W]."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        w = self.fc(self.pool(x).flatten(1))
        return x * w[:, :, None, None]


def _up(x: Tensor, scale: float) -> Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


class LRBranch(nn.Module):
    """Semantic branch: enc32x [B,C4,H/32,W/32] -> (logits [B,K,H/16,W/16], lr8x [B,C2,H/8,W/8])."""

    def __init__(self, enc: list[int], classes: int = 3) -> None:
        super().__init__()
        self.se_block = SEBlock(enc[4], reduction=4)
        self.conv_lr16x = Conv2dIBNormRelu(enc[4], enc[3], 5, padding=2)
        self.conv_lr8x = Conv2dIBNormRelu(enc[3], enc[2], 5, padding=2)
        self.conv_lr = Conv2dIBNormRelu(enc[2], classes, 3, stride=2, padding=1, with_ibn=False, with_relu=False)

    def forward(self, enc32x: Tensor) -> tuple[Tensor, Tensor]:
        lr16x = self.conv_lr16x(_up(self.se_block(enc32x), 2))
        lr8x = self.conv_lr8x(_up(lr16x, 2))
        return self.conv_lr(lr8x), lr8x


class HRBranch(nn.Module):
    """Detail branch: (image, enc2x, enc4x, lr8x) -> (detail logit [B,1,H,W], hr2x [B,hr,H/2,W/2])."""

    def __init__(self, hr: int, enc: list[int]) -> None:
        super().__init__()
        self.tohr_enc2x = Conv2dIBNormRelu(enc[0], hr, 1)
        self.conv_enc2x = Conv2dIBNormRelu(hr + 3, hr, 3, stride=2, padding=1)
        self.tohr_enc4x = Conv2dIBNormRelu(enc[1], hr, 1)
        self.conv_enc4x = Conv2dIBNormRelu(2 * hr, 2 * hr, 3, padding=1)
        self.conv_hr4x = nn.Sequential(
            Conv2dIBNormRelu(2 * hr + enc[2] + 3, 2 * hr, 3, padding=1),
            Conv2dIBNormRelu(2 * hr, 2 * hr, 3, padding=1),
            Conv2dIBNormRelu(2 * hr, hr, 3, padding=1),
        )
        self.conv_hr2x = nn.Sequential(
            Conv2dIBNormRelu(2 * hr, 2 * hr, 3, padding=1),
            Conv2dIBNormRelu(2 * hr, hr, 3, padding=1),
            Conv2dIBNormRelu(hr, hr, 3, padding=1),
            Conv2dIBNormRelu(hr, hr, 3, padding=1),
        )
        self.conv_hr = nn.Sequential(
            Conv2dIBNormRelu(hr + 3, hr, 3, padding=1),
            Conv2dIBNormRelu(hr, 1, 1, with_ibn=False, with_relu=False),
        )

    def forward(self, img: Tensor, enc2x: Tensor, enc4x: Tensor, lr8x: Tensor) -> tuple[Tensor, Tensor]:
        img2x, img4x = _up(img, 0.5), _up(img, 0.25)
        enc2x = self.tohr_enc2x(enc2x)
        hr4x = self.conv_enc2x(torch.cat((img2x, enc2x), 1))
        hr4x = self.conv_enc4x(torch.cat((hr4x, self.tohr_enc4x(enc4x)), 1))
        hr4x = self.conv_hr4x(torch.cat((hr4x, _up(lr8x, 2), img4x), 1))
        hr2x = self.conv_hr2x(torch.cat((_up(hr4x, 2), enc2x), 1))
        detail = self.conv_hr(torch.cat((_up(hr2x, 2), img), 1))
        return detail, hr2x


class FusionBranch(nn.Module):
    """Fusion branch: (image, lr8x, hr2x) -> matte logit [B,1,H,W]."""

    def __init__(self, hr: int, enc: list[int]) -> None:
        super().__init__()
        self.conv_lr4x = Conv2dIBNormRelu(enc[2], hr, 5, padding=2)
        self.conv_f2x = Conv2dIBNormRelu(2 * hr, hr, 3, padding=1)
        self.conv_f = nn.Sequential(
            Conv2dIBNormRelu(hr + 3, hr // 2, 3, padding=1),
            Conv2dIBNormRelu(hr // 2, 1, 1, with_ibn=False, with_relu=False),
        )

    def forward(self, img: Tensor, lr8x: Tensor, hr2x: Tensor) -> Tensor:
        lr2x = _up(self.conv_lr4x(_up(lr8x, 2)), 2)
        f2x = self.conv_f2x(torch.cat((lr2x, hr2x), 1))
        return self.conv_f(torch.cat((_up(f2x, 2), img), 1))


class MODNet(nn.Module):
    """MODNet-MobileNetV2: [B,3,H,W] (H, W multiples of 32) -> P3MOutput (see the module docstring)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.width = check_width(width, 4)
        self.arch = "modnet-mbv2"
        self.arch_kwargs = {"width": width}
        self.backbone = MobileNetV2(alpha=width / 32)
        enc = self.backbone.channels
        self.lr_branch = LRBranch(enc, classes=3)
        self.hr_branch = HRBranch(width, enc)
        self.f_branch = FusionBranch(width, enc)
        for m in (self.lr_branch, self.hr_branch, self.f_branch):
            for conv in m.modules():
                if isinstance(conv, nn.Conv2d):
                    nn.init.kaiming_uniform_(conv.weight, a=0, mode="fan_in", nonlinearity="relu")
                elif isinstance(conv, nn.BatchNorm2d):
                    nn.init.ones_(conv.weight)
                    nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> P3MOutput:
        check_input(x)
        enc2x, enc4x, _, _, enc32x = self.backbone(x)
        logits16x, lr8x = self.lr_branch(enc32x)
        detail, hr2x = self.hr_branch(x, enc2x, enc4x, lr8x)
        matte = self.f_branch(x, lr8x, hr2x)
        global_logits = _up(logits16x, 16)
        return P3MOutput(global_logits, detail.sigmoid(), matte.sigmoid(), global_logits, global_logits, global_logits)


@register_model("modnet-mbv2", licence="Apache-2.0 (MODNet authors, ZHKKKe/MODNet)", limits={"width": (4, 128)})
def modnet_mbv2(width: int = 32) -> MODNet:
    """MODNet with a MobileNetV2 backbone; width 32 = the published model (alpha 1.0, hr_channels 32)."""
    return MODNet(width=width)
