"""The built-in route's closed-form solve (`p3m.infer.closed_form.solve_band`) against an earlier commit's, side by
side in one process, on the route's own trimaps of the 12 shared portraits (issue 22).

The route runs once per portrait to capture what it hands the solver (the working-resolution image, trimap and
mask). Then, round by round (``--repeats``), each portrait is solved by the ``--base`` commit's solver (its
`closed_form.py`, read with ``git show`` and imported under another name; its own numba cache) and by this
checkout's, interleaved. Times are the solving thread's CPU time (`time.thread_time`: on a shared machine, wall
time counts the other jobs too), the best of the rounds. For each: CG iterations, the largest alpha difference
from the base, and SAD against the reference matte after the route's own finishing (values within ``clean`` of 0
or 1 snapped, bilinear upsampling to the photo's size), so that a change of the solver's answer shows as the
route's quality. Then this checkout's solve split into its parts: the lower-triangle Laplacian, the IC(0) factor
(every shift tried), the CG iterations.

Usage, from the repository root: ``.venv/bin/python -m benchmarks.bench_solver [--base COMMIT] [--repeats 3]
[--json OUT]`` (needs the shared test data, ``$P3M_TESTDATA`` or ``--testdata``, and git).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

from benchmarks.bench_common import print_report, testdata_dir
from p3m.infer import closed_form
from p3m.infer.portrait import PortraitMatting, PortraitSettings
from p3m.io import read_image, read_mask

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BASE = "2981ea3"

Case = tuple[np.ndarray, np.ndarray, np.ndarray]


def base_solver(commit: str, folder: Path) -> ModuleType:
    """The ``commit``'s closed_form module, imported from a copy in ``folder`` (numba caches it there)."""
    source = subprocess.run(
        ["git", "show", f"{commit}:src/p3m/infer/closed_form.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    path = folder / "closed_form_base.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("closed_form_base", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def route_cases(portraits: Path) -> dict[str, Case]:
    """(image, trimap, mask) that the route hands its solver, per portrait."""
    cases: dict[str, Case] = {}
    route = PortraitMatting()
    solve = route.solve

    def capture(image: np.ndarray, trimap: np.ndarray, guess: np.ndarray | None = None):
        cases[name] = (image.copy(), trimap.copy(), np.asarray(guess).copy())
        return solve(image, trimap, guess)

    route.solve = capture  # type: ignore[method-assign]
    for path in sorted((portraits / "image").glob("*.jpg")):
        name = path.stem
        route.run(read_image(path))
    return cases


def finished_sad(alpha: np.ndarray, reference: np.ndarray, clean: float) -> float:
    """SAD (/1000) of the route's finished alpha (snapped within ``clean``, upsampled) against the reference."""
    a = alpha.copy()
    a[a < clean] = 0.0
    a[a > 1.0 - clean] = 1.0
    h, w = reference.shape
    if a.shape != (h, w):
        a = cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR)
    return float(np.abs(a - reference).sum() / 1000)


def thread_seconds(fn) -> tuple[float, object]:
    start = time.thread_time()
    out = fn()
    return time.thread_time() - start, out


def parts(case: Case, settings: PortraitSettings) -> dict[str, float]:
    """Thread CPU seconds of this checkout's solve by part (the normal path: no fallback)."""
    image, trimap, guess = case
    unknown = trimap == 128
    known = (trimap == 255).astype(np.float64)
    seconds = {}
    seconds["laplacian"], built = thread_seconds(
        lambda: closed_form.band_laplacian(image, unknown, known, settings.cf_eps, lower=True)
    )
    (indptr, indices, data), rhs, flat = built  # type: ignore[misc]
    data[indptr[1:] - 1] += 1e-6
    start = np.clip(guess.ravel()[flat].astype(np.float64), 0, 1)
    solve = (indptr, indices, data), rhs + 1e-6 * start, start
    seconds["ic0 + cg"], _ = thread_seconds(lambda: closed_form.conjugate_gradients(*solve, rtol=settings.rtol))

    def factor() -> None:  # as conjugate_gradients does: the shifts in turn until one gives a factor
        for shift in (0.0, 1e-3, 1e-2, 1e-1, 1.0, 10.0):
            if closed_form._ic0(indptr, indices, data, shift)[1]:
                return

    seconds["ic0 (the shifts tried)"], _ = thread_seconds(factor)
    seconds["cg"] = seconds.pop("ic0 + cg") - seconds["ic0 (the shifts tried)"]
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=DEFAULT_BASE, help=f"the commit to compare with (default {DEFAULT_BASE})")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--testdata", default=None, help="the shared test data folder")
    parser.add_argument("--json", default=None, help="write the report here")
    args = parser.parse_args()
    data = testdata_dir(args.testdata)
    if data is None:
        sys.exit("bench_solver: test data not found; pass --testdata DIR or set P3M_TESTDATA")
    portraits = data / "portraits"
    settings = PortraitSettings()
    cases = route_cases(portraits)
    refs = {k: read_mask(portraits / "reference_alpha" / f"{k}.png").astype(np.float32) / 255 for k in cases}
    with tempfile.TemporaryDirectory(prefix="bench-solver-") as tmp:
        base = base_solver(args.base, Path(tmp))
        solvers = {"before": base.solve_band, "after": closed_form.solve_band}
        for solve in solvers.values():  # compile or load the kernels: untimed
            solve(*next(iter(cases.values())))
        best: dict[str, dict[str, float]] = {v: {} for v in solvers}
        answers: dict[str, dict[str, object]] = {v: {} for v in solvers}
        loads = []
        for _ in range(args.repeats):
            for name, (image, trimap, guess) in cases.items():
                for variant, solve in solvers.items():
                    seconds, solution = thread_seconds(
                        lambda s=solve: s(image, trimap, guess, eps=settings.cf_eps, rtol=settings.rtol)  # noqa: B023
                    )
                    best[variant][name] = min(best[variant].get(name, np.inf), seconds)
                    answers[variant][name] = solution
            loads.append(os.getloadavg()[0])
    rows = {}
    for name in cases:
        before, after = answers["before"][name], answers["after"][name]
        rows[name] = {
            "unknown_pixels": int((cases[name][1] == 128).sum()),
            "seconds_before": best["before"][name],
            "seconds_after": best["after"][name],
            "iterations_before": before.iterations,  # type: ignore[attr-defined]
            "iterations_after": after.iterations,  # type: ignore[attr-defined]
            "method_after": after.method,  # type: ignore[attr-defined]
            "alpha_max_abs_diff": float(np.abs(after.alpha - before.alpha).max()),  # type: ignore[attr-defined]
            "sad_before": finished_sad(before.alpha, refs[name], settings.clean),  # type: ignore[attr-defined]
            "sad_after": finished_sad(after.alpha, refs[name], settings.clean),  # type: ignore[attr-defined]
        }
    split = [parts(case, settings) for case in cases.values()]
    summary = {
        "mean_seconds_before": statistics.mean(r["seconds_before"] for r in rows.values()),
        "mean_seconds_after": statistics.mean(r["seconds_after"] for r in rows.values()),
        "ratio_per_portrait": sorted(r["seconds_after"] / r["seconds_before"] for r in rows.values()),
        "mean_iterations_before": statistics.mean(r["iterations_before"] for r in rows.values()),
        "mean_iterations_after": statistics.mean(r["iterations_after"] for r in rows.values()),
        "mean_sad_before": statistics.mean(r["sad_before"] for r in rows.values()),
        "mean_sad_after": statistics.mean(r["sad_after"] for r in rows.values()),
        "worst_sad_change": max(r["sad_after"] - r["sad_before"] for r in rows.values()),
        "alpha_max_abs_diff": max(r["alpha_max_abs_diff"] for r in rows.values()),
        "after_parts_mean_seconds": {k: statistics.mean(s[k] for s in split) for k in split[0]},
    }
    report = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "base": args.base,
        "head": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip(),
        "repeats": args.repeats,
        "load_after_each_round": loads,
        "summary": summary,
        "portraits": rows,
    }
    for name, row in rows.items():
        print(
            f"{name}  {row['unknown_pixels']:6d} px  {row['seconds_before'] * 1000:6.1f} -> "
            f"{row['seconds_after'] * 1000:6.1f} ms  it {row['iterations_before']} -> {row['iterations_after']}  "
            f"SAD {row['sad_before']:.3f} -> {row['sad_after']:.3f}  max diff {row['alpha_max_abs_diff']:.4f}"
        )
    return print_report(report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
