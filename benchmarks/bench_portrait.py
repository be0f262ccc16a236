"""Quality and speed of the built-in portrait route (`p3m.infer.portrait`) on the 12 real test portraits.

For every portrait of $P3M_TESTDATA/portraits (image/*.jpg against reference_alpha/*.png), on the CPU with
`--threads` torch threads (default 2): SAD (sum |alpha - reference| / 1000 over the whole image), MSE, IoU of
the alpha > 0.5 regions, seconds for the whole route (prior + mask + trimap + closed-form + upsampling, after
one warm-up call) and the peak resident memory of the process during that image (/proc VmHWM, reset per image
where /proc/self/clear_refs allows). Then mean and worst. The prototype of the route (one letterboxed
segmentation pass, threshold 0.5, a 1% band, pymatting's closed-form at 1024 px: the route as first written) is
measured in the same run for the ratio.

    .venv/bin/python -m benchmarks.bench_portrait                       # both routes, table
    .venv/bin/python -m benchmarks.bench_portrait --json out.json --no-prototype

Needs the 12 P3M demo portraits (`JizhiziLi/P3M` demo/imgs: original/*.jpg as portraits/image, alpha/*.png as
portraits/reference_alpha; MIT) in the folder $P3M_TESTDATA names; exits with a message without it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from benchmarks.bench_common import reset_rss_peak, rss_peak_mb
from p3m.infer.portrait import PortraitMatting, PortraitSettings
from tests.paths import PORTRAITS

GOAL = {"mean_sad": 15.0, "worst_sad": 35.0, "seconds": 1.0}


class PrototypeRoute:
    """The route as first written, kept here (same steps and numbers) as the baseline."""

    def __init__(self) -> None:
        from p3m import models

        self.net = models.create("mediapipe-selfie").eval()

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        from p3m.pymatting_import import import_pymatting

        h, w = rgb.shape[:2]
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        square = np.zeros((side, side, 3), np.uint8)
        square[top : top + h, left : left + w] = rgb
        small = cv2.resize(square, (256, 256), interpolation=cv2.INTER_AREA)
        with torch.inference_mode():
            prob = self.net(torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255.0)[0, 0].numpy()
        prob = cv2.resize(prob, (side, side), interpolation=cv2.INTER_LINEAR)[top : top + h, left : left + w]
        n, labels, stats, _ = cv2.connectedComponentsWithStats((prob >= 0.5).astype(np.uint8), connectivity=8)
        if n > 2:
            keep = np.zeros(n, bool)
            keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= 0.1 * stats[1:, cv2.CC_STAT_AREA].max()
            mask = keep[labels].astype(np.uint8)
        else:
            mask = (prob >= 0.5).astype(np.uint8)
        r = max(1, round(0.01 * side))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        tri = np.full((h, w), 128, np.uint8)
        tri[cv2.dilate(mask, kernel) == 0] = 0
        tri[cv2.erode(mask, kernel) == 1] = 255
        scale = min(1.0, 1024 / side)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if scale < 1 else rgb
        small_tri = cv2.resize(tri, size, interpolation=cv2.INTER_NEAREST) if scale < 1 else tri
        if (small_tri == 128).any():
            cf = import_pymatting().estimate_alpha_cf
            alpha = cf(img.astype(np.float64) / 255.0, small_tri.astype(np.float64) / 255.0)
        else:
            alpha = (small_tri == 255).astype(np.float64)
        alpha = np.clip(alpha, 0, 1).astype(np.float32)
        if scale < 1:
            alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
        alpha[tri == 255], alpha[tri == 0] = 1.0, 0.0
        return alpha


def scores(alpha: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """SAD / 1000 and MSE over the whole image, IoU of the > 0.5 regions (alpha in [0, 1], ref 8-bit)."""
    ref = ref / 255.0
    diff = alpha.astype(np.float64) - ref
    a, b = alpha > 0.5, ref > 0.5
    union = (a | b).sum()
    return {
        "sad": float(np.abs(diff).sum() / 1000),
        "mse": float((diff**2).mean()),
        "iou": float((a & b).sum() / union) if union else 1.0,
    }


def run(
    route: Callable[[np.ndarray], np.ndarray], data: list[tuple[str, np.ndarray, np.ndarray]], repeat: int
) -> dict[str, Any]:
    """Per-image scores, median seconds over `repeat` calls and the process's peak RSS; mean and worst."""
    route(data[0][1])  # warm-up: numba compilation or cache load, allocations
    rows = []
    for name, rgb, ref in data:
        reset_rss_peak()
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            alpha = route(rgb)
            times.append(time.perf_counter() - t)
        rows.append(
            {
                "name": name,
                "height": rgb.shape[0],
                "width": rgb.shape[1],
                **scores(alpha, ref),
                "seconds": statistics.median(times),
                "peak_rss_mb": rss_peak_mb(),
            }
        )
    keys = ("sad", "mse", "iou", "seconds", "peak_rss_mb")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    worst = {k: (min if k == "iou" else max)(r[k] for r in rows) for k in keys}
    return {"images": rows, "mean": mean, "worst": worst}


