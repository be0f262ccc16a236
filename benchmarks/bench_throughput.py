"""Throughput of the default job (`p3m matte DIR -o OUT`, built-in portrait-cf route) against an earlier commit, side by
side in one run (issue 22).

"Before" is a git worktree of ``--base`` (default 2981ea3, main before the faster solve and the alpha stage on
several threads; f5aa228 before the first round) made in a temporary folder and run
with this checkout's environment (``PYTHONPATH`` pointing at its ``src``; its own numba cache, filled before timing);
"after" is this checkout. Rows, every one interleaved before/after round by round (``--repeats``, default 2), so the
ratios come from the same machine state; the spread is the min..max over the rounds:

* ``matte default``: the whole command on a folder of the shared portraits, each twice (24 images, 1080 px on the
  short side), default outputs (alpha + straight RGBA cutout): seconds, images/s and the peak RSS of the process;
* ``matte alpha``: the same with ``--save alpha``;
* ``start-up``: the whole command on one 64x48 image (imports, model load, the first call's one-time costs): a
  grey one (no person: the route stops after its prior), and a shared portrait shrunk to 64x48 ("start-up
  portrait": the person check and the closed-form solver run too, so numba loads);
* ``4K``: the whole command on one 3840x2160 photo (a shared portrait resized), default outputs: seconds and peak RSS;
* in process, per 1080 px image: foreground estimation (the previous code, kept in
  ``tests/reference/foreground_before.py``, against `p3m.infer.foreground.estimate_foreground`, on the reference
  mattes) and PNG encoding of the alpha and RGBA outputs (PIL level 6, the previous encoder, against
  `p3m.io.encode_image`); and the route's alpha split per stage (decode, prior, trimap, solve, upsample) from its
  step timings (``result.info["route"]["seconds"]``) in this checkout;
* ``route steps``: the route's step timings per 1080 px portrait in a process of each commit (the 12 portraits
  after one untimed call, commits interleaved round by round), and in this checkout with its networks forced onto
  torch (``P3M_GRAPH_RUNTIME=torch``, "after-torch"), so the runtimes compare on the same code.

Outputs are checked in the same run: every alpha PNG of the two commands decodes to the same pixels, the RGBA
colours differ by at most 2/255, and the mean SAD against the reference mattes is reported for both.

Usage, from the repository root: ``.venv/bin/python -m benchmarks.bench_throughput [--repeats 2] [--json OUT]``
(needs the shared test data, ``$P3M_TESTDATA`` or ``--testdata``, and git).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.bench_common import testdata_dir
from p3m.io import encode_image, read_image, read_mask, write_image
from p3m.workers import usable_cpus
from tests.reference.foreground_before import previous_estimate_foreground

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BASE = "2981ea3"


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one command (it must succeed)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"bench_throughput: {' '.join(cmd)} failed ({proc.returncode}): {err.strip()[-400:]}")
    return wall, usage.ru_maxrss / 1024


def _env(src: Path, cache: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(src), NUMBA_CACHE_DIR=str(cache))


def _matte(env: dict[str, str], inputs: Path, out: Path, *extra: str) -> tuple[float, float]:
    shutil.rmtree(out, ignore_errors=True)
    return _run([sys.executable, "-m", "p3m.cli", "matte", str(inputs), "-o", str(out), "-q", *extra], env)


def _spread(values: list[float]) -> dict[str, float]:
    return {"best": min(values), "median": statistics.median(values), "worst": max(values)}


def _command_rows(work: Path, envs: dict[str, dict[str, str]], portraits: Path, repeats: int) -> dict:
    folder = work / "in24"
    folder.mkdir()
    images = sorted((portraits / "image").glob("*.jpg"))
    for copy in ("a", "b"):
        for path in images:
            shutil.copy(path, folder / f"{path.stem}_{copy}.jpg")
    one = work / "in1"
    one.mkdir()
    write_image(one / "small.png", np.full((48, 64, 3), 128, np.uint8))
    person = work / "in1person"
    person.mkdir()
    write_image(person / "small.png", cv2.resize(read_image(images[0]), (64, 48), interpolation=cv2.INTER_AREA))
    big = work / "in4k"
    big.mkdir()
    wide = max(images, key=lambda p: read_image(p).shape[1] / read_image(p).shape[0])
    write_image(big / "photo4k.jpg", cv2.resize(read_image(wide), (3840, 2160), interpolation=cv2.INTER_CUBIC))
    cases = {
        "matte default": (folder, ()),
        "matte alpha": (folder, ("--save", "alpha")),
        "start-up": (one, ()),
        "start-up portrait": (person, ()),
        "4K": (big, ()),
    }
    rows: dict[str, dict[str, list[float]]] = {}
    for inputs, extra in cases.values():
        for env in envs.values():
            _matte(env, inputs, work / "warm", *extra)  # numba caches, page cache: untimed
    for round_ in range(repeats):
        for name, (inputs, extra) in cases.items():
            for variant, env in envs.items():
                out = work / f"out-{variant}-{name}".replace(" ", "_").replace(",", "")
                wall, rss = _matte(env, inputs, out, *extra)
                row = rows.setdefault(f"{name} | {variant}", {"seconds": [], "peak_rss_mb": [], "load": []})
                row["seconds"].append(wall)
                row["peak_rss_mb"].append(rss)
                row["load"].append(os.getloadavg()[0])
                load = row["load"][-1]
                line = f"round {round_}: {name:14s} {variant:6s} {wall:7.2f} s  {rss:4.0f} MiB  load {load:.1f}"
                print(line, flush=True)
    report = {}
    for key, row in rows.items():
        name = key.split(" | ")[0]
        n = len(list(cases[name][0].iterdir()))
        report[key] = {
            "images": n,
            "seconds": _spread(row["seconds"]),
            "images_per_s": n / min(row["seconds"]),
            "peak_rss_mb": max(row["peak_rss_mb"]),
            "seconds_per_round": row["seconds"],
            "load_after_each_round": row["load"],
        }
    report["outputs"] = _compare_outputs(work, portraits)
    return report


# one process of a commit: the route's step seconds on every portrait (after one untimed call), as JSON
_ROUTE_STEPS = """
import json, sys, time
from pathlib import Path
from p3m.infer.matter import Matter
from p3m.io import read_image
paths = sorted(Path(sys.argv[1]).glob("*.jpg"))
matter = Matter()
matter.matte(read_image(paths[0]))
steps = {"backend": matter.backend}
for path in paths:
    rgb = read_image(path)
    start = time.perf_counter()
    result = matter.matte(rgb)
    steps.setdefault("alpha (whole route)", []).append(time.perf_counter() - start)
    for step, seconds in result.info["route"]["seconds"].items():
        steps.setdefault(step, []).append(seconds)
