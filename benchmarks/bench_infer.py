"""Benchmark end-to-end `matte`: decode -> strategy (network + resizes) -> foreground -> encode, and peak memory.

Cases (H x W): 512x512 (hybrid), 1080x1620 (hybrid, a real test portrait when $P3M_TESTDATA is
there, else a synthetic one), 3840x2160 (highres). Per case: first call (warm-up: oneDNN / cuDNN
kernel choice, CUDA graph capture) and the median of --repeat timed calls with the split into decode,
network, foreground, encode; peak RSS of the process during the case (/proc VmHWM, reset per case via
/proc/self/clear_refs) and, on CUDA, torch.cuda.max_memory_allocated. On CUDA it also times the bare
network (CUDA events, after warm-up) at 512x512 and the two passes of hybrid at 1088x1600.

Random weights unless --weights (timing does not depend on the values, except foreground estimation,
whose cost follows the size of the unknown band: it is also timed on a real reference alpha when the
test data is present). Needs torch, numpy, OpenCV, PIL; no pymatting. From the repository root (``PYTHONPATH=src``
where p3m is not installed):

    .venv/bin/python -m benchmarks.bench_infer                 # CPU, all cases
    PYTHONPATH=src python -m benchmarks.bench_infer --device cuda --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.bench_common import reset_rss_peak, rss_peak_mb
from p3m.infer.foreground import estimate_foreground
from p3m.infer.matter import Matter
from p3m.infer.runtime import TorchNet
from p3m.infer.strategies import size_rule
from p3m.io import read_image, read_mask, write_image
from p3m.models import create
from tests.paths import PORTRAITS

CASES = {"512": ((512, 512), "hybrid"), "1080p": ((1080, 1620), "hybrid"), "4k": ((2160, 3840), "highres")}


def make_image(h: int, w: int, folder: Path) -> Path:
    """A JPEG of h x w: the real 1080x1620 portrait when available (resized otherwise), else synthetic."""
    import cv2

    real = PORTRAITS / "image" / "p_71bcce3a.jpg"
    if real.is_file():
        img = read_image(real)
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if h < img.shape[0] else cv2.INTER_CUBIC)
    else:
        rng = np.random.default_rng(0)
        small = rng.random((6, 8, 3)).astype(np.float32)
        img = (cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)
        yy, xx = np.mgrid[0:h, 0:w]
        person = ((xx - w / 2) / (w / 4)) ** 2 + ((yy - h * 0.7) / (h / 2.2)) ** 2 < 1
        img[person] = (img[person] * 0.5 + np.array([180, 120, 100]) * 0.5).astype(np.uint8)
    path = folder / f"bench_{h}x{w}.jpg"
    write_image(path, img, quality=92)
    return path


def one_call(matter: Matter, path: Path, out: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    rgb = read_image(path)
    t1 = time.perf_counter()
    res = matter.matte(rgb, foreground=True)
    t2 = time.perf_counter()
    write_image(out / "alpha.png", res.alpha_uint8())
    write_image(out / "rgba.png", res.cutout)
    t3 = time.perf_counter()
    s = res.info["seconds"]
    return {
        "total": t3 - t0,
        "decode": t1 - t0,
        "network": s["network"],
        "foreground": s["foreground"],
        "encode": t3 - t2,
    }


def bench_case(name: str, matter_for: Any, repeat: int, tmp: Path, device: str) -> dict[str, Any]:
    (h, w), strategy = CASES[name]
    path = make_image(h, w, tmp)
    matter = matter_for(strategy)
    has_reset = reset_rss_peak()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    first = one_call(matter, path, tmp)
    runs = [one_call(matter, path, tmp) for _ in range(repeat)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    row: dict[str, Any] = {
        "case": name,
        "size_hw": [h, w],
        "strategy": strategy,
        "plan": matter.plan(h, w)["passes"],
        "first_call_s": round(first["total"], 3),
        "median_s": {k: round(v, 3) for k, v in med.items()},
        "repeat": repeat,
        "peak_rss_mb": round(rss_peak_mb(), 1),
        "rss_peak_is_per_case": has_reset,
    }
    if device.startswith("cuda"):
        row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return row


def gpu_network_latency(model: torch.nn.Module, precision: str, iters: int = 50) -> dict[str, Any]:
    """Bare network time with CUDA events: 512x512 batch 1, and hybrid's two passes for 1088x1600."""
    net = TorchNet(model, "cuda", precision)
    out: dict[str, Any] = {"precision": precision, "cuda_graphs": True}
    h, w = 1088, 1600
    # (size, outputs) per pass: HYBRID's 1/2 pass needs the semantic branch only, its full pass the matting one
    passes = "global", "local"
    if not net.selects_outputs:
        passes = "all", "all"
    shapes = {
        "512x512": [((512, 512), "all")],
        "hybrid_1088x1600": [(size_rule(h, w, 0.5), passes[0]), (size_rule(h, w, 1.0), passes[1])],
    }
    for key, sizes in shapes.items():
        xs = [(torch.randn(1, 3, *s, device="cuda"), outputs) for s, outputs in sizes]
        runner = net.runner
        for _ in range(5):
            for x, outputs in xs:
                runner(x, outputs=outputs)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(iters):
            start.record()
            for x, outputs in xs:
                runner(x, outputs=outputs)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        out[key + "_ms"] = round(statistics.median(times), 3)
    # the full hybrid strategy on a 1088x1600 image: resizes on the CPU, transfers, two passes
    img = (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)
    from p3m.infer.strategies import predict

    for _ in range(3):
        predict(net, img, "hybrid", resize_mode="fast")
    t = []
    for _ in range(10):
        t0 = time.perf_counter()
        predict(net, img, "hybrid", resize_mode="fast")
        t.append(time.perf_counter() - t0)
    out["hybrid_1088x1600_strategy_ms"] = round(1000 * statistics.median(t), 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--weights", default=None, help="checkpoint (default: random weights)")
    ap.add_argument("--width", type=int, default=64, help="R34 width for random weights (64 = published size)")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--cases", default="512,1080p,4k")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    ap.add_argument("--foreground-method", default="ml")
    ap.add_argument("--json", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    report: dict[str, Any] = {
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "weights": args.weights or f"random p3m-r34 width {args.width}",
        "cases": [],
    }
    if args.device.startswith("cuda"):
        report["gpu"] = torch.cuda.get_device_name()
    model = None if args.weights else create("p3m-r34", width=args.width)

    def matter_for(strategy: str) -> Matter:
        if args.weights:
            return Matter(
                weights=args.weights,
                device=args.device,
                strategy=strategy,
                precision=args.precision,
                foreground_method=args.foreground_method,
            )
        return Matter.from_network(
            model,
            device=args.device,
            strategy=strategy,
            precision=args.precision,
            foreground_method=args.foreground_method,
        )

    report["precision"] = matter_for("hybrid").precision
    with tempfile.TemporaryDirectory() as tmp:
        for name in [c for c in args.cases.split(",") if c]:
            repeat = args.repeat if name != "4k" else 1
            row = bench_case(name, matter_for, repeat, Path(tmp), args.device)
            report["cases"].append(row)
            print(json.dumps(row), flush=True)
    ref = PORTRAITS / "reference_alpha" / "p_71bcce3a.png"
    if ref.is_file():
        img = read_image(PORTRAITS / "image" / "p_71bcce3a.jpg")
        alpha = read_mask(ref).astype(np.float32) / 255
        for method in ("ml", "blur"):
            estimate_foreground(img, alpha, method)
            t0 = time.perf_counter()
            estimate_foreground(img, alpha, method)
            report[f"foreground_{method}_real_alpha_1080x1620_s"] = round(time.perf_counter() - t0, 3)
    if args.device.startswith("cuda") and model is not None:
        report["gpu_network"] = [gpu_network_latency(model, p) for p in ("bf16", "fp16")]
        print(json.dumps(report["gpu_network"]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "cases"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
