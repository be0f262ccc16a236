"""`p3m export --weights W -o model.onnx`: ONNX export with dynamic height/width, checked against onnxruntime."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from p3m.commands._types import add_arch, hide_aliases
from p3m.errors import P3MError


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export a model to ONNX (dynamic H/W), verified with onnxruntime",
        description=(
            "Export P3M-Net to ONNX with dynamic batch, height and width (multiples of 32). Outputs: "
            "global_logits, local_alpha, fused_alpha. Right after export the file is run with onnxruntime on a "
            "random input and compared with torch; the maximum difference is printed (must be < 1e-4). Use the "
            "file with `p3m matte --backend onnxruntime --weights model.onnx`."
        ),
    )
    parser.add_argument(
        "--weights", required=True, metavar="PATH|NAME", help="checkpoint file or a name from `p3m models`"
    )
    add_arch(parser)
    out = parser.add_argument("-o", "--out", "--output", required=True, metavar="FILE.onnx", help="ONNX file to write")
    hide_aliases(out, "--output")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="export format (onnx)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17; MaxUnpool-free graph, >= 13)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser


def run(args: argparse.Namespace) -> int:
    # torch and onnx load when the verb runs, so that `p3m --help` stays quick
    from p3m.infer.export import export_onnx
    from p3m.models.store import BUILTIN, choose_arch, load_network, resolve, trained_on_synthetic

    out = Path(args.out)
    if out.suffix != ".onnx":
        raise P3MError(f"{out}: output file must end in .onnx")
    if out.exists() and not args.overwrite:
        raise P3MError(f"{out}: exists; pass --overwrite to replace it")
    if args.opset < 13:
        raise P3MError(f"opset {args.opset} is too old; use 13 or newer (17 recommended)")
    path, found = resolve(args.weights)
    if found == BUILTIN:
        raise P3MError(
            f"{found} is the built-in segmentation + closed-form route, not a network ONNX can hold; "
            "export P3M-Net weights"
        )
    if path.suffix == ".onnx":
        raise P3MError(f"{path}: is already an ONNX file")
    arch = choose_arch(path, found, args.arch)
    assert arch is not None  # choose_arch names one for every torch file
    model, meta = load_network(path, arch)
    synthetic = trained_on_synthetic(path)
    # carried into the file, so that a run of the .onnx warns as a run of the weights does
    metadata = {"source_weights": path.name, "dataset_synthetic": synthetic}
    report = export_onnx(model, out, opset=args.opset, metadata=metadata)
    if synthetic:
        print(
            f"p3m export: warning: {args.weights} was trained on synthetic (drawn) portraits; {out.name} says so in "
            "its metadata and warns whenever it is used",
            file=sys.stderr,
        )
    print(
        f"exported {meta.get('arch', arch)} to {report['path']} (opset {report['opset']}, dynamic H/W); "
        f"onnxruntime vs torch: max |alpha diff| {report['max_abs_diff']:.2e}, "
        f"logits {report['logits_rel_diff']:.2e} relative"
    )
    return 0
