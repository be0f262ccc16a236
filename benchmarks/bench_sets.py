"""What committing an output set as a unit costs (issue 19): `p3m.atomic.commit_set` against plain renames.

Both sides stage the same files (written to temporary files beside their destinations and fsynced, as every p3m
write does); then the baseline renames them one by one (what `p3m.io.write_image_set` did before) and
``commit_set`` brackets the renames with pending marks and two folder fsyncs (what makes an interrupted set
detectable). A set is four files, like `p3m matte --save alpha,rgba,fg,composite`; sizes: tiny (the cost of the
protocol alone) and 2 MiB each (the size of 1440x1080 PNG outputs). Pairs alternate which side runs first; the
ratio is taken per pair.

Usage, from the repository root: ``.venv/bin/python -m benchmarks.bench_sets [--dir FOLDER] [--pairs N]`` (FOLDER:
where to write, default a temporary folder under the current one, i.e. on the disk the outputs would go to).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from p3m.atomic import commit, commit_set, stage_bytes

KINDS = ("alpha", "rgba", "fg", "composite")


def _plain(folder: Path, tag: str, data: bytes) -> None:
    staged = [(stage_bytes(folder / f"{tag}_{k}.png", data), folder / f"{tag}_{k}.png") for k in KINDS]
    for tmp, dest in staged:
        commit(tmp, dest)


def _as_set(folder: Path, tag: str, data: bytes) -> None:
    commit_set([(stage_bytes(folder / f"{tag}_{k}.png", data), folder / f"{tag}_{k}.png") for k in KINDS])


def measure(folder: Path, size: int, pairs: int) -> dict:
    data = os.urandom(size)
    times: dict[str, list[float]] = {"plain renames": [], "commit_set": []}
    sides = (("plain renames", _plain), ("commit_set", _as_set))
    for i in range(pairs):
        for name, write in sides if i % 2 else sides[::-1]:
            start = time.perf_counter()
            write(folder, f"{name[0]}{i}", data)
            times[name].append(time.perf_counter() - start)
    ratios = [s / p for s, p in zip(times["commit_set"], times["plain renames"], strict=True)]
    out = {"file_bytes": size, "files_per_set": len(KINDS), "pairs": pairs}
    for name, values in times.items():
        q = statistics.quantiles(values, n=4)
        out[name] = {"median_ms": 1e3 * statistics.median(values), "q25_ms": 1e3 * q[0], "q75_ms": 1e3 * q[2]}
    out["ratio_median"] = statistics.median(ratios)
    out["extra_ms_median"] = out["commit_set"]["median_ms"] - out["plain renames"]["median_ms"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path.cwd())
    parser.add_argument("--pairs", type=int, default=40)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_sets_", dir=args.dir))
    try:
        results = [measure(folder, size, args.pairs) for size in (64, 2 << 20)]
    finally:
        shutil.rmtree(folder)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
