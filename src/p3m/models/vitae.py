"""ViTAE-S encoder of P3M-Net, "noRC" max-pooling variant (`ViTAE-Transformer/P3M-Net` core/network/).

Four stages of NormalCells (attention + parallel convolution module PCM + MLP) on token maps at 1/4,
1/8, 1/16 and 1/32. Stage 0 uses Performer attention (linear in the number of tokens); stages 1-3
use standard global multi-head attention. The stem and the patch merging are shared with the Swin-T
variant (:mod:`p3m.models.swin`): convolution + max-pool stem, LayerNorm -> max-pool -> Linear.

Performer random features: the projection ``w`` of each Performer cell is not a parameter and is in no checkpoint
p3m draws it from a ``torch.Generator`` seeded with the encoder's ``seed`` (default 0) at construction, cell by
cell in order, so a given seed always gives the same encoder outputs for the same weights, and the draw does not consume
the global RNG (parameter initialisation still does). The official code draws it from the global RNG, so its exact
values cannot be reproduced; encoder outputs of two construction seeds
(identical weights) differ by up to about 2e-4."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m.models.swin import Mlp, PoolingPatchMerging, StemPoolingPatchEmbed, init_transformer_weights

__all__ = [
    "PERFORMER_EPSILON",
    "Attention",
    "NormalCell",
    "PerformerAttention",
    "ViTAENoRCMaxPoolingEncoder",
    "ViTAEStage",
    "orthogonal_random_features",
    "parallel_convolution_module",
    "positive_random_features",
    "vitae_s_encoder",
]

PERFORMER_EPSILON = 1e-8  # keeps the Performer normaliser away from 0


def orthogonal_random_features(num_heads: int, num_features: int, head_dim: int, generator: torch.Generator) -> Tensor:
    """-> [heads, m, d]: per head, m orthonormal rows (m <= d) from a Gaussian draw, scaled by sqrt(m).

    The orthogonalisation is that of ``nn.init.orthogonal_``: QR of the transposed draw, signs fixed
    by the diagonal of R.
    """
    heads = []
    for _ in range(num_heads):
        draw = torch.randn(num_features, head_dim, generator=generator)
        q, r = torch.linalg.qr(draw.T)  # [d, m], [m, m]
        q = q * torch.sign(torch.diagonal(r))
        heads.append(q.T * math.sqrt(num_features))
    return torch.stack(heads)


def positive_random_features(x: Tensor, w: Tensor) -> Tensor:
    """x [B, heads, T, d], w [heads, m, d] -> [B, heads, T, m]: exp(w x - |x|^2 / 2) / sqrt(m)."""
    projected = torch.einsum("bhtd,hmd->bhtm", x, w)
    return torch.exp(projected - (x * x).sum(dim=-1, keepdim=True) / 2) / math.sqrt(w.shape[1])


class PerformerAttention(nn.Module):
    """[B, N, C] -> [B, N, C]; softmax-kernel attention via positive orthogonal random features."""

    w: Tensor  # the random features, a buffer

    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        kernel_ratio: float = 0.5,
        *,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.kqv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)  # unused in forward; kept for the official keys
        num_features = int(self.head_dim * kernel_ratio)
        # Non-persistent: moves with .to(device) but stays out of the state dict, as officially.
        self.register_buffer(
            "w",
            orthogonal_random_features(num_heads, num_features, self.head_dim, generator),
            persistent=False,
        )

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        kqv = self.kqv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        # The exponentials overflow in half precision: the kernel runs in float32, as officially.
        with torch.autocast(device_type=x.device.type, enabled=False):
            k, q, v = kqv.float().unbind(0)  # split order k, q, v; each [B, heads, T, d]
            w = self.w.float()
            kp, qp = positive_random_features(k, w), positive_random_features(q, w)
            normaliser = torch.einsum("bhtm,bhm->bht", qp, kp.sum(dim=2)).unsqueeze(-1)
            kv = torch.einsum("bhtd,bhtm->bhdm", v, kp)  # sum over t of phi(k_t) v_t^T
            y = torch.einsum("bhtm,bhdm->bhtd", qp, kv) / (normaliser + PERFORMER_EPSILON)
        y = y.transpose(1, 2).reshape(b, n, c).to(x.dtype)
        return self.proj(y)


class Attention(nn.Module):
    """[B, N, C] -> [B, N, C]; global multi-head softmax attention (``qkv`` with bias, ``proj``)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # [B, heads, N, d]; scale d^-0.5 is SDPA's default
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


