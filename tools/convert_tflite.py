"""Convert MediaPipe's TFLite models into the safetensors files p3m ships (src/p3m/models/weights/).

Run once by a maintainer (not at run time, not in tests), in a separate environment with the TFLite flatbuffer
schema (`pip install tflite safetensors numpy`; Apache-2.0). Where the .tflite files come from:

    npm pack @mediapipe/selfie_segmentation@0.1.1675465747   # package/selfie_segmentation*.tflite
    pip download --no-deps mediapipe==0.10.21                # unzip: mediapipe/modules/<module>/<model>.tflite

    python tools/convert_tflite.py package/selfie_segmentation.tflite \
        mediapipe/modules/face_landmark/face_landmark.tflite

Each FILE.tflite becomes src/p3m/models/weights/FILE.safetensors (`--out-dir` to write elsewhere). Only the
files listed in SOURCES are accepted, checked by sha256, so the shipped weights and NOTICE stay in step. Then, in
the project's environment, `python tools/export_graph_onnx.py` re-exports the ONNX graphs of the built-in route's
networks from the new files (tests/test_graph_session.py fails while a graph is older than its safetensors).

The output holds every constant of the graph in PyTorch layout at its stored precision (fp16 in all of these
files, so the conversion is exact), with DEQUANTIZE (fp16 -> fp32) and DENSIFY (sparse -> dense weights) folded
into the constants; every other operator is kept one for one as JSON in the metadata under "graph", the format
that `p3m.models.tflite_graph.TFLiteGraph` executes. The metadata also records the source file name, its sha256,
the licence and the origin. Tensor names are TFLite's, cut at the first ';' (TFLite joins the names of fused
ops with ';').
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "src" / "p3m" / "models" / "weights"
_NPM_SELFIE = "npm package @mediapipe/selfie_segmentation@0.1.1675465747, package/"
_WHEEL = "PyPI wheel mediapipe==0.10.21, mediapipe/modules/"


class Source(NamedTuple):
    sha256: str
    where: str  # where the maintainer got the file
    origin: str  # what the network is


SOURCES = {
    "selfie_segmentation.tflite": Source(
        "8d13b7fae74af625c641226813616a2117bd6bca19eb3b75574621fc08557f27",
        _NPM_SELFIE + "selfie_segmentation.tflite",
        "MediaPipe selfie segmentation",
    ),
    "selfie_segmentation_landscape.tflite": Source(
        "4aafe6223bb8dac6fac8ca8ed56852870a33051ef3f6238822d282a109962894",
        _NPM_SELFIE + "selfie_segmentation_landscape.tflite",
        "MediaPipe selfie segmentation",
    ),
    "face_landmark.tflite": Source(
        "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
        _WHEEL + "face_landmark/face_landmark.tflite",
        "MediaPipe face mesh (468 face landmarks)",
    ),
    "face_detection_short_range.tflite": Source(
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
        _WHEEL + "face_detection/face_detection_short_range.tflite",
        "MediaPipe face detection, short range (BlazeFace)",
    ),
    "face_detection_full_range_sparse.tflite": Source(
        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
        _WHEEL + "face_detection/face_detection_full_range_sparse.tflite",
        "MediaPipe face detection, full range (BlazeFace)",
    ),
    "pose_detection.tflite": Source(
        "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
        _WHEEL + "pose_detection/pose_detection.tflite",
        "MediaPipe pose detection (BlazePose detector)",
    ),
    "pose_landmark_full.tflite": Source(
        "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
        _WHEEL + "pose_landmark/pose_landmark_full.tflite",
        "MediaPipe pose landmarks, full (BlazePose GHUM 3D, 33 landmarks + segmentation)",
    ),
    "palm_detection_full.tflite": Source(
        "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54",
        _WHEEL + "palm_detection/palm_detection_full.tflite",
        "MediaPipe palm detection, full",
    ),
    "hand_landmark_full.tflite": Source(
        "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3",
        _WHEEL + "hand_landmark/hand_landmark_full.tflite",
        "MediaPipe hand landmarks, full (21 landmarks)",
    ),
}

# TFLite enums (schema.fbs): Padding SAME=0 VALID=1; ActivationFunctionType NONE=0 RELU=1 RELU_N1_TO_1=2 RELU6=3
# TANH=4; TensorType FLOAT32=0 FLOAT16=1 INT32=2; DimensionType DENSE=0 SPARSE_CSR=1; SparseIndexVector
# Int32Vector=1 Uint16Vector=2 Uint8Vector=3. The custom transposed convolution's TfLitePadding: SAME=1 VALID=2.
_PADDING = {0: "same", 1: "valid"}
_ACTIVATION = {0: "none", 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh"}
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32}
_PLAIN = ("HARD_SWISH", "RELU", "RELU6", "LOGISTIC", "TANH")  # operators without options


def _options(op: Any, cls: Any) -> Any:
    table = op.BuiltinOptions()
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    return opts


def _index_vector(dim: Any, which: str) -> np.ndarray:
    """The array_segments or array_indices of a sparse dimension, whatever its integer type."""
    import tflite

    kind = getattr(dim, f"Array{which}Type")()
    cls = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}[kind]
    table = getattr(dim, f"Array{which}")()
    vec = cls()
    vec.Init(table.Bytes, table.Pos)
    return np.asarray(vec.ValuesAsNumpy(), dtype=np.int64)


def densify(values: np.ndarray, shape: list[int], sparsity: Any) -> np.ndarray:
    """TFLite sparse tensor -> dense: every dimension dense except the last, stored CSR (MediaPipe's pruned
    1x1 convolutions); other layouts (block maps, reordered traversal) are refused."""
    order = list(sparsity.TraversalOrderAsNumpy())
    dims = [sparsity.DimMetadata(i) for i in range(sparsity.DimMetadataLength())]
    if order != list(range(len(shape))) or sparsity.BlockMapLength() or len(dims) != len(shape):
        raise SystemExit("sparse tensor layout not supported (block map or traversal order)")
    if any(d.Format() != 0 for d in dims[:-1]) or dims[-1].Format() != 1:
        raise SystemExit("sparse tensor layout not supported (only the last dimension may be sparse)")
    segments, indices = _index_vector(dims[-1], "Segments"), _index_vector(dims[-1], "Indices")
    rows = int(np.prod(shape[:-1]))
    if len(segments) != rows + 1 or segments[-1] != len(values) or len(indices) != len(values):
        raise SystemExit("sparse tensor: segments, indices and values disagree")
    dense = np.zeros((rows, shape[-1]), dtype=values.dtype)
    row_of = np.repeat(np.arange(rows), np.diff(segments))
    dense[row_of, indices] = values
    return dense.reshape(shape)


def convert(src: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A .tflite file -> (constants by name in PyTorch layout, graph for TFLiteGraph)."""
    import tflite
    from tflite.BuiltinOperator import BuiltinOperator

    op_names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    model = tflite.Model.GetRootAsModel(src.read_bytes(), 0)
    if model.SubgraphsLength() != 1:
        raise SystemExit(f"{src}: expected one subgraph, found {model.SubgraphsLength()}")
    graph = model.Subgraphs(0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        codes.append(code.CustomCode().decode() if op_names[builtin] == "CUSTOM" else op_names[builtin])

    names: dict[int, str] = {}
    for i in range(graph.TensorsLength()):
        name = graph.Tensors(i).Name().decode().split(";")[0]
        names[i] = name if name not in names.values() else f"{name}#{i}"

    def stored(index: int) -> np.ndarray | None:
        """The constant a tensor holds in the file (densified), or None for a computed tensor."""
        t = graph.Tensors(index)
        raw = model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(raw, int) or raw.size == 0:
            return None
        values = np.frombuffer(raw.tobytes(), dtype=_DTYPES[t.Type()])
        shape = [int(v) for v in t.ShapeAsNumpy()] if t.ShapeLength() else []
        if t.Sparsity() is not None:
            return densify(values, shape, t.Sparsity())
        return values.reshape(shape)

    folded: dict[int, tuple[int, np.ndarray]] = {}  # tensor -> (the file's constant it comes from, its value)
    sparse = {i for i in range(graph.TensorsLength()) if graph.Tensors(i).Sparsity() is not None}

    def constant(index: int) -> np.ndarray | None:
        if index in folded:
            return folded[index][1]
        return stored(index)

    def root(index: int) -> int:
        return folded[index][0] if index in folded else index

    tensors: dict[str, np.ndarray] = {}
    packed: dict[str, list[int]] = {}
    kept: dict[str, np.ndarray] = {}  # every stored constant, dense, to check a shared one is used alike

    def keep(index: int, value: np.ndarray) -> None:
        """Store a constant input (already in PyTorch layout) under the name of the file's constant; one the file
        stores sparse stays sparse: its non-zero values and a bit mask (`tflite_graph.load_graph` unpacks them)."""
        name = names[root(index)]
        value = np.ascontiguousarray(value)
        if name in kept:
            if not np.array_equal(kept[name], value):
                raise SystemExit(f"{src}: constant {name} is used in two layouts")
            return
        kept[name] = value
        if root(index) in sparse:
            nonzero = value.reshape(-1).view(np.uint16) != 0  # bit pattern: a stored -0.0 is kept
            tensors[name + ":values"] = value.reshape(-1)[nonzero]
            tensors[name + ":mask"] = np.packbits(nonzero)
            packed[name] = list(value.shape)
        else:
            tensors[name] = value

    def required(index: int) -> np.ndarray:
        value = constant(index)
        if value is None:
            raise SystemExit(f"{src}: expected a constant for tensor {names[index]}")
        return value

    def fixed(index: int) -> list[Any]:
        return required(index).tolist()

    ops: list[dict[str, Any]] = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        kind = codes[op.OpcodeIndex()]
        ins = [int(t) for t in op.InputsAsNumpy()]
        (out,) = [int(t) for t in op.OutputsAsNumpy()]
        if kind in ("DEQUANTIZE", "DENSIFY"):
            value = constant(ins[0])
            if value is None:
                raise SystemExit(f"{src}: {kind} of a computed tensor is not supported")
            folded[out] = (root(ins[0]), value)
            continue
        for t in ins:
            value = constant(t) if t >= 0 else None
            if value is not None and value.dtype != np.float16 and kind not in _ATTRIBUTE_INPUTS:
                raise SystemExit(f"{src}: {kind} takes a {value.dtype} constant; not supported")
        entry: dict[str, Any] = {"op": kind.lower(), "in": [names[root(t)] for t in ins], "out": names[out]}
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            cls = tflite.Conv2DOptions if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions
            o = _options(op, cls)
            if o.DilationHFactor() != 1 or o.DilationWFactor() != 1:
                raise SystemExit(f"{src}: dilated convolution is not supported")
            if kind == "DEPTHWISE_CONV_2D" and o.DepthMultiplier() != 1:
                raise SystemExit(f"{src}: depth multiplier {o.DepthMultiplier()} is not supported")
            entry.update(
                stride=[o.StrideH(), o.StrideW()],
                padding=_PADDING[o.Padding()],
                activation=_ACTIVATION[o.FusedActivationFunction()],
            )
            w = required(ins[1])
            # OHWI -> OIHW (convolution); 1HWC -> C1HW (depthwise)
            keep(ins[1], w.transpose(0, 3, 1, 2) if kind == "CONV_2D" else w.transpose(3, 0, 1, 2))
            keep(ins[2], required(ins[2]))
        elif kind == "Convolution2DTransposeBias":
            padding, stride_w, stride_h = np.frombuffer(op.CustomOptionsAsNumpy().tobytes(), dtype=np.int32)
            entry.update(
                op="conv_transpose_bias",
                stride=[int(stride_h), int(stride_w)],
                padding={1: "same", 2: "valid"}[int(padding)],
            )
            keep(ins[1], required(ins[1]).transpose(3, 0, 1, 2))  # OHWI -> IOHW
            keep(ins[2], required(ins[2]))
        elif kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            o = _options(op, tflite.Pool2DOptions)
            entry.update(
                kernel=[o.FilterHeight(), o.FilterWidth()],
                stride=[o.StrideH(), o.StrideW()],
                padding=_PADDING[o.Padding()],
                activation=_ACTIVATION[o.FusedActivationFunction()],
            )
        elif kind in ("ADD", "MUL"):
            if any(constant(t) is not None for t in ins):
                raise SystemExit(f"{src}: {kind} with a constant operand is not supported")
            o = _options(op, tflite.AddOptions if kind == "ADD" else tflite.MulOptions)
            entry.update(activation=_ACTIVATION[o.FusedActivationFunction()])
        elif kind == "PRELU":
            alpha = constant(ins[1])
            if alpha is None or any(s != 1 for s in alpha.shape[:-1]):
                raise SystemExit(f"{src}: PRELU with other than a per-channel constant slope is not supported")
            keep(ins[1], alpha.reshape(-1))
        elif kind == "RESIZE_BILINEAR":
            o = _options(op, tflite.ResizeBilinearOptions)
            entry.update(
                size=fixed(ins[1]), align_corners=bool(o.AlignCorners()), half_pixel_centers=bool(o.HalfPixelCenters())
            )
            entry["in"] = entry["in"][:1]
        elif kind == "MEAN":
            o = _options(op, tflite.ReducerOptions)
            entry.update(axes=fixed(ins[1]), keep_dims=bool(o.KeepDims()))
            entry["in"] = entry["in"][:1]
        elif kind == "RESHAPE":
            shape = [int(v) for v in graph.Tensors(out).ShapeAsNumpy()]  # the static output shape, resolved
            entry.update(shape=shape)
            entry["in"] = entry["in"][:1]
        elif kind == "CONCATENATION":
            o = _options(op, tflite.ConcatenationOptions)
            entry.update(axis=o.Axis(), activation=_ACTIVATION[o.FusedActivationFunction()])
        elif kind == "PAD":
            entry.update(paddings=fixed(ins[1]))
            entry["in"] = entry["in"][:1]
        elif kind == "DEPTH_TO_SPACE":
            entry.update(block_size=_options(op, tflite.DepthToSpaceOptions).BlockSize())
        elif kind == "FULLY_CONNECTED":
            o = _options(op, tflite.FullyConnectedOptions)
            if o.WeightsFormat() != 0:
                raise SystemExit(f"{src}: shuffled FULLY_CONNECTED weights are not supported")
            entry.update(activation=_ACTIVATION[o.FusedActivationFunction()], keep_num_dims=bool(o.KeepNumDims()))
            keep(ins[1], required(ins[1]))  # (out, in): already PyTorch's linear layout
            if len(ins) > 2 and ins[2] >= 0:
                keep(ins[2], required(ins[2]))
            else:
                raise SystemExit(f"{src}: FULLY_CONNECTED without bias is not supported")
        elif kind not in _PLAIN:
            raise SystemExit(f"{src}: operator {kind} is not supported by the port")
        ops.append(entry)
    meta = {
        "inputs": [
            {"name": names[int(t)], "shape": [int(v) for v in graph.Tensors(int(t)).ShapeAsNumpy()]}
            for t in graph.InputsAsNumpy()
        ],
        "outputs": [names[int(t)] for t in graph.OutputsAsNumpy()],
        "ops": ops,
    }
    if packed:
        meta["packed"] = packed
    return tensors, meta


# operators whose int32 constant inputs become attributes (shapes, sizes, axes, paddings)
_ATTRIBUTE_INPUTS = ("RESIZE_BILINEAR", "MEAN", "RESHAPE", "PAD")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tflite", type=Path, nargs="+", help="MediaPipe .tflite files (names as in SOURCES)")
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args(argv)
    from safetensors.numpy import save_file

    for path in args.tflite:
        source = SOURCES.get(path.name)
        if source is None:
            raise SystemExit(f"{path}: not a known source; known: {', '.join(SOURCES)}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != source.sha256:
            raise SystemExit(f"{path}: sha256 {digest} is not the expected {source.sha256}")
        tensors, graph = convert(path)
        metadata = {
            "graph": json.dumps(graph, separators=(",", ":")),
            "source": path.name,
            "source_sha256": digest,
            "licence": "Apache-2.0",
            "origin": source.origin,
        }
        output = args.out_dir / (path.stem + ".safetensors")
        output.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(output), metadata=metadata)
        print(f"{output}: {len(tensors)} tensors, {len(graph['ops'])} ops, from {path.name} sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
