"""`p3m demo` wiring at toy scale: synth -> real photo -> benchmark -> register -> matte, stage skipping on a re-run.

The real-photo stage runs as on a fresh clone: scikit-image's astronaut (public domain) with the default model."""

from __future__ import annotations

from pathlib import Path

import pytest

from p3m import cli, io

TINY = [
    "train.train.max_steps=4",
    "train.train.save_every=2",
    "train.train.log_every=1",
    "methods=[{name: P3M-Net R34, type: p3m-r34, width: 8}, {name: BASIC, type: basic-r34, width: 8}]",
    "report.grid_samples=1",
]


def _demo(out: Path, *extra: str) -> int:
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
        "--quiet",
    ]
    for item in TINY:
        argv += ["--set", item]
    return cli.main(argv + list(extra))


@pytest.mark.slow
def test_demo_runs_every_stage_and_skips_them_on_rerun(tmp_path, home, capsys, monkeypatch):
    from p3m.commands import benchmark, matte, synth
    from p3m.models import store as model_store

    def verb(args):
        raise AssertionError("p3m demo calls the library, never the CLI verbs")

    for module in (synth, benchmark, matte):  # the demo must not drive the CLI
        monkeypatch.setattr(module, "run", verb)

    # a demo-r34 registered by a demo run elsewhere (another checkout shares the model folder)
    elsewhere = tmp_path / "elsewhere.safetensors"
    elsewhere.write_bytes(b"not used")
    model_store.register(elsewhere, "demo-r34", arch="p3m-r34", origin="p3m demo (/other/checkout/demo_output)")
    out = tmp_path / "demo"

    assert _demo(out) == 0
    printed = capsys.readouterr().out
    for verb in ("$ p3m synth", "$ p3m benchmark", "$ p3m matte"):
        assert verb in printed
    report = out / "benchmark" / "report" / "report.html"
    assert report.is_file() and str(report) in printed
    assert "| P3M-Net R34 |" in printed and "| BASIC |" in printed  # the table is printed
    # the real photo is matted with the default model, first, and the trained P3M-Net only on synthetic portraits
    mattes = [line for line in printed.splitlines() if line.startswith("$ p3m matte")]
    assert len(mattes) == 2 and "--weights" not in mattes[0] and "--weights demo-r34" in mattes[1]
    assert printed.index(mattes[0]) < printed.index("$ p3m benchmark")
    alpha = io.read_mask(out / "cutouts" / "photos" / "astronaut_alpha.png")
    assert alpha.shape == (512, 512) and alpha.mean() > 40  # the astronaut is found: a good part of the frame
    assert "portrait-cf" in printed  # the model used on the real photo is named
    # the report shows the real photo first, with the command that mattes one's own photos
    markdown = (out / "benchmark" / "report" / "report.md").read_text()
    assert markdown.index("## Real photos, default model") < markdown.index("## P3M-Net vs BASIC")
    assert "p3m matte photo.jpg -o out" in markdown and (out / "benchmark" / "report" / "photos.jpg").is_file()
    assert "photos.jpg" in markdown and html_has_image(report, "Real photos")
    # demo-r34 now names this run's model, and the demo said what it replaced
    entry = next(m for m in model_store.list_weights() if m.name == "demo-r34")
    assert entry.origin == f"p3m demo ({out})"
    assert "note: `demo-r34` was registered by p3m demo (/other/checkout/demo_output)" in printed
    rgba_files = sorted((out / "cutouts" / "synthetic").glob("*_rgba.png"))
    assert len(rgba_files) == 2
    # the last words: the one command to matte one's own photos with the default model
    assert printed.rstrip().splitlines()[-1].strip() == "p3m matte photo.jpg -o out"

    # a re-run skips the finished stages: same checkpoint file, untouched; no replacement to report
    ckpt = next((out / "benchmark" / "train").glob("*/p3m-net-r34/last.safetensors"))
    stamp = ckpt.stat().st_mtime_ns
    assert _demo(out) == 0
    printed = capsys.readouterr().out
    assert "[skip] dataset already" in printed and "note:" not in printed
    assert ckpt.stat().st_mtime_ns == stamp


def html_has_image(report: Path, section: str) -> bool:
    """The self-contained page shows the section with an embedded image right after its heading."""
    page = report.read_text()
    start = page.index(f"<h2>{section}")
    return "<img src='data:image/jpeg;base64," in page[start : page.index("<h2>P3M-Net vs BASIC")]


def test_demo_without_config_is_a_clear_error(tmp_path, home, capsys):
    code = cli.main(["demo", "-o", str(tmp_path / "d"), "--config", str(tmp_path / "missing.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and "missing.yaml" in err and "Traceback" not in err
