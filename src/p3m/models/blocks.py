"""Building blocks shared by every P3M-Net variant (reference sections 3.2-3.5).

Module and attribute names follow the published code (`JizhiziLi/P3M`, `ViTAE-Transformer/P3M-Net`)
so that state-dict keys match the released checkpoints exactly.
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DBFI",
    "OUTPUT_SETS",
    "SBFI",
    "TFI",
    "P3MOutput",
    "check_input",
    "check_outputs",
    "check_width",
    "conv1x1",
    "conv3x3",
    "conv_bn_relu",
    "fuse",
    "matting_block",
    "p3m_decode",
    "semantic_block",
    "unpool",
]


class P3MOutput(NamedTuple):
    """The six outputs of every P3M-Net, in the published order (`out[0]` ... `out[5]` work as before).

    global_logits: [B,3,H,W] semantic logits G (published name `global_sigmoid`, raw logits).
    local_alpha:   [B,1,H,W] sigmoid alpha L of the matting branch.
    fused_alpha:   [B,1,H,W] F = L*[argmax G == 1] + [argmax G == 2].
    side2/1/0:     [B,3,H,W] full-resolution side logits of dBFI levels 2, 1, 0.
    A pass asked for one branch (`outputs="global"` or `"local"`) leaves the outputs it did not compute None.
    """

    global_logits: Tensor | None
    local_alpha: Tensor | None
    fused_alpha: Tensor | None
    side2: Tensor | None
    side1: Tensor | None
    side0: Tensor | None


def fuse(global_logits: Tensor, local_alpha: Tensor) -> Tensor:
    """Fusion rule of reference 3.5: F = L*[c==1] + [c==2], c = argmax over the 3 classes of G."""
    cls = global_logits.argmax(dim=1, keepdim=True)
    transition = (cls == 1).to(local_alpha.dtype)
    foreground = (cls == 2).to(local_alpha.dtype)
    return local_alpha * transition + foreground


def conv1x1(in_ch: int, out_ch: int) -> nn.Conv2d:
    """1x1 conv without bias (TFI/sBFI/dBFI transforms)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=1, bias=False)


def conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    """3x3 conv, padding 1, without bias (integration modules, ResNet blocks)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=1, bias=False)


def conv_bn_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    """[3x3 conv with bias, BN, ReLU] as three Sequential entries (decoder layout)."""
    return [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


def semantic_block(channels: list[int], *, last_plain: bool = False) -> nn.Sequential:
    """Semantic-decoder block: conv-BN-ReLU per (channels[i] -> channels[i+1]), then bilinear x2.

    With `last_plain` the last conv has no BN/ReLU (R34 `decoder0_g` head, transformer `decoder0_g`).
    """
    layers: list[nn.Module] = []
    pairs = list(itertools.pairwise(channels))
    for i, (cin, cout) in enumerate(pairs):
        if last_plain and i == len(pairs) - 1:
            layers.append(nn.Conv2d(cin, cout, 3, padding=1))
        else:
            layers.extend(conv_bn_relu(cin, cout))
    layers.append(nn.Upsample(scale_factor=2, mode="bilinear"))
    return nn.Sequential(*layers)


def matting_block(channels: list[int]) -> nn.Sequential:
    """Matting-decoder block: conv-BN-ReLU per (channels[i] -> channels[i+1]); unpooling is done outside."""
    layers: list[nn.Module] = []
    for cin, cout in itertools.pairwise(channels):
        layers.extend(conv_bn_relu(cin, cout))
    return nn.Sequential(*layers)


def unpool(x: Tensor, indices: Tensor) -> Tensor:
    """max_unpool2d(kernel 2, stride 2) with the encoder's pooling indices: [B,C,h,w] -> [B,C,2h,2w]."""
    return F.max_unpool2d(x, indices, kernel_size=(2, 2), stride=(2, 2))


