"""Each inference lever of the R34 HYBRID local pass at 1080x1620 (network input 1056x1600) alone, against the layer
it replaces, on the layer's own input shape (issue 22): the sBFI strided max-pools and the 64->1 output convolution
(`p3m.infer.rewrites`), and dBFI level 0, which a local pass no longer runs (its time is what is saved).

bf16, channels_last, random weights and inputs (timing does not depend on the values); A (torch's layer) and B (the
replacement) alternate call by call after a warm-up, so each ratio B/A comes from the same machine state.

    .venv/bin/python -m benchmarks.bench_rewrites [--repeats 7] [--threads 1] [--json results/cpu_rewrites.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from benchmarks.bench_common import print_report
from p3m.infer.rewrites import OneChannelConv3x3, StridedMax2x2
from p3m.models.blocks import DBFI

H, W, WIDTH = 1056, 1600, 64


def _input(*shape: int) -> torch.Tensor:
    return torch.relu(torch.randn(*shape)).bfloat16().contiguous(memory_format=torch.channels_last)


def _low(module: nn.Module) -> nn.Module:
    return module.eval().requires_grad_(False).bfloat16().to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def cases() -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    """name -> (torch's layer, the replacement), each a call on the layer's input in the local pass."""
    stem = _input(1, WIDTH, H, W)
    out: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {}
    for stride in (2, 4, 8):
        pool, strided = nn.MaxPool2d(2, stride=stride), StridedMax2x2(stride)
        out[f"sBFI max-pool 2x2 stride {stride}, 64x{H}x{W}"] = (lambda p=pool: p(stem), lambda s=strided: s(stem))
    final = _low(nn.Conv2d(WIDTH, 1, 3, padding=1))
    swapped = OneChannelConv3x3(final)
    out[f"output conv 64->1 3x3, 64x{H}x{W}"] = (lambda: final(stem), lambda: swapped(stem))
    dbfi = _low(DBFI(WIDTH, 8 * WIDTH, 16))
    d1_g, deep = _input(1, WIDTH, H // 2, W // 2), _input(1, 8 * WIDTH, H // 32, W // 32)
    out[f"dBFI 0 (skipped by the local pass), 64x{H // 2}x{W // 2}"] = (lambda: dbfi(d1_g, deep, False), lambda: None)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows: dict[str, Any] = {}
    with torch.no_grad():
        for name, (before, after) in cases().items():
            before(), after()  # warm-up: oneDNN builds its kernels on the first calls per shape
            times: dict[str, list[float]] = {"torch": [], "p3m": []}
            for _ in range(args.repeats):
                for key, fn in (("torch", before), ("p3m", after)):
                    t0 = time.perf_counter()
                    fn()
                    times[key].append(time.perf_counter() - t0)
            rows[name] = {
                "median_ms": {k: round(1000 * statistics.median(v), 1) for k, v in times.items()},
                "min_max_ms": {k: [round(1000 * min(v), 1), round(1000 * max(v), 1)] for k, v in times.items()},
                "saved_ms_median_of_pairs": round(
                    1000 * statistics.median(a - b for a, b in zip(times["torch"], times["p3m"], strict=True)), 1
                ),
            }
            print(name, rows[name], flush=True)
    report = {
        "case": "R34 HYBRID local pass at 1056x1600, bf16 channels_last: each lever against the layer it replaces",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "levers": rows,
        "load_at_end": os.getloadavg(),
    }
    return print_report(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
