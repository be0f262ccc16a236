"""The before/after pictures of docs/inference.md: one step of the built-in route, off and on.

For each named P3M-10k portrait: the crop round the largest change between the two routes of a
`benchmarks.bench_route_priors` pair (`--pair`: "spill", the colour model on the prior's spill, by default;
"combined", the four steps landed together on 2026-12-06; "limbs", the forearms' cores and the gaps' known
background; "round5", the limbs' rules, the zoomed pass's shade and the hair gaps together; "round6", the pull
toward the priors where the colours cannot decide and the rim opened past a colour edge); left to right the
photo, the matte before, after, and the reference matte. Written with `p3m.atomic`, as JPEG.

    P3M_TESTDATA=DIR .venv/bin/python -m benchmarks.figure_route [--pair spill] \
        [--names p_bd6af989,p_514ca06a] [--out docs/images/route_spill.jpg]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from benchmarks.bench_route_priors import PAIRS
from p3m.atomic import write_bytes_atomic
from p3m.infer.portrait import PortraitMatting
from tests.paths import PORTRAITS

NAMES = "p_bd6af989,p_514ca06a"  # the spill figure's two portraits


def panel(name: str, before: PortraitMatting, after: PortraitMatting, height: int) -> np.ndarray:
    rgb = cv2.cvtColor(cv2.imread(str(PORTRAITS / "image" / f"{name}.jpg")), cv2.COLOR_BGR2RGB)
    ref = cv2.imread(str(PORTRAITS / "reference_alpha" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
    a, b = before(rgb), after(rgb)
    change = cv2.GaussianBlur(np.abs(a - b), (0, 0), 25)
    y, x = np.unravel_index(int(np.argmax(change)), change.shape)
    side = min(rgb.shape[:2]) // 3
    top = int(np.clip(y - side // 2, 0, rgb.shape[0] - side))
    left = int(np.clip(x - side // 2, 0, rgb.shape[1] - side))
    crop = np.s_[top : top + side, left : left + side]

    def grey(alpha: np.ndarray) -> np.ndarray:
        return np.repeat(np.rint(alpha[crop] * 255).astype(np.uint8)[..., None], 3, 2)

    row = np.hstack([rgb[crop], grey(a), grey(b), grey(ref / 255.0)])
    return cv2.resize(row, (4 * height, height), interpolation=cv2.INTER_AREA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/route_spill.jpg"))
    parser.add_argument("--pair", choices=sorted(PAIRS), default="spill", help="the step shown (default spill)")
    parser.add_argument("--names", default=NAMES, help=f"portraits, comma-separated (default {NAMES})")
    parser.add_argument("--height", type=int, default=240, help="height of each row in pixels (default 240)")
    args = parser.parse_args()
    if not (PORTRAITS / "image").is_dir():
        raise SystemExit(f"no test portraits under {PORTRAITS}: the shared test data is needed for this figure")
    before, after = (PortraitMatting(settings) for settings in PAIRS[args.pair])
    picture = np.vstack([panel(name, before, after, args.height) for name in args.names.split(",")])
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    if not ok:
        raise SystemExit("could not encode the picture")
    write_bytes_atomic(args.out, buf.tobytes())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
