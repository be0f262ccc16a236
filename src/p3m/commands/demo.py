"""`p3m demo`: synthesise, benchmark (train, matte, evaluate, report), cut out — all on the embedded dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from p3m.commands._types import add_overrides
from p3m.demo import MODEL_NAME, OWN_PHOTOS_COMMAND, DemoOptions, run_demo


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    d = DemoOptions()
    parser = subparsers.add_parser(
        "demo",
        help="the default model on a real photo, then the whole PPT study on the embedded synthetic dataset "
        "(minutes on a CPU)",
        description=(
            "Cut out a real photo with the default model (scikit-image's astronaut, or --photos DIR), synthesise a "
            "P3M-10k-style dataset, run the PPT benchmark on it (train P3M-Net, BASIC and MODNet on the obfuscated "
            "training images, classical trimap-based solvers, matte and evaluate P3M-500-P and P3M-500-NP with the "
            "P3M and DIM protocols, HTML report showing the real photos first), register the trained P3M-Net as "
            f"`{MODEL_NAME}` and cut out the synthetic test portraits with it. Each stage prints the `p3m` command "
            "that does the same; finished stages are skipped on a re-run."
        ),
    )
    parser.add_argument(
        "-o", "--out", type=Path, default=d.out_dir, metavar="OUT", help=f"output folder (default {d.out_dir})"
    )
    parser.add_argument(
        "--train-images", type=int, default=d.n_train, metavar="N", help=f"synthetic training images ({d.n_train})"
    )
    parser.add_argument(
        "--test-images", type=int, default=d.n_test, metavar="N", help=f"images per test split ({d.n_test})"
    )
    parser.add_argument(
        "--size", type=int, default=d.size, metavar="N", help=f"synthetic image side in pixels ({d.size})"
    )
    parser.add_argument("--seed", type=int, default=d.seed, help=f"seed of the synthetic data ({d.seed})")
    parser.add_argument(
        "--config",
        default=str(d.config),
        metavar="RECIPE|CONFIG",
        help=f"benchmark recipe or YAML config (default: the built-in {d.config})",
    )
    parser.add_argument(
        "--photos",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of real photos to cut out at the end (default: scikit-image's astronaut photo)",
    )
    add_overrides(parser, "benchmark config override, e.g. train.train.max_steps=100 (repeatable)")
    parser.add_argument("--force", action="store_true", help="redo every stage")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    result = run_demo(
        DemoOptions(
            out_dir=args.out,
            n_train=args.train_images,
            n_test=args.test_images,
            size=args.size,
            seed=args.seed,
            config=args.config,
            photos=args.photos,
            force=args.force,
            quiet=args.quiet,
            overrides=args.overrides,
        )
    )
    print("\nPPT benchmark on the synthetic dataset (trained on obfuscated faces; P3M protocol, whole image):\n")
    print(result.table_markdown)
    if result.comparison:
        print(f"\n{result.comparison}")
    photos, synthetic = result.matte_dirs
    print(f"\nDemo finished in {result.seconds / 60:.1f} min. Outputs under {result.out_dir}:")
    print(f"  report      {result.report_html}  (the real photos first, then the benchmark)")
    print(f"  photos      {photos}  (real photos, the default model: {result.photos_model})")
    print(f"  dataset     {result.out_dir / 'data'}")
    print(f"  weights     {result.checkpoint}  (registered as `{MODEL_NAME}`)")
    if result.registration_note:
        print(f"              note: {result.registration_note}")
    print(f"  synthetic   {synthetic}  (`{MODEL_NAME}` on the synthetic test portraits)")
    print(
        f"\n`{MODEL_NAME}` is a width-16 P3M-Net trained for minutes on drawn portraits: it shows the training "
        "pipeline, not P3M-Net's quality, and mattes real photos poorly. The default model mattes real photos "
        "today, with nothing to download. Matte your own photos with:\n"
    )
    print(f"    {OWN_PHOTOS_COMMAND}")
    return 0
