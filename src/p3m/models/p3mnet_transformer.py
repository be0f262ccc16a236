"""Decoder and wrapper of the transformer P3M-Net variants, Swin-T and ViTAE-S (reference 5.1, 5.2, 6.2).

The encoders live in `p3m.models.swin` and `p3m.models.vitae`; each returns
`(x, indices, feas)`: the deepest feature @1/32, 5 pooling-index tensors ordered shallow->deep
[@1/2 .. @1/32] and 5 skip features ordered shallow->deep [@1, @1/2, @1/4, @1/8, @1/16].
Attribute names follow `ViTAE-Transformer/P3M-Net` (`encoder.*`, `decoder.*` state-dict keys).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from p3m.models.blocks import (
    DBFI,
    SBFI,
    TFI,
    P3MOutput,
    check_input,
    matting_block,
    p3m_decode,
    semantic_block,
)
from p3m.models.registry import register_model
from p3m.models.swin import swin_t_encoder
from p3m.models.vitae import vitae_s_encoder

__all__ = ["SWIN_T_CHANNELS", "VITAE_S_CHANNELS", "TransformerMattingDecoder", "TransformerP3MNet"]

# (deepest, level-4, level-3, level-2, level-1, stem) channels of the decoder per variant
SWIN_T_CHANNELS: tuple[int, ...] = (768, 384, 192, 96, 96, 48)
VITAE_S_CHANNELS: tuple[int, ...] = (512, 256, 128, 64, 64, 32)
#: Code and published weights of the IJCV P3M-Net variants.
P3M_NET_LICENCE = "MIT (P3M-Net authors, ViTAE-Transformer/P3M-Net)"


class TransformerMattingDecoder(nn.Module):
    """P3M-Net decoder for transformer encoders: (x, indices, feas) -> P3MOutput.

    `channels` = (C4, c3, c2, c1, c0, stem): Swin-T (768, 384, 192, 96, 96, 48),
    ViTAE-S (512, 256, 128, 64, 64, 32). Here the first conv of each block changes channels, and the
    semantic logits come from a separate full-resolution head `decoder_final_g`.
    """

    def __init__(self, channels: Sequence[int] = SWIN_T_CHANNELS) -> None:
        super().__init__()
        if len(channels) != 6:
            raise ValueError(f"channels must have 6 entries (C4, c3, c2, c1, c0, stem), got {tuple(channels)}")
        c_deep, c3, c2, c1, c0, c_stem = (int(c) for c in channels)
        self.channels = (c_deep, c3, c2, c1, c0, c_stem)
        self.tfi_3 = TFI(c3)
        self.tfi_2 = TFI(c2)
        self.tfi_1 = TFI(c1)
        self.tfi_0 = TFI(c0)
        self.sbfi_2 = SBFI(c2, c_stem, 8)
        self.sbfi_1 = SBFI(c1, c_stem, 4)
        self.sbfi_0 = SBFI(c0, c_stem, 2)
        self.dbfi_2 = DBFI(c2, c_deep, 4)
        self.dbfi_1 = DBFI(c1, c_deep, 8)
        self.dbfi_0 = DBFI(c0, c_deep, 16)

        self.decoder4_g = semantic_block([c_deep, c3, c3, c3])
        self.decoder3_g = semantic_block([c3, c2, c2, c2])
        self.decoder2_g = semantic_block([c2, c1, c1, c1])
        self.decoder1_g = semantic_block([c1, c0, c0, c0])
        self.decoder0_g = semantic_block([c0, c_stem, c_stem, c_stem], last_plain=True)
        self.decoder_final_g = nn.Conv2d(c_stem, 3, 3, padding=1)

        self.decoder4_l = matting_block([c_deep, c3, c3, c3])
        self.decoder3_l = matting_block([c3, c2, c2, c2])
        self.decoder2_l = matting_block([c2, c1, c1, c1])
        self.decoder1_l = matting_block([c1, c0, c0, c0])
        self.decoder0_l = matting_block([c0, c_stem, c_stem])
        self.decoder_final_l = nn.Conv2d(c_stem, 1, 3, padding=1)

    def global_head(self, g: Tensor) -> Tensor:
        """[B,C,H/2,W/2] -> [B,3,H,W]: last semantic block, then the full-resolution head `decoder_final_g`."""
        return self.decoder_final_g(self.decoder0_g(g))

    def forward(self, x: Tensor, indices: Sequence[Tensor], feas: Sequence[Tensor], outputs: str = "all") -> P3MOutput:
        if len(indices) != 5 or len(feas) != 5:
            raise ValueError(f"decoder expects 5 indices and 5 features, got {len(indices)} and {len(feas)}")
        return p3m_decode(self, x, list(indices), list(feas), outputs)


class TransformerP3MNet(nn.Module):
    """P3M-Net with a transformer encoder: [B,3,H,W] (H, W multiples of 32) -> P3MOutput.

    Published classes: `SwinStemPooling5TransformerMatting`, `ViTAE_noRC_MaxPooling_Matting`.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: TransformerMattingDecoder,
        arch: str | None = None,
        arch_kwargs: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.arch = arch  # registry name and build arguments, stored by save_checkpoint
        self.arch_kwargs = dict(arch_kwargs or {})

    def forward(self, x: Tensor, outputs: str = "all") -> P3MOutput:
        """`outputs="all"`: the published six; "global" / "local" compute one branch (others None)."""
        check_input(x)
        deep, indices, feas = self.encoder(x)
        return self.decoder(deep, indices, feas, outputs)


@register_model("p3m-swin-t", licence=P3M_NET_LICENCE, limits={"img_size": (32, 2048)})
def p3mnet_swin_t(img_size: int = 512) -> TransformerP3MNet:
    """P3M-Net Swin-T (IJCV); build with img_size=512 to load state dicts strictly (reference 5.4)."""
    encoder = swin_t_encoder(img_size=img_size)
    return TransformerP3MNet(encoder, TransformerMattingDecoder(SWIN_T_CHANNELS), "p3m-swin-t", {"img_size": img_size})


@register_model("p3m-vitae-s", licence=P3M_NET_LICENCE, limits={"seed": (0, 2**63 - 1)})
def p3mnet_vitae_s(seed: int = 0) -> TransformerP3MNet:
    """P3M-Net ViTAE-S (IJCV); `seed` fixes the unsaved Performer random features (reference 6.4)."""
    encoder = vitae_s_encoder(seed=seed)
    return TransformerP3MNet(encoder, TransformerMattingDecoder(VITAE_S_CHANNELS), "p3m-vitae-s", {"seed": seed})
