"""Swin-T encoder of P3M-Net, stem-pooling variant (`ViTAE-Transformer/P3M-Net` core/network/Swin_T/).

Differences from the classification Swin-T: a convolutional stem with two stride-2 max-pools replaces
the 4x4 patch embedding, patch merging is LayerNorm -> max-pool (indices kept) -> Linear, and the
token map is zero-padded bottom/right to a multiple of the window size, with attention masks that
separate padding tokens from image tokens as well as the regions created by the cyclic shift.

Every block stores the mask of the construction size (``img_size``, 512 for the published model) as a
persistent buffer ``attn_mask``, so state dicts match the official ones key for key. At any other
input size the masks are recomputed on the input's device (and cached per size); they are pure
functions of (token-map size, window, shift), see :func:`window_attention_mask`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "MASK_VALUE",
    "DropPath",
    "Mlp",
    "PoolingPatchMerging",
    "StemPoolingPatchEmbed",
    "SwinBlock",
    "SwinStage",
    "SwinStemPoolingEncoder",
    "WindowAttention",
    "relative_position_index",
    "swin_t_encoder",
    "window_attention_mask",
    "window_partition",
    "window_reverse",
]

# Added to attention logits between tokens of different regions (value of the official code: a
# large negative number, not -inf, so a window made only of padding still has a finite softmax).
MASK_VALUE = -100.0


def window_partition(x: Tensor, window_size: int) -> Tensor:
    """[B, Hp, Wp, C] -> [B * nW, ws * ws, C], windows in row-major order (Hp, Wp multiples of ws)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)


