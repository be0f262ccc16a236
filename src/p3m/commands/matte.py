"""`p3m matte INPUT... -o OUTDIR`: alpha mattes and decontaminated cutouts for files, folders and globs."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from p3m.choices import OUTPUT_KINDS
from p3m.choices import parse_color as parse_color_text
from p3m.commands._types import whole_number
from p3m.errors import P3MError


def parse_outputs(text: str) -> list[str]:
    """'alpha,rgba' -> ['alpha', 'rgba'] (validated, order kept, duplicates dropped)."""
    kinds = [k.strip().lower() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in OUTPUT_KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown output kind(s) {', '.join(bad) or '(none)'}; choose from {','.join(OUTPUT_KINDS)}"
        )
    return list(dict.fromkeys(kinds))


def parse_color(text: str) -> tuple[int, int, int] | None:
    """`--background` as a colour, or None when it is not written as one (then it names an image file)."""
    try:
        return parse_color_text(text)
    except ValueError as exc:
        raise P3MError(f"background {exc}") from None


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
            "(straight RGBA with decontaminated foreground colours), <stem>_fg.png and <stem>_composite.png into "
            "OUTDIR. A bad input "
            "is reported and skipped; exit code 1 when any input failed, 2 for usage or configuration errors."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("-o", "--outdir", required=True, metavar="OUTDIR", help="output folder (created if missing)")
    parser.add_argument("--recursive", action="store_true", help="descend into sub-folders of folder inputs")
    parser.add_argument(
        "--output",
        type=parse_outputs,
        default=["alpha", "rgba"],
        metavar="KINDS",
        help="comma-separated outputs among alpha,rgba,fg,composite (default alpha,rgba)",
    )
    parser.add_argument(
        "--background",
        default="white",
        metavar="COLOR|IMAGE",
        help="composite background: white, black, gray, green, ..., #RRGGBB, R,G,B or an image file (default white)",
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
    parser.add_argument(
        "--weights",
        default=None,
        metavar="PATH|NAME",
        help="checkpoint or .onnx file, or a name from `p3m models` (default: the published "
        "P3M-Net if it is in the model folder, else the built-in portrait-cf)",
    )
    parser.add_argument(
        "--model", default=None, metavar="ARCH", help="architecture, e.g. p3m-r34 (default: from the weights)"
    )
    parser.add_argument(
        "--strategy",
        choices=("hybrid", "resize", "highres"),
        default="hybrid",
        help="test strategy (default hybrid; highres for 4K and larger, bounded memory)",
    )
    parser.add_argument(
        "--resize",
        dest="resize_mode",
        choices=("fast", "paper"),
        default="fast",
        help="resize function: fast (OpenCV) or paper (the published scikit-image 0.14.5 R)",
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "torch", "onnxruntime"),
        default="auto",
        help="inference backend (default auto: onnxruntime for .onnx weights)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        metavar="auto|cpu|cuda",
        help="device (default auto); an unavailable cuda is an error, never a silent CPU fallback",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="auto",
        help="torch precision (default auto: bf16 where the hardware supports it)",
    )
    parser.add_argument(
        "--foreground-method",
        choices=("ml", "blur", "pymatting"),
        default="ml",
        help="foreground colour estimation: ml (multi-level, numpy; default), blur (blur-fusion, "
        "fastest) or pymatting (pymatting's numba implementation)",
    )
    parser.add_argument("--tile", type=_tile_count, default=1024, help="highres tile side (default 1024)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def _output_paths(src: Path, outdir: Path, subdir: Path, kinds: list[str], composite_ext: str) -> dict[str, Path]:
    base = outdir / subdir
    return {k: base / f"{src.stem}_{k}{composite_ext if k == 'composite' else '.png'}" for k in kinds}


def _subdirs(paths: list[Path]) -> list[Path]:
    """Relative output sub-folders: none, unless two inputs share a stem (then mirror their folders)."""
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return [Path()] * len(paths)
    parents = [p.resolve().parent for p in paths]
    root = Path(os.path.commonpath([str(p) for p in parents]))
    return [par.relative_to(root) for par in parents]


def _drop_clashes(jobs: list[tuple[Path, dict[str, Path]]]) -> tuple[list[tuple[Path, dict[str, Path]]], list[str]]:
    """Keep the first input of each group whose outputs share a file name (``p.png`` and ``p.jpg`` in one folder)
    and report the others, one line each; an output that would replace an input is reported too."""
    inputs = {p.resolve(): p for p, _ in jobs}
    owner: dict[Path, Path] = {}
    kept, clashes = [], []
    for src, outs in jobs:
        keys = [o.resolve() for o in outs.values()]
        other = next((owner[k] for k in keys if k in owner), None)
        over_input = next((inputs[k] for k in keys if k in inputs), None)
        if other is not None:
            names = ", ".join(o.name for o in outs.values())
            clashes.append(f"{src}: skipped: it would write the same files as {other} ({names}); rename one of them")
        elif over_input is not None:
            clashes.append(f"{src}: skipped: an output would overwrite the input {over_input}; choose another -o")
        else:
            owner.update((k, src) for k in keys)
            kept.append((src, outs))
    return kept, clashes


def _fit_background(bg: np.ndarray, h: int, w: int) -> np.ndarray:
    """Scale-to-cover and centre-crop a background image to h x w."""
    import cv2

    bh, bw = bg.shape[:2]
    scale = max(h / bh, w / bw)
    nh, nw = max(h, round(bh * scale)), max(w, round(bw * scale))
    resized = cv2.resize(bg, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y, x = (nh - h) // 2, (nw - w) // 2
    return resized[y : y + h, x : x + w]


def _describe(matter) -> str:
    """'NAME (ARCH) on DEVICE, ...': the weights actually used, for the run summary."""
    how = (
        "segmentation prior + closed-form matting"
        if matter.route is not None
        else (f"{matter.backend}, {matter.strategy}")
    )
    arch = f" ({matter.arch})" if matter.arch and matter.arch != matter.model_name else ""
    return f"{matter.model_name}{arch} on {matter.device}, {how}"


def run(args: argparse.Namespace) -> int:
    from p3m.errors import os_error_message
    from p3m.io import collect_images, read_image, write_image_set

    kinds: list[str] = args.output
    background: tuple[int, int, int] | np.ndarray = (255, 255, 255)
    if "composite" in kinds:
        color = parse_color(args.background)
        if color is not None:
            background = color
        elif Path(args.background).is_file():
            background = read_image(args.background)
        else:
            raise P3MError(
                f"--background {args.background!r} is neither a colour (name, #RRGGBB, R,G,B) nor an image file"
            )

    paths, problems = collect_images(args.inputs, recursive=args.recursive)
    for msg in problems:
        print(f"p3m matte: {msg}", file=sys.stderr)
    if not paths:
        raise P3MError("no input images" + (f" ({'; '.join(problems)})" if problems else ""))

    outdir = Path(args.outdir)
    ext = ".jpg" if args.composite_format == "jpg" else ".png"
    jobs = [(p, _output_paths(p, outdir, sub, kinds, ext)) for p, sub in zip(paths, _subdirs(paths))]
    jobs, clashes = _drop_clashes(jobs)
    for msg in clashes:
        print(f"p3m matte: error: {msg}", file=sys.stderr)
    if args.skip_existing:
        kept = [(p, outs) for p, outs in jobs if not all(o.exists() for o in outs.values())]
        skipped = len(jobs) - len(kept)
        jobs = kept
    else:
        skipped = 0
        if not args.overwrite:
            existing = [o for _, outs in jobs for o in outs.values() if o.exists()]
            if existing:
                shown = ", ".join(str(o) for o in existing[:5]) + (
                    f" and {len(existing) - 5} more" if len(existing) > 5 else ""
                )
                raise P3MError(
                    f"refusing to overwrite {len(existing)} existing output(s): {shown}; "
                    "pass --overwrite or --skip-existing"
                )

    from p3m.infer.matter import Matter

    with warnings.catch_warnings():  # the model warning is printed once below, as one line
        warnings.simplefilter("ignore")
        matter = Matter(
            model=args.model,
            weights=args.weights,
            device=args.device,
            strategy=args.strategy,
            backend=args.backend,
            precision=args.precision,
            resize_mode=args.resize_mode,
            foreground_method=args.foreground_method,
            tile=args.tile,
        )
    if matter.model_warning:
        print(f"p3m matte: warning: {matter.model_warning}", file=sys.stderr)
    from tqdm import tqdm

    failed = len(problems) + len(clashes)
    done = 0
    bar = tqdm(jobs, desc="matte", unit="img", disable=args.quiet, file=sys.stderr)
    for src, outs in bar:
        try:
            result = matter.matte(src, foreground=any(k != "alpha" for k in kinds))
            arrays = []  # every output of the image first, then all written or none
            for kind, dest in outs.items():
                if kind == "alpha":
                    array = result.alpha_uint8()
                elif kind == "rgba":
                    array = result.cutout
                elif kind == "fg":
                    array = result.foreground
                else:
                    bg = background
                    if isinstance(bg, np.ndarray):
                        bg = _fit_background(bg, *result.alpha.shape)
                    array = result.composite(bg)
                arrays.append((dest, array))
            write_image_set(arrays)
            done += 1
            if result.info.get("warning") and result.info["warning"] != matter.model_warning:
                tqdm.write(f"p3m matte: warning: {src}: {result.info['warning']}", file=sys.stderr)
        except (P3MError, OSError, ValueError, RuntimeError, MemoryError) as exc:
            failed += 1
            msg = os_error_message(exc) if isinstance(exc, OSError) else str(exc)
            if str(src) not in msg:
                msg = f"{src}: {msg}"
            tqdm.write(f"p3m matte: error: {msg}", file=sys.stderr)
    bar.close()
    if not args.quiet:
        note = f", {skipped} skipped (outputs exist)" if skipped else ""
        print(
            f"p3m matte: {done} image(s) written to {outdir}{note}, {failed} failed [{_describe(matter)}]",
            file=sys.stderr,
        )
    return 1 if failed else 0
