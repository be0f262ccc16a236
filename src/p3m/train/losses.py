"""P3M-Net training losses (`JizhiziLi/P3M` core/train.py).

Conventions of this module (all tensors ``[B, C, H, W]``):

- ``alpha`` is the ground-truth alpha in [0, 1] (the reference keeps A in 0-255 and divides by 255
  inside the losses; the data pipeline of ``p3m.train.data`` already divides).
- ``trimap`` holds trimap *values* 0 / 128 / 255 (float or integer), after the pipeline's
  re-quantisation (IJCV) or with the interpolated values left in place (MM21).
- ``image``, ``fg`` and ``bg`` are ImageNet-normalised RGB.

Losses are computed in float32 even under autocast: the sqrt(x + 1e-12) terms underflow in half
precision.
"""

from __future__ import annotations

from typing import NamedTuple, cast

import torch
import torch.nn.functional as F

__all__ = [
    "EPS",
    "LOSS_WEIGHTS",
    "LossTerms",
    "composition_loss",
    "cross_entropy_loss",
    "fusion_alpha_loss",
    "fusion_laplacian_loss",
    "global_loss",
    "laplacian_kernel",
    "laplacian_loss",
    "laplacian_losses",
    "laplacian_pyramid",
    "p3m_loss",
    "trimap_to_classes",
    "unknown_alpha_loss",
    "unknown_laplacian_loss",
    "unknown_region",
]

EPS = 1e-12
LAPLACIAN_LEVELS = 5
# Weights of the total loss: L_global / 6 + 2 (L_a^u + L_lap^u) + 3 (L_a^f + L_lap^f) + L_comp.
LOSS_WEIGHTS = {
    "global": 1.0 / 6.0,
    "unknown_alpha": 2.0,
    "unknown_laplacian": 2.0,
    "fusion_alpha": 3.0,
    "fusion_laplacian": 3.0,
    "composition": 1.0,
}


def laplacian_kernel(dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
    """5x5 kernel K[i, j] = (g(i-2) + g(j-2)) / Z, g(d) = exp(-d^2): a SUM of 1-D Gaussians."""
    d = torch.arange(-2, 3, dtype=torch.float64)
    g = torch.exp(-(d**2))  # sigma = 1
    kernel = g[:, None] + g[None, :]
    kernel = kernel / kernel.sum()  # Z = 10 (1 + 2/e + 2/e^4)
    return kernel.to(dtype=dtype, device=device)


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """[B,C,H,W] -> [B,C,H,W]: replicate pad by 2, depthwise 5x5 convolution."""
    channels = x.shape[1]
    weight = kernel.expand(channels, 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), weight, groups=channels)


def laplacian_pyramid(x: torch.Tensor, levels: int = LAPLACIAN_LEVELS) -> list[torch.Tensor]:
    """The ``levels + 1`` terms of the Laplacian loss: X_l - blur(X_l) for each level, then the last X_levels."""
    kernel = laplacian_kernel(x.dtype, x.device)
    terms = []
    current = x
    for _ in range(levels):
        blurred = _blur(current, kernel)
        terms.append(current - blurred)
        current = F.avg_pool2d(blurred, 2)
    terms.append(current)
    return terms


def laplacian_loss(pred: torch.Tensor, target: torch.Tensor, levels: int = LAPLACIAN_LEVELS) -> torch.Tensor:
    """Lap(X, Y) = sum over pyramid terms of mean |term(X) - term(Y)|.

    The pyramid is linear (replicate pad, blur, subtraction and 2x2 mean all are), so term(X) - term(Y) =
    term(X - Y): one pyramid of the difference instead of two, equal up to float rounding.
    """
    return laplacian_losses(pred - target, 1, levels)[0]


def laplacian_losses(diff: torch.Tensor, groups: int, levels: int = LAPLACIAN_LEVELS) -> torch.Tensor:
    """[G*B,C,H,W] differences of G stacked (pred - target) pairs -> [G] Laplacian losses, one pyramid pass.

    Stacking the loss terms along the batch runs the blur once per level for all of them (fewer kernel launches).
    """
    total = diff.new_zeros(groups)
    for term in laplacian_pyramid(diff, levels):
        total = total + term.abs().reshape(groups, -1).mean(dim=1)
    return total


def trimap_to_classes(trimap: torch.Tensor, variant: str = "ijcv") -> torch.Tensor:
    """[B,1,H,W] trimap values -> [B,H,W] int64 classes 0 = bg, 1 = transition, 2 = fg.

    ``ijcv``: the trimap is already {0, 128, 255}; 0 -> 0, 255 -> 2, anything else -> 1.
    ``mm21``: 0 -> 0, 255 -> 2, values > 2 -> 1, and interpolated values 1 and 2 keep their value as
    class (the reference code's quirk: an interpolated 2 is labelled foreground).
    """
    t = trimap.round().long().squeeze(1) if trimap.dim() == 4 else trimap.round().long()
    # torch.where, not boolean-mask assignment: no host synchronisation, so the step can be a CUDA graph
    if variant == "ijcv":
        return torch.where(t == 0, 0, torch.where(t == 255, 2, 1))
    if variant == "mm21":
        return torch.where(t == 255, 2, torch.where(t > 2, 1, t))
    raise ValueError(f"unknown trimap variant {variant!r} (expected 'ijcv' or 'mm21')")


