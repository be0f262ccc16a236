"""The inference runtime: where a network runs and in which precision, and the engines that run one pass.

- `resolve_device(name)` (defined torch-free in `p3m.infer.devices`, re-exported here): "auto" / "cpu" / "cuda" /
  "cuda:N" -> a device string; an unavailable CUDA request is a one-line `DeviceError`, never a silent CPU fallback.
  Inference, training and the server all use it.
- `resolve_precision(name, device)`: "auto" / "fp32" / "bf16" / "fp16" -> the precision that runs
  (`DTYPES` maps it to a torch dtype); `autocast_dtype` is the training loop's view of the same rule.
- `InferenceRunner(model, device, precision)`: `runner(x) -> P3MOutput` in fp32 from a private copy of the model
  cast to the precision (channels_last; one CUDA graph per input shape when asked).
- `TorchNet` and `OnnxNet`: the two `NetFn` engines the test strategies (`p3m.infer.strategies`) drive, one over a
  torch model, one over an exported ONNX file with ONNX Runtime.

Why whole-model casts by default instead of `torch.autocast`: on the AMX-capable 2-core dev CPU,
R34 at 512x512 (after warm-up) took 0.87 s fp32 NCHW, 0.61 s fp32 channels_last, 0.27 s bf16
autocast and 0.21 s bf16 cast, with the same alpha error (~5e-3 on random weights): autocast re-casts
the weights on every call. BatchNorm in bf16 is fine for inference (eval-mode BN is a per-channel
affine map). `InferenceRunner(..., autocast=True)` keeps fp32 weights and uses autocast instead.
oneDNN builds its kernels during the first two calls per input shape: warm up before timing.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from p3m.choices import PRECISIONS, check_choice
from p3m.errors import CheckpointError, DeviceError
from p3m.infer.devices import resolve_device
from p3m.infer.rewrites import replace_children, rewrite_for_inference
from p3m.infer.strategies import NetOutput
from p3m.models.blocks import P3MOutput, check_input, check_outputs

__all__ = [
    "DTYPES",
    "ONNX_OUTPUT_NAMES",
    "InferenceRunner",
    "OnnxNet",
    "TorchNet",
    "autocast_dtype",
    "fold_batch_norms",
    "native_bf16",
    "prepare_for_inference",
    "resolve_device",
    "resolve_precision",
    "torch_threads",
]

#: Torch dtype of each resolved precision name.
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: The outputs of a p3m ONNX export that the strategies use (the side outputs only matter for training).
ONNX_OUTPUT_NAMES = ("global_logits", "local_alpha", "fused_alpha")


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with torch's intra-op thread count set to `count` on the calling thread, then restore it.

    torch's OpenMP builds keep the count per thread (a thread that has not run a parallel op yet starts from the last
    count set anywhere), so blocks on other threads neither see nor undo this one. Used by the built-in route, whose
    networks are small (256x256): on the shared 2-core CPU dev machine its alpha took 0.35 s mean with 1 thread and
    0.57 s with 2 (12 portraits, interleaved, load ~2; 0.70 s against 4.7 s at load 5-6; identical mattes), since a
    2-thread OpenMP team waits at every barrier for a descheduled thread, and the work is too small to gain from a
    second core (benchmarks/bench_route_threads.py).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def native_bf16(device: str | torch.device) -> bool:
    """True where bf16 runs natively: CUDA GPUs with bf16, CPUs whose oneDNN has bf16 kernels (AVX512-BF16/AMX)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if kind != "cpu":
        return False
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: str | torch.device, *, training: bool = False) -> str:
    """The precision that runs on `device` for a requested one of `p3m.choices.PRECISIONS` -> "fp32", "bf16", "fp16".

    "auto": bf16 where it runs natively (`native_bf16`); else, for inference, fp16 on CUDA and fp32 elsewhere.
    For training (`training=True`) "auto" never picks fp16: it would need loss scaling, so it falls back to fp32.
    An unknown name raises ChoiceError (one line).
    """
    check_choice("precision", precision, PRECISIONS)
    if precision != "auto":
        return precision
    if native_bf16(device):
        return "bf16"
    return "fp16" if torch.device(device).type == "cuda" and not training else "fp32"


def autocast_dtype(amp: str, device: str | torch.device) -> torch.dtype | None:
    """The training loop's autocast dtype for `train.amp` ("none", "fp32", "bf16", "fp16", "auto"): the
    `resolve_precision(..., training=True)` rule, None meaning "no autocast" (fp32)."""
    if amp == "none":
        return None
    dtype = DTYPES[resolve_precision(amp, device, training=True)]
    return None if dtype == torch.float32 else dtype


