"""Convert MediaPipe's selfie segmentation TFLite models into the safetensors file p3m ships.

Run once by a maintainer (not at run time, not in tests); needs `pip install tflite` (the TFLite flatbuffer
schema, Apache-2.0). Where the .tflite files come from, either of:

    npm pack @mediapipe/selfie_segmentation@0.1.1675465747      # package/selfie_segmentation*.tflite
    pip download --no-deps mediapipe==0.10.21                   # mediapipe/modules/selfie_segmentation/*.tflite

    python tools/convert_selfie_tflite.py package/selfie_segmentation.tflite \
        src/p3m/models/weights/selfie_segmentation.safetensors

The output holds every constant tensor of the graph in PyTorch layout, in its stored precision (fp16, so the
conversion is exact), and the operator list as JSON in the safetensors metadata under "graph".
`p3m.models.selfie.SelfieSegmentation` executes that list. DEQUANTIZE ops (fp16 -> fp32) are folded into the
loader; every other operator kind is kept one for one, so the port stays checkable against the TFLite graph.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

# TFLite enums (schema.fbs): Padding SAME=0 VALID=1; ActivationFunctionType NONE=0 RELU=1; TensorType FLOAT32=0
# FLOAT16=1 INT32=2; TfLitePadding of the custom transposed convolution: SAME=1 VALID=2.
_PADDING = {0: "same", 1: "valid"}
_ACTIVATION = {0: "none", 1: "relu"}
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32}


def _options(op, cls):
    table = op.BuiltinOptions()
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    return opts


def convert(src: Path) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    import tflite
    from tflite.BuiltinOperator import BuiltinOperator

    names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    model = tflite.Model.GetRootAsModel(src.read_bytes(), 0)
    if model.SubgraphsLength() != 1:
        raise SystemExit(f"{src}: expected one subgraph, found {model.SubgraphsLength()}")
    graph = model.Subgraphs(0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        codes.append(code.CustomCode().decode() if names[builtin] == "CUSTOM" else names[builtin])

    def tname(index: int) -> str:
        return graph.Tensors(index).Name().decode()

    def constant(index: int) -> np.ndarray:
        t = graph.Tensors(index)
        raw = model.Buffers(t.Buffer()).DataAsNumpy()
        return np.frombuffer(raw.tobytes(), dtype=_DTYPES[t.Type()]).reshape(t.ShapeAsNumpy())

    tensors: dict[str, np.ndarray] = {}
    alias: dict[str, str] = {}  # dequantized tensor -> its stored constant
    ops: list[dict[str, object]] = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        kind = codes[op.OpcodeIndex()]
        ins = [int(t) for t in op.InputsAsNumpy()]
        (out,) = [tname(int(t)) for t in op.OutputsAsNumpy()]
        if kind == "DEQUANTIZE":
            tensors[tname(ins[0])] = constant(ins[0])
            alias[out] = tname(ins[0])
            continue
        args = [alias.get(tname(t), tname(t)) for t in ins]
        entry: dict[str, object] = {"op": kind.lower(), "in": args, "out": out}
        if kind == "CONV_2D":
            o = _options(op, tflite.Conv2DOptions)
            assert o.DilationHFactor() == o.DilationWFactor() == 1
            entry.update(
                stride=[o.StrideH(), o.StrideW()],
                padding=_PADDING[o.Padding()],
                activation=_ACTIVATION[o.FusedActivationFunction()],
            )
            w = tensors[args[1]]
            tensors[args[1]] = np.ascontiguousarray(w.transpose(0, 3, 1, 2))  # OHWI -> OIHW
        elif kind == "DEPTHWISE_CONV_2D":
            o = _options(op, tflite.DepthwiseConv2DOptions)
            assert o.DepthMultiplier() == 1 and o.DilationHFactor() == o.DilationWFactor() == 1
            entry.update(
                stride=[o.StrideH(), o.StrideW()],
                padding=_PADDING[o.Padding()],
                activation=_ACTIVATION[o.FusedActivationFunction()],
            )
            w = tensors[args[1]]
            tensors[args[1]] = np.ascontiguousarray(w.transpose(3, 0, 1, 2))  # 1HWC -> C1HW
        elif kind == "AVERAGE_POOL_2D":
            o = _options(op, tflite.Pool2DOptions)
            entry.update(
                kernel=[o.FilterHeight(), o.FilterWidth()],
                stride=[o.StrideH(), o.StrideW()],
                padding=_PADDING[o.Padding()],
                activation=_ACTIVATION[o.FusedActivationFunction()],
            )
        elif kind in ("ADD", "MUL"):
            o = _options(op, tflite.AddOptions if kind == "ADD" else tflite.MulOptions)
            entry.update(activation=_ACTIVATION[o.FusedActivationFunction()])
        elif kind == "RESIZE_BILINEAR":
            o = _options(op, tflite.ResizeBilinearOptions)
            entry.update(
                size=[int(v) for v in constant(ins[1])],
                align_corners=bool(o.AlignCorners()),
                half_pixel_centers=bool(o.HalfPixelCenters()),
            )
            entry["in"] = args[:1]
        elif kind == "MEAN":
            o = _options(op, tflite.ReducerOptions)
            entry.update(axes=[int(v) for v in constant(ins[1])], keep_dims=bool(o.KeepDims()))
            entry["in"] = args[:1]
        elif kind == "Convolution2DTransposeBias":
            padding, stride_w, stride_h = np.frombuffer(op.CustomOptionsAsNumpy().tobytes(), dtype=np.int32)
            entry.update(
                op="conv_transpose_bias",
                stride=[int(stride_h), int(stride_w)],
                padding={1: "same", 2: "valid"}[int(padding)],
            )
            w = tensors[args[1]]
            tensors[args[1]] = np.ascontiguousarray(w.transpose(3, 0, 1, 2))  # OHWI -> IOHW
        elif kind not in ("HARD_SWISH", "RELU", "LOGISTIC"):
            raise SystemExit(f"{src}: operator {kind} is not supported by the port")
        ops.append(entry)
    (inp,) = [int(t) for t in graph.InputsAsNumpy()]
    (outp,) = [int(t) for t in graph.OutputsAsNumpy()]
    meta = {
        "input": tname(inp),
        "input_shape": [int(v) for v in graph.Tensors(inp).ShapeAsNumpy()],
        "output": tname(outp),
        "ops": ops,
    }
    return tensors, meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tflite", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    from safetensors.numpy import save_file

    tensors, graph = convert(args.tflite)
    digest = hashlib.sha256(args.tflite.read_bytes()).hexdigest()
    metadata = {
        "graph": json.dumps(graph, separators=(",", ":")),
        "source": args.tflite.name,
        "source_sha256": digest,
        "licence": "Apache-2.0",
        "origin": "MediaPipe selfie segmentation",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.output), metadata=metadata)
    print(f"{args.output}: {len(tensors)} tensors, {len(graph['ops'])} ops, from {args.tflite.name} sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