def unknown_region(trimap: torch.Tensor) -> torch.Tensor:
    """W = [T = 128] as a float mask of the trimap's shape (exact equality in both variants)."""
    return (trimap.round() == 128).to(torch.float32)


def cross_entropy_loss(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """`nn.CrossEntropyLoss` (mean over all B*H*W pixels) of [B,3,H,W] logits vs [B,H,W] classes."""
    return F.cross_entropy(logits.float(), classes)


def global_loss(
    global_logits: torch.Tensor,
    side2: torch.Tensor,
    side1: torch.Tensor,
    side0: torch.Tensor,
    classes: torch.Tensor,
) -> torch.Tensor:
    """L_global = CE(side2) + CE(side1) + CE(side0) + 3 CE(G)."""
    return (
        cross_entropy_loss(side2, classes)
        + cross_entropy_loss(side1, classes)
        + cross_entropy_loss(side0, classes)
        + 3.0 * cross_entropy_loss(global_logits, classes)
    )


def unknown_alpha_loss(local_alpha: torch.Tensor, alpha: torch.Tensor, unknown: torch.Tensor) -> torch.Tensor:
    """L_a^u = sum sqrt((W (a_l - a))^2 + 1e-12) / (sum W + 1)."""
    diff = unknown * (local_alpha.float() - alpha)
    return torch.sqrt(diff * diff + EPS).sum() / (unknown.sum() + 1.0)


def unknown_laplacian_loss(local_alpha: torch.Tensor, alpha: torch.Tensor, unknown: torch.Tensor) -> torch.Tensor:
    """L_lap^u = Lap(W a_l, W a)."""
    return laplacian_loss(unknown * local_alpha.float(), unknown * alpha)


def fusion_alpha_loss(fused_alpha: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """L_a^f = sum sqrt((a_f - a)^2 + 1e-12) / (B H W)."""
    diff = fused_alpha.float() - alpha
    return torch.sqrt(diff * diff + EPS).sum() / diff.numel()


def fusion_laplacian_loss(fused_alpha: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """L_lap^f = Lap(a_f, a)."""
    return laplacian_loss(fused_alpha.float(), alpha)


def composition_loss(
    fused_alpha: torch.Tensor, image: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor
) -> torch.Tensor:
    """L_comp = sum_{c, pixels} sqrt((a_f fg_c + (1 - a_f) bg_c - I_c)^2 + 1e-12) / (B H W).

    The colour channels are summed and divided by the 1-channel pixel count.
    """
    a = fused_alpha.float()
    diff = a * fg + (1.0 - a) * bg - image
    return torch.sqrt(diff * diff + EPS).sum() / a.numel()


class LossTerms(NamedTuple):
    """Total loss plus its detached components (0-d tensors: converting them syncs a GPU, so the
    trainer does it only when it logs)."""

    total: torch.Tensor
    parts: dict[str, torch.Tensor]


def p3m_loss(
    output,
    alpha: torch.Tensor,
    trimap: torch.Tensor,
    image: torch.Tensor | None = None,
    fg: torch.Tensor | None = None,
    bg: torch.Tensor | None = None,
    *,
    variant: str = "ijcv",
) -> LossTerms:
    """Total P3M-Net loss of a model output ``P3MOutput(global_logits, local_alpha, fused_alpha,
    side2, side1, side0)`` (or the equivalent 6-tuple). Without fg/bg the composition term is skipped.
    """
    global_logits, local_alpha, fused_alpha, side2, side1, side0 = tuple(output)[:6]
    alpha = alpha.float()
    trimap = trimap.float()
    classes = trimap_to_classes(trimap, variant)
    unknown = unknown_region(trimap)
    # both Laplacian terms from one pyramid of their stacked differences (W a_l - W a = W (a_l - a))
    local, fused = local_alpha.float(), fused_alpha.float()
    laplacians = laplacian_losses(torch.cat((unknown * (local - alpha), fused - alpha)), 2)
    terms = {
        "global": global_loss(global_logits, side2, side1, side0, classes),
        "unknown_alpha": unknown_alpha_loss(local, alpha, unknown),
        "unknown_laplacian": laplacians[0],
        "fusion_alpha": fusion_alpha_loss(fused, alpha),
        "fusion_laplacian": laplacians[1],
    }
    if image is not None and fg is not None and bg is not None:
        terms["composition"] = composition_loss(fused, image.float(), fg.float(), bg.float())
    total = cast(torch.Tensor, sum(LOSS_WEIGHTS[name] * value for name, value in terms.items()))
    parts = {name: value.detach() for name, value in terms.items()}
    parts["total"] = total.detach()
    return LossTerms(total, parts)
