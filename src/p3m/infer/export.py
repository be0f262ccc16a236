"""ONNX export of P3M-Net and the ONNX Runtime backend.

The exported graph takes `input` [B,3,H,W] (normalised like the torch model; H, W dynamic multiples
of 32) and returns `global_logits`, `local_alpha`, `fused_alpha` (the three outputs the strategies
use; the side outputs only matter for training). `max_unpool2d` has no exporter of its own, so during
export it is replaced by an equivalent scatter: each value is written at its stored argmax index of the
2x-upsampled, zero-filled map (what MaxUnpool does). Parity with the torch model is checked with
onnxruntime right after export.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from p3m.atomic import commit, staged
from p3m.errors import CheckpointError, P3MError
from p3m.infer.strategies import NetOutput

__all__ = ["DEFAULT_OPSET", "OUTPUT_NAMES", "OnnxNet", "export_onnx", "scatter_unpool2d", "verify_onnx"]

DEFAULT_OPSET = 17
OUTPUT_NAMES = ("global_logits", "local_alpha", "fused_alpha")


def scatter_unpool2d(
    x: Any, indices: Any, kernel_size: Any = 2, stride: Any = 2, padding: Any = 0, output_size: Any = None
) -> Any:
    """max_unpool2d(kernel 2, stride 2) as a scatter: [B,C,h,w] + flat indices -> [B,C,2h,2w] (exportable)."""
    import torch

    b, c, h, w = x.shape
    if output_size is not None:
        oh, ow = int(output_size[-2]), int(output_size[-1])
    else:
        oh, ow = h * 2, w * 2
    out = x.new_zeros((b, c, oh * ow))
    out = out.scatter(2, indices.flatten(2), x.flatten(2))
    return out.view(b, c, oh, ow) if not torch.jit.is_tracing() else out.reshape(b, c, h * 2, w * 2)


@contextlib.contextmanager
def _unpool_as_scatter() -> Iterator[None]:
    import torch.nn.functional as F

    original = F.max_unpool2d
    F.max_unpool2d = scatter_unpool2d
    try:
        yield
    finally:
        F.max_unpool2d = original


class _ThreeOutputs:
    """Wrap a P3M-Net so forward returns (G, L, F) only."""

    @staticmethod
    def wrap(model: Any) -> Any:
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self, inner: torch.nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
                out = self.inner(x)
                return out[0], out[1], out[2]

        return Wrapped(model).eval()


def export_onnx(
    model: Any,
    path: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    sample_size: tuple[int, int] = (320, 256),
    metadata: dict[str, Any] | None = None,
    verify: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Export `model` to ONNX at `path` (atomic) with dynamic batch, height and width.

    Returns {"path", "opset", "max_abs_diff", ...} (`verify_onnx` on a random input of another size
    than the trace; None when verify=False). Raises P3MError, writing nothing, when parity exceeds 1e-4.
    """
    import torch

    out = Path(path)
    if out.suffix != ".onnx":
        raise P3MError(f"{out}: the output file must end in .onnx")
    model = model.eval().float().to("cpu")
    wrapped = _ThreeOutputs.wrap(model)
    gen = torch.Generator().manual_seed(seed)
    sample = torch.randn(1, 3, *sample_size, generator=gen)
    try:
        with staged(out) as tmp_name:
            tmp = Path(tmp_name)
            with _unpool_as_scatter(), torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    wrapped,
                    (sample,),
                    str(tmp),
                    dynamo=False,
                    opset_version=opset,
                    input_names=["input"],
                    output_names=list(OUTPUT_NAMES),
                    dynamic_axes={
                        "input": {0: "batch", 2: "height", 3: "width"},
                        **{n: {0: "batch", 2: "height", 3: "width"} for n in OUTPUT_NAMES},
                    },
                    do_constant_folding=True,
                )
            import onnx

            proto = onnx.load(str(tmp))
            meta = {
                "arch": getattr(model, "arch", None),
                "arch_kwargs": json.dumps(getattr(model, "arch_kwargs", {}) or {}),
                "producer": "p3m",
                "input_normalisation": "x/255, ImageNet mean/std, RGB, H and W multiples of 32",
            }
            meta.update({k: (v if isinstance(v, str) else json.dumps(v)) for k, v in (metadata or {}).items()})
            for k, v in meta.items():
                if v is not None:
                    entry = proto.metadata_props.add()
                    entry.key, entry.value = k, str(v)
            onnx.save(proto, str(tmp))
            report: dict[str, Any] = {"path": str(out), "opset": opset, "max_abs_diff": None}
            if verify:
                h, w = sample_size
                diffs = verify_onnx(model, tmp, size=(h + 64, w + 32), seed=seed + 1)
                report.update(diffs)
                if not diffs["max_abs_diff"] < 1e-4 or not diffs["logits_rel_diff"] < 1e-4:
                    raise P3MError(
                        f"{out}: exported model differs from torch (alpha {diffs['max_abs_diff']:.3g}, "
                        f"logits {diffs['logits_rel_diff']:.3g} relative; limit 1e-4); nothing written"
                    )
        commit(tmp, out)
    except Exception as exc:
        if isinstance(exc, P3MError):
            raise
        raise P3MError(f"ONNX export to {out} failed: {type(exc).__name__}: {exc}") from exc
    return report


def verify_onnx(
    model: Any, path: str | os.PathLike[str], *, size: tuple[int, int] = (384, 288), seed: int = 1
) -> dict[str, float]:
    """onnxruntime vs torch on one random normalised input of `size`.

    max_abs_diff: largest |difference| of the alpha outputs (L, and F where the class maps agree);
    logits_rel_diff: largest |difference| of the logits over max(1, largest |logit|).
    """
    import onnxruntime as ort
    import torch

    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        ref = model.eval().float().to("cpu")(x)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(list(OUTPUT_NAMES), {"input": x.numpy()})
    g_ref, l_ref, f_ref = (t.numpy() for t in ref[:3])
    g_got, l_got, f_got = got
    # the fused output is argmax-gated: a logit near-tie flipped by float noise shows as a jump of L,
    # so F is compared where the two class maps agree (and the disagreement is reported)
    agree = (g_ref.argmax(1) == g_got.argmax(1))[:, None]
    return {
        "max_abs_diff": max(float(np.abs(l_got - l_ref).max()), float(np.abs(np.where(agree, f_got - f_ref, 0)).max())),
        "local_abs_diff": float(np.abs(l_got - l_ref).max()),
        "logits_abs_diff": float(np.abs(g_got - g_ref).max()),
        "logits_rel_diff": float(np.abs(g_got - g_ref).max() / max(1.0, float(np.abs(g_ref).max()))),
        "class_disagreement": float(1.0 - agree.mean()),
    }


class OnnxNet:
    """NetFn over an exported .onnx file with ONNX Runtime (CPU, or CUDA when asked and available)."""

    def __init__(self, path: str | os.PathLike[str], device: str = "cpu", threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: ONNX model not found")
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                from p3m.errors import DeviceError

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
        if not set(OUTPUT_NAMES) <= set(names):
            raise CheckpointError(f"{self.path}: outputs {names} are not a p3m export ({', '.join(OUTPUT_NAMES)})")
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> NetOutput:
        with self._lock:
            g, l, f = self.session.run(list(OUTPUT_NAMES), {"input": np.ascontiguousarray(x, dtype=np.float32)})
        return NetOutput(g.argmax(1).astype(np.uint8), l[:, 0].astype(np.float32), f[:, 0].astype(np.float32))
