"""Throughput of `p3m matte` / `p3m anonymize` on one machine and with `--cluster` (1 and 2 Ray actors), side by side.

Run, from the repository root: `.venv/bin/python -m benchmarks.bench_cluster [--verbs matte,anonymize]
[--sizes 6,24] [--repeats 2] [--json benchmarks/results/cpu_cluster.json]`. Inputs: the shared real portraits
(1080p, repeated under new names to make `max(--sizes)` images), else synthetic 512 px portraits.

Each configuration runs the verb as a user would (`p3m.cli.main`, model loading included) on two folder sizes; the
difference gives the time per image (steady state: 1 / throughput) and the intercept the fixed cost of a job (model
load, and on the cluster the actors' start). The Ray cluster itself (2 CPUs, this machine) is started once, timed
apart. Configurations:

- ``here``: the verb in this process, torch on 2 threads (its default here);
- ``here, 1 thread``: the same with torch, OpenCV and numba on 1 thread, the baseline an actor of 1 CPU compares to:
  the difference in time per image is what Ray adds per image (reading the file into the object store, moving it to
  the actor, shipping the outcome back);
- ``1 actor``, ``2 actors``: ``--cluster local,actors=N`` (1 CPU each; Ray gives an actor OMP_NUM_THREADS=1).

``--overhead N``: Ray's own cost per image measured directly, with a worker that does nothing but take the bytes
(N images through 1 actor, minus N/10, divided by the difference; after a warm-up run, fastest of 3): what a
cluster adds to each image whatever the model, without the noise of the model's own time.

State the machine (and how loaded it was) when quoting the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from p3m.atomic import write_bytes_atomic
from p3m.cli import main as p3m
from tests.paths import PORTRAITS

CONFIGS = ("here", "here, 1 thread", "1 actor", "2 actors")


def _inputs(folder: Path, count: int) -> list[Path]:
    """`count` images in `folder`: the shared portraits repeated under new names, else synthetic portraits."""
    sources = sorted((PORTRAITS / "image").glob("*.jpg"))
    if not sources:
        from p3m.data.synth import SynthConfig, generate_dataset

        root = generate_dataset(folder.parent / "synth", SynthConfig(0, 0, min(count, 12), size=(512, 512), seed=3))
        sources = sorted(next(root.rglob("original_image")).glob("*.jpg"))
    folder.mkdir(parents=True)
    made = []
    for k in range(count):
        src = sources[k % len(sources)]
        made.append(Path(shutil.copy(src, folder / f"r{k // len(sources)}_{src.name}")))
    return made


def _single_threaded() -> Callable[[], None]:
    """Torch, OpenCV and numba on one thread; returns the function that puts them back."""
    import cv2
    import numba
    import torch

    saved = torch.get_num_threads(), cv2.getNumThreads(), numba.get_num_threads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    numba.set_num_threads(1)

    def restore() -> None:
        torch.set_num_threads(saved[0])
        cv2.setNumThreads(saved[1])
        numba.set_num_threads(saved[2])

    return restore


def _run(verb: str, folder: Path, out: Path, config: str) -> float:
    cluster = {"1 actor": ["--cluster", "local,actors=1"], "2 actors": ["--cluster", "local,actors=2"]}
    restore = _single_threaded() if config == "here, 1 thread" else None
    try:
        start = time.perf_counter()
        rc = p3m([verb, str(folder), "-o", str(out), "-q", *cluster.get(config, [])])
        seconds = time.perf_counter() - start
    finally:
        if restore:
            restore()
    if rc not in (0, 1):
        raise SystemExit(f"{verb} {config}: exit code {rc}")
    shutil.rmtree(out)
    return seconds


def _fit(times: dict[int, list[float]]) -> dict[str, float]:
    """Time per image and fixed cost from the fastest run at each of two sizes."""
    (n1, t1), (n2, t2) = sorted((n, min(ts)) for n, ts in times.items())
    per_image = (t2 - t1) / (n2 - n1)
    return {"s_per_image": per_image, "images_per_s": 1 / per_image, "fixed_s": t1 - n1 * per_image}


class _TakeBytes:
    """A worker that only takes each image's bytes (Ray's cost alone); shipped to the actors by value."""

    def __call__(self):
        return lambda item, data: len(data)

    def failed(self, item, message: str) -> int:
        return -1


def _overhead(folder: Path, count: int) -> dict[str, float]:
    """Seconds per image that Ray adds: ``count`` and ``count // 10`` images through one actor doing nothing."""
    import sys

    import ray.cloudpickle

    from p3m.cluster import ClusterSpec
    from p3m.cluster.runner import RayRunner

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    files = sorted(folder.iterdir())
    runner = RayRunner(ClusterSpec("local", actors=1), source=lambda path: path)
    jobs = {}
    for n in (count // 10, count):
        sources = [files[k % len(files)] for k in range(n)]
        jobs[n] = [Path(shutil.copy(p, folder.parent / "overhead" / f"{k}_{p.name}")) for k, p in enumerate(sources)]
    list(runner(_TakeBytes(), jobs[count // 10]))  # warm-up: Ray starts its worker processes once
    seconds: dict[int, float] = {}
    for _ in range(3):  # the fastest of three, each size
        for n, paths in jobs.items():
            start = time.perf_counter()
            assert all(size > 0 for _, size in runner(_TakeBytes(), paths))
            seconds[n] = min(seconds.get(n, float("inf")), time.perf_counter() - start)
    n1, n2 = sorted(seconds)
    return {"images": count, "runs_s": seconds, "s_per_image": (seconds[n2] - seconds[n1]) / (n2 - n1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbs", default="matte,anonymize", help="comma-separated (default matte,anonymize)")
    parser.add_argument("--sizes", default="6,24", help="two folder sizes (default 6,24)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each configuration and size (default 2)")
    parser.add_argument("--overhead", type=int, default=0, metavar="N", help="Ray's cost per image with N images")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    work = Path(tempfile.mkdtemp(prefix="p3mbench", dir="/tmp"))  # short: Ray's socket paths live under it
    # no usage statistics; Ray's authentication token in a $HOME of this run's own, not ~/.ray
    os.environ.update(RAY_USAGE_STATS_ENABLED="0", HOME=str(work))
    os.environ.pop("RAY_ADDRESS", None)
    import ray

    try:
        inputs = _inputs(work / "all", sizes[-1])
        folders = {}
        for n in sizes:
            folders[n] = work / f"in{n}"
            folders[n].mkdir()
            for path in inputs[:n]:
                shutil.copy(path, folders[n])
        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", _temp_dir=str(work / "ray"))
        ray_start = time.perf_counter() - start
        results: dict = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "inputs": "shared portraits (1080p)" if (PORTRAITS / "image").is_dir() else "synthetic 512 px",
            "ray_start_s": ray_start,
            "verbs": {},
        }
        print(f"Ray start (2 CPUs): {ray_start:.1f} s")
        if args.overhead:
            (work / "overhead").mkdir()
            results["overhead"] = _overhead(work / "all", args.overhead)
            print(f"Ray's cost per image (an actor that only takes the bytes): {results['overhead']}")
        for verb in filter(None, args.verbs.split(",")):
            times: dict[str, dict[int, list[float]]] = {c: {n: [] for n in sizes} for c in CONFIGS}
            for _ in range(args.repeats):  # interleaved, so that a busy spell of the machine hits every config
                for n in sizes:
                    for config in CONFIGS:
                        times[config][n].append(_run(verb, folders[n], work / "out", config))
            fits = {c: _fit(times[c]) for c in CONFIGS}
            overhead = fits["1 actor"]["s_per_image"] - fits["here, 1 thread"]["s_per_image"]
            results["verbs"][verb] = {"runs_s": times, "fits": fits, "ray_overhead_s_per_image": overhead}
            print(f"\n{verb}: seconds per run {sizes} images (all runs), time per image, throughput, fixed cost")
            for c in CONFIGS:
                runs = "; ".join(", ".join(f"{t:.1f}" for t in times[c][n]) for n in sizes)
                f = fits[c]
                print(
                    f"  {c:15s} [{runs}]  {f['s_per_image']:.3f} s/img  {f['images_per_s']:.2f} img/s  "
                    f"fixed {f['fixed_s']:.1f} s"
                )
            spread = max((max(ts) - min(ts)) / min(ts) for c in CONFIGS for ts in times[c].values())
            results["verbs"][verb]["largest_spread_between_repeats"] = spread
            print(f"  Ray's cost per image (1 actor - here, 1 thread): {overhead * 1000:.0f} ms")
            print(f"  largest spread between repeats of one run: {spread:.0%}")
        if args.json:
            write_bytes_atomic(args.json, (json.dumps(results, indent=2) + "\n").encode())
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
