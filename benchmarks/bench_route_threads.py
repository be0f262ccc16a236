"""The built-in route's alpha in process, `Matter().matte(image)`, with 1 and 2 torch threads side by side (issue 22).

The route runs its networks with `p3m.infer.sessions.ROUTE_TORCH_THREADS` torch threads; this sets that to 1 and to
2 in turn, image by image (the order alternating), over the 12 shared portraits (already decoded, so the figures are
the route's own time: priors, trimap, solve, upsample), after one warm-up call each. Reports mean, median and max
per thread count, the per-image ratio (1 thread / 2 threads) and whether every alpha is byte-identical.

    P3M_TESTDATA=... .venv/bin/python -m benchmarks.bench_route_threads [--rounds 2] [--json results/x.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from benchmarks.bench_common import print_report, testdata_dir
from p3m.infer import sessions
from p3m.infer.matter import Matter
from p3m.io import read_image


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--testdata", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    data = testdata_dir(args.testdata)
    if data is None:
        print("needs the shared test data ($P3M_TESTDATA or --testdata)", file=sys.stderr)
        return 2
    images = [read_image(p) for p in sorted((data / "portraits" / "image").glob("*.jpg"))]
    matter = Matter()
    times: dict[int, list[float]] = {1: [], 2: []}
    alphas: dict[int, list[bytes]] = {1: [], 2: []}
    load = [os.getloadavg()[0]]
    for threads in (1, 2):
        sessions.ROUTE_TORCH_THREADS = threads
        matter.matte(images[0])
    for r in range(args.rounds):
        for k, rgb in enumerate(images):
            for threads in (1, 2) if (k + r) % 2 == 0 else (2, 1):
                sessions.ROUTE_TORCH_THREADS = threads
                t0 = time.perf_counter()
                alpha = matter.matte(rgb).alpha
                times[threads].append(time.perf_counter() - t0)
                if r == 0:
                    alphas[threads].append(alpha.tobytes())
        load.append(os.getloadavg()[0])
    ratios = [a / b for a, b in zip(times[1], times[2], strict=True)]
    report = {
        "model": matter.model_name,
        "images": len(images),
        "rounds": args.rounds,
        **{
            f"{stat}_s_{t}_thread{'s' if t > 1 else ''}": round(fn(times[t]), 3)
            for t in (1, 2)
            for stat, fn in (("mean", statistics.mean), ("median", statistics.median), ("max", max))
        },
        "ratio_1_over_2": {
            "median": round(statistics.median(ratios), 3),
            "min": round(min(ratios), 3),
            "max": round(max(ratios), 3),
        },
        "alpha_identical": alphas[1] == alphas[2],
        "load_average_per_round": [round(x, 2) for x in load],
    }
    return print_report(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
