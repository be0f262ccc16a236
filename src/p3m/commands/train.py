"""`p3m train RECIPE|CONFIG.yaml [--set key=value ...] [--resume|--overwrite] [-o OUT]`: train P3M-Net."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from p3m.commands._types import add_overrides, add_recipe, listed_recipes
from p3m.train.config import load_config

KIND = "train"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train P3M-Net from a built-in recipe or a YAML config (resumable; DDP under torchrun)",
        description=(
            "Train P3M-Net with a built-in recipe (the published p3m-r34, p3m-vitae-s and p3m-swin-t recipes, or the "
            "small demo; --list shows them) or a YAML config file (a path with a '/' or a .yaml suffix). Ctrl-C "
            "saves and stops; --resume continues from the last save. An --out folder that already holds a run "
            "(weights or a log) is refused unless --resume or --overwrite. Multi-GPU: torchrun --nproc_per_node N "
            "$(which p3m) train RECIPE ... Faster on one GPU: --set train.amp=bf16 --set train.channels_last=true "
            "--set train.cuda_graph=true (docs/training.md, Performance)."
        ),
    )
    add_recipe(parser, "YAML config file")
    add_overrides(
        parser,
        "override a config value, e.g. --set data.root=/data/P3M-10k --set train.batch_size=4 "
        "(repeatable; values are YAML)",
    )
    parser.add_argument("-o", "--out", default=None, metavar="OUT", help="output folder (default runs/<config name>)")
    exist = parser.add_mutually_exclusive_group()
    exist.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    exist.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run saved in --out (its files stay until the new run first saves)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    if listed_recipes(args, KIND, "YAML config file"):
        return 0
    from p3m.train.trainer import train  # imports torch: loaded when training, not when the CLI starts

    config = load_config(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / config.name
    result = train(config, out_dir=out, resume=args.resume, progress=not args.quiet, overwrite=args.overwrite)
    if result.interrupted:
        return 130
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"p3m train: {result.step} steps; weights {result.last_checkpoint}", file=sys.stderr)
        for key, path in sorted(result.best_checkpoints.items()):
            print(f"  best {key}: {path}", file=sys.stderr)
    return 0
