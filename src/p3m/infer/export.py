"""ONNX export of P3M-Net (the ONNX Runtime engine that runs the file is `p3m.infer.runtime.OnnxNet`).

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
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from p3m.atomic import commit, staged
from p3m.errors import P3MError
from p3m.infer.runtime import ONNX_OUTPUT_NAMES
from p3m.models.registry import ArchConfig, find_config

__all__ = ["DEFAULT_OPSET", "export_onnx", "scatter_unpool2d", "verify_onnx"]

DEFAULT_OPSET = 17


def scatter_unpool2d(
    input: torch.Tensor,  # the names of F.max_unpool2d, which this replaces during export
    indices: torch.Tensor,
    kernel_size: Any = 2,
    stride: Any = 2,
    padding: Any = 0,
    output_size: Any = None,
) -> torch.Tensor:
    """max_unpool2d(kernel 2, stride 2) as a scatter: [B,C,h,w] + flat indices -> [B,C,2h,2w] (exportable)."""
    x = input
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
    original = F.max_unpool2d
    F.max_unpool2d = scatter_unpool2d
    try:
        yield
    finally:
        F.max_unpool2d = original


class _ThreeOutputs(torch.nn.Module):
    """A P3M-Net whose forward returns (G, L, F) only."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.inner(x)
        return out[0], out[1], out[2]


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
    out = Path(path)
    if out.suffix != ".onnx":
        raise P3MError(f"{out}: the output file must end in .onnx")
    model = model.eval().float().to("cpu")
    wrapped = _ThreeOutputs(model).eval()
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
                    output_names=list(ONNX_OUTPUT_NAMES),
                    dynamic_axes={
                        "input": {0: "batch", 2: "height", 3: "width"},
                        **{n: {0: "batch", 2: "height", 3: "width"} for n in ONNX_OUTPUT_NAMES},
                    },
                    do_constant_folding=True,
                )
            proto = onnx.load(str(tmp))
            # a model of no registered architecture is taken to follow the P3M-Net contract (its licence unknown)
            config = find_config(getattr(model, "arch", None)) or ArchConfig()
            meta = {
                "arch": getattr(model, "arch", None),
                "arch_kwargs": json.dumps(getattr(model, "arch_kwargs", {}) or {}),
                "producer": "p3m",
                "input_normalisation": config.describe_input(),
                "licence": config.licence or None,
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
    # onnxruntime only to verify an export: the exporter is used far less often than everything else
    import onnxruntime as ort

    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        ref = model.eval().float().to("cpu")(x)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(list(ONNX_OUTPUT_NAMES), {"input": x.numpy()})
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
