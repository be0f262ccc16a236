"""`p3m anonymize INPUT... -o OUT`: P3M-style face obfuscation of images, folders or a whole dataset."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from p3m.choices import OBFUSCATION_METHODS
from p3m.cluster import add_cluster_option
from p3m.commands._types import add_detection_threshold, add_single_scale, face_detector_factory, hide_aliases
from p3m.errors import P3MError


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "anonymize",
        help="obfuscate faces the P3M way (face region minus the matting transition band)",
        description=(
            "Detect faces (CenterFace, offline), outline each from its facial landmarks (MediaPipe face mesh: "
            "the jaw line up to the brows, as P3M; a larger covering shape where the landmarks are not trusted), "
            "obfuscate the private area (face region minus the transition band of the alpha matte when --alpha "
            "is given) with a soft, anti-aliased edge and write OUT/<stem>.<ext> (same format, no "
            "metadata) plus the face mask OUT/facemask/<stem>.png. With --dataset ROOT, converts ROOT/image "
            "(or ROOT/original_image) + ROOT/mask [+ ROOT/trimap] into the P3M-10k layout (blurred_image/, mask/, "
            "facemask/). OUT/anonymize_report.csv lists the faces found per image; images without a face are "
            "flagged for manual review. Exit code 1 when any file failed (or, with --strict, had no face)."
        ),
    )
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders or glob patterns")
    out = parser.add_argument("-o", "--out", "--output", required=True, metavar="OUT", help="output folder")
    hide_aliases(out, "--output")
    parser.add_argument("--dataset", metavar="ROOT", help="convert a dataset ROOT/{image|original_image, mask} instead")
    parser.add_argument("--method", choices=OBFUSCATION_METHODS, default="blur", help="obfuscation (default blur)")
    parser.add_argument(
        "--alpha",
        metavar="DIR",
        help="alpha mattes matched by stem (<stem>.png or p3m matte's <stem>_alpha.png): their transition band is kept",
    )
    add_detection_threshold(parser)
    parser.add_argument(
        "--region",
        choices=("landmarks", "ellipse"),
        default="landmarks",
        help="face region: the landmark polygon from the jaw line up to the brows (default, as P3M) or the "
        "ellipse of the detector's box (--mask-scale)",
    )
    parser.add_argument(
        "--forehead", action="store_true", help="the landmark region reaches the top of the forehead, not the brows"
    )
    parser.add_argument(
        "--mask-scale",
        type=float,
        default=1.1,
        help="with --region ellipse: the ellipse's size relative to the detected box (default 1.1)",
    )
    parser.add_argument("--strength", type=float, default=1.0, help="blur sigma / mosaic cell multiplier (default 1)")
    parser.add_argument(
        "--feather",
        type=float,
        default=None,
        metavar="PX",
        help="width of the region's soft edge in px (default 3%% of the face size; at least 1 px, anti-aliased)",
    )
    parser.add_argument(
        "--band-dilation",
        type=int,
        default=3,
        metavar="PX",
        help="grow the alpha transition band by PX before subtracting it (default 3)",
    )
    parser.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (default 95)")
    parser.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders")
    parser.add_argument("--strict", action="store_true", help="an image without any face is an error")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing outputs (without it, existing files in OUT, e.g. the input images "
        "when OUT is their folder, are refused before anything is written)",
    )
    add_single_scale(parser)
    add_cluster_option(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    return parser


def _where(args: argparse.Namespace, make_detector: Callable[[], Any]) -> dict:
    """Nothing (this process), or a Ray cluster's runner, the inputs' listing and a detector each worker builds."""
    if args.cluster is None:
        return {}
    from p3m.cluster import require_ray
    from p3m.cluster.runner import RayRunner

    require_ray()
    return {
        "runner": RayRunner(args.cluster, source=lambda task: task.source, label="anonymize", progress=not args.quiet),
        "make_detector": make_detector,
    }


def run(args: argparse.Namespace) -> int:
    from p3m.privacy.anonymize import AnonymizeOptions, anonymize_dataset, anonymize_files, print_progress

    if bool(args.inputs) == bool(args.dataset):
        raise P3MError("give INPUT files/folders or --dataset ROOT (one of the two)")
    if args.dataset and args.alpha:
        raise P3MError("--alpha is for INPUT mode; in --dataset mode the masks come from ROOT/mask")
    make_detector = face_detector_factory(args)
    if args.band_dilation < 0:
        raise P3MError(f"--band-dilation must be >= 0, got {args.band_dilation}")
    options = AnonymizeOptions(
        method=args.method,
        strength=args.strength,
        region=args.region,
        forehead=args.forehead,
        feather=args.feather,
        mask_scale=args.mask_scale,
        band_dilation=args.band_dilation,
        quality=args.quality,
    )
    where = _where(args, make_detector)
    detector = None if where else make_detector()
    progress = None if args.quiet else print_progress
    if args.dataset:
        report = anonymize_dataset(
            args.dataset,
            args.out,
            detector=detector,
            options=options,
            progress=progress,
            overwrite=args.overwrite,
            **where,
        )
    else:
        if where:
            from p3m.cluster.sources import collect_inputs  # local inputs as always, and URIs of other file systems

            where["collect"] = collect_inputs
        report = anonymize_files(
            args.inputs,
            args.out,
            alpha_dir=args.alpha,
            detector=detector,
            options=options,
            recursive=args.recursive,
            progress=progress,
            overwrite=args.overwrite,
            **where,
        )
    print(report.summary())
    print(f"report: {Path(args.out) / 'anonymize_report.csv'}")
    return report.exit_code(strict=args.strict)
