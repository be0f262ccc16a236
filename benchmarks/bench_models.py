"""Benchmark the P3M-Net variants: parameters, FLOPs, latency of fp32 eager vs the fast path.

CPU (default): per model, parameters, FLOPs at 512x512, batch-1 latency at 512x512 of fp32 eager
(NCHW, the published way) and of `InferenceRunner` (channels_last + bf16 when the CPU supports it),
and the max alpha difference between them.

CUDA (`--device cuda`): batch-1 latency at 512x512 and throughput at batch 32 for fp32 / bf16, eager
and CUDA graph (torch.cuda.Event timing after warm-up, synchronised).

Runs with only torch (+numpy not even needed), from the repository root:
`PYTHONPATH=src python -m benchmarks.bench_models`.

    python -m benchmarks.bench_models --quick
    python -m benchmarks.bench_models --models p3m-r34 --device cuda --json bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from p3m import models
from p3m.errors import P3MError
from p3m.infer.runtime import DTYPES, InferenceRunner, resolve_precision
from p3m.models.counting import count_flops, count_parameters


def _input(batch: int, size: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(batch, 3, size // 16, size // 16, generator=g)
    img = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return ((img - 0.45) / 0.225).to(device)


def _time_cuda(fn: Callable[[], Any], warmup: int, iters: int) -> tuple[float, Any]:
    out = None
    for _ in range(warmup):
        out = fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        out = fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000.0 / iters, out


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float().cpu() - b.float().cpu()).abs().max())


def bench_cpu(name: str, model: torch.nn.Module, size: int, warmup: int, iters: int) -> dict[str, Any]:
    """fp32 eager (NCHW, as published) vs InferenceRunner(auto); timed alternately so load drifts hit both."""
    x = _input(1, size, torch.device("cpu"))
    model = model.eval()
    runner = InferenceRunner(model, "cpu", precision="auto")
    eager_times, fast_times = [], []
    with torch.inference_mode():
        for _ in range(warmup):
            ref = model(x)
            out = runner(x)
        for _ in range(iters):
            t0 = time.perf_counter()
            ref = model(x)
            t1 = time.perf_counter()
            out = runner(x)
            t2 = time.perf_counter()
            eager_times.append(t1 - t0)
            fast_times.append(t2 - t1)
    t_eager, t_fast = statistics.median(eager_times), statistics.median(fast_times)
    return {
        "eager_fp32_s": t_eager,
        "fast_s": t_fast,
        "fast_precision": str(runner.dtype).replace("torch.", ""),
        "speedup": t_eager / t_fast,
        "max_diff_local_alpha": _max_diff(out.local_alpha, ref.local_alpha),
        "max_diff_fused_alpha": _max_diff(out.fused_alpha, ref.fused_alpha),
        "class_agreement": float((out.global_logits.argmax(1) == ref.global_logits.argmax(1)).float().mean()),
    }


def bench_cuda(name: str, model: torch.nn.Module, size: int, batch: int, warmup: int, iters: int) -> dict[str, Any]:
    dev = torch.device("cuda")
    res: dict[str, Any] = {}
    ref = None
    for precision in ("fp32", "bf16"):
        for graphs in (False, True):
            tag = f"{precision}_{'graph' if graphs else 'eager'}"
            runner = InferenceRunner(model, dev, precision=precision, cuda_graphs=graphs)
            for b, key in ((1, "latency_b1_ms"), (batch, f"throughput_b{batch}_img_s")):
                x = _input(b, size, dev)
                try:
                    with torch.inference_mode():
                        t, out = _time_cuda(partial(runner, x), warmup, iters)
                except Exception as exc:  # OOM or an unsupported kernel: report it, keep benchmarking
                    res[f"{tag}_{key}"] = None
                    res[f"{tag}_b{b}_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                    print(f"{name} {tag} batch {b}: {res[f'{tag}_b{b}_error']}", flush=True)
                    torch.cuda.empty_cache()
                    continue
                res[f"{tag}_{key}"] = t * 1000.0 if b == 1 else b / t
                if b == 1:
                    if ref is None:
                        ref = out
                    else:
                        res[f"{tag}_max_diff_local_alpha"] = _max_diff(out.local_alpha, ref.local_alpha)
            res[f"{tag}_graphs_captured"] = len(runner.captured_shapes)
            del runner
            torch.cuda.empty_cache()
    res["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(models.list_architectures()), help="comma-separated registry names")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--size", type=int, default=512, help="square input side (multiple of 32)")
    p.add_argument("--batch", type=int, default=32, help="CUDA throughput batch size")
    p.add_argument("--iters", type=int, default=None, help="timed iterations (default 5 CPU, 30 CUDA)")
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="warm-up iterations (default 2 CPU: oneDNN builds its kernels on the first calls; 10 CUDA)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quick", action="store_true", help="fewer iterations (CPU 2, CUDA 10)")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON to this file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("CUDA requested but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    if cuda:
        torch.backends.cudnn.benchmark = True
    iters = args.iters or ((10 if cuda else 2) if args.quick else (30 if cuda else 5))
    warmup = args.warmup or ((3 if cuda else 2) if args.quick else (10 if cuda else 2))

    env = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cpu_auto_precision": str(DTYPES[resolve_precision("auto", "cpu")]).replace("torch.", ""),
        "size": args.size,
    }
    print("# " + ", ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    results: dict[str, Any] = {"env": env, "models": {}}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        torch.manual_seed(0)
        try:
            model = models.create(name).eval()
        except P3MError as exc:
            print(f"{name}: skipped ({exc})", flush=True)
            results["models"][name] = {"error": str(exc)}
            continue
        row: dict[str, Any] = {
            "params": count_parameters(model),
            "gflops_512": count_flops(model, (1, 3, 512, 512)) / 1e9,
        }
        if cuda:
            row.update(bench_cuda(name, model, args.size, args.batch, warmup, iters))
        else:
            row.update(bench_cpu(name, model, args.size, warmup, iters))
        results["models"][name] = row
        print(f"{name}: " + json.dumps(row), flush=True)
        del model

    print()
    if cuda:
        cols = ["fp32_eager", "fp32_graph", "bf16_eager", "bf16_graph"]
        header = " ".join(f"{c:>10}" for c in cols)
        print(f"{'model':<12} {'params':>11} {'GFLOPs':>7} | latency b1 {args.size}^2 (ms): {header}"
              f" | throughput b{args.batch} (img/s): {header}")  # fmt: skip
        for name, r in results["models"].items():
            if "error" in r:
                continue
            lat = " ".join(_fmt(r.get(f"{c}_latency_b1_ms")) for c in cols)
            thr = " ".join(_fmt(r.get(f"{c}_throughput_b{args.batch}_img_s")) for c in cols)
            print(f"{name:<12} {r['params']:>11,} {r['gflops_512']:>7.1f} | {'':>26}{lat} | {'':>29}{thr}")
    else:
        print(f"{'model':<12} {'params':>11} {'GFLOPs':>7} {'fp32 eager s':>13} {'fast s':>8} {'fast':>6} "
              f"{'speedup':>8} {'max|dL|':>9} {'max|dF|':>9} {'cls agree':>9}")  # fmt: skip
        for name, r in results["models"].items():
            if "error" in r:
                continue
            print(f"{name:<12} {r['params']:>11,} {r['gflops_512']:>7.1f} {r['eager_fp32_s']:>13.3f} "
                  f"{r['fast_s']:>8.3f} {r['fast_precision']:>6} {r['speedup']:>7.1f}x "
                  f"{r['max_diff_local_alpha']:>9.2e} {r['max_diff_fused_alpha']:>9.2e} "
                  f"{r['class_agreement']:>9.4f}")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _fmt(v: float | None) -> str:
    return f"{v:>10.2f}" if v is not None else f"{'-':>10}"


if __name__ == "__main__":
    sys.exit(main())
