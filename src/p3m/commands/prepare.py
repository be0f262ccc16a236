"""`p3m prepare ROOT`: estimate and cache the fg/bg colours the composition loss needs, ahead of training."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "prepare",
        help="estimate and cache training fg/bg for datasets without them",
        description=(
            "For every training sample without shipped fg/bg (or for all, with --image-dir), estimate foreground "
            "and background colours with pymatting's multilevel estimator and cache them as lossless WebP under "
            "ROOT/train/fg_bg_cache (or --cache). Training does the same lazily; preparing first keeps the "
            "first epoch fast. One unreadable sample is reported and skipped."
        ),
    )
    parser.add_argument("root", metavar="ROOT", help="P3M-10k dataset root")
    parser.add_argument("--cache", default=None, metavar="DIR", help="cache folder (default ROOT/train/fg_bg_cache)")
    parser.add_argument(
        "--image-dir",
        default=None,
        metavar="NAME",
        help="train image folder to use instead of the stored one (e.g. original_image)",
    )
    parser.add_argument("--force", action="store_true", help="recompute cached estimates")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N samples")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    from p3m.train.fg_cache import prepare_foreground  # OpenCV and pymatting: loaded when the verb runs

    report = prepare_foreground(
        args.root,
        cache_dir=args.cache,
        image_dir=args.image_dir,
        force=args.force,
        limit=args.limit,
        progress=not args.quiet,
    )
    for line in report.failures:
        print(f"p3m prepare: error: {line}", file=sys.stderr)
    print(
        f"p3m prepare: {report.estimated} estimated, {report.cached} already cached, {report.shipped} shipped "
        f"with the dataset, {len(report.failures)} failed; cache {report.cache_dir}",
        file=sys.stderr,
    )
    return 1 if report.failures else 0
