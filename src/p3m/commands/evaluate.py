"""`p3m evaluate`: score alpha predictions against ground truth (P3M and/or DIM protocol)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from p3m.choices import PROTOCOLS
from p3m.cluster import add_cluster_option
from p3m.commands._types import hide_aliases, positive
from p3m.errors import P3MError

SPLIT_CHOICES = ("P3M-500-P", "P3M-500-NP")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="score predicted alpha mattes (P3M / DIM protocol)",
        description=(
            "Score predicted alpha mattes against ground truth, matched by file stem.\n"
            "Predictions are read as 8-bit grayscale images / 255 (the IJCV core/eval.py convention:\n"
            "the truncated, saved PNG is scored). Metrics are computed per image and averaged.\n\n"
            "P3M protocol (default): whole-image SAD, MSE, MAD, Grad, Conn; with trimaps also\n"
            "SAD-T/MSE-T/MAD-T, SAD-FG, SAD-BG; with face masks also privacy-region SAD/MSE/MAD.\n"
            "DIM protocol: unknown-region SAD, MSE, Grad, Conn as in the Deep Image Matting MATLAB code."
        ),
        epilog=(
            "examples:\n"
            "  p3m evaluate --pred out --gt data/mask --trimap data/trimap -o report\n"
            "  p3m evaluate --pred out --dataset P3M-10k --split P3M-500-P --protocol both"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pred", required=True, metavar="DIR", help="folder of predicted alpha mattes")
    parser.add_argument("--gt", metavar="DIR", help="folder of ground-truth mattes")
    parser.add_argument("--trimap", metavar="DIR", help="folder of trimaps {0,128,255} (same stems)")
    parser.add_argument("--facemask", metavar="DIR", help="folder of face masks (binarised > 100; same stems)")
    parser.add_argument("--dataset", metavar="ROOT", help="P3M-10k root (instead of --gt/--trimap/--facemask)")
    parser.add_argument("--split", choices=SPLIT_CHOICES, help="test split of --dataset")
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="p3m",
        help="P3M (whole image, default), DIM (unknown region, needs trimaps) or both",
    )
    out = parser.add_argument(
        "-o", "--out", "--output", metavar="OUT", help="output folder: write per_image.csv, summary.json and summary.md"
    )
    hide_aliases(out, "--output")
    parser.add_argument("--workers", type=positive, metavar="N", help="processes (default: all cores)")
    parser.add_argument(
        "--allow-missing", action="store_true", help="list ground truth without prediction and evaluate the rest"
    )
    parser.add_argument("--fast", action="store_true", help="skip Grad and Conn (official --fast_test)")
    add_cluster_option(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def _runner(args: argparse.Namespace):
    """None (processes of this machine), or a Ray cluster's runner (the files must be where every worker sees them)."""
    if args.cluster is None:
        return None
    from p3m.cluster import require_ray
    from p3m.cluster.runner import RayRunner

    require_ray()
    return RayRunner(args.cluster, label="evaluate")


def run(args: argparse.Namespace) -> int:
    # the metrics load numba and OpenCV: imported when the verb runs, not when the CLI starts
    from p3m.metrics.evaluate import evaluate_dataset, evaluate_dirs, format_problems

    how = {
        "protocol": args.protocol,
        "workers": args.workers,
        "allow_missing": args.allow_missing,
        "progress": not args.quiet,
        "fast": args.fast,
        "runner": _runner(args),
    }
    if args.dataset is not None:
        if args.gt or args.trimap or args.facemask:
            raise P3MError("use either --dataset/--split or --gt [--trimap] [--facemask], not both")
        if args.split is None:
            raise P3MError("--dataset needs --split P3M-500-P or P3M-500-NP")
        result = evaluate_dataset(args.pred, args.dataset, args.split, **how)
    else:
        if args.gt is None:
            raise P3MError("give --gt DIR (ground-truth mattes) or --dataset ROOT --split NAME")
        if args.split is not None:
            raise P3MError("--split goes with --dataset")
        result = evaluate_dirs(args.pred, args.gt, args.trimap, args.facemask, **how)
    for line in result.warnings:
        print(f"p3m evaluate: warning: {line}", file=sys.stderr)
    if result.excluded:
        print(
            f"p3m evaluate: {len(result.excluded)} ground-truth mattes have no prediction and were excluded:\n"
            + format_problems(result.excluded),
            file=sys.stderr,
        )
    if result.failures:
        print(
            f"p3m evaluate: {len(result.failures)} files could not be scored and were skipped:\n"
            + format_problems(result.failures),
            file=sys.stderr,
        )
    if args.out:
        written = result.write(Path(args.out))
        if not args.quiet:
            print("p3m evaluate: wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    sys.stdout.write(result.to_markdown())
    return 0 if result.ok else 1