def parallel_convolution_module(dim: int, groups: int, mlp_ratio: float = 4.0) -> nn.Sequential:
    """PCM, [B, C, H, W] -> [B, C, H, W]: grouped 3x3 convs C -> 4C -> C -> C with BN/SiLU (indices 0-7).

    A plain ``nn.Sequential`` (not a subclass), so slicing and the ``PCM.{0,3,6}`` keys work as officially.
    """
    hidden = int(dim * mlp_ratio)
    return nn.Sequential(
        nn.Conv2d(dim, hidden, 3, padding=1, groups=groups),
        nn.BatchNorm2d(hidden),
        nn.SiLU(inplace=True),
        nn.Conv2d(hidden, dim, 3, padding=1, groups=groups),
        nn.BatchNorm2d(dim),
        nn.SiLU(inplace=True),
        nn.Conv2d(dim, dim, 3, padding=1, groups=groups),
        nn.SiLU(inplace=True),
    )


class NormalCell(nn.Module):
    """[B, H*W, C] -> [B, H*W, C]; x + Attn(LN(x)) + PCM(x), then + MLP(LN(.)) (LayerNorm eps 1e-6)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        groups: int,
        mlp_ratio: float = 4.0,
        *,
        performer: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        if performer:
            if generator is None:
                raise ValueError("a Performer cell needs a seeded torch.Generator")
            self.attn: nn.Module = PerformerAttention(dim, num_heads, generator=generator)
        else:
            self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.PCM = parallel_convolution_module(dim, groups, mlp_ratio)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        b, _, c = x.shape
        # PCM sees the cell input (before attention), as officially.
        conv = self.PCM(x.transpose(1, 2).reshape(b, c, size[0], size[1])).flatten(2).transpose(1, 2)
        x = x + self.attn(self.norm1(x))
        x = x + conv
        return x + self.mlp(self.norm2(x))


class ViTAEStage(nn.Module):
    """``RC`` (stem or pooling merge) then ``NC`` cells; stage 0 takes the image, others tokens."""

    def __init__(self, rc: nn.Module, cells: list[NormalCell]) -> None:
        super().__init__()
        self.RC = rc
        self.NC = nn.ModuleList(cells)

    def forward(
        self, x: Tensor, size: tuple[int, int] | None = None
    ) -> tuple[Tensor, tuple[int, int], list[Tensor], list[Tensor]]:
        if isinstance(self.RC, StemPoolingPatchEmbed):
            tokens, size, feas, indices = self.RC(x)
        else:
            assert size is not None
            tokens, skip, idx = self.RC(x, size)
            size, feas, indices = (size[0] // 2, size[1] // 2), [skip], [idx]
        for cell in self.NC:
            tokens = cell(tokens, size)
        return tokens, size, feas, indices


class ViTAENoRCMaxPoolingEncoder(nn.Module):
    """[B, 3, H, W] -> (x [B, 512, H/32, W/32], 5 pooling indices, 5 skip features); H, W % 32 == 0."""

    def __init__(
        self,
        in_chans: int = 3,
        stem_dim: int = 32,
        token_dims: tuple[int, ...] = (64, 128, 256, 512),
        depths: tuple[int, ...] = (2, 2, 12, 2),
        num_heads: tuple[int, ...] = (1, 2, 4, 8),
        pcm_groups: tuple[int, ...] = (1, 32, 64, 128),
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.seed = seed
        generator = torch.Generator().manual_seed(seed)
        self.layers = nn.ModuleList()
        for s, dim in enumerate(token_dims):
            if s == 0:
                rc: nn.Module = StemPoolingPatchEmbed(in_chans, stem_dim, dim, final_relu=False, norm_eps=1e-5)
            else:
                rc = PoolingPatchMerging(token_dims[s - 1], dim)
            cells = [
                NormalCell(
                    dim,
                    num_heads[s],
                    pcm_groups[s],
                    mlp_ratio,
                    performer=s == 0,
                    generator=generator if s == 0 else None,
                )
                for _ in range(depths[s])
            ]
            self.layers.append(ViTAEStage(rc, cells))
        self.num_features = token_dims[-1]
        self.head = nn.Linear(self.num_features, num_classes)  # ImageNet head, unused by P3M-Net
        self.apply(init_transformer_weights)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an input of shape [B, 3, H, W], got {list(x.shape)}")
        if x.shape[2] % 32 or x.shape[3] % 32:
            raise ValueError(f"input height and width must be multiples of 32, got {x.shape[2]}x{x.shape[3]}")
        feas: list[Tensor] = []
        indices: list[Tensor] = []
        tokens, size = x, None
        for stage in self.layers:
            tokens, size, stage_feas, stage_indices = stage(tokens, size)
            feas += stage_feas
            indices += stage_indices
        assert size is not None
        x = tokens.transpose(1, 2).reshape(tokens.shape[0], self.num_features, *size)
        return x, indices, feas


def vitae_s_encoder(seed: int = 0) -> ViTAENoRCMaxPoolingEncoder:
    """ViTAE-S encoder of P3M-Net (dims 64-128-256-512, cells 2-2-12-2, Performer in stage 0):
    19,166,312 parameters including the unused 513,000-parameter ``head``; 527 state-dict keys.
    ``seed`` fixes the Performer random features (not in any checkpoint), see the module docstring."""
    return ViTAENoRCMaxPoolingEncoder(seed=seed)