def fold_batch_norms(model: nn.Module, example: Tensor) -> int:
    """Fold every eval-mode BatchNorm2d that reads a Conv2d's output directly into that convolution; in place.

    The pairs are found by running `example` (a small input the model accepts) once with hooks: a BatchNorm2d whose
    input is the unmodified tensor a Conv2d returned, read by no other module, becomes nn.Identity, and the
    convolution takes its affine map (`torch.nn.utils.fusion.fuse_conv_bn_eval`). The folded model is then run on
    `example` again; if any output moved by more than rounding (a conv output read by plain tensor code too), every
    pair is put back. Why: eval-mode BatchNorm is a per-channel affine map costing a full pass over the activations
    (15 % of P3M-Net R34's CPU time). Returns the number of pairs folded (0 when the model has no such pair).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    produced: dict[int, tuple[nn.Module, Tensor, int]] = {}  # id of a conv output -> (conv, the output, its version)
    readers: dict[int, list[nn.Module]] = {}

    def after_conv(module: nn.Module, _inputs: Any, output: Tensor) -> None:
        produced[id(output)] = (module, output, output._version)  # the reference keeps the id unique

    def before_leaf(module: nn.Module, inputs: tuple[Any, ...]) -> None:
        for t in inputs:
            entry = produced.get(id(t)) if isinstance(t, Tensor) else None
            if entry is not None and entry[1] is t:
                # an in-place change between the conv and this reader makes the pair unfoldable
                readers.setdefault(id(t), []).append(module if t._version == entry[2] else nn.Identity())

    leaves = [m for m in model.modules() if not list(m.children())]
    if not any(isinstance(m, nn.BatchNorm2d) for m in leaves):
        return 0
    handles = [m.register_forward_pre_hook(before_leaf) for m in leaves]
    handles += [m.register_forward_hook(after_conv) for m in leaves if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            outputs = _tensors(model(example))
    except (RuntimeError, ValueError):  # a model that cannot run the example is left as it is
        return 0
    finally:
        for h in handles:
            h.remove()
    returned = {id(t) for t in outputs}  # a conv output the model returns keeps its BatchNorm
    reference = [t.clone() for t in outputs]
    swap: dict[nn.Module, nn.Module] = {}
    for key, (conv, _, _) in produced.items():
        users = readers.get(key, [])
        bn = users[0] if len(users) == 1 else None
        if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d) or key in returned:
            continue
        if conv not in swap and bn not in swap and not bn.training and bn.track_running_stats:
            swap[conv] = fuse_conv_bn_eval(conv, bn)
            swap[bn] = nn.Identity()
    replace_children(model, swap)
    with torch.no_grad():
        folded = _tensors(model(example))
    if not all(torch.allclose(a, b.to(a.dtype), rtol=1e-3, atol=1e-4) for a, b in zip(reference, folded, strict=True)):
        replace_children(model, {new: old for old, new in swap.items()})
        return 0
    return len(swap) // 2


def _tensors(outputs: Any) -> list[Tensor]:
    """The tensors of a model's outputs (a tensor, or a tuple with Nones)."""
    items = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    return [t for t in items if isinstance(t, Tensor)]


def prepare_for_inference(
    model: nn.Module,
    device: str | torch.device,
    *,
    precision: str = "auto",
    channels_last: bool = True,
    fold_bn: bool | None = None,
    rewrite: bool = True,
) -> nn.Module:
    """Put `model` in eval mode on `device`, cast to `precision`, channels_last; in place, returns it.

    fold_bn: fold each BatchNorm into the convolution before it (`fold_batch_norms`, in fp32 before the cast);
    None (default) folds for bf16 and fp16 only. fp32 stays the eager computation op for op: folding changes
    activations by rounding, and where a ReLU leaves a 2x2 max-pool window of exact zeros the rounding moves the
    pooling index that P3M-Net's unpooling reuses (local alpha up to 0.014 apart on a random-weight R34), so the
    fp32 path that is tested against the published code is left as published.
    rewrite: swap layers for faster equivalents on the CPU (`p3m.infer.rewrites.rewrite_for_inference`: exact ones in
    every precision, the others in bf16/fp16 only, where they are within the precision's rounding).
    The model then expects inputs of that dtype (use `InferenceRunner` to get casts both ways).
    """
    dtype = DTYPES[resolve_precision(precision, device)]
    model.eval().requires_grad_(False)
    if fold_bn is None:
        fold_bn = dtype != torch.float32
    if fold_bn:
        weight = next(model.parameters(), None)
        example = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        fold_batch_norms(model, example.to(weight.device if weight is not None else "cpu"))
    model.to(device=torch.device(device), dtype=dtype)
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stub lacks this overload
    if rewrite and torch.device(device).type == "cpu":
        rewrite_for_inference(model, dtype)
    return model


