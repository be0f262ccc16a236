"""Parameter and FLOP counters, used to check model sizes against the published figures (benchmarks/bench_models.py).

`count_parameters(model)` counts each tensor once; `count_flops(model, input_shape)` counts 2 FLOPs per
multiply-accumulate of convolutions, linears, matmuls, einsums and attention, on the `meta` device by default (no
memory, no compute).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["count_flops", "count_parameters"]


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of unique parameters (modules registered twice, like the R34 aliases, count once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _conv_flops(module: nn.Conv2d, out: Tensor) -> int:
    k = module.kernel_size[0] * module.kernel_size[1]
    return 2 * out.numel() * (module.in_channels // module.groups) * k


def _linear_flops(module: nn.Linear, out: Tensor) -> int:
    return 2 * out.numel() * module.in_features


def _matmul_flops(out: Tensor, a: Tensor, b: Tensor, *args: Any, **kwargs: Any) -> int:
    return 2 * out.numel() * a.shape[-1]


def _einsum_flops(out: Tensor, equation: str, *operands: Any, **kwargs: Any) -> int:
    """2 x the product of the sizes of all indices (each output element sums over the contracted ones)."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    lhs = equation.replace(" ", "").split("->")[0]
    if "..." in lhs or len(operands) < 2:
        return 0  # not used by the P3M-Net models
    sizes: dict[str, int] = {}
    for term, op in zip(lhs.split(","), operands, strict=False):
        for letter, n in zip(term, op.shape, strict=False):
            sizes[letter] = max(sizes.get(letter, 1), int(n))
    macs = 1
    for n in sizes.values():
        macs *= n
    return 2 * macs


def _sdpa_flops(out: Tensor, q: Tensor, k: Tensor, v: Tensor, *args: Any, **kwargs: Any) -> int:
    """softmax(q k^T) v: L*S*E MACs for the scores and L*S*Ev for the weighted sum, per batch-head."""
    batch = out.numel() // (out.shape[-2] * out.shape[-1])
    length, source = q.shape[-2], k.shape[-2]
    return 2 * batch * length * source * (q.shape[-1] + v.shape[-1])


def count_flops(
    model: nn.Module,
    input_shape: Sequence[int] = (1, 3, 512, 512),
    *,
    matmuls: bool = True,
    device: str | torch.device | None = None,
) -> int:
    """FLOPs of one forward pass: convolutions, linears and (optionally) matmuls, 2 FLOPs per MAC.

    Counts with forward hooks on Conv2d/Linear plus temporary wrappers around torch.matmul/bmm/`@`,
    torch.einsum and F.scaled_dot_product_attention (attention); not thread-safe while it runs.
    By default it runs on a copy of the model on the `meta` device (no memory, no compute) and falls
    back to a real CPU forward when the model has something the meta device cannot run.
    """
    devices = [torch.device(device)] if device is not None else [torch.device("meta"), torch.device("cpu")]
    last_exc: Exception | None = None
    for dev in devices:
        try:
            return _count_flops_on(model, tuple(input_shape), dev, matmuls)
        except (NotImplementedError, RuntimeError) as exc:
            last_exc = exc
    assert last_exc is not None
    raise last_exc


def _count_flops_on(model: nn.Module, input_shape: tuple[int, ...], device: torch.device, matmuls: bool) -> int:
    work = copy.deepcopy(model).eval().to(device)
    total = [0]

    def hook(module: nn.Module, _inp: Any, out: Any) -> None:
        if isinstance(module, nn.Conv2d):
            total[0] += _conv_flops(module, out)
        elif isinstance(module, nn.Linear):
            total[0] += _linear_flops(module, out)

    handles = [m.register_forward_hook(hook) for m in work.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    originals: dict[tuple[Any, str], Any] = {}
    if matmuls:
        # matmuls outside nn.Linear: `@`/matmul/bmm (Swin), einsum (Performer), SDPA (ViTAE); F.linear
        # inside nn.Linear is already counted by the hooks
        def wrap(fn: Any, flops: Callable[..., int]) -> Any:
            def counted(*args: Any, **kwargs: Any) -> Any:
                out = fn(*args, **kwargs)
                total[0] += flops(out, *args, **kwargs)
                return out

            return counted

        patches = (
            (torch, "matmul", _matmul_flops),
            (torch, "bmm", _matmul_flops),
            (torch.Tensor, "__matmul__", _matmul_flops),
            (torch, "einsum", _einsum_flops),
            (F, "scaled_dot_product_attention", _sdpa_flops),
        )
        for owner, name, flops in patches:
            originals[(owner, name)] = getattr(owner, name)
            setattr(owner, name, wrap(originals[(owner, name)], flops))
    try:
        with torch.no_grad():
            param = next(work.parameters(), None)
            dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
            work(torch.zeros(input_shape, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        for (owner, name), fn in originals.items():
            setattr(owner, name, fn)
    return total[0]
