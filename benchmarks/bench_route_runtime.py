"""The built-in route with its networks on ONNX Runtime against the same route on torch, side by side in one run
(issue 22).

Both routes are `PortraitMatting()` of this checkout, one with ``runtime="onnxruntime"`` (the default), one with
``runtime="torch"`` (the torch ports, on one torch thread as `p3m.infer.sessions.PortraitSession` runs them, i.e.
main's route). On the 12 shared real portraits (reference mattes) and the three photos shipped in tests/data (their
reference mattes): per image the largest and mean |alpha difference| between the runtimes and the SAD (sum
|alpha - reference| / 1000) of each; then the mean seconds per route step (``RouteResult.timings``), the two routes
called in turn on each image (after one untimed call each), ``--repeat`` rounds.

    P3M_TESTDATA=DIR .venv/bin/python -m benchmarks.bench_route_runtime [--repeat 2] [--json out.json]

Runs on the shipped photos alone when the shared portraits are absent.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from typing import Any

import numpy as np

from benchmarks.bench_common import print_report
from benchmarks.bench_portrait import scores
from p3m.infer.portrait import STEPS, PortraitMatting
from p3m.infer.runtime import torch_threads
from p3m.infer.sessions import ROUTE_TORCH_THREADS
from p3m.io import read_image, read_mask
from tests.paths import PORTRAITS, REAL_PHOTOS, REFERENCE_ALPHA


def _images() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, RGB, 8-bit reference matte) of the shared portraits (when present) and the shipped photos."""
    pairs = [(p, PORTRAITS / "reference_alpha" / f"{p.stem}.png") for p in sorted((PORTRAITS / "image").glob("*.jpg"))]
    pairs += [(p, REFERENCE_ALPHA / f"{p.stem}.png") for p in REAL_PHOTOS]
    return [(path.stem, read_image(path), read_mask(ref)) for path, ref in pairs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="timed rounds (default 2)")
    parser.add_argument("--json", default=None, help="write the report here")
    args = parser.parse_args()
    routes = {"onnxruntime": PortraitMatting(runtime="onnxruntime"), "torch": PortraitMatting(runtime="torch")}
    assert routes["onnxruntime"].net.runtime == "onnxruntime" and routes["torch"].net.runtime == "torch"
    images = _images()
    rows: list[dict[str, Any]] = []
    steps: dict[str, dict[str, list[float]]] = {name: {} for name in routes}
    with torch_threads(ROUTE_TORCH_THREADS):
        for route in routes.values():
            route.run(images[0][1])  # sessions, kernels, numba: untimed
        for round_ in range(args.repeat):
            for name, rgb, ref in images:
                results = {runtime: route.run(rgb) for runtime, route in routes.items()}
                for runtime, result in results.items():
                    for step in STEPS:
                        steps[runtime].setdefault(step, []).append(result.timings[step])
                    steps[runtime].setdefault("alpha (whole route)", []).append(sum(result.timings.values()))
                if round_ == 0:
                    a, b = results["onnxruntime"].alpha, results["torch"].alpha
                    diff = np.abs(a.astype(np.float64) - b)
                    rows.append(
                        {
                            "image": name,
                            "max_abs_diff": float(diff.max()),
                            "mean_abs_diff": float(diff.mean()),
                            "pixels_over_1_255": int((diff > 1 / 255).sum()),
                            "sad_onnxruntime": scores(a, ref)["sad"],
                            "sad_torch": scores(b, ref)["sad"],
                            "same_warning": results["onnxruntime"].warning == results["torch"].warning,
                        }
                    )
    portraits = [r for r in rows if r["image"] not in {p.stem for p in REAL_PHOTOS}]
    means = {runtime: {k: statistics.mean(v) for k, v in s.items()} for runtime, s in steps.items()}
    report = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg()[0],
        "images": rows,
        "worst_max_abs_diff": max(r["max_abs_diff"] for r in rows),
        "worst_mean_abs_diff": max(r["mean_abs_diff"] for r in rows),
        "mean_sad_12": {
            runtime: statistics.mean(r[f"sad_{runtime}"] for r in portraits) if portraits else None
            for runtime in routes
        },
        "step_mean_seconds": means,
        "step_ratio_onnxruntime_to_torch": {
            k: means["onnxruntime"][k] / means["torch"][k] for k in means["torch"] if means["torch"][k] > 0
        },
    }
    return print_report(report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
