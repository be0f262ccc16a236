"""BASIC: the shared-encoder, two-decoder baseline of the P3M paper (reference 11.3), R34 encoder.

BASIC is P3M-Net R34 with its three integration modules removed, so a BASIC vs P3M-Net comparison
isolates what TFI, sBFI and dBFI contribute. Everything else is the same code: the max-pooling
ResNet-34 encoder (`resnet34_mp`), the semantic decoder blocks (`semantic_block`), the matting
decoder blocks (`matting_block`) with max-unpooling, and the fusion rule (`fuse`).

What replaces each module (the published BASIC code is not available; reference 11.3 marks the
baseline's definition as unconfirmed):

- TFI (semantic + matting + encoder feature -> matting): the matting decoder gets a plain U-Net
  skip instead, `matting + encoder` (addition, same channels), with no semantic feature.
- sBFI (full-resolution stem feature -> matting levels 2, 1, 0): dropped.
- dBFI (deepest feature -> semantic levels 2, 1, 0): dropped. Its three side predictions are kept
  as deep supervision, so BASIC trains with exactly the P3M-Net loss (`p3m.train.losses.p3m_loss`):
  each side is a 3x3 conv (no bias, as dBFI `conv2`) on the same semantic decoder output that the
  dBFI of that level would receive, bilinearly upsampled to full resolution.
"""

from __future__ import annotations

from torch import Tensor, nn

from p3m.models.blocks import P3MOutput, check_input, check_width, conv3x3, fuse, matting_block, semantic_block, unpool
from p3m.models.p3mnet_r34 import P3M_LICENCE, resnet34_mp
from p3m.models.registry import register_model

__all__ = ["BasicR34", "SideHead", "basic_r34"]


class SideHead(nn.Module):
    """Deep-supervision head: [B,C,H/s,W/s] -> [B,3,H,W] logits (3x3 conv without bias, bilinear x s)."""

    def __init__(self, planes: int, scale: int) -> None:
        super().__init__()
        self.conv = conv3x3(planes, 3)
        self.upsample = nn.Upsample(scale_factor=scale, mode="bilinear")

    def forward(self, x: Tensor) -> Tensor:
        return self.upsample(self.conv(x))


class BasicR34(nn.Module):
    """BASIC baseline: [B,3,H,W] (H, W multiples of 32) -> P3MOutput; P3M-Net R34 without TFI/sBFI/dBFI."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        check_width(width)
        c1, c2, c4, c8 = width, 2 * width, 4 * width, 8 * width
        self.width = width
        self.arch = "basic-r34"
        self.arch_kwargs = {"width": width}
        self.resnet = resnet34_mp(width)

        self.decoder4_g = semantic_block([c8, c8, c8, c4])
        self.decoder3_g = semantic_block([c4, c4, c4, c2])
        self.decoder2_g = semantic_block([c2, c2, c2, c1])
        self.decoder1_g = semantic_block([c1, c1, c1, c1])
        self.decoder0_g = semantic_block([c1, c1, c1, 3], last_plain=True)
        # at the scales where P3M-Net's dBFI 2/1/0 emit their side outputs (1/8, 1/4, 1/2)
        self.side_2 = SideHead(c2, 8)
        self.side_1 = SideHead(c1, 4)
        self.side_0 = SideHead(c1, 2)

        self.decoder4_l = matting_block([c8, c8, c8, c4])
        self.decoder3_l = matting_block([c4, c4, c4, c2])
        self.decoder2_l = matting_block([c2, c2, c2, c1])
        self.decoder1_l = matting_block([c1, c1, c1, c1])
        self.decoder0_l = matting_block([c1, c1, c1])
        self.decoder_final_l = nn.Conv2d(c1, 1, 3, padding=1)

    def forward(self, x: Tensor) -> P3MOutput:
        check_input(x)
        (_, e0p, e1, e2, e3, e4), (id0, id1, id2, id3, id4) = self.resnet.features(x)
        # semantic decoder: no deep-feature integration, side heads where dBFI would be
        d3_g = self.decoder3_g(self.decoder4_g(e4))
        d2_g = self.decoder2_g(d3_g)
        d1_g = self.decoder1_g(d2_g)
        global_logits = self.decoder0_g(d1_g)
        # matting decoder: U-Net skip (addition) of the encoder feature instead of TFI, no sBFI
        loc = unpool(self.decoder4_l(e4), id4)
        loc = unpool(self.decoder3_l(loc + e3), id3)
        loc = unpool(self.decoder2_l(loc + e2), id2)
        loc = unpool(self.decoder1_l(loc + e1), id1)
        loc = unpool(self.decoder0_l(loc + e0p), id0)
        local_alpha = self.decoder_final_l(loc).sigmoid()
        return P3MOutput(
            global_logits,
            local_alpha,
            fuse(global_logits, local_alpha),
            self.side_2(d3_g),
            self.side_1(d2_g),
            self.side_0(d1_g),
        )


@register_model("basic-r34", licence=P3M_LICENCE, limits={"width": (2, 256)})
def basic_r34(width: int = 64) -> BasicR34:
    """BASIC baseline with the R34 encoder and decoders of P3M-Net (width 64 = published channel counts)."""
    return BasicR34(width=width)
