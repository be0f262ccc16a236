"""The published P3M-Net forward passes, transcribed to run on p3m's own submodules (same attribute names):

- `published_fusion`: `get_masked_local_from_global` of `JizhiziLi/P3M:core/util.py`;
- `published_r34_forward`: `P3mNet.forward` of `JizhiziLi/P3M:core/network/P3mNet.py` (reference §3);
- `published_transformer_decoder_forward`: the forward of the ViTAE / Swin decoders (`..._DecoderV1`) of
  `ViTAE-Transformer/P3M-Net:core/network/` (reference §4-§5).

`p3m.models` must give the same tensors, bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def published_fusion(global_sigmoid, local_sigmoid):
    """Literal copy of `get_masked_local_from_global` from the published code."""
    values, index = torch.max(global_sigmoid, 1)  # noqa: RUF059 (the published line)
    index = index[:, None, :, :].float()
    bg_mask = index.clone()
    bg_mask[bg_mask == 2] = 1
    bg_mask = 1 - bg_mask
    trimap_mask = index.clone()
    trimap_mask[trimap_mask == 2] = 0
    fg_mask = index.clone()
    fg_mask[fg_mask == 1] = 0
    fg_mask[fg_mask == 2] = 1
    return local_sigmoid * trimap_mask + fg_mask


def published_r34_forward(self, input):
    """Literal transcription of `P3mNet.forward` (JizhiziLi/P3M), run on our submodules."""
    e0 = self.encoder0(input)
    e0p, id0 = self.mp0(e0)
    e1p, id1 = self.mp1(e0p)
    e1 = self.encoder1(e1p)
    e2p, id2 = self.mp2(e1)
    e2 = self.encoder2(e2p)
    e3p, id3 = self.mp3(e2)
    e3 = self.encoder3(e3p)
    e4p, id4 = self.mp4(e3)
    e4 = self.encoder4(e4p)
    d4_g = self.decoder4_g(e4)
    d3_g = self.decoder3_g(d4_g)
    d2_g, global_sigmoid_side2 = self.dbfi_2(d3_g, e4)
    d2_g = self.decoder2_g(d2_g)
    d1_g, global_sigmoid_side1 = self.dbfi_1(d2_g, e4)
    d1_g = self.decoder1_g(d1_g)
    d0_g, global_sigmoid_side0 = self.dbfi_0(d1_g, e4)
    d0_g = self.decoder0_g(d0_g)
    global_sigmoid = d0_g
    d4_l = self.decoder4_l(e4)
    d4_l = F.max_unpool2d(d4_l, id4, kernel_size=2, stride=2)
    d3_l = self.tfi_3(d4_g, d4_l, e3)
    d3_l = self.decoder3_l(d3_l)
    d3_l = F.max_unpool2d(d3_l, id3, kernel_size=2, stride=2)
    d2_l = self.tfi_2(d3_g, d3_l, e2)
    d2_l = self.sbfi_2(d2_l, e0)
    d2_l = self.decoder2_l(d2_l)
    d2_l = F.max_unpool2d(d2_l, id2, kernel_size=2, stride=2)
    d1_l = self.tfi_1(d2_g, d2_l, e1)
    d1_l = self.sbfi_1(d1_l, e0)
    d1_l = self.decoder1_l(d1_l)
    d1_l = F.max_unpool2d(d1_l, id1, kernel_size=2, stride=2)
    d0_l = self.tfi_0(d1_g, d1_l, e0p)
    d0_l = self.sbfi_0(d0_l, e0)
    d0_l = self.decoder0_l(d0_l)
    d0_l = F.max_unpool2d(d0_l, id0, kernel_size=2, stride=2)
    d0_l = self.decoder_final_l(d0_l)
    local_sigmoid = torch.sigmoid(d0_l)
    fusion_sigmoid = published_fusion(global_sigmoid, local_sigmoid)
    return (global_sigmoid, local_sigmoid, fusion_sigmoid,
            global_sigmoid_side2, global_sigmoid_side1, global_sigmoid_side0)  # fmt: skip


def published_transformer_decoder_forward(self, x, indices, feas):
    """Literal transcription of the published transformer decoder forward (ViTAE/Swin DecoderV1)."""
    d4_g = self.decoder4_g(x)
    d3_g = self.decoder3_g(d4_g)
    d2_g, global_sigmoid_side2 = self.dbfi_2(d3_g, x)
    d2_g = self.decoder2_g(d2_g)
    d1_g, global_sigmoid_side1 = self.dbfi_1(d2_g, x)
    d1_g = self.decoder1_g(d1_g)
    d0_g, global_sigmoid_side0 = self.dbfi_0(d1_g, x)
    d0_g = self.decoder0_g(d0_g)
    global_sigmoid = self.decoder_final_g(d0_g)
    d4_l = self.decoder4_l(x)
    d4_l = F.max_unpool2d(d4_l, indices[-1], kernel_size=2, stride=2)
    d3_l = self.tfi_3(d4_g, d4_l, feas[-1])
    d3_l = self.decoder3_l(d3_l)
    d3_l = F.max_unpool2d(d3_l, indices[-2], kernel_size=2, stride=2)
    d2_l = self.tfi_2(d3_g, d3_l, feas[-2])
    d2_l = self.sbfi_2(d2_l, feas[-5])
    d2_l = self.decoder2_l(d2_l)
    d2_l = F.max_unpool2d(d2_l, indices[-3], kernel_size=2, stride=2)
    d1_l = self.tfi_1(d2_g, d2_l, feas[-3])
    d1_l = self.sbfi_1(d1_l, feas[-5])
    d1_l = self.decoder1_l(d1_l)
    d1_l = F.max_unpool2d(d1_l, indices[-4], kernel_size=2, stride=2)
    d0_l = self.tfi_0(d1_g, d1_l, feas[-4])
    d0_l = self.sbfi_0(d0_l, feas[-5])
    d0_l = self.decoder0_l(d0_l)
    d0_l = F.max_unpool2d(d0_l, indices[-5], kernel_size=2, stride=2)
    d0_l = self.decoder_final_l(d0_l)
    local_sigmoid = torch.sigmoid(d0_l)
    fusion_sigmoid = published_fusion(global_sigmoid, local_sigmoid)
    return (global_sigmoid, local_sigmoid, fusion_sigmoid,
            global_sigmoid_side2, global_sigmoid_side1, global_sigmoid_side0)  # fmt: skip
