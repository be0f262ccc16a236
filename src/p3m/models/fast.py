"""Speed paths for P3M-Net inference, and the parameter/FLOP counters used to check model sizes.

- `prepare_for_inference(model, device, precision=..., channels_last=...)`: eval mode, on device,
  channels_last memory format, weights cast to the low-precision dtype (bf16/fp16).
- `InferenceRunner(model, device, precision, cuda_graphs)`: `runner(x) -> P3MOutput` in fp32, running
  the prepared model; on CUDA it can capture one CUDA graph per input shape (eager fallback when
  capture fails).

Why whole-model casts by default instead of `torch.autocast`: on the AMX-capable 2-core dev CPU,
R34 at 512x512 (after warm-up) took 0.87 s fp32 NCHW, 0.61 s fp32 channels_last, 0.27 s bf16
autocast and 0.21 s bf16 cast, with the same alpha error (~5e-3 on random weights): autocast re-casts
the weights on every call. BatchNorm in bf16 is fine for inference (eval-mode BN is a per-channel
affine map). `InferenceRunner(..., autocast=True)` keeps fp32 weights and uses autocast instead.
oneDNN builds its kernels during the first two calls per input shape: warm up before timing.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m.choices import PRECISIONS
from p3m.models.blocks import P3MOutput, check_input, check_outputs

__all__ = [
    "PRECISIONS",
    "InferenceRunner",
    "count_flops",
    "count_parameters",
    "prepare_for_inference",
    "resolve_precision",
]

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_supports_bf16() -> bool:
    """True when oneDNN has native bf16 kernels on this CPU (AVX512-BF16 / AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(device: str | torch.device, precision: str = "auto") -> torch.dtype:
    """Map a precision name to a dtype for `device`.

    auto: CPU -> bf16 when oneDNN supports bf16 natively, else fp32; CUDA -> bf16 when supported,
    else fp16; other devices -> fp32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dev = torch.device(device)
    if precision != "auto":
        return _DTYPES[precision]
    if dev.type == "cpu":
        return torch.bfloat16 if cpu_supports_bf16() else torch.float32
    if dev.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def prepare_for_inference(
    model: nn.Module,
    device: str | torch.device,
    *,
    precision: str = "auto",
    channels_last: bool = True,
) -> nn.Module:
    """Put `model` in eval mode on `device`, cast to `precision`, channels_last; in place, returns it.

    The model then expects inputs of that dtype (use `InferenceRunner` to get casts both ways).
    """
    dtype = resolve_precision(device, precision)
    model.eval().requires_grad_(False)
    model.to(device=torch.device(device), dtype=dtype)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


class InferenceRunner:
    """Fast inference: `runner(x [B,3,H,W] float) -> P3MOutput` with fp32 outputs on `device`.

    Works on a private copy of `model` (the caller's model is left untouched unless copy_model=False),
    with its weights cast to the precision; autocast=True keeps fp32 weights and runs under
    torch.autocast instead.
    With cuda_graphs=True on a CUDA device, one graph is captured per input shape (and output set) and
    replayed; shapes whose capture fails run eagerly. `runner(x, outputs="global"|"local")` asks a P3M-Net for one
    branch only (see `p3m.models.blocks.OUTPUT_SETS`); the outputs not computed are None.
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "cpu",
        precision: str = "auto",
        cuda_graphs: bool = False,
        *,
        channels_last: bool = True,
        copy_model: bool = True,
        autocast: bool = False,
        warmup_iters: int = 3,
    ) -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.dtype = resolve_precision(self.device, precision)
        self.channels_last = channels_last
        self.cuda_graphs = bool(cuda_graphs) and self.device.type == "cuda"
        self.warmup_iters = warmup_iters
        # autocast: fp32 weights, low-precision compute chosen per op by torch.autocast
        self.autocast = bool(autocast) and self.dtype != torch.float32
        src = copy.deepcopy(model) if copy_model else model
        self.model = prepare_for_inference(
            src, self.device, precision="fp32" if self.autocast else _name_of(self.dtype), channels_last=channels_last
        )
        # (shape, outputs) -> (graph, static input, static outputs); None marks a capture that failed
        self._graphs: dict[tuple[Any, ...], Any] = {}

    def _to_input(self, x: Tensor) -> Tensor:
        x = x.to(self.device, dtype=torch.float32 if self.autocast else self.dtype, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _capture(self, x: Tensor, outputs: str) -> Any:
        static_in = x.clone()
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(max(1, self.warmup_iters)):
                self._forward(static_in, outputs)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self._forward(static_in, outputs)
        return graph, static_in, static_out

    def _forward(self, x: Tensor, outputs: str = "all") -> Any:
        # models without branch selection (e.g. MODNet) are only ever asked for "all"
        kwargs = {} if outputs == "all" else {"outputs": outputs}
        if self.autocast:
            # the autocast weight cache must be off while a CUDA graph is captured
            with torch.autocast(self.device.type, dtype=self.dtype, cache_enabled=not self.cuda_graphs):
                return self.model(x, **kwargs)
        return self.model(x, **kwargs)

    @torch.no_grad()
    def __call__(self, x: Tensor, outputs: str = "all") -> P3MOutput:
        check_input(x)
        check_outputs(outputs)
        x = self._to_input(x)
        if self.cuda_graphs:
            key = (*x.shape, outputs)
            if key not in self._graphs:
                try:
                    self._graphs[key] = self._capture(x, outputs)
                except Exception as exc:  # capture is best effort: any failure means eager for this shape
                    warnings.warn(f"CUDA graph capture failed for input {key}, running eagerly: {exc}", stacklevel=2)
                    self._graphs[key] = None
            entry = self._graphs[key]
            if entry is not None:
                graph, static_in, static_out = entry
                static_in.copy_(x)
                graph.replay()
                # copies: the static outputs are overwritten by the next replay
                return P3MOutput(
                    *(
                        None if o is None else o.float().clone() if o.dtype == torch.float32 else o.float()
                        for o in static_out
                    )
                )
        out = self._forward(x, outputs)
        return P3MOutput(*(None if o is None else o.float().contiguous() for o in out))

    @property
    def captured_shapes(self) -> list[tuple[int, ...]]:
        """Input shapes with a captured CUDA graph."""
        return list(dict.fromkeys(k[:-1] for k, v in self._graphs.items() if v is not None))


def _name_of(dtype: torch.dtype) -> str:
    return {v: k for k, v in _DTYPES.items()}[dtype]


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
    for term, op in zip(lhs.split(","), operands):
        for letter, n in zip(term, op.shape):
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
