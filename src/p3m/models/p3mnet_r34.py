"""P3M-Net with the max-pooling ResNet-34 encoder ("R34", reference section 4).

Attribute names, aliases and module order follow `JizhiziLi/P3M:core/network/P3mNet.py`, so
`state_dict()` has exactly the 713 keys of `p3mnet_pretrained_on_p3m10k.pth` and the published
checkpoint loads strictly. Hand-written: no torchvision.

`width` scales every channel count (64 -> width, 128 -> 2*width, ...); only width=64 matches the
published weights; width 16 or 32 gives small, fast models for CPU demos and tests.
"""

from __future__ import annotations

from torch import Tensor, nn

from p3m.models.blocks import (
    DBFI,
    SBFI,
    TFI,
    P3MOutput,
    check_input,
    check_width,
    conv3x3,
    matting_block,
    p3m_decode,
    semantic_block,
)
from p3m.models.registry import register_model

#: Code and published weights of P3M-Net R34 (and the BASIC baseline built from its parts).
P3M_LICENCE = "MIT (P3M authors, JizhiziLi/P3M)"

__all__ = ["BasicBlock", "P3MNetR34", "ResNetMP", "p3mnet_r34", "resnet34_mp"]


class BasicBlock(nn.Module):
    """torchvision BasicBlock with stride 1: [B,Cin,h,w] -> [B,C,h,w] (conv-BN-ReLU-conv-BN + shortcut, ReLU)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetMP(nn.Module):
    """ResNet-34 whose 5 downsamplings are all max-pools with indices (stride-1 stem and layers).

    The unused `avgpool`/`fc` classifier is kept: it is part of the published state dicts.
    """

    def __init__(self, layers: tuple[int, ...] = (3, 4, 6, 3), width: int = 64, num_classes: int = 1000) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=1, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, return_indices=True)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, return_indices=True)
        self.layer1 = self._make_layer(width, layers[0])
        self.maxpool3 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, return_indices=True)
        self.layer2 = self._make_layer(width * 2, layers[1])
        self.maxpool4 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, return_indices=True)
        self.layer3 = self._make_layer(width * 4, layers[2])
        self.maxpool5 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, return_indices=True)
        self.layer4 = self._make_layer(width * 8, layers[3])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int) -> nn.Sequential:
        downsample = None
        if self.inplanes != planes:
            # channel change only: all spatial reductions come from the max-pools
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=1, bias=False), nn.BatchNorm2d(planes)
            )
        layers = [BasicBlock(self.inplanes, planes, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def features(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """[B,3,H,W] -> features [e0 @1, e0p @1/2, e1 @1/4, e2 @1/8, e3 @1/16, e4 @1/32] and the five pooling
        indices [id0 .. id4] (idK: the pool whose output is at 1/2^(K+1)), as the P3M decoders use them."""
        e0 = self.relu(self.bn1(self.conv1(x)))
        e0p, id0 = self.maxpool1(e0)
        e1p, id1 = self.maxpool2(e0p)
        e1 = self.layer1(e1p)
        e2p, id2 = self.maxpool3(e1)
        e2 = self.layer2(e2p)
        e3p, id3 = self.maxpool4(e2)
        e3 = self.layer3(e3p)
        e4p, id4 = self.maxpool5(e3)
        e4 = self.layer4(e4p)
        return [e0, e0p, e1, e2, e3, e4], [id0, id1, id2, id3, id4]

    def forward(self, x: Tensor) -> Tensor:
        """Classifier path (unused by P3M-Net, kept for ImageNet checkpoints): [B,3,H,W] -> [B,1000]."""
        x = self.relu(self.bn1(self.conv1(x)))
        x, _ = self.maxpool1(x)
        x, _ = self.maxpool2(x)
        x = self.layer1(x)
        x, _ = self.maxpool3(x)
        x = self.layer2(x)
        x, _ = self.maxpool4(x)
        x = self.layer3(x)
        x, _ = self.maxpool5(x)
        x = self.layer4(x)
        return self.fc(self.avgpool(x).flatten(1))


def resnet34_mp(width: int = 64) -> ResNetMP:
    """Max-pooling ResNet-34 (`r34mp_pretrained_imagenet.pth.tar` layout at width 64)."""
    return ResNetMP((3, 4, 6, 3), width=width)


class P3MNetR34(nn.Module):
    """P3M-Net R34: [B,3,H,W] (H, W multiples of 32) -> P3MOutput (reference 3.4, 4)."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        check_width(width)
        c1, c2, c4, c8 = width, 2 * width, 4 * width, 8 * width
        self.width = width
        self.arch = "p3m-r34"  # registry name and build arguments, stored by save_checkpoint
        self.arch_kwargs = {"width": width}
        self.resnet = resnet34_mp(width)
        # aliases of the published code: the same modules registered twice (duplicate state-dict keys)
        self.encoder0 = nn.Sequential(self.resnet.conv1, self.resnet.bn1, self.resnet.relu)
        self.mp0 = self.resnet.maxpool1
        self.encoder1 = nn.Sequential(self.resnet.layer1)
        self.mp1 = self.resnet.maxpool2
        self.encoder2 = self.resnet.layer2
        self.mp2 = self.resnet.maxpool3
        self.encoder3 = self.resnet.layer3
        self.mp3 = self.resnet.maxpool4
        self.encoder4 = self.resnet.layer4
        self.mp4 = self.resnet.maxpool5

        self.tfi_3 = TFI(c4)
        self.tfi_2 = TFI(c2)
        self.tfi_1 = TFI(c1)
        self.tfi_0 = TFI(c1)
        self.sbfi_2 = SBFI(c2, c1, 8)
        self.sbfi_1 = SBFI(c1, c1, 4)
        self.sbfi_0 = SBFI(c1, c1, 2)
        self.dbfi_2 = DBFI(c2, c8, 4)
        self.dbfi_1 = DBFI(c1, c8, 8)
        self.dbfi_0 = DBFI(c1, c8, 16)

        # R34 decoders: the last conv of each block changes channels
        self.decoder4_g = semantic_block([c8, c8, c8, c4])
        self.decoder3_g = semantic_block([c4, c4, c4, c2])
        self.decoder2_g = semantic_block([c2, c2, c2, c1])
        self.decoder1_g = semantic_block([c1, c1, c1, c1])
        self.decoder0_g = semantic_block([c1, c1, c1, 3], last_plain=True)

        self.decoder4_l = matting_block([c8, c8, c8, c4])
        self.decoder3_l = matting_block([c4, c4, c4, c2])
        self.decoder2_l = matting_block([c2, c2, c2, c1])
        self.decoder1_l = matting_block([c1, c1, c1, c1])
        self.decoder0_l = matting_block([c1, c1, c1])
        self.decoder_final_l = nn.Conv2d(c1, 1, 3, padding=1)

    def global_head(self, g: Tensor) -> Tensor:
        """[B,C,H/2,W/2] -> [B,3,H,W] semantic logits (R34: the last semantic block ends in the 3-class conv)."""
        return self.decoder0_g(g)

    def forward(self, x: Tensor, outputs: str = "all") -> P3MOutput:
        """`outputs="all"`: the published six; "global" / "local" compute one branch (others None)."""
        check_input(x)
        # encoder (`encoderN` / `mpN` are aliases of these `resnet` modules); skips e0 (sBFI), e0p, e1, e2, e3 (TFI)
        feats, indices = self.resnet.features(x)
        return p3m_decode(self, feats[5], indices, feats[:5], outputs)


@register_model("p3m-r34", licence=P3M_LICENCE, limits={"width": (2, 256)})
def p3mnet_r34(width: int = 64) -> P3MNetR34:
    """P3M-Net R34 (MM21); width=64 matches `p3mnet_pretrained_on_p3m10k.pth`."""
    return P3MNetR34(width=width)