class InferenceRunner:
    """Fast inference: `runner(x [B,3,H,W] float) -> P3MOutput` with fp32 outputs on `device`.

    Works on a private copy of `model` (the caller's model is left untouched unless copy_model=False),
    with its weights cast to the precision; autocast=True keeps fp32 weights and runs under
    torch.autocast instead. rewrite=False keeps every layer as built (see `prepare_for_inference`).
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
        rewrite: bool = True,
    ) -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        precision = resolve_precision(precision, self.device)
        self.dtype = DTYPES[precision]
        self.channels_last = channels_last
        self.cuda_graphs = bool(cuda_graphs) and self.device.type == "cuda"
        self.warmup_iters = warmup_iters
        # autocast: fp32 weights, low-precision compute chosen per op by torch.autocast
        self.autocast = bool(autocast) and self.dtype != torch.float32
        src = copy.deepcopy(model) if copy_model else model
        self.model = prepare_for_inference(
            src,
            self.device,
            precision="fp32" if self.autocast else precision,
            channels_last=channels_last,
            rewrite=rewrite,
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

    def _replay(self, x: Tensor, outputs: str) -> P3MOutput | None:
        """The outputs of the CUDA graph of this input shape (captured on first use); None where capture failed."""
        key = (*x.shape, outputs)
        if key not in self._graphs:
            try:
                self._graphs[key] = self._capture(x, outputs)
            except Exception as exc:  # capture is best effort: any failure means eager for this shape
                warnings.warn(f"CUDA graph capture failed for input {key}, running eagerly: {exc}", stacklevel=3)
                self._graphs[key] = None
        entry = self._graphs[key]
        if entry is None:
            return None
        graph, static_in, static_out = entry
        static_in.copy_(x)
        graph.replay()
        # copies: the static outputs are overwritten by the next replay
        return P3MOutput(
            *(None if o is None else o.float().clone() if o.dtype == torch.float32 else o.float() for o in static_out)
        )

    @torch.no_grad()
    def __call__(self, x: Tensor, outputs: str = "all") -> P3MOutput:
        check_input(x)
        check_outputs(outputs)
        x = self._to_input(x)
        if self.cuda_graphs:
            replayed = self._replay(x, outputs)
            if replayed is not None:
                return replayed
        out = self._forward(x, outputs)
        return P3MOutput(*(None if o is None else o.float().contiguous() for o in out))

    @property
    def captured_shapes(self) -> list[tuple[int, ...]]:
        """Input shapes with a captured CUDA graph."""
        return list(dict.fromkeys(k[:-1] for k, v in self._graphs.items() if v is not None))


class TorchNet:
    """NetFn over a torch P3M-Net (anything returning P3MOutput-like `(G, L, F, ...)`).

    precision: "fp32", "bf16" or "fp16". nn.Modules run through `InferenceRunner` (a private copy of the model cast
    to that dtype, channels_last; on CUDA one CUDA graph per input shape when cuda_graphs is on, the default there).
    A lock serialises calls, so one instance can be shared by threads.
    """

    def __init__(
        self,
        model: Any,
        device: str = "cpu",
        precision: str = "fp32",
        channels_last: bool = True,
        cuda_graphs: bool | None = None,
    ) -> None:
        check_choice("resolved precision", precision, tuple(DTYPES))
        self.device = torch.device(device)
        self.precision = precision
        if cuda_graphs is None:
            cuda_graphs = self.device.type == "cuda"
        self.selects_outputs = False
        if isinstance(model, nn.Module):
            self.runner: Callable[..., Any] = InferenceRunner(
                model, self.device, precision, cuda_graphs, channels_last=channels_last
            )
            # P3M-Nets can skip the branch a pass does not use (the semantic one's 1/2 pass, the matting one's
            # full pass in HYBRID); other models compute everything
            self.selects_outputs = "outputs" in inspect.signature(model.forward).parameters
        else:  # a plain callable (tests, wrappers): fp32 on the given device
            self.runner = model
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray, need: str = "all") -> NetOutput:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        with self._lock, torch.inference_mode():
            out = self.runner(t, outputs=need) if need != "all" else self.runner(t)
            classes = None if out[0] is None else out[0].argmax(dim=1).to(torch.uint8).cpu().numpy()
            local = None if out[1] is None else out[1][:, 0].float().cpu().numpy()
            fused = None if out[2] is None else out[2][:, 0].float().cpu().numpy()
            return NetOutput(classes, local, fused)


class OnnxNet:
    """NetFn over an exported .onnx file with ONNX Runtime (CPU, or CUDA when asked and available)."""

    def __init__(self, path: str | os.PathLike[str], device: str = "cpu", threads: int | None = None) -> None:
        # onnxruntime only when an ONNX file is run: it costs start-up time every other run would pay for nothing
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: ONNX model not found")
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise DeviceError(
                    f"device {device!r} requested but onnxruntime has no CUDA provider "
                    "(install onnxruntime-gpu) ; use --device cpu"
                )
            providers = ["CUDAExecutionProvider"]
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        except Exception as exc:
            raise CheckpointError(f"{self.path}: not a loadable ONNX model ({type(exc).__name__}: {exc})") from None
        names = [o.name for o in self.session.get_outputs()]
        if not set(ONNX_OUTPUT_NAMES) <= set(names):
            raise CheckpointError(f"{self.path}: outputs {names} are not a p3m export ({', '.join(ONNX_OUTPUT_NAMES)})")
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> NetOutput:
        with self._lock:
            classes, local, fused = self.session.run(
                list(ONNX_OUTPUT_NAMES), {"input": np.ascontiguousarray(x, dtype=np.float32)}
            )
        return NetOutput(
            classes.argmax(1).astype(np.uint8), local[:, 0].astype(np.float32), fused[:, 0].astype(np.float32)
        )
