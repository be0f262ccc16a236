"""`p3m synth OUT`: write the embedded synthetic P3M-10k set (no download needed)."""

from __future__ import annotations

import argparse
import sys
import time

from p3m.commands._types import count
from p3m.errors import P3MError


def parse_size(text: str) -> tuple[int, int]:
    """'320' -> (320, 320); '240x320' -> (240, 320) as (H, W)."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be N or HxW (e.g. 320 or 240x320), got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 32 or max(values) > 8192:
        raise argparse.ArgumentTypeError(f"size must be N or HxW with sides in 32..8192, got {text!r}")
    return values[0], values[1]


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "synth",
        help="write a synthetic P3M-10k dataset (seeded, no download)",
        description=(
            "Write a synthetic dataset in the P3M-10k layout (train/, validation/P3M-500-P/, "
            "validation/P3M-500-NP/): drawn portraits with fractional hair alpha, obfuscated faces in train and "
            "P3M-500-P, trimaps for the test splits. The same options always give byte-identical files."
        ),
    )
    parser.add_argument("out", metavar="OUT", help="folder to write (missing, empty or an earlier synth output)")
    parser.add_argument("--train", type=count, default=24, metavar="N", help="training images (default 24)")
    parser.add_argument(
        "--test", type=count, default=8, metavar="N", help="images in each of P3M-500-P and P3M-500-NP (default 8)"
    )
    parser.add_argument(
        "--size",
        type=parse_size,
        default=(320, 320),
        metavar="HxW|N",
        help="image size, e.g. 320 or 240x320 (default 320)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty folder (its train/ and validation/ are replaced)",
    )
    parser.add_argument(
        "--workers",
        type=count,
        default=1,
        metavar="N",
        help="render in N processes (default 1; the files are the same for any N)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    # the generator loads OpenCV: imported when the verb runs, not when the CLI starts
    from p3m.data.p3m10k import open_dataset, summarize
    from p3m.data.synth import SynthConfig, generate_dataset

    try:
        config = SynthConfig(
            n_train=args.train, n_test_p=args.test, n_test_np=args.test, size=args.size, seed=args.seed
        )
    except ValueError as exc:
        raise P3MError(str(exc)) from None
    start = time.perf_counter()
    show_progress = not args.quiet and sys.stderr.isatty()
    try:
        root = generate_dataset(
            args.out, config, progress=show_progress, overwrite=args.overwrite, workers=max(1, args.workers)
        )
    except OSError as exc:  # unwritable folder, disk full: one line, not a traceback
        where = exc.filename or args.out
        raise P3MError(f"{where}: cannot write ({exc.strerror or exc})") from None
    elapsed = time.perf_counter() - start
    dataset = open_dataset(root)
    h, w = config.size
    print(f"{summarize(dataset)} Synthetic set, {h}x{w} px, seed {config.seed}, written in {elapsed:.1f} s.")
    return 0
