"""`p3m demo` wiring at toy scale: synth -> benchmark -> register -> matte, stage skipping on a re-run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from p3m import cli, io

TINY = [
    "train.train.max_steps=4",
    "train.train.save_every=2",
    "train.train.log_every=1",
    "methods=[{name: P3M-Net R34, type: p3m-r34, width: 8}, {name: BASIC, type: basic-r34, width: 8}]",
    "report.grid_samples=1",
]


def _demo(out: Path, portraits: Path, *extra: str) -> int:
    argv = [
        "demo",
        "-o",
        str(out),
        "--train-images",
        "6",
        "--test-images",
        "2",
        "--size",
        "64",
        "--photos",
        str(portraits),
        "--quiet",
    ]
    for item in TINY:
        argv += ["--set", item]
    return cli.main(argv + list(extra))


@pytest.mark.slow
def test_demo_runs_every_stage_and_skips_them_on_rerun(tmp_path, home, capsys, monkeypatch):
    from p3m.commands import benchmark, matte, synth
    from p3m.data.synth import render_portrait

    def verb(args):
        raise AssertionError("p3m demo calls the library, never the CLI verbs")

    for module in (synth, benchmark, matte):  # the demo must not drive the CLI
        monkeypatch.setattr(module, "run", verb)

    portraits = tmp_path / "portraits"
    portrait = render_portrait(np.random.default_rng(3), (96, 64))
    io.write_image(portraits / "me.jpg", portrait.image)
    out = tmp_path / "demo"

    assert _demo(out, portraits) == 0
    printed = capsys.readouterr().out
    for verb in ("$ p3m synth", "$ p3m benchmark", "$ p3m matte"):
        assert verb in printed
    report = out / "benchmark" / "report" / "report.html"
    assert report.is_file() and str(report) in printed
    assert "| P3M-Net R34 |" in printed and "| BASIC |" in printed  # the table is printed
    # the trained P3M-Net is registered and used for the synthetic cutouts; the real photos get the default model
    from p3m.models import store as model_store

    assert "demo-r34" in [m.name for m in model_store.list_weights()]
    mattes = [line for line in printed.splitlines() if line.startswith("$ p3m matte")]
    assert len(mattes) == 2 and "--weights" not in mattes[0] and "--weights demo-r34" in mattes[1]
    alpha = io.read_mask(out / "cutouts" / "portraits" / "me_alpha.png")
    assert alpha.shape == (96, 64)
    rgba_files = sorted((out / "cutouts" / "synthetic").glob("*_rgba.png"))
    assert len(rgba_files) == 2

    # a re-run skips the finished stages: same checkpoint file, untouched
    ckpt = next((out / "benchmark" / "train").glob("*/p3m-net-r34/last.safetensors"))
    stamp = ckpt.stat().st_mtime_ns
    assert _demo(out, portraits) == 0
    printed = capsys.readouterr().out
    assert "[skip] dataset already" in printed
    assert ckpt.stat().st_mtime_ns == stamp


def test_demo_without_config_is_a_clear_error(tmp_path, home, capsys):
    code = cli.main(["demo", "-o", str(tmp_path / "d"), "--config", str(tmp_path / "missing.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and "missing.yaml" in err and "Traceback" not in err
