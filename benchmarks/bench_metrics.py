"""Time the fast P3M-protocol metrics against the literal reference implementation, on one core, in one run.

Pairs come from the real reference mattes in the shared test data: GT = reference alpha (centre square, resized to
1080x1080); predictions are perturbed copies of it:

* ``blurred``: Gaussian blur (sigma 1.5) of GT, rounded to 8 bit (a prediction as saved by an inference run; most
  pixels agree with GT exactly, as with real predictions);
* ``noisy``: GT + Gaussian noise (sigma 0.02), clipped, float (worst case: every pixel differs).

For each pair the full P3M set (SAD, MSE, MAD, SAD-T/MSE-T/MAD-T, SAD-FG/BG, Grad, Conn, privacy SAD/MSE/MAD; the
trimap is derived from GT, the "face" is a box) is computed by both implementations; values must agree to a relative
1e-6. A third column times the published evaluation code's way (``published_all``: the same formulas, plus the
per-threshold distance transform the published Conn computes and never uses), the baseline the issue's "about 1.5 s
per pair" refers to. Times are CPU seconds of this single-threaded process (``time.process_time``; robust on a shared
machine) and wall seconds, best of ``--repeat`` runs for the fast code and of ``--ref-repeat`` runs for the reference.

Usage, from the repository root: ``.venv/bin/python -m benchmarks.bench_metrics [--testdata DIR] [--pairs N]
[--size 1080]`` (``P3M_TESTDATA`` points to the test data folder: the P3M demo portraits of `JizhiziLi/P3M`
demo/imgs as portraits/image and portraits/reference_alpha).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from functools import partial
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import cv2
import numpy as np

from benchmarks.bench_common import testdata_dir
from p3m.io import read_mask
from p3m.metrics import p3m_metrics
from tests.reference.metrics import published_all, ref_all


def make_pairs(root: Path, n: int, size: int) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    pairs = []
    for path in sorted((root / "portraits" / "reference_alpha").glob("*.png"))[:n]:
        alpha = read_mask(path)
        h, w = alpha.shape
        s = min(h, w)
        square = alpha[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        gt = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA).astype(np.float64) / 255
        trimap = np.full(gt.shape, 128, np.uint8)
        trimap[gt == 0] = 0
        trimap[gt == 1] = 255
        face = np.zeros(gt.shape, bool)
        face[size // 8 : size // 3, size // 3 : 2 * size // 3] = True
        blurred = np.round(np.clip(cv2.GaussianBlur(gt, (0, 0), 1.5), 0, 1) * 255) / 255
        noisy = np.clip(gt + rng.normal(0, 0.02, gt.shape), 0, 1)
        pairs.append((f"{path.stem} blurred", blurred, gt, trimap, face))
        pairs.append((f"{path.stem} noisy", noisy, gt, trimap, face))
    return pairs


def timed(fn, repeat: int) -> tuple[float, float, dict]:
    best_cpu = best_wall = float("inf")
    result = {}
    for _ in range(repeat):
        c, t = time.process_time(), time.perf_counter()
        result = fn()
        best_cpu = min(best_cpu, time.process_time() - c)
        best_wall = min(best_wall, time.perf_counter() - t)
    return best_cpu, best_wall, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--testdata", help="test data folder (with portraits/reference_alpha)")
    parser.add_argument("--pairs", type=int, default=4, help="number of reference mattes to use (default 4)")
    parser.add_argument("--size", type=int, default=1080, help="square size (default 1080)")
    parser.add_argument("--repeat", type=int, default=10, help="fast-code repetitions, best taken (default 10)")
    parser.add_argument("--ref-repeat", type=int, default=2, help="reference repetitions, best taken (default 2)")
    args = parser.parse_args()

    cv2.setNumThreads(1)
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    root = testdata_dir(args.testdata)
    if root is None:
        sys.exit("bench_metrics: test data not found; pass --testdata DIR or set P3M_TESTDATA")
    pairs = make_pairs(root, args.pairs, args.size)
    p0, a0, t0, f0 = pairs[0][1:]
    p3m_metrics(p0, a0, t0, f0)  # compile / load the numba kernels outside the timing

    print(
        f"P3M protocol, full metric set, {args.size}x{args.size}, one core "
        f"(CPU seconds of this process; wall in brackets)"
    )
    print(
        f"{'pair':<28} {'reference':>18} {'published code':>18} {'fast':>18} {'ratio':>7} {'vs pub':>7}  max rel diff"
    )
    totals: dict[str, list[float]] = {"blurred": [0.0, 0.0, 0.0], "noisy": [0.0, 0.0, 0.0]}
    worst = 0.0
    for name, p, a, trimap, face in pairs:
        ref_cpu, ref_wall, ref = timed(partial(ref_all, p, a, trimap, face), args.ref_repeat)
        pub_cpu, pub_wall, _ = timed(partial(published_all, p, a, trimap, face), args.ref_repeat)
        fast_cpu, fast_wall, fast = timed(partial(p3m_metrics, p, a, trimap, face), args.repeat)
        rel = max(
            0.0
            if fast[k] == ref[k] or (np.isnan(fast[k]) and np.isnan(ref[k]))
            else abs(fast[k] - ref[k]) / max(abs(ref[k]), 1e-300)
            for k in ref
        )
        if set(fast) != set(ref):
            rel = float("inf")
        worst = max(worst, rel)
        kind = name.split()[-1]
        totals[kind][0] += ref_cpu
        totals[kind][1] += fast_cpu
        totals[kind][2] += pub_cpu
        print(
            f"{name:<28} {ref_cpu * 1000:8.0f} ms [{ref_wall * 1000:4.0f}] {pub_cpu * 1000:8.0f} ms "
            f"[{pub_wall * 1000:4.0f}] {fast_cpu * 1000:8.1f} ms [{fast_wall * 1000:4.0f}] "
            f"{ref_cpu / fast_cpu:6.1f}x {pub_cpu / fast_cpu:6.1f}x  {rel:.1e}"
        )
    for kind, (ref_total, fast_total, pub_total) in totals.items():
        print(
            f"{kind:>8}: reference {ref_total * 1000:.0f} ms, published code {pub_total * 1000:.0f} ms, "
            f"fast {fast_total * 1000:.1f} ms; ratio {ref_total / fast_total:.1f}x vs the literal reference, "
            f"{pub_total / fast_total:.1f}x vs the published code"
        )
    print(
        f"largest relative difference over all metrics and pairs: {worst:.1e} "
        f"({'identical within 1e-6' if worst <= 1e-6 else 'MISMATCH'})"
    )
    return 0 if worst <= 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
