"""The built-in portrait route's speed-ups, each against the code it replaced, on the route's own inputs (issue 24).

The route runs once over the shared test portraits (and their mirror images) with `gap_colour` on, and the inputs
of each replaced step are recorded there: the prior's hysteresis mask (`PortraitMatting.mask`), the trimap's
"near the strands beyond the band" (`_near`), the gaps' colour verdict (per pixel, before its smoothing:
`p3m.infer.spill.background_colour_in_gaps`, which the route calls since the gaps' known background; the
previous code with no smoothing), and
the MediaPipe crops' and warps' resampling (`p3m.models.mediapipe_calculators._remap_bilinear`). Then each step
runs on those inputs as the previous code (`tests/reference/route_before.py`; the numpy resampling) and as the
new one, interleaved round by round in one process (so the ratios come from the same machine state), thread CPU
time, median over the rounds of the sum over the recorded calls; the answers are checked equal. Last, the
person check's face detectors, which a route that ran the pose network now skips where the pose settles the
check: their thread CPU time per image, what that saves.

Usage, from the repository root: ``P3M_TESTDATA=DIR .venv/bin/python -m benchmarks.bench_route_savings
[--rounds 5] [--json OUT]`` (needs the shared test portraits; exits with a message without them).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import p3m.infer.portrait as portrait_module
import p3m.models.mediapipe_calculators as calculators
from benchmarks.bench_route_priors import portraits
from p3m.infer import spill
from p3m.infer.portrait import PortraitMatting, PortraitSettings, _distance_to
from p3m.infer.priors import hysteresis_mask
from p3m.infer.resize import shrunk
from tests.reference.route_before import previous_background_in_gaps, previous_mask


def _record(owner: Any, name: str, calls: list) -> Callable[[], None]:
    """Wrap `owner.name` so that each call's arguments are appended to `calls`; returns the undo."""
    real = getattr(owner, name)

    def recording(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    setattr(owner, name, recording)
    return lambda: setattr(owner, name, real)


def record_inputs() -> tuple[dict[str, list], list[np.ndarray]]:
    """The recorded calls of each replaced step, and the working-size images, over the portraits and mirrors."""
    calls: dict[str, list] = {"mask": [], "near": [], "gaps": [], "remap": []}
    route = PortraitMatting(PortraitSettings(gap_colour=True, person_check=False))
    undo = [
        _record(portrait_module, "hysteresis_mask", calls["mask"]),
        _record(portrait_module, "_near", calls["near"]),
        _record(portrait_module, "background_colour_in_gaps", calls["gaps"]),
        _record(calculators, "_remap_bilinear", calls["remap"]),
    ]
    images = []
    try:
        for _, rgb, _ in portraits():
            for image in (rgb, rgb[:, ::-1].copy()):
                route.run(image)
                images.append(image)
    finally:
        for u in undo:
            u()
    return calls, images


def _previous_verdict_per_pixel(*args: Any, **kwargs: Any) -> np.ndarray:
    """The previous gaps' colour verdict without its smoothing: what `background_colour_in_gaps` returns."""
    return previous_background_in_gaps(*args, smooth=0.0, **kwargs)


def _pairs(calls: dict[str, list]) -> dict[str, tuple[Callable, Callable, list]]:
    """step -> (previous code, new code, recorded calls)."""
    return {
        "mask (hysteresis)": (previous_mask, hysteresis_mask, calls["mask"]),
        "trimap: near the strands": (lambda m, r: _distance_to(m) <= r, portrait_module._near, calls["near"]),
        "gaps' colour verdict": (_previous_verdict_per_pixel, spill.background_colour_in_gaps, calls["gaps"]),
        "MediaPipe resampling": (calculators._remap_bilinear_numpy, calculators._remap_bilinear, calls["remap"]),
    }


def _cpu(function: Callable, calls: list) -> tuple[float, list]:
    start = time.thread_time()
    out = [function(*args, **kwargs) for args, kwargs in calls]
    return time.thread_time() - start, out


def compare(calls: dict[str, list], rounds: int) -> dict[str, dict[str, float]]:
    rows = {}
    for step, (old, new, recorded) in _pairs(calls).items():
        times: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(rounds):
            t_old, a = _cpu(old, recorded)
            t_new, b = _cpu(new, recorded)
            times["old"].append(t_old)
            times["new"].append(t_new)
        equal = all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        ratios = [n / o for o, n in zip(times["old"], times["new"], strict=True)]
        rows[step] = {
            "calls": len(recorded),
            "old_ms": 1000 * statistics.median(times["old"]),
            "new_ms": 1000 * statistics.median(times["new"]),
            "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "equal": equal,
        }
        r = rows[step]
        print(
            f"{step:26s} {r['calls']:4d} calls  old {r['old_ms']:8.1f} ms  new {r['new_ms']:8.1f} ms  new/old "
            f"{r['ratio_median']:.2f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})  same answers: {equal}"
        )
    return rows


def face_detectors(images: list[np.ndarray], rounds: int) -> dict[str, float]:
    """Thread CPU time per image of the person check's face detectors (`PortraitMatting.faces_on_person`, the
    mask the selfie prior's) on the working-size images: what a route that ran the pose network saves where the
    pose settles the check."""
    route = PortraitMatting()
    small = [shrunk(image, route.settings.matting_side) for image in images]
    calls = [((image, route.mask(route.prior(image))), {}) for image in small]
    route.faces_on_person(*calls[0][0])
    per_round = [_cpu(route.faces_on_person, calls)[0] for _ in range(rounds)]
    ms = 1000 * statistics.median(per_round) / len(small)
    print(f"face detectors per image (skipped where the pose settles the person check): {ms:.1f} ms")
    return {"face_ms_per_image": ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    calls, images = record_inputs()
    report = {"steps": compare(calls, args.rounds), **face_detectors(images, args.rounds)}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
