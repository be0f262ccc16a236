"""Run-to-run spread of the demo benchmark: P3M-Net R34 vs BASIC trained with several seeds on the same data.

The demo report compares P3M-Net and BASIC with a 95 % bootstrap interval over the test images of one trained
model each (`p3m.bench.compare`). This script measures what that interval leaves out: the spread between training
runs. It trains both networks of the ``ppt-demo`` recipe once per seed (``train.train.seed``) on one synthetic
dataset (the demo's: 120 training and 2 x 12 test portraits of 192 px), then prints per seed and test set each
method's mean SAD and the paired comparison, and over the seeds each method's mean, standard deviation and range.

    .venv/bin/python -m benchmarks.bench_seeds --out runs/seeds --seeds 0 1 2     # ~4 CPU minutes per seed, quiet
    .venv/bin/python -m benchmarks.bench_seeds --out runs/seeds --report-only      # the folders already there

From the repository root. Each seed's benchmark lives in OUT/seed-N (re-runs skip finished stages).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from p3m.bench.compare import paired_difference
from p3m.data.synth import SynthConfig, generate_dataset

METHODS = "[{name: P3M-Net R34, type: p3m-r34, width: 16}, {name: BASIC, type: basic-r34, width: 16}]"
SPLITS = ("P3M-500-P", "P3M-500-NP")


def run_seed(out: Path, data: Path, seed: int) -> None:
    from p3m.bench.runner import run_benchmark

    overrides = [f"dataset.root={data}", "dataset.synth=null", f"train.train.seed={seed}", f"methods={METHODS}"]
    run_benchmark("ppt-demo", out / f"seed-{seed}", overrides=overrides, progress=False, log=lambda line: None)


def per_image(out: Path, seed: int, method: str, split: str) -> dict[str, float]:
    data = json.loads((out / f"seed-{seed}" / "metrics" / "b" / method / f"{split}.json").read_text())
    return {stem: m["sad"] for stem, m in data["per_image"].items()}


def report(out: Path, seeds: list[int]) -> None:
    means: dict[tuple[str, str], list[float]] = {}
    print("seed  test set     P3M-Net  BASIC   BASIC - P3M-Net [95% interval over images]  verdict")
    for seed in seeds:
        for split in SPLITS:
            p3m, basic = per_image(out, seed, "p3m-net-r34", split), per_image(out, seed, "basic", split)
            stems = sorted(set(p3m) & set(basic))
            diff = paired_difference([p3m[s] for s in stems], [basic[s] for s in stems])
            mp, mb = statistics.fmean(p3m.values()), statistics.fmean(basic.values())
            means.setdefault(("P3M-Net", split), []).append(mp)
            means.setdefault(("BASIC", split), []).append(mb)
            print(
                f"{seed:>4}  {split:<11}  {mp:7.3f}  {mb:6.3f}  {diff.mean:+7.3f} [{diff.low:+.3f}, {diff.high:+.3f}]"
                f"{'':>17}{diff.verdict.replace('a lower', 'P3M-Net lower').replace('b lower', 'BASIC lower')}"
            )
    print("\nover the seeds: mean SAD, standard deviation, range")
    for (method, split), values in sorted(means.items()):
        sd = statistics.stdev(values) if len(values) > 1 else float("nan")
        print(
            f"  {method:<8} {split:<11} {statistics.fmean(values):7.3f}  sd {sd:.3f}  "
            f"{min(values):.3f}-{max(values):.3f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs (OUT/data, OUT/seed-N)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--report-only", action="store_true", help="only print the table of the runs in --out")
    args = parser.parse_args()
    data = args.out / "data"
    if not args.report_only:
        if not (data / "synth_meta.json").is_file():
            config = SynthConfig(n_train=120, n_test_p=12, n_test_np=12, size=(192, 192), seed=0)
            generate_dataset(data, config, progress=False, overwrite=True)
        for seed in args.seeds:
            print(f"training seed {seed} ...", file=sys.stderr, flush=True)
            run_seed(args.out, data, seed)
    report(args.out, args.seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
