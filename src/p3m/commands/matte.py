"""`p3m matte INPUT... -o OUT`: alpha mattes and decontaminated cutouts for files, folders and globs.

Wiring only: the options, `p3m.io.collect_images`, `p3m.infer.batch.plan_outputs`, then `Matter` and
`p3m.infer.batch.matte_here` (decode, alpha and output stages on threads, the route's alphas on one per CPU; or
`matte_job` per image on a Ray cluster with `--cluster`), with one line per problem.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from p3m.choices import (
    BACKENDS,
    COLOR_HELP,
    DEVICES_HELP,
    FOREGROUND_METHODS,
    OUTPUT_KINDS,
    PRECISIONS,
    RESIZE_MODES,
    STRATEGIES,
    parse_color,
)
from p3m.cluster import add_cluster_option
from p3m.commands._types import add_arch, add_hands, hide_aliases, whole_number
from p3m.errors import P3MError


def parse_kinds(text: str) -> list[str]:
    """'alpha,rgba' -> ['alpha', 'rgba'] (validated, order kept, duplicates dropped)."""
    kinds = [k.strip().lower() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in OUTPUT_KINDS]
    if bad or not kinds:
        # `--output` was the kinds option's old name (kept as a hidden alias): a folder given there is a mix-up
        raise argparse.ArgumentTypeError(
            f"unknown output kind(s) {', '.join(bad) or '(none)'}; choose from {','.join(OUTPUT_KINDS)} "
            "(the output folder is -o/--out)"
        )
    return list(dict.fromkeys(kinds))


def _tile_count(text: str) -> int:
    v = whole_number(text)
    if v < 64 or v % 32:
        raise argparse.ArgumentTypeError(f"tile size must be a multiple of 32 and >= 64, got {v}")
    return v


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "matte",
        help="alpha mattes and cutouts of portraits (files, folders, globs)",
        description=(
            "Predict alpha mattes (the published P3M-Net when it is in the model folder, else the built-in "
            "portrait-cf route, or the weights named by --weights) and write <stem>_alpha.png, <stem>_rgba.png "
            "(straight RGBA with decontaminated foreground colours) into OUT by default; --save chooses among "
            "alpha, rgba, fg and composite (<stem>_<kind>.png). A bad input is reported and skipped; exit code 1 "
            "when any input failed, 2 for usage or configuration errors."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    out = parser.add_argument(
        "-o", "--out", "--outdir", required=True, metavar="OUT", help="output folder (created if missing)"
    )
    hide_aliases(out, "--outdir")
    parser.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders of folder inputs")
    _add_output_options(parser)
    _add_model_options(parser)
    add_cluster_option(parser)
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bar: only errors, warnings and the summary line (which names the model used)",
    )
    return parser


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    """What is written per image, and what happens to outputs that exist."""
    kinds = parser.add_argument(
        "--save",
        "--output",
        dest="kinds",
        type=parse_kinds,
        default=["alpha", "rgba"],
        metavar="KINDS",
        help=f"which files to write per image, comma-separated among {','.join(OUTPUT_KINDS)} (default alpha,rgba)",
    )
    hide_aliases(kinds, "--output")
    parser.add_argument(
        "--background",
        default="white",
        metavar="COLOR|IMAGE",
        help=f"composite background: {COLOR_HELP}, or an image file (default white)",
    )
    parser.add_argument(
        "--composite-format",
        choices=("png", "jpg"),
        default="png",
        help="file format of <stem>_composite (default png)",
    )
    exist = parser.add_mutually_exclusive_group()
    exist.add_argument("--skip-existing", action="store_true", help="skip inputs whose outputs all exist")
    exist.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """Which model runs, where and how (the arguments of `Matter`)."""
    parser.add_argument(
        "--weights",
        default=None,
        metavar="PATH|NAME",
        help="checkpoint or .onnx file, or a name from `p3m models` (default: the published "
        "P3M-Net if it is in the model folder, else the built-in portrait-cf)",
    )
    add_arch(parser)
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="hybrid",
        help="test strategy (default hybrid; highres for 4K and larger, bounded memory)",
    )
    parser.add_argument(
        "--resize",
        dest="resize_mode",
        choices=RESIZE_MODES,
        default="fast",
        help="resize function: fast (OpenCV) or paper (the published scikit-image 0.14.5 R)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="inference backend (default auto: onnxruntime for .onnx weights and for the built-in route's networks "
        "on the CPU, torch otherwise)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help=f"{DEVICES_HELP} (default auto: the GPU if there is one, the CPU for the built-in route); an "
        "unavailable cuda is an error, never a silent CPU fallback",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="torch precision (default auto: bf16 where the hardware supports it)",
    )
    parser.add_argument(
        "--foreground-method",
        choices=FOREGROUND_METHODS,
        default="ml",
        help="foreground colour estimation: ml (multi-level, numpy; default), blur (blur-fusion, "
        "fastest) or pymatting (pymatting's numba implementation)",
    )
    parser.add_argument("--tile", type=_tile_count, default=1024, help="highres tile side (default 1024)")
    add_hands(parser)


def _background(text: str) -> tuple[int, int, int] | np.ndarray:
    """`--background`: a colour, else an image file (a one-line error when it is neither)."""
    try:
        color = parse_color(text)
    except ValueError as exc:
        raise P3MError(f"background {exc}") from None
    if color is not None:
        return color
    if Path(text).is_file():
        from p3m.io import read_image  # PIL: loaded when a verb runs, so that `p3m --help` stays quick

        return read_image(text)
    raise P3MError(f"--background {text!r} is neither a colour (name, #RRGGBB, R,G,B) nor an image file")


def _matter_args(args: argparse.Namespace) -> dict:
    return {
        "arch": args.arch,
        "weights": args.weights,
        "device": args.device,
        "strategy": args.strategy,
        "backend": args.backend,
        "precision": args.precision,
        "resize_mode": args.resize_mode,
        "foreground_method": args.foreground_method,
        "tile": args.tile,
        "hands": args.hands,
    }


def _open_matter(args: argparse.Namespace):
    from p3m.infer.matter import Matter  # torch: loaded when the verb runs, so that `p3m --help` stays quick

    with warnings.catch_warnings():  # the model warning is printed once, as one line
        warnings.simplefilter("ignore")
        return Matter(**_matter_args(args))


def _outcomes(args: argparse.Namespace, matter, jobs: list, background):
    """(index, MatteOutcome) per job, here or, with --cluster, on Ray actors that load the model this run resolved."""
    from p3m.infer.batch import MatteWorker, matte_here  # torch, as above

    if args.cluster is None:
        return matte_here(matter, jobs, background=background)
    from p3m.cluster.runner import RayRunner

    worker = MatteWorker.like(matter, _matter_args(args), background)
    return RayRunner(args.cluster, source=lambda job: job[0], label="matte")(worker, jobs)


def _matte_all(args: argparse.Namespace, matter, jobs: list, background) -> tuple[int, int]:
    """Matte and write every job, one error line per failed image -> (written, failed)."""
    from tqdm import tqdm  # loaded when the verb runs, so that `p3m --help` stays quick

    done = failed = 0
    outcomes = _outcomes(args, matter, jobs, background)
    for _, outcome in tqdm(outcomes, total=len(jobs), desc="matte", unit="img", disable=args.quiet, file=sys.stderr):
        if outcome.error:
            failed += 1
            tqdm.write(f"p3m matte: error: {outcome.error}", file=sys.stderr)
            continue
        done += 1
        if outcome.warning and outcome.warning != matter.model_warning:
            tqdm.write(f"p3m matte: warning: {outcome.source}: {outcome.warning}", file=sys.stderr)
    return done, failed


def run(args: argparse.Namespace) -> int:
    # torch and PIL load when the verb runs, so that `p3m --help` stays quick
    from p3m.infer.batch import existing_outputs_error, plan_outputs, prepare_output_folders, set_state
    from p3m.io import find_inputs

    collect: Callable[..., tuple[list[Path], list[str], list[Path]]] = find_inputs
    if args.cluster is not None:  # before anything is planned: without the extra, the switch says what to install
        from p3m.cluster import require_ray
        from p3m.cluster.sources import collect_inputs  # local inputs as always, and URIs of other file systems

        require_ray()
        collect = collect_inputs
    kinds: list[str] = args.kinds
    background = _background(args.background) if "composite" in kinds else (255, 255, 255)
    paths, problems, left_out = collect(args.inputs, recursive=args.recursive, verb="matte")
    notes = []
    if left_out:  # p3m's own outputs in a folder or glob (a rerun into the input folder)
        names = ", ".join(p.name for p in left_out[:3]) + (", ..." if len(left_out) > 3 else "")
        notes.append(f"left out {len(left_out)} file(s) that p3m wrote ({names}); name one to matte it")
    if not paths:
        raise P3MError("no input images" + (f" ({'; '.join(problems + notes)})" if problems or notes else ""))
    for msg in problems + ([] if args.quiet else notes):
        print(f"p3m matte: {msg}", file=sys.stderr)
    outdir = Path(args.out)
    ext = ".jpg" if args.composite_format == "jpg" else ".png"
    jobs, clashes = plan_outputs(paths, outdir, kinds, composite_ext=ext)
    for msg in clashes:
        print(f"p3m matte: error: {msg}", file=sys.stderr)
    leftovers = prepare_output_folders(jobs)
    if leftovers and not args.quiet:
        print(f"p3m matte: removed {len(leftovers)} temporary file(s) left by an interrupted run", file=sys.stderr)
    skipped = 0
    if args.skip_existing:
        kept = [(p, outs) for p, outs in jobs if set_state(outs) != "done"]
        skipped, jobs = len(jobs) - len(kept), kept
    elif not args.overwrite and (refusal := existing_outputs_error(jobs)):
        raise P3MError(refusal)
    matter = _open_matter(args)
    if matter.model_warning:
        print(f"p3m matte: warning: {matter.model_warning}", file=sys.stderr)
    done, failed = _matte_all(args, matter, jobs, background)
    failed += len(problems) + len(clashes)
    # printed by quiet runs too: every run names the model it used
    note = f", {skipped} skipped (outputs exist)" if skipped else ""
    print(
        f"p3m matte: {done} image(s) written to {outdir}{note}, {failed} failed [{matter.describe()}]",
        file=sys.stderr,
    )
    return 1 if failed else 0