class TFI(nn.Module):
    """Tripartite-Feature Integration: (s, m, e) each [B,C,h,w] -> [B,C,h,w]; one shared 1x1 transform."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        middle = planes // 2
        self.transform = conv1x1(planes, middle)
        self.conv1 = conv3x3(middle * 3, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, semantic: Tensor, matting: Tensor, encoder: Tensor) -> Tensor:
        x = torch.cat((self.transform(semantic), self.transform(matting), self.transform(encoder)), 1)
        return self.relu(self.bn1(self.conv1(x)))


class SBFI(nn.Module):
    """Shallow Bipartite-Feature Integration: (m [B,C,H/s,W/s], e0 [B,C0,H,W]) -> [B,C,H/s,W/s], residual on m."""

    def __init__(self, planes: int, stem_planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.transform1 = conv1x1(planes, planes // 2)
        self.transform2 = conv1x1(stem_planes, planes // 2)
        # kernel 2 with stride s > 2 is a strided subsample, as published
        self.maxpool = nn.MaxPool2d(2, stride=stride)
        self.conv1 = conv3x3(planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, matting: Tensor, stem: Tensor) -> Tensor:
        x = torch.cat((self.transform1(matting), self.transform2(self.maxpool(stem))), 1)
        return matting + self.relu(self.bn1(self.conv1(x)))


class DBFI(nn.Module):
    """Deep Bipartite-Feature Integration: (g [B,C,h,w], x [B,C4,H/32,W/32]) -> (g' [B,C,h,w], side [B,3,H,W])."""

    def __init__(self, planes: int, deep_planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.transform1 = conv1x1(planes, planes // 2)
        self.transform2 = conv1x1(deep_planes, planes // 2)
        self.upsample = nn.Upsample(scale_factor=stride, mode="bilinear")
        self.conv1 = conv3x3(planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, 3)
        self.upsample2 = nn.Upsample(scale_factor=32 // stride, mode="bilinear")

    def forward(self, semantic: Tensor, deep: Tensor, with_side: bool = True) -> tuple[Tensor, Tensor | None]:
        x = torch.cat((self.transform1(semantic), self.upsample(self.transform2(deep))), 1)
        x = semantic + self.relu(self.bn1(self.conv1(x)))
        return x, (self.upsample2(self.conv2(x)) if with_side else None)


#: What a forward pass computes: the published six outputs, or one branch for inference passes that use only
#: the semantic logits ("global": HYBRID's 1/2 pass) or only the local alpha ("local": its full pass).
OUTPUT_SETS = ("all", "global", "local")


def check_outputs(outputs: str) -> None:
    if outputs not in OUTPUT_SETS:
        raise ValueError(f"outputs must be one of {', '.join(OUTPUT_SETS)}, not {outputs!r}")


def p3m_decode(m: Any, deep: Tensor, indices: list[Tensor], feas: list[Tensor], outputs: str = "all") -> P3MOutput:
    """The P3M-Net decoder wiring (reference 3.4), shared by every backbone.

    `m` holds `decoder{4..0}_{g,l}`, `decoder_final_l`, `tfi_{3..0}`, `sbfi_{2..0}`, `dbfi_{2..0}` and
    `global_head(g)` (R34: `decoder0_g`; Swin-T/ViTAE-S: `decoder_final_g(decoder0_g(g))`).
    deep: the 1/32 feature; indices [id0 @1/2 .. id4 @1/32]; feas [stem @1, f0 @1/2, f1 @1/4, f2 @1/8, f3 @1/16].
    """
    check_outputs(outputs)
    sides = outputs == "all"
    stem, f0, f1, f2, f3 = feas
    id0, id1, id2, id3, id4 = indices
    # semantic decoder; TFI gets the block outputs before dBFI
    d4_g = m.decoder4_g(deep)
    d3_g = m.decoder3_g(d4_g)
    g, side2 = m.dbfi_2(d3_g, deep, sides)
    d2_g = m.decoder2_g(g)
    g, side1 = m.dbfi_1(d2_g, deep, sides)
    d1_g = m.decoder1_g(g)
    if outputs != "local":  # the last dBFI feeds only the semantic head (at 1/2 resolution, ~5 % of R34's work)
        g, side0 = m.dbfi_0(d1_g, deep, sides)
    if outputs == "global":
        return P3MOutput(m.global_head(g), None, None, None, None, None)
    # matting decoder
    loc = unpool(m.decoder4_l(deep), id4)
    loc = unpool(m.decoder3_l(m.tfi_3(d4_g, loc, f3)), id3)
    loc = unpool(m.decoder2_l(m.sbfi_2(m.tfi_2(d3_g, loc, f2), stem)), id2)
    loc = unpool(m.decoder1_l(m.sbfi_1(m.tfi_1(d2_g, loc, f1), stem)), id1)
    loc = unpool(m.decoder0_l(m.sbfi_0(m.tfi_0(d1_g, loc, f0), stem)), id0)
    local_alpha = m.decoder_final_l(loc).sigmoid()
    if outputs == "local":
        return P3MOutput(None, local_alpha, None, None, None, None)
    global_logits = m.global_head(g)
    return P3MOutput(global_logits, local_alpha, fuse(global_logits, local_alpha), side2, side1, side0)


def _nearest_multiples(n: int, k: int = 32) -> str:
    lo = (n // k) * k
    hi = lo + k
    return f"{lo} or {hi}" if lo > 0 else f"{hi}"


def check_width(width: object, minimum: int = 2) -> int:
    """A network's base channel count: an even integer >= ``minimum``, else ValueError."""
    if not isinstance(width, int) or width < minimum or width % 2:
        raise ValueError(f"width must be an even integer >= {minimum}, got {width!r}")
    return width


def check_input(x: Tensor) -> None:
    """Raise ValueError unless x is [B,3,H,W] with H and W multiples of 32 (reference 3.2)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"P3M-Net input must be a torch.Tensor [B,3,H,W], got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"P3M-Net input must be [B,3,H,W] (RGB batch), got shape {tuple(x.shape)}")
    h, w = int(x.shape[2]), int(x.shape[3])
    if h % 32 or w % 32 or h == 0 or w == 0:
        raise ValueError(
            f"P3M-Net input height and width must be multiples of 32, got {h}x{w} "
            f"(nearest valid: height {_nearest_multiples(h)}, width {_nearest_multiples(w)})"
        )
