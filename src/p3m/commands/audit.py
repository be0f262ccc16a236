"""`p3m audit DIR`: check anonymised images for identifying face detail, metadata and faces outside the facemask."""

from __future__ import annotations

import argparse

from p3m.commands._types import add_detection_threshold, add_single_scale, face_detector_factory
from p3m.errors import P3MError


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "audit",
        help="check anonymised images for leaks (face detail, metadata, faces outside the facemask)",
        description=(
            "Re-run face detection on every image in DIR and report faces that keep identifying detail "
            "(median |Laplacian| at a 64 px face scale, absolute and relative to the rest of the image), faces "
            "still similar to the originals or partly left as they were (SSIM, with --originals), faces a public "
            "face recogniser still matches to the originals (with --originals and the optional extra "
            "p3m[audit]), metadata "
            "blocks (EXIF, XMP, ICC, comments, PNG text) and detected faces not covered by "
            "the facemask (DIR/facemask/ or --facemask). Writes DIR/audit_report.csv (or --report). "
            "Exit code 1 when anything leaks."
        ),
    )
    parser.add_argument("folder", metavar="DIR", help="folder of anonymised images")
    parser.add_argument("--originals", metavar="DIR", help="the un-anonymised images, matched by stem")
    parser.add_argument(
        "--facemask", metavar="DIR", help="face masks matched by stem (default DIR/facemask if present)"
    )
    parser.add_argument("--report", metavar="FILE.csv", help="where to write the CSV (default DIR/audit_report.csv)")
    add_detection_threshold(parser)
    parser.add_argument(
        "--max-detail",
        type=float,
        default=5.5,
        help="median |Laplacian| (grey levels, 64 px face scale) from which a face leaks whatever "
        "the rest of the image (default 5.5)",
    )
    parser.add_argument(
        "--max-detail-ratio",
        type=float,
        default=1.0,
        help="face detail relative to the rest of the image from which a face leaks (default 1)",
    )
    parser.add_argument(
        "--min-detail",
        type=float,
        default=2.5,
        help="the rest of the image counts as at least this detail in that ratio: 8-bit rounding "
        "leaves up to ~2 on small blurred faces (default 2.5)",
    )
    parser.add_argument(
        "--max-ssim", type=float, default=0.5, help="SSIM to the original face from which a face leaks (default 0.5)"
    )
    parser.add_argument(
        "--max-kept",
        type=float,
        default=0.1,
        help="share of the original face's structure left as it was (local SSIM >= 0.9, e.g. a "
        "profile in the kept transition band) from which a face leaks (default 0.1)",
    )
    parser.add_argument(
        "--min-reid-distance",
        type=float,
        default=0.6,
        help="with --originals: face-recogniser distance to the original face below which a face is still "
        "recognised (default 0.6, dlib's same-person threshold)",
    )
    parser.add_argument(
        "--no-reid",
        action="store_true",
        help="skip the re-identification check (it runs with --originals when p3m[audit] is installed)",
    )
    parser.add_argument(
        "--min-coverage",
        type=float,
        default=0.5,
        help="fraction of a detected face the facemask must cover (default 0.5)",
    )
    add_single_scale(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    return parser


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from p3m.privacy.audit import AUDIT_REPORT_NAME, AuditThresholds, audit_folder

    make_detector = face_detector_factory(args)
    if not args.min_detail > 0:
        raise P3MError(f"--min-detail must be > 0, got {args.min_detail}")
    thresholds = AuditThresholds(
        max_detail=args.max_detail,
        max_detail_ratio=args.max_detail_ratio,
        max_ssim=args.max_ssim,
        max_kept=args.max_kept,
        min_coverage=args.min_coverage,
        detect_threshold=args.threshold,
        min_detail=args.min_detail,
        min_reid_distance=args.min_reid_distance,
    )

    def progress(rec) -> None:
        if rec.status == "error":
            print(f"error: {rec.error}", file=sys.stderr)
        elif rec.status == "leak":
            print(f"leak: {rec.file}: " + "; ".join(rec.reasons), file=sys.stderr)

    report = audit_folder(
        args.folder,
        originals=args.originals,
        facemask_dir=args.facemask,
        detector=make_detector(),
        thresholds=thresholds,
        report_path=args.report,
        progress=None if args.quiet else progress,
        reid=not args.no_reid,
    )
    print(report.summary())
    print(f"report: {Path(args.report) if args.report else Path(args.folder) / AUDIT_REPORT_NAME}")
    return report.exit_code()
