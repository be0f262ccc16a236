"""`p3m train CONFIG.yaml [--set key=value ...] [--resume] [--out DIR]`: train P3M-Net (multi-GPU via torchrun)."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train P3M-Net from a YAML config (resumable; DDP under torchrun)",
        description=(
            "Train P3M-Net with the published recipe (configs/p3m-r34.yaml, configs/p3m-vitae-s.yaml, "
            "configs/p3m-swin-t.yaml) or the small demo (configs/demo.yaml). Ctrl-C saves and stops; --resume "
            "continues from the last save. Multi-GPU: torchrun --nproc_per_node N $(which p3m) train CONFIG ... "
            "Faster on one GPU: --set train.amp=bf16 --set train.channels_last=true --set train.cuda_graph=true "
            "(docs/training.md, Performance)."
        ),
    )
    parser.add_argument("config", metavar="CONFIG", help="YAML config file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set data.root=/data/P3M-10k --set train.batch_size=4 "
        "(repeatable; values are YAML)",
    )
    parser.add_argument("--out", default=None, metavar="DIR", help="output folder (default runs/<config name>)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    parser.add_argument("--overwrite", action="store_true", help="delete the run saved in --out and start afresh")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from p3m.train.config import load_config
    from p3m.train.trainer import train

    config = load_config(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / config.name
    result = train(config, out_dir=out, resume=args.resume, progress=not args.quiet, overwrite=args.overwrite)
    if result.interrupted:
        return 130
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        print(f"p3m train: {result.step} steps; weights {result.last_checkpoint}", file=sys.stderr)
        for key, path in sorted(result.best_checkpoints.items()):
            print(f"  best {key}: {path}", file=sys.stderr)
    return 0