print(json.dumps(steps))
"""


def _route_step_rows(envs: dict[str, dict[str, str]], portraits: Path, repeats: int) -> dict:
    """Mean seconds per route step and portrait, per commit (and this checkout on torch), interleaved by round."""
    envs = {**envs, "after-torch": dict(envs["after"], P3M_GRAPH_RUNTIME="torch")}
    steps: dict[str, dict[str, list[float]]] = {variant: {} for variant in envs}
    backends = {}
    for round_ in range(repeats):
        for variant, env in envs.items():
            run = subprocess.run(
                [sys.executable, "-c", _ROUTE_STEPS, str(portraits / "image")],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            found = json.loads(run.stdout.strip().splitlines()[-1])
            backends[variant] = found.pop("backend")
            for step, seconds in found.items():
                steps[variant].setdefault(step, []).extend(seconds)
            print(f"round {round_}: route steps {variant:12s} {statistics.mean(found['alpha (whole route)']):.3f} s")
    means = {v: {k: statistics.mean(x) for k, x in s.items()} for v, s in steps.items()}
    return {
        "backend": backends,
        "mean_seconds": means,
        "ratio_after_to_before": {
            k: means["after"][k] / means["before"][k] for k in means["after"] if means["before"][k]
        },
        "ratio_after_to_after_torch": {
            k: means["after"][k] / means["after-torch"][k] for k in means["after"] if means["after-torch"][k]
        },
    }


def _compare_outputs(work: Path, portraits: Path) -> dict:
    """Alpha pixels equal, RGBA colours within 2/255 (before vs after, default outputs), mean SAD of each."""
    before, after = work / "out-before-matte_default", work / "out-after-matte_default"
    worst_alpha = worst_rgb = 0
    sads: dict[str, list[float]] = {"before": [], "after": []}
    for path in sorted(before.glob("*_a_alpha.png")) + sorted(before.glob("*_b_alpha.png")):
        rgba_name = path.name.replace("_alpha.png", "_rgba.png")
        a0, a1 = (read_mask(d / path.name).astype(np.int16) for d in (before, after))
        c0, c1 = (cv2.imread(str(d / rgba_name), cv2.IMREAD_UNCHANGED).astype(np.int16) for d in (before, after))
        worst_alpha = max(worst_alpha, int(np.abs(a0 - a1).max()))
        worst_rgb = max(worst_rgb, int(np.abs(c0 - c1).max()))
        if path.name.endswith("_a_alpha.png"):
            ref = read_mask(portraits / "reference_alpha" / f"{path.name[: -len('_a_alpha.png')]}.png")
            for key, a in (("before", a0), ("after", a1)):
                sads[key].append(float(np.abs(a / 255 - ref / 255).sum() / 1000))
    return {
        "alpha_max_abs_diff": worst_alpha,
        "rgba_max_abs_diff": worst_rgb,
        "mean_sad_before": statistics.mean(sads["before"]),
        "mean_sad_after": statistics.mean(sads["after"]),
        "portraits": len(sads["after"]),
    }


def _timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _in_process_rows(portraits: Path, repeats: int) -> dict:
    """Per 1080 px image: foreground and PNG encoding before vs after (interleaved), the route's stage split."""
    import io

    from PIL import Image

    from p3m.infer.foreground import alpha_to_uint8, cutout_rgba, estimate_foreground
    from p3m.infer.matter import Matter

    def pil6(pixels: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG", compress_level=6)
        return buf.getvalue()

    times: dict[str, list[float]] = {k: [] for k in ("fg before", "fg after", "png before", "png after")}
    sizes: dict[str, int] = {"png before": 0, "png after": 0}
    worst = 0
    paths = sorted((portraits / "image").glob("*.jpg"))
    estimate_foreground(np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 0.5, np.float32))  # load the kernels
    for path in paths:
        image = read_image(path)
        alpha = read_mask(portraits / "reference_alpha" / f"{path.stem}.png").astype(np.float32) / 255
        old, new = previous_estimate_foreground(image, alpha), estimate_foreground(image, alpha)
        worst = max(worst, int(np.abs(old.astype(np.int16) - new).max()))
        outputs = (alpha_to_uint8(alpha), cutout_rgba(new, alpha))
        for _ in range(repeats):
            times["fg before"] += _timed(lambda: previous_estimate_foreground(image, alpha), 1)  # noqa: B023
            times["fg after"] += _timed(lambda: estimate_foreground(image, alpha), 1)  # noqa: B023
            times["png before"] += _timed(lambda: [pil6(o) for o in outputs], 1)  # noqa: B023
            times["png after"] += _timed(lambda: [encode_image(o) for o in outputs], 1)  # noqa: B023
        sizes["png before"] += sum(len(pil6(o)) for o in outputs)
        sizes["png after"] += sum(len(encode_image(o)) for o in outputs)
    matter = Matter()
    matter.matte(read_image(paths[0]))  # first-call costs
    stages: dict[str, list[float]] = {}
    for path in paths:
        start = time.perf_counter()
        rgb = read_image(path)
        decode = time.perf_counter() - start
        start = time.perf_counter()
        result = matter.matte(rgb)
        stages.setdefault("alpha (whole route)", []).append(time.perf_counter() - start)
        stages.setdefault("decode", []).append(decode)
        for step, seconds in result.info["route"]["seconds"].items():
            stages.setdefault(step, []).append(seconds)
    return {
        "per_image_mean_seconds": {k: statistics.mean(v) for k, v in times.items()},
        "per_image_median_seconds": {k: statistics.median(v) for k, v in times.items()},
        "foreground_max_abs_diff": worst,
        "png_bytes_per_image": {k: v / len(paths) for k, v in sizes.items()},
        "route_stage_mean_seconds": {k: statistics.mean(v) for k, v in stages.items()},
        "route_stage_max_seconds": {k: max(v) for k, v in stages.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=DEFAULT_BASE, help=f"the commit to compare with (default {DEFAULT_BASE})")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of every command (default 2)")
    parser.add_argument("--testdata", default=None, help="the shared test data folder")
    parser.add_argument("--json", default=None, help="write the report here")
    parser.add_argument("--skip-commands", action="store_true", help="in-process rows only")
    args = parser.parse_args()
    data = testdata_dir(args.testdata)
    if data is None:
        sys.exit("bench_throughput: test data not found; pass --testdata DIR or set P3M_TESTDATA")
    portraits = data / "portraits"
    report: dict = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "base": args.base,
        "head": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip(),
        "loadavg_start": os.getloadavg()[0],
        "usable_cpus": usable_cpus(),
        "repeats": args.repeats,
    }
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        work = Path(tmp)
        if not args.skip_commands:
            base = work / "base"
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), args.base], cwd=REPO, check=True)
            try:
                envs = {
                    "before": _env(base / "src", base / ".cache" / "numba"),
                    "after": _env(REPO / "src", REPO / ".cache" / "numba"),
                }
                report["commands"] = _command_rows(work, envs, portraits, args.repeats)
                report["route_steps"] = _route_step_rows(envs, portraits, args.repeats)
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO, check=False)
        report["in_process"] = _in_process_rows(portraits, args.repeats)
    report["loadavg_end"] = os.getloadavg()[0]
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
