"""`p3m benchmark RECIPE|CONFIG [-o OUT] [--force] [--set key=value ...]`: the PPT benchmark, from data to a report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from p3m.commands._types import add_overrides, add_recipe, listed_recipes

KIND = "benchmark"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "benchmark",
        help="train/load, matte and evaluate every method of a benchmark config; write a paper-style report",
        description=(
            "Run the privacy-preserving training (PPT) benchmark of a built-in recipe or a YAML config: for each "
            "method and training setting, train (or load weights), predict P3M-500-P and P3M-500-NP, evaluate with "
            "the P3M and DIM protocols, and write OUT/report/ (results.json, results.csv, report.md, self-contained "
            "report.html). Finished stages are skipped on a re-run. Built-in recipes (--list): ppt-p3m10k (the real "
            "P3M-10k), ppt-demo (synthetic, a few CPU minutes)."
        ),
    )
    add_recipe(parser, "benchmark YAML config")
    parser.add_argument("-o", "--out", default=None, metavar="OUT", help="output folder (default runs/<config name>)")
    parser.add_argument("--force", action="store_true", help="redo every stage, ignoring finished ones")
    add_overrides(parser, "override a config value, e.g. --set dataset.root=/data/P3M-10k (repeatable; YAML values)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or stage log")
    return parser


def run(args: argparse.Namespace) -> int:
    if listed_recipes(args, KIND, "benchmark YAML config"):
        return 0
    # p3m.bench imports torch: loaded when a benchmark runs, not when the CLI starts
    from p3m.bench.config import load_benchmark_config
    from p3m.bench.runner import run_benchmark

    cfg = load_benchmark_config(args.config, args.overrides)  # config errors before any work
    out = Path(args.out) if args.out else Path("runs") / cfg.name

    def log(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr)

    result = run_benchmark(cfg, out, force=args.force, progress=not args.quiet, log=log)
    print(result.table_markdown)
    print(result.comparison["statement"])
    print(f"report: {result.report_html}")
    failed = sum(len(r.get("failed", [])) for r in result.results)
    if failed:
        print(f"p3m benchmark: {failed} image(s) could not be processed (see the log above)", file=sys.stderr)
        return 1
    return 0
