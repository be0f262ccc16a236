"""P3M-Net R34 with HYBRID on a 1620x1080 photo, end to end, against the published inference code in the same run
(issue 22).

End to end = decode the JPEG, the HYBRID strategy (two network passes and the resizes), encode and write the alpha
PNG. "published" is the literal transcription of the authors' test code (`tests/reference/inference.py`:
`inference_once` and the HYBRID strategy of `JizhiziLi/P3M` core/test.py with scikit-image's resize; fp32, NCHW, every
output computed in both passes), reading with PIL and writing with OpenCV as that script does. The p3m rows are
`p3m.infer.matter.Matter.from_network(...).matte(path)` with the default fast resize and `p3m.io.write_image`, at
precision "auto" (bf16 where the CPU has it) and "fp32" (what a CPU without bf16 runs with torch), each also "before
this round" (without the layer swaps of `p3m.infer.rewrites` and with the local pass running dBFI level 0 again, as
main did before; `as_before_this_round`), and the same network exported once to ONNX
(`p3m.infer.export.export_onnx`, not timed: `p3m export` is run once) run by ONNX Runtime's CPU provider in fp32
(`Matter(weights="x.onnx")`, the other choice on a CPU without bf16).
Random-initialised P3M-Net R34 of the published size (no published weights are shipped; timing does not depend on
the values). Every variant is warmed up once (oneDNN builds its kernels on the first calls per shape), then the
variants run interleaved round by round, so each ratio comes from the same machine state; reported per round, with
the best (lowest) time of each variant beside them.

    .venv/bin/python -m benchmarks.bench_published [--rounds 3] [--threads N] [--json results/cpu_published.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import cv2
import numpy as np
import torch
from PIL import Image

import p3m.infer.runtime as runtime
from benchmarks.bench_common import print_report
from benchmarks.bench_infer import make_image
from p3m.infer.export import export_onnx
from p3m.infer.matter import Matter
from p3m.infer.runtime import OnnxNet
from p3m.io import write_image
from p3m.models import create
from tests.reference.inference import ref_hybrid_strategy


def published(model: torch.nn.Module) -> Callable[[Path, Path], None]:
    """The published script's per-image work: PIL decode, HYBRID, alpha*255 written by OpenCV."""

    def run(path: Path, out: Path) -> None:
        img = np.array(Image.open(path))[:, :, :3]
        alpha, _ = ref_hybrid_strategy(model, img)
        cv2.imwrite(str(out), (alpha * 255).astype(np.uint8))

    return run


def p3m_variant(model: torch.nn.Module, precision: str, *, before: bool = False) -> Callable[[Path, Path], None]:
    """`Matter.from_network` at `precision`; before=True: the path before this round (see `as_before_this_round`)."""
    if before:
        with mock.patch.object(runtime, "rewrite_for_inference", return_value={}):
            matter = Matter.from_network(model, precision=precision, strategy="hybrid")
        as_before_this_round(matter.session.net.runner.model)  # type: ignore[attr-defined]  # a TorchNet here
    else:
        matter = Matter.from_network(model, precision=precision, strategy="hybrid")

    def run(path: Path, out: Path) -> None:
        write_image(out, matter.matte(path).alpha_uint8())

    return run


def as_before_this_round(model: torch.nn.Module) -> None:
    """Make a prepared P3M-Net R34 do the work it did before this round: its local pass runs dBFI level 0 again (on
    the same inputs, result unused; hooks), and no layers were swapped (the caller patches the rewrite out)."""
    state: dict[str, Any] = {}
    model.register_forward_pre_hook(
        lambda _m, _args, kwargs: state.update(outputs=kwargs.get("outputs", "all")), with_kwargs=True
    )
    model.resnet.layer4.register_forward_hook(lambda _m, _i, deep: state.update(deep=deep))

    def dbfi_0_as_before(_m: torch.nn.Module, _i: Any, d1_g: torch.Tensor) -> None:
        if state["outputs"] == "local":
            model.dbfi_0(d1_g, state["deep"], False)

    model.decoder1_g.register_forward_hook(dbfi_0_as_before)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--threads", type=int, default=0, help="torch and ONNX Runtime threads (default: all cores)")
    ap.add_argument("--bf16-only", action="store_true", help="only the published code and the bf16 variants")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create("p3m-r34").eval()
    variants = {"published": published(model)}
    if runtime.native_bf16("cpu"):
        variants["p3m auto before this round"] = p3m_variant(model, "auto", before=True)
        variants["p3m auto"] = p3m_variant(model, "auto")
    if not args.bf16_only:
        variants["p3m fp32 before this round"] = p3m_variant(model, "fp32", before=True)
        variants["p3m fp32"] = p3m_variant(model, "fp32")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.bf16_only:
            onnx_path = Path(tmp) / "r34.onnx"
            export_onnx(copy.deepcopy(model), onnx_path, verify=False)
            onnx_matter = Matter(weights=str(onnx_path), strategy="hybrid", device="cpu")
            if args.threads:  # the session's own thread count (ONNX Runtime does not follow torch's)
                onnx_matter.session.net = OnnxNet(onnx_path, threads=args.threads)
            variants["p3m onnxruntime fp32"] = lambda path, out: write_image(out, onnx_matter.matte(path).alpha_uint8())
        times: dict[str, list[float]] = {name: [] for name in variants}
        path = make_image(1080, 1620, Path(tmp))
        outs = {name: Path(tmp) / f"{k}.png" for k, name in enumerate(variants)}
        for name, run in variants.items():  # warm-up
            run(path, outs[name])
        for r in range(args.rounds):
            for name, run in variants.items():
                t0 = time.perf_counter()
                run(path, outs[name])
                times[name].append(time.perf_counter() - t0)
            row = {name: round(t[-1], 3) for name, t in times.items()}
            print(json.dumps({"round": r, "seconds": row, "load": os.getloadavg()[0]}), flush=True)
        ref = cv2.imread(str(outs["published"]), cv2.IMREAD_GRAYSCALE).astype(np.int16)
        diffs = {
            name: float(np.abs(cv2.imread(str(o), cv2.IMREAD_GRAYSCALE).astype(np.int16) - ref).mean())
            for name, o in outs.items()
        }
    report: dict[str, Any] = {
        "case": "P3M-Net R34 (random weights), HYBRID, 1080x1620 JPEG -> alpha PNG, end to end",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "native_bf16": runtime.native_bf16("cpu"),
        "rounds": args.rounds,
        "seconds": {name: [round(v, 3) for v in t] for name, t in times.items()},
        "median_s": {name: round(statistics.median(t), 3) for name, t in times.items()},
        "best_s": {name: round(min(t), 3) for name, t in times.items()},
        # per round, so both sides of a ratio saw the same load
        "speedup_vs_published": {
            name: [round(p / v, 2) for p, v in zip(times["published"], t, strict=True)]
            for name, t in times.items()
            if name != "published"
        },
        "mean_abs_diff_vs_published_8bit": {k: round(v, 3) for k, v in diffs.items() if k != "published"},
        "load_at_end": os.getloadavg(),
    }
    return print_report(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