def window_reverse(windows: Tensor, window_size: int, height: int, width: int) -> Tensor:
    """[B * nW, ws * ws, C] -> [B, Hp, Wp, C]; inverse of :func:`window_partition`."""
    c = windows.shape[-1]
    x = windows.view(-1, height // window_size, width // window_size, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


def relative_position_index(window_size: int) -> Tensor:
    """-> [ws*ws, ws*ws] int64: row of the (2ws-1)^2 bias table for each (query, key) pair of a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")).flatten(
        1
    )  # [2, N]
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
    return relative[..., 0] * (2 * window_size - 1) + relative[..., 1]


def _padded(size: int, window_size: int) -> int:
    return math.ceil(size / window_size) * window_size


def window_attention_mask(
    height: int,
    width: int,
    window_size: int = 7,
    shift_size: int = 0,
    *,
    device: torch.device | str | None = None,
) -> Tensor:
    """Attention mask of one block: [nW, ws*ws, ws*ws] float32 with 0 (same region) or -100.

    ``height`` x ``width`` is the unpadded token map. Protocol (`ViTAE-Transformer/P3M-Net` core/network/Swin_T/): the
    map is zero-padded at the bottom/right to Hp x Wp (multiples of ``window_size``), cyclically shifted by
    ``-shift_size`` on both axes, then cut into windows. Every token of the shifted, padded map gets a region label:
    padding tokens form one region; image tokens are labelled by the standard Swin shift slices ``(0, -ws), (-ws,
    -shift), (-shift, None)`` per axis (one region when shift is 0). Two tokens of a window may attend to each other
    only if their labels are equal."""
    hp, wp = _padded(height, window_size), _padded(width, window_size)
    # Arithmetic form of the slices (no empty slices or in-place writes, so it traces/exports).
    rows = torch.arange(hp, device=device)
    cols = torch.arange(wp, device=device)
    band_h = torch.zeros_like(rows)
    band_w = torch.zeros_like(cols)
    if shift_size > 0:
        band_h = (rows >= hp - window_size).long() + (rows >= hp - shift_size).long()
        band_w = (cols >= wp - window_size).long() + (cols >= wp - shift_size).long()
    labels = 3 * band_h[:, None] + band_w[None, :]
    # original position of each token of the shifted map; beyond the image = padding
    padding = ((rows + shift_size) % hp >= height)[:, None] | ((cols + shift_size) % wp >= width)[None, :]
    labels = torch.where(padding, torch.full_like(labels, 9), labels)
    windows = window_partition(labels[None, :, :, None], window_size).squeeze(-1)  # [nW, N]
    different = windows[:, None, :] != windows[:, :, None]
    return torch.zeros(different.shape, device=device).masked_fill(different, MASK_VALUE)


class DropPath(nn.Module):
    """[B, ...] -> [B, ...]; stochastic depth: zeroes whole samples of a residual branch in training."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class Mlp(nn.Module):
    """[B, N, C] -> [B, N, C]; Linear(C, hidden) - GELU - Linear(hidden, C)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class StemPoolingPatchEmbed(nn.Module):
    """[B, 3, H, W] -> tokens [B, H/4 * W/4, C] + 2 skip features (@1, @1/2) + 2 pooling indices."""

    def __init__(
        self,
        in_chans: int = 3,
        stem_dim: int = 48,
        embed_dim: int = 96,
        *,
        final_relu: bool = True,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.proj1 = nn.Conv2d(in_chans, stem_dim, 3, padding=1)
        self.proj2 = nn.Conv2d(stem_dim, embed_dim, 3, padding=1)
        self.proj3 = nn.Conv2d(embed_dim, embed_dim, 3, padding=1)
        self.final_relu = final_relu  # Swin-T: ReLU after proj3; ViTAE-S: none
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int], list[Tensor], list[Tensor]]:
        fea1 = F.relu(self.proj1(x))
        x, idx0 = F.max_pool2d(fea1, 2, 2, return_indices=True)
        fea2 = F.relu(self.proj2(x))
        x, idx1 = F.max_pool2d(fea2, 2, 2, return_indices=True)
        x = self.proj3(x)
        if self.final_relu:
            x = F.relu(x)
        size = (x.shape[2], x.shape[3])
        tokens = self.norm(x.flatten(2).transpose(1, 2))
        return tokens, size, [fea1, fea2], [idx0, idx1]


class PoolingPatchMerging(nn.Module):
    """tokens [B, H*W, C] -> tokens [B, H/2*W/2, C_out], skip [B, C, H, W], indices [B, C, H/2, W/2]."""

    def __init__(self, dim: int, out_dim: int | None = None, *, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.linear = nn.Linear(dim, out_dim or 2 * dim, bias=False)

    def forward(self, x: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        b, _, c = x.shape
        skip = self.norm(x).transpose(1, 2).reshape(b, c, size[0], size[1])
        pooled, indices = F.max_pool2d(skip, 2, 2, return_indices=True)
        tokens = self.linear(pooled.flatten(2).transpose(1, 2))
        return tokens, skip, indices


class WindowAttention(nn.Module):
    """[B*nW, ws*ws, C] -> [B*nW, ws*ws, C]; multi-head attention with relative position bias and mask."""

    relative_position_index: Tensor  # a buffer

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_position_bias(self) -> Tensor:
        """-> [heads, N, N] bias added to the logits of every window."""
        n = self.window_size * self.window_size
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # [B*nW, heads, N, d]
        attn = (q * self.scale) @ k.transpose(-2, -1) + self.relative_position_bias().unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            # -1 (not bw // nw) keeps the batch size symbolic for tracing / ONNX export
            attn = attn.view(-1, nw, self.num_heads, n, n) + mask.to(attn.dtype)[None, :, None]
            attn = attn.view(-1, self.num_heads, n, n)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(x)


class SwinBlock(nn.Module):
    """[B, H*W, C] -> [B, H*W, C]; (shifted) window attention on the zero-padded map, then MLP."""

    attn_mask: Tensor  # a buffer

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        num_heads: int,
        window_size: int = 7,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.input_resolution = (input_resolution[0], input_resolution[1])
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        # Mask of the construction size, saved in the state dict like the official one.
        self.register_buffer("attn_mask", window_attention_mask(*self.input_resolution, window_size, shift_size))
        self._mask_cache: dict[tuple[int, int, torch.device], Tensor] = {}

    def mask_for(self, height: int, width: int, device: torch.device) -> Tensor:
        """-> [nW, N, N] mask for a ``height`` x ``width`` token map: the stored buffer at the
        construction size, otherwise computed on ``device`` and cached per size."""
        if (height, width) == self.input_resolution and self.attn_mask.device == device:
            return self.attn_mask
        key = (height, width, device)
        mask = self._mask_cache.get(key)
        if mask is None:
            mask = window_attention_mask(height, width, self.window_size, self.shift_size, device=device)
            if len(self._mask_cache) >= 8:  # bounded; clear() is atomic for threaded servers
                self._mask_cache.clear()
            self._mask_cache[key] = mask
        return mask

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        height, width = size
        b, _, c = x.shape
        ws, shift = self.window_size, self.shift_size
        shortcut = x
        x = self.norm1(x).view(b, height, width, c)
        hp, wp = _padded(height, ws), _padded(width, ws)
        x = F.pad(x, (0, 0, 0, wp - width, 0, hp - height))
        if shift > 0:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        windows = self.attn(window_partition(x, ws), self.mask_for(height, width, x.device))
        x = window_reverse(windows, ws, hp, wp)
        if shift > 0:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        x = x[:, :height, :width, :].reshape(b, height * width, c)
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SwinStage(nn.Module):
    """[B, H*W, C] -> [B, H/2*W/2, 2C] + skip [B, C, H, W] + indices (or unchanged, last stage)."""

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        depth: int,
        num_heads: int,
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: list[float] | None = None,
        downsample: bool = True,
    ) -> None:
        super().__init__()
        drop_path = drop_path or [0.0] * depth
        self.blocks = nn.ModuleList(
            SwinBlock(
                dim,
                input_resolution,
                num_heads,
                window_size,
                shift_size=0 if i % 2 == 0 else window_size // 2,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop_path=drop_path[i],
            )
            for i in range(depth)
        )
        self.downsample = PoolingPatchMerging(dim) if downsample else None

    def forward(self, x: Tensor, size: tuple[int, int]) -> tuple[Tensor, tuple[int, int], Tensor | None, Tensor | None]:
        for block in self.blocks:
            x = block(x, size)
        if self.downsample is None:
            return x, size, None, None
        x, skip, indices = self.downsample(x, size)
        return x, (size[0] // 2, size[1] // 2), skip, indices


class SwinStemPoolingEncoder(nn.Module):
    """[B, 3, H, W] -> (x [B, 8C, H/32, W/32], 5 pooling indices, 5 skip features); H, W % 32 == 0."""

    def __init__(
        self,
        img_size: int = 512,
        in_chans: int = 3,
        embed_dim: int = 96,
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.2,
    ) -> None:
        super().__init__()
        if img_size % 32 != 0:
            raise ValueError(f"img_size must be a multiple of 32, got {img_size}")
        self.img_size = img_size
        self.patch_embed = StemPoolingPatchEmbed(in_chans, embed_dim // 2, embed_dim, final_relu=True)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()  # linear over all blocks
        self.layers = nn.ModuleList()
        for s, depth in enumerate(depths):
            tokens = img_size // 4 // 2**s
            self.layers.append(
                SwinStage(
                    embed_dim * 2**s,
                    (tokens, tokens),
                    depth,
                    num_heads[s],
                    window_size,
                    mlp_ratio,
                    qkv_bias,
                    drop_path=rates[sum(depths[:s]) : sum(depths[: s + 1])],
                    downsample=s < len(depths) - 1,
                )
            )
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.num_features)
        self.apply(init_transformer_weights)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        _check_input(x)
        tokens, size, feas, indices = self.patch_embed(x)
        for stage in self.layers:
            tokens, size, skip, idx = stage(tokens, size)
            if skip is not None:
                feas.append(skip)
                indices.append(idx)
        tokens = self.norm(tokens)
        x = tokens.transpose(1, 2).reshape(tokens.shape[0], self.num_features, *size)
        return x, indices, feas


def init_transformer_weights(module: nn.Module) -> None:
    """Swin/ViTAE (timm) initialisation of Linear and LayerNorm; convolutions and BatchNorm keep PyTorch's default."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _check_input(x: Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected an input of shape [B, 3, H, W], got {list(x.shape)}")
    if x.shape[2] % 32 or x.shape[3] % 32:
        raise ValueError(f"input height and width must be multiples of 32, got {x.shape[2]}x{x.shape[3]}")


def swin_t_encoder(img_size: int = 512, drop_path_rate: float = 0.2) -> SwinStemPoolingEncoder:
    """Swin-T encoder of P3M-Net (embed 96, depths 2-2-6-2, heads 3-6-12-24, window 7): 26,475,354
    parameters, 199 state-dict keys. ``img_size`` fixes the shapes of the stored ``attn_mask`` buffers
    (512 for the official checkpoints); any multiple-of-32 input size runs at inference."""
    return SwinStemPoolingEncoder(img_size=img_size, drop_path_rate=drop_path_rate)
