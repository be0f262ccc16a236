"""The PyTorch port of MediaPipe's selfie segmentation against MediaPipe's own TFLite run of the graph.

tests/data/selfie_<variant>_mediapipe.png were written by tools/mediapipe_reference_output.py (MediaPipe 0.10.21's
ImageSegmenter, TFLite + XNNPACK, on the stored input at the model's input size): 16-bit, value / 65535.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from p3m import models
from p3m.models.graph_session import open_graph
from p3m.models.selfie import SelfieSegmentation, weights_path
from tests.paths import TEST_DATA

SOURCE_SHA256 = {
    "general": "8d13b7fae74af625c641226813616a2117bd6bca19eb3b75574621fc08557f27",
    "landscape": "4aafe6223bb8dac6fac8ca8ed56852870a33051ef3f6238822d282a109962894",
}


def _run(net: torch.nn.Module, rgb: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        return net(x)[0, 0].numpy()


# the landscape variant is not used by the built-in route: it ships no ONNX graph
@pytest.mark.parametrize(
    ("variant", "runtime"), [("general", "torch"), ("general", "onnxruntime"), ("landscape", "torch")]
)
def test_port_matches_mediapipe_tflite_output(variant, runtime):
    rgb = cv2.cvtColor(cv2.imread(str(TEST_DATA / f"selfie_{variant}_input.png")), cv2.COLOR_BGR2RGB)
    ref = (
        cv2.imread(str(TEST_DATA / f"selfie_{variant}_mediapipe.png"), cv2.IMREAD_UNCHANGED).astype(np.float64) / 65535
    )
    net = open_graph(weights_path(variant), runtime=runtime)  # the port, or the ONNX graph exported from it
    assert rgb.shape[:2] == net.input_size and net.runtime == runtime
    (out,) = net(rgb.transpose(2, 0, 1)[None] / np.float32(255.0))
    out = out[0, 0]
    assert out.shape == ref.shape
    # 16-bit storage quantises by <= 7.7e-6; measured port difference 2.1e-5 (general), 4.2e-5 (landscape)
    assert np.abs(out - ref).max() < 1e-4
    # the stored image holds a person and background: the comparison is not between two blank masks
    assert (ref > 0.9).mean() > 0.1 and (ref < 0.1).mean() > 0.1


@pytest.mark.parametrize("variant", ["general", "landscape"])
def test_shipped_weights_record_their_source(variant):
    from safetensors import safe_open

    with safe_open(str(weights_path(variant)), framework="pt") as f:
        meta = f.metadata()
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    assert meta["source_sha256"] == SOURCE_SHA256[variant]
    assert meta["licence"] == "Apache-2.0"
    assert dtypes == {torch.float16}  # stored precision kept: the conversion is exact
    graph = json.loads(meta["graph"])
    ops = {op["op"] for op in graph["ops"]}
    assert "dequantize" not in ops and "conv_transpose_bias" in ops
    assert graph["inputs"][0]["shape"][1:] == [*SelfieSegmentation.from_file(weights_path(variant)).input_size, 3]
    notice = (weights_path(variant).parent / "NOTICE").read_text()
    assert SOURCE_SHA256[variant] in notice and "Apache License" in notice


def test_wrong_input_size_and_unknown_variant_are_refused():
    net = models.create("mediapipe-selfie")
    with pytest.raises(ValueError, match="expected input of"):
        net(torch.zeros(1, 3, 128, 128))
    with pytest.raises(ValueError, match="unknown variant"):
        models.create("mediapipe-selfie", variant="portrait")


def test_batch_runs_each_image_independently():
    rgb = cv2.cvtColor(cv2.imread(str(TEST_DATA / "selfie_general_input.png")), cv2.COLOR_BGR2RGB)
    net: SelfieSegmentation = models.create("mediapipe-selfie").eval()
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        both = net(torch.cat([x, x.flip(-1)]))
        single = net(x)
    assert torch.allclose(both[:1], single, atol=1e-4)  # conv algorithms differ with batch size (~1e-5)
