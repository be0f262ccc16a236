"""The TFLite operator executor (p3m.models.tflite_graph) against literal NHWC references written here in numpy.

Each layout-sensitive operator runs in a one-op graph on an NCHW tensor and is compared with what TensorFlow
Lite computes on the same values in NHWC (the formulas of the TFLite reference kernels, written out).
Whole-network parity with the TFLite runtime is in tests/test_selfie.py, test_face_*.py and test_pose.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from p3m.models.tflite_graph import TFLiteGraph, depth_to_space, same_pad, unpack


def _one_op(op: dict, shape_nhwc: list[int], consts: dict[str, torch.Tensor] | None = None) -> TFLiteGraph:
    graph = {"inputs": [{"name": "x", "shape": shape_nhwc}], "outputs": ["y"], "ops": [{**op, "out": "y"}]}
    return TFLiteGraph(graph, consts or {})


def _nchw(x_nhwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))


def _nhwc(y: torch.Tensor) -> np.ndarray:
    return y.numpy().transpose(0, 2, 3, 1) if y.dim() == 4 else y.numpy()


RNG = np.random.default_rng(0)


def test_same_padding_puts_the_odd_pixel_after():
    # TensorFlow SAME, stride 2, kernel 3, even size: total padding 1, all of it after (bottom/right)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    y = same_pad(x, (3, 3), (2, 2))
    assert y.shape == (1, 1, 5, 5)
    assert torch.equal(y[..., :4, :4], x) and y[..., 4, :].abs().sum() == 0 and y[..., :, 4].abs().sum() == 0
    # stride 1, kernel 5: two on each side
    assert same_pad(x, (5, 5), (1, 1)).shape == (1, 1, 8, 8)


def test_depth_to_space_follows_tensorflow_channel_order():
    x = RNG.standard_normal((2, 3, 4, 12)).astype(np.float32)  # NHWC, block 2 -> 3 output channels
    block, c_out = 2, 3
    ref = np.zeros((2, 6, 8, 3), np.float32)
    for h in range(3):
        for w in range(4):
            for i in range(block):
                for j in range(block):
                    ref[:, h * block + i, w * block + j, :] = x[
                        :, h, w, (i * block + j) * c_out : (i * block + j + 1) * c_out
                    ]
    np.testing.assert_array_equal(_nhwc(depth_to_space(_nchw(x), block)), ref)
    net = _one_op({"op": "depth_to_space", "in": ["x"], "block_size": 2}, [1, 3, 4, 12])
    np.testing.assert_array_equal(_nhwc(net(_nchw(x))[0]), ref)


def test_reshape_flattens_in_nhwc_order_and_follows_the_batch():
    x = RNG.standard_normal((3, 4, 4, 6)).astype(np.float32)
    net = _one_op({"op": "reshape", "in": ["x"], "shape": [1, 48, 2]}, [1, 4, 4, 6])
    np.testing.assert_array_equal(net(_nchw(x))[0].numpy(), x.reshape(3, 48, 2))
    back = _one_op({"op": "reshape", "in": ["x"], "shape": [1, 2, 8, 6]}, [1, 4, 4, 6])
    np.testing.assert_array_equal(_nhwc(back(_nchw(x))[0]), x.reshape(3, 2, 8, 6))


def test_concatenation_maps_the_nhwc_axis():
    x = RNG.standard_normal((1, 2, 3, 4)).astype(np.float32)
    for axis in (1, 2, 3, -1):
        net = _one_op({"op": "concatenation", "in": ["x", "x"], "axis": axis, "activation": "none"}, [1, 2, 3, 4])
        np.testing.assert_array_equal(_nhwc(net(_nchw(x))[0]), np.concatenate([x, x], axis=axis))


def test_pad_takes_nhwc_paddings_including_channels():
    x = RNG.standard_normal((1, 3, 4, 2)).astype(np.float32)
    paddings = [[0, 0], [1, 2], [0, 3], [0, 5]]
    net = _one_op({"op": "pad", "in": ["x"], "paddings": paddings}, [1, 3, 4, 2])
    np.testing.assert_array_equal(_nhwc(net(_nchw(x))[0]), np.pad(x, paddings))


def test_same_max_pooling_never_picks_the_padding():
    x = -1.0 - RNG.random((1, 5, 5, 2)).astype(np.float32)  # all negative: a zero pad would win the max
    net = _one_op(
        {"op": "max_pool_2d", "in": ["x"], "kernel": [2, 2], "stride": [2, 2], "padding": "same", "activation": "none"},
        [1, 5, 5, 2],
    )
    ref = np.full((1, 3, 3, 2), -np.inf, np.float32)
    for i in range(3):
        for j in range(3):
            ref[:, i, j] = x[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].max(axis=(1, 2))
    np.testing.assert_array_equal(_nhwc(net(_nchw(x))[0]), ref)


def test_fully_connected_flattens_nhwc_and_mean_reduces_spatially():
    x = RNG.standard_normal((2, 2, 3, 4)).astype(np.float32)
    w = RNG.standard_normal((5, 24)).astype(np.float32)
    b = RNG.standard_normal(5).astype(np.float32)
    net = _one_op(
        {"op": "fully_connected", "in": ["x", "w", "b"], "activation": "relu6", "keep_num_dims": False},
        [1, 2, 3, 4],
        {"w": torch.from_numpy(w), "b": torch.from_numpy(b)},
    )
    ref = np.clip(x.reshape(2, 24) @ w.T + b, 0, 6)
    np.testing.assert_allclose(net(_nchw(x))[0].numpy(), ref, rtol=1e-5, atol=1e-5)
    mean = _one_op({"op": "mean", "in": ["x"], "axes": [1, 2], "keep_dims": False}, [1, 2, 3, 4])
    np.testing.assert_allclose(mean(_nchw(x))[0].numpy(), x.mean(axis=(1, 2)), rtol=1e-6)


def test_prelu_uses_a_slope_per_channel():
    x = RNG.standard_normal((1, 3, 3, 4)).astype(np.float32)
    alpha = np.array([0.1, 0.2, 0.5, 2.0], np.float32)
    net = _one_op({"op": "prelu", "in": ["x", "a"]}, [1, 3, 3, 4], {"a": torch.from_numpy(alpha)})
    np.testing.assert_allclose(_nhwc(net(_nchw(x))[0]), np.where(x >= 0, x, x * alpha), rtol=1e-6)


def test_packed_constants_unpack_exactly():
    dense = RNG.standard_normal((6, 5)).astype(np.float16)
    dense[RNG.random((6, 5)) < 0.6] = 0
    dense[0, 0] = np.float16(-0.0)  # a stored signed zero survives
    flat = dense.reshape(-1)
    nonzero = flat.view(np.uint16) != 0
    out = unpack(torch.from_numpy(flat[nonzero]), torch.from_numpy(np.packbits(nonzero)), [6, 5])
    assert out.dtype == torch.float16
    np.testing.assert_array_equal(out.numpy().view(np.uint16), dense.view(np.uint16))
    with pytest.raises(ValueError, match="values for"):
        unpack(torch.from_numpy(flat[nonzero][:-1]), torch.from_numpy(np.packbits(nonzero)), [6, 5])


def test_bad_graphs_and_inputs_are_refused():
    with pytest.raises(NotImplementedError, match="not ported: gather"):
        _one_op({"op": "gather", "in": ["x"]}, [1, 2, 2, 1])
    net = _one_op({"op": "relu", "in": ["x"]}, [1, 4, 4, 3])
    with pytest.raises(ValueError, match=r"expected input of \(B, 3, 4, 4\)"):
        net(torch.zeros(1, 3, 5, 4))
    assert torch.equal(net(torch.tensor([-1.0, 2.0]).repeat(24).reshape(1, 3, 4, 4))[0].min(), torch.tensor(0.0))


def test_every_shipped_network_records_its_source_and_licence():
    import json

    from safetensors import safe_open

    from p3m.models.tflite_graph import WEIGHTS_DIR, load_graph

    notice = (WEIGHTS_DIR / "NOTICE").read_text()
    licence = (WEIGHTS_DIR / "LICENSE-mediapipe.txt").read_text()
    assert "Apache License" in licence and "Version 2.0" in licence
    files = sorted(WEIGHTS_DIR.glob("*.safetensors"))
    assert len(files) >= 5
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
            dtypes = {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
        assert meta["licence"] == "Apache-2.0" and meta["source"] in notice, path.name
        assert meta["source_sha256"] in notice and len(meta["source_sha256"]) == 64, path.name
        packed = json.loads(meta["graph"]).get("packed", {})
        assert dtypes == ({torch.float16, torch.uint8} if packed else {torch.float16}), path.name  # fp16 as stored
        graph, tensors, _ = load_graph(path)
        used = {name for op in graph["ops"] for name in op["in"]}
        assert set(tensors) <= used, path.name  # every stored constant is an operator's input
