"""Export the built-in route's converted networks to ONNX graphs, shipped beside their safetensors files.

Run once by a maintainer after tools/convert_tflite.py (not at run time, not in tests), in the project's
environment (torch, onnx, onnxruntime):

    python tools/export_graph_onnx.py                       # every file of ROUTE_NETWORKS
    python tools/export_graph_onnx.py selfie_segmentation   # some of them

Each src/p3m/models/weights/NAME.safetensors becomes NAME.onnx (`--out-dir` to write elsewhere): the torch port
(`p3m.models.tflite_graph.TFLiteGraph`) traced by torch's ONNX exporter (opset 17, the batch dimension dynamic),
then every float32 constant whose values are exact in float16 (all the weights: MediaPipe stores them in fp16)
stored as float16 with a Cast back to float32, so the file is about the size of the safetensors and computes the
same numbers (ONNX Runtime folds the casts when it loads the graph). The metadata records the safetensors file it
came from and its sha256 ("source", "source_sha256"; tests/test_graph_session.py checks they are in step), the
licence and the origin. Every export is checked on ONNX Runtime against the torch port before it is written.

The built-in route's networks: the four of its default path and the two of its opt-in hands (`--hands`: the hand
landmark network, and the palm detector its wrapper holds); the pose and face detectors the route does not use
and the privacy tools' face mesh stay on torch (`p3m.models.graph_session.open_graph` falls back to torch where no
.onnx file is shipped).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "src" / "p3m" / "models" / "weights"
ROUTE_NETWORKS = (
    "selfie_segmentation",
    "face_detection_short_range",
    "face_detection_full_range_sparse",
    "pose_landmark_full",
    "hand_landmark_full",
    "palm_detection_full",
)
OPSET = 17
# ONNX Runtime against torch, both fp32: the largest difference accepted, relative to the output's largest value.
# Measured: <= 1.2e-6 on the selfie and face networks; 6.3e-4 on the pose network, on its segmentation logits
# (magnitudes up to ~1700, so its float32 sums round differently: 7e-4 after the sigmoid, where the port is held
# to 5e-3 against MediaPipe's own run)
TOLERANCE = 1e-3


def _halve_constants(model: Any) -> int:
    # model: an onnx.ModelProto (onnx is imported where it is used: this module must import without it)
    """Store every float32 initializer that float16 holds exactly as float16 + Cast; -> how many were."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    kept, casts, count = [], [], 0
    for init in graph.initializer:
        value = numpy_helper.to_array(init)
        if init.data_type == onnx.TensorProto.FLOAT and value.size > 1:
            half = value.astype(np.float16)
            if np.array_equal(half.astype(np.float32), value):
                name16 = init.name + "_fp16"
                kept.append(numpy_helper.from_array(half, name16))
                casts.append(helper.make_node("Cast", [name16], [init.name], to=onnx.TensorProto.FLOAT))
                count += 1
                continue
        kept.append(init)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    return count


def export(name: str, out_dir: Path) -> dict[str, object]:
    """NAME.safetensors -> NAME.onnx in out_dir; -> a report (file, size, largest difference from torch)."""
    import onnx
    import onnxruntime as ort
    import torch

    from p3m.atomic import write_bytes_atomic
    from p3m.models.tflite_graph import TFLiteGraph, load_graph

    src = WEIGHTS_DIR / f"{name}.safetensors"
    _, _, metadata = load_graph(src)
    net = TFLiteGraph.from_file(src).eval()
    shape = (1, net.input_channels, *net.input_size)
    outputs = [f"output_{i}" for i in range(len(net.output_names))]
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(shape),),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            output_names=outputs,
            dynamic_axes={n: {0: "batch"} for n in ["input", *outputs]},
            do_constant_folding=True,
        )
    model = onnx.load_from_string(buffer.getvalue())
    halved = _halve_constants(model)
    meta = {
        "source": src.name,
        "source_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
        "licence": metadata.get("licence", "Apache-2.0"),
        "origin": metadata.get("origin", ""),
        "producer": "p3m tools/export_graph_onnx.py",
        "input": "NCHW float32, " + ("[-1, 1]" if "face_detection" in name else "[0, 1]") + ", RGB",
    }
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    # check on two batch sizes (the route's crop pass runs the selfie network on an image and its mirror)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in (1, 2):
        x = np.random.default_rng(batch).random((batch, *shape[1:]), dtype=np.float32)
        with torch.no_grad():
            expect = [t.numpy() for t in net(torch.from_numpy(x))]
        got = session.run(None, {"input": x})
        for e, g in zip(expect, got, strict=True):
            worst = max(worst, float(np.abs(e - g).max() / max(1.0, float(np.abs(e).max()))))
    if not worst < TOLERANCE:
        raise SystemExit(f"{name}: ONNX Runtime differs from torch by {worst:.3g} (relative), refusing to write")
    out = out_dir / f"{name}.onnx"
    write_bytes_atomic(out, data)
    return {"file": str(out), "bytes": len(data), "fp16_constants": halved, "max_rel_diff": worst}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=list(ROUTE_NETWORKS), help="safetensors names (no suffix)")
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args(argv)
    for name in args.names:
        if not (WEIGHTS_DIR / f"{name}.safetensors").is_file():
            print(f"{name}: no such converted network in {WEIGHTS_DIR}", file=sys.stderr)
            return 2
        print(export(name, args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
