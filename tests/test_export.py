"""ONNX export: scatter unpooling equals max_unpool2d, dynamic H/W, parity with torch through the
strategies, the onnxruntime backend of Matter and `p3m matte`, and the `p3m export` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from p3m import models
from p3m.commands import export as export_cmd
from p3m.commands import matte as matte_cmd
from p3m.errors import P3MError
from p3m.infer.export import export_onnx, scatter_unpool2d, verify_onnx
from p3m.infer.matter import Matter
from p3m.infer.runtime import ONNX_OUTPUT_NAMES, OnnxNet, TorchNet
from p3m.infer.strategies import predict
from p3m.models import create
from p3m.models import store as model_store
from p3m.models.checkpoint import save_checkpoint

torch.set_num_threads(1)


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="p3m")
    sub = parser.add_subparsers(dest="command")
    for module in (export_cmd, matte_cmd):
        module.add_parser(sub).set_defaults(_run=module.run)
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except P3MError as exc:
        print(f"p3m {args.command}: error: {exc}", file=sys.stderr)
        return 2


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return create("p3m-r34", width=16).eval()


@pytest.fixture(scope="module")
def onnx_file(tiny, tmp_path_factory) -> tuple[Path, dict]:
    """An ONNX export of ``tiny`` (~3 s on the 2-core CPU): every test that uses it is marked slow."""
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    report = export_onnx(tiny, path)
    return path, report


def test_scatter_unpool_equals_max_unpool2d() -> None:
    x = torch.randn(2, 5, 12, 20)
    pooled, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)  # the encoder's overlapping pools
    flat = idx.flatten(2).reshape(-1, idx.shape[2] * idx.shape[3])
    assert any(len(torch.unique(r)) < len(r) for r in flat)  # duplicate targets: write order matters
    want = F.max_unpool2d(pooled, idx, kernel_size=2, stride=2)
    got = scatter_unpool2d(pooled, idx)
    assert torch.equal(got, want)


@pytest.mark.slow
def test_export_parity_and_dynamic_shapes(tiny, onnx_file) -> None:
    path, report = onnx_file
    assert report["max_abs_diff"] < 1e-4 and report["logits_rel_diff"] < 1e-4
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert [o.name for o in proto.graph.output] == list(ONNX_OUTPUT_NAMES)
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[2:] == ["height", "width"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["arch"] == "p3m-r34"
    # the input contract and licence registered beside the architecture (p3m.models.registry)
    assert meta["input_normalisation"] == "x/255, ImageNet mean/std, RGB, H and W multiples of 32"
    assert meta["licence"] == models.arch_config("p3m-r34").licence
    assert "MaxUnpool" not in {n.op_type for n in proto.graph.node}
    for size in ((64, 96), (160, 128)):  # sizes other than the traced one
        assert verify_onnx(tiny, path, size=size)["max_abs_diff"] < 1e-4


@pytest.mark.slow
def test_onnx_backend_matches_torch_through_strategies(tiny, onnx_file) -> None:
    path, _ = onnx_file
    rng = np.random.default_rng(0)
    img = (rng.random((100, 140, 3)) * 255).astype(np.uint8)
    ort_net, torch_net = OnnxNet(path), TorchNet(tiny, "cpu", "fp32")
    for strategy in ("resize", "hybrid", "highres"):
        a = predict(ort_net, img, strategy, resize_mode="paper")
        b = predict(torch_net, img, strategy, resize_mode="paper")
        assert np.abs(a - b).max() < 1e-4


@pytest.mark.slow
def test_matter_and_cli_with_onnxruntime_backend(onnx_file, tmp_path, monkeypatch) -> None:
    path, _ = onnx_file
    matter = Matter(weights=path, backend="onnxruntime")
    assert matter.backend == "onnxruntime" and matter.arch == "p3m-r34"
    img = (np.random.default_rng(1).random((64, 96, 3)) * 255).astype(np.uint8)
    assert matter.matte(img, foreground=True).cutout.shape == (64, 96, 4)
    src = tmp_path / "in.png"
    from PIL import Image

    Image.fromarray(img).save(src)
    code = run_cli(
        ["matte", str(src), "-o", str(tmp_path / "out"), "--backend", "onnxruntime", "--weights", str(path), "--quiet"]
    )
    assert code == 0 and (tmp_path / "out" / "in_alpha.png").is_file()
    with pytest.raises(P3MError, match=r"needs --backend onnxruntime|onnxruntime"):
        Matter(weights=path, backend="torch")


@pytest.mark.slow
def test_export_command(tiny, tmp_path, monkeypatch, capsys) -> None:
    ckpt = save_checkpoint(tiny, tmp_path / "ck" / "tiny")
    model_store.register(ckpt, "tiny", arch="p3m-r34", origin="test")
    out = tmp_path / "model.onnx"
    assert run_cli(["export", "--weights", "tiny", "--arch", "p3m-r34", "-o", str(out), "--format", "onnx"]) == 0
    printed = capsys.readouterr().out
    assert "max |alpha diff|" in printed and out.is_file()
    assert run_cli(["export", "--weights", "tiny", "-o", str(out)]) == 2  # exists, no --overwrite
    assert run_cli(["export", "--weights", "tiny", "-o", str(tmp_path / "model.txt")]) == 2
    assert run_cli(["export", "--weights", "tiny", "--arch", "p3m-vitae-s", "-o", str(tmp_path / "b.onnx")]) == 2
    # an exported model dropped in the folder is listed and usable by name
    (tmp_path / "home" / "models").mkdir(parents=True, exist_ok=True)
    out.replace(tmp_path / "home" / "models" / "exported.onnx")
    entries = {e.name: e for e in model_store.list_weights()}
    assert entries["exported"].format == "onnx" and entries["exported"].arch == "p3m-r34"
    assert Matter(weights="exported").backend == "onnxruntime"


@pytest.mark.slow
def test_the_synthetic_data_warning_travels_into_the_onnx_file(tiny, tmp_path, capsys) -> None:
    """Weights trained on drawn portraits (here: registered by `p3m demo`) keep their warning when exported: it is
    in the ONNX metadata, and every use of the .onnx file warns as the weights do."""
    ckpt = save_checkpoint(tiny, tmp_path / "ck" / "drawn")
    model_store.register(ckpt, "demo-r34", arch="p3m-r34", origin="p3m demo (/somewhere/demo_output)")
    out = tmp_path / "p3m.onnx"
    assert run_cli(["export", "--weights", "demo-r34", "-o", str(out)]) == 0
    assert "trained on synthetic (drawn) portraits" in capsys.readouterr().err
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["dataset_synthetic"] == "true" and props["source_weights"] == "demo-r34.safetensors"
    with pytest.warns(UserWarning, match="synthetic"):
        matter = Matter(weights=out, backend="onnxruntime")
    assert "p3m.onnx was trained on synthetic" in matter.model_warning
    src = tmp_path / "in.png"
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(src)
    code = run_cli(["matte", str(src), "-o", str(tmp_path / "o"), "--backend", "onnxruntime", "--weights", str(out)])
    assert code == 0 and "warning: p3m.onnx was trained on synthetic" in capsys.readouterr().err
    # an export of other weights carries no such flag
    clean = save_checkpoint(tiny, tmp_path / "ck" / "clean")
    assert run_cli(["export", "--weights", str(clean), "-o", str(tmp_path / "clean.onnx")]) == 0
    assert {p.key: p.value for p in onnx.load(str(tmp_path / "clean.onnx")).metadata_props}["dataset_synthetic"] == (
        "false"
    )
    assert Matter(weights=tmp_path / "clean.onnx").model_warning == ""