def print_table(label: str, result: dict[str, Any]) -> None:
    print(f"\n{label}")
    print(f"  {'image':12s} {'size':>9s} {'SAD':>7s} {'MSE':>8s} {'IoU':>6s} {'s/img':>6s} {'RSS MB':>7s}")
    for r in result["images"]:
        print(
            f"  {r['name']:12s} {r['width']:>4d}x{r['height']:<4d} {r['sad']:7.2f} {r['mse']:8.5f} {r['iou']:6.3f} "
            f"{r['seconds']:6.2f} {r['peak_rss_mb']:7.0f}"
        )
    for key in ("mean", "worst"):
        r = result[key]
        print(
            f"  {key:12s} {'':9s} {r['sad']:7.2f} {r['mse']:8.5f} {r['iou']:6.3f} {r['seconds']:6.2f} "
            f"{r['peak_rss_mb']:7.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2, the issue's budget)")
    parser.add_argument("--repeat", type=int, default=1, help="timed calls per image, median kept (default 1)")
    parser.add_argument("--images", type=int, default=0, help="only the first N portraits (default: all)")
    parser.add_argument("--no-prototype", action="store_true", help="skip the prototype route")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    paths = sorted((PORTRAITS / "image").glob("*.jpg"))
    if not paths:
        raise SystemExit(
            f"no test portraits under {PORTRAITS}: set P3M_TESTDATA to a folder with portraits/image/*.jpg and "
            "portraits/reference_alpha/*.png (the 12 P3M demo portraits, JizhiziLi/P3M demo/imgs/original and alpha)"
        )
    if args.images:
        paths = paths[: args.images]
    torch.set_num_threads(args.threads)
    data = []
    for p in paths:
        rgb = cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        ref = cv2.imread(str(PORTRAITS / "reference_alpha" / f"{p.stem}.png"), cv2.IMREAD_GRAYSCALE)
        data.append((p.stem, rgb, ref))  # 8-bit until scored: the figures' RSS is mostly the route's
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), OpenCV {cv2.__version__}"
    )
    print(f"machine: {machine}")
    settings = PortraitSettings()
    out: dict[str, Any] = {
        "machine": machine,
        "threads": args.threads,
        "repeat": args.repeat,
        "goal": GOAL,
        "settings": asdict(settings),
        "routes": {},
    }
    out["routes"]["portrait-cf"] = run(PortraitMatting(settings), data, args.repeat)
    print_table("portrait-cf (default settings)", out["routes"]["portrait-cf"])
    if not args.no_prototype:
        out["routes"]["prototype"] = run(PrototypeRoute(), data, args.repeat)
        print_table("prototype (the route as first written)", out["routes"]["prototype"])
        new, old = out["routes"]["portrait-cf"]["mean"], out["routes"]["prototype"]["mean"]
        print(
            f"\nmean SAD prototype / portrait-cf: {old['sad'] / new['sad']:.2f}x; "
            f"time portrait-cf / prototype: {new['seconds'] / old['seconds']:.2f}x"
        )
    res = out["routes"]["portrait-cf"]
    met = (
        res["mean"]["sad"] <= GOAL["mean_sad"]
        and res["worst"]["sad"] <= GOAL["worst_sad"]
        and res["worst"]["seconds"] <= GOAL["seconds"]
    )
    out["goal_met"] = bool(met)
    print(
        f"goal (mean SAD <= {GOAL['mean_sad']:g}, worst <= {GOAL['worst_sad']:g}, every image <= "
        f"{GOAL['seconds']:g} s): {'met' if met else 'NOT met'}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
