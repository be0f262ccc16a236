"""Tests for the PPT benchmark: method interface, runner stages (skip / force / resume hashes), config errors,
the report (JSON, CSV, Markdown, self-contained HTML rendered in headless Chromium) and `p3m benchmark`.

One tiny benchmark (64-px synthetic images, width-8 models, 3 training steps) is run once per module and re-run
to check stage skipping.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re

import numpy as np
import pytest
import torch

from p3m import models
from p3m.bench import published
from p3m.bench.compare import MIN_PAIRS, compare_p3m_basic, paired_difference
from p3m.bench.config import BenchmarkConfig, SettingConfig, load_benchmark_config
from p3m.bench.methods import ClassicalMethod, NetworkMethod
from p3m.bench.runner import DONE_MARKER, run_benchmark
from p3m.errors import BenchmarkConfigError, DatasetError, P3MError
from tests.paths import CHROMIUM

torch.set_num_threads(1)

TINY = {
    "name": "tiny",
    "dataset": {"synth": {"n_train": 6, "n_test_p": 2, "n_test_np": 2, "size": [64, 64], "seed": 3}},
    "train": {
        "data": {"crop_sizes": [64], "resize": 64, "trimap_kernel": [3, 5], "workers": 0, "pin_memory": False},
        "optim": {"lr": 5.0e-4},
        "train": {"epochs": 100, "max_steps": 2, "batch_size": 2, "seed": 0, "log_every": 1, "save_every": 100},
        "val": {"every": 0},
    },
    "inference": {"ratio": 1.0},
    "evaluation": {"fast": True},
    "report": {"grid_samples": 1, "grid_tile": 64},
    "methods": [
        {"name": "P3M-Net R34", "type": "p3m-r34", "width": 8},
        {"name": "BASIC", "type": "basic-r34", "width": 8},
        {"name": "MODNet", "type": "modnet-mbv2", "width": 8},
        {"name": "Closed-form", "type": "closed-form", "max_images": 1, "max_side": 64},
    ],
}


def _tiny(**changes) -> dict:
    cfg = json.loads(json.dumps(TINY))
    cfg.update(changes)
    return cfg


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """One tiny benchmark run (~20 s on the 2-core CPU): every test that uses it is marked slow."""
    out = tmp_path_factory.mktemp("bench")
    lines: list[str] = []
    result = run_benchmark(_tiny(), out, progress=False, log=lines.append)
    return out, result, lines


# ------------------------------------------------------------------------------------------ methods


@pytest.mark.slow
def test_closed_form_recovers_a_known_alpha():
    """Composite alpha*F + (1-alpha)*B with flat colours: closed-form matting recovers the ramp closely."""
    h, w = 48, 64
    alpha = np.tile(np.clip((np.arange(w) - 16) / 32, 0, 1), (h, 1))
    fg, bg = np.array([220, 40, 30], float), np.array([20, 60, 200], float)
    image = (alpha[..., None] * fg + (1 - alpha[..., None]) * bg).round().astype(np.uint8)
    trimap = np.full((h, w), 128, np.uint8)
    trimap[:, :12] = 0
    trimap[:, 52:] = 255
    pred = ClassicalMethod("cf", "closed-form", max_side=None).predict(image, trimap)
    assert pred.shape == (h, w) and pred.dtype == np.float32
    assert np.abs(pred - alpha).max() < 0.03
    assert np.all(pred[trimap == 0] == 0) and np.all(pred[trimap == 255] == 1)
    # solving at a reduced size keeps the known regions exact and the band close
    small = ClassicalMethod("cf", "closed-form", max_side=32).predict(image, trimap)
    assert np.all(small[trimap == 0] == 0) and np.all(small[trimap == 255] == 1)
    assert np.abs(small - alpha).mean() < 0.03


def test_classical_method_edge_cases():
    image = np.zeros((32, 32, 3), np.uint8)
    m = ClassicalMethod("knn", "knn")
    assert m.needs_trimap and m.kind == "trimap-based"
    with pytest.raises(P3MError, match="trimap"):
        m.predict(image)
    full = np.full((32, 32), 255, np.uint8)
    assert np.all(m.predict(image, full) == 1)  # nothing unknown: the trimap is the answer
    only_fg = np.full((32, 32), 128, np.uint8)
    only_fg[:4] = 255
    assert np.all(m.predict(image, only_fg) == 1)  # no background constraint: the band takes the known side
    with pytest.raises(P3MError, match="unknown classical solver"):
        ClassicalMethod("x", "nope")


def test_network_method_interface():
    net = models.create("modnet-mbv2", width=8)
    method = NetworkMethod("MODNet", net, strategy="resize", ratio=0.5)
    image = np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    alpha = method.predict(image)
    assert alpha.shape == (70, 90) and alpha.dtype == np.float32
    assert alpha.min() >= 0 and alpha.max() <= 1
    assert method.kind == "trimap-free" and not method.needs_trimap
    assert method.info["params"] == sum(p.numel() for p in net.parameters())
    with pytest.raises(P3MError, match="unknown strategy"):
        NetworkMethod("x", net, strategy="magic")


# ------------------------------------------------------------------------------------------ config errors


def test_unknown_method_type_is_a_clear_config_error(tmp_path):
    cfg = _tiny(methods=[{"name": "Magic", "type": "magic-net"}])
    with pytest.raises(BenchmarkConfigError, match=r"unknown method type 'magic-net'; available: p3m-r34"):
        load_benchmark_config(cfg)


def test_config_lists_every_problem():
    cfg = _tiny(test_splits=["P3M-500-X"], bogus=1, settings=[{"name": "B", "obfuscation": "paint"}])
    with pytest.raises(BenchmarkConfigError) as err:
        load_benchmark_config(cfg)
    msg = str(err.value)
    assert "P3M-500-X" in msg and "'bogus'" in msg and "paint" in msg and "\n" not in msg


def test_config_is_typed_and_every_problem_is_one_line():
    cfg = _tiny(
        report={"grid_samples": "two"},
        inference={"ratio": "half", "strategy": "magic"},
        methods=[{"type": "knn", "max_side": "big", "extra": 1}, {"name": "KNN", "type": "knn"}],
    )
    with pytest.raises(BenchmarkConfigError) as err:
        load_benchmark_config(cfg)
    msg = str(err.value)
    assert msg.startswith("invalid benchmark config: ") and "\n" not in msg
    for needle in (
        "report.grid_samples has the wrong type: 'two'",
        "inference.ratio has the wrong type: 'half'",
        "inference.strategy must be one of resize, hybrid, highres, got 'magic'",
        "unknown key 'methods[0].extra'",
        "methods[0].max_side has the wrong type: 'big'",
        "method names must be unique",
    ):
        assert needle in msg, needle


def test_config_sections_defaults_and_builtin_recipes(tmp_path, monkeypatch):
    from p3m.bench.config import MethodConfig

    cfg = load_benchmark_config(_tiny(settings=None, evaluation=None, inference={"ratio": 1}))
    assert [(s.name, s.label, s.obfuscation) for s in cfg.settings] == [("B", "B", "none")]
    assert cfg.evaluation.fast is False and cfg.inference.ratio == 1.0 and cfg.inference.strategy == "resize"
    assert cfg.methods[0] == MethodConfig(name="P3M-Net R34", type="p3m-r34", width=8)
    assert load_benchmark_config(cfg) == cfg  # a BenchmarkConfig goes through the same checks unchanged
    monkeypatch.chdir(tmp_path)  # the recipes ship in the package
    demo = load_benchmark_config("ppt-demo")
    assert demo.name == "ppt-demo" and [m.type for m in demo.methods][:3] == ["p3m-r34", "basic-r34", "modnet-mbv2"]
    real = load_benchmark_config("ppt-p3m10k", ["dataset.root=/data/P3M-10k"])
    assert real.dataset.root == "/data/P3M-10k" and real.train["train"]["epochs"] == 150
    with pytest.raises(BenchmarkConfigError, match=r"no built-in benchmark recipe 'ppt' \(built-in: ppt-demo"):
        load_benchmark_config("ppt")


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(BenchmarkConfigError, match=r"dataset\.root is missing"):
        load_benchmark_config(_tiny(dataset={}))
    with pytest.raises(DatasetError, match="not a folder"):
        run_benchmark(
            _tiny(dataset={"root": str(tmp_path / "nowhere")}), tmp_path / "out", progress=False, log=lambda s: None
        )
    assert not (tmp_path / "out").exists()  # nothing written before the dataset is found


def test_cli_reports_config_errors_in_one_line(tmp_path, capsys):
    from p3m.commands import benchmark

    config = tmp_path / "bad.yaml"
    config.write_text("name: bad\ndataset: {root: %s}\nmethods: [{name: X, type: nope}]\n" % (tmp_path / "none"))
    parser = argparse.ArgumentParser(prog="p3m")
    benchmark.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["benchmark", str(config), "-o", str(tmp_path / "out")])
    with pytest.raises(P3MError) as err:
        benchmark.run(args)
    assert "unknown method type 'nope'" in str(err.value) and str(config) in str(err.value)
    # through the real entry point once the verb is wired: exit code 2, one line on stderr
    from p3m import cli

    if "benchmark" in cli.COMMANDS:
        assert cli.main(["benchmark", str(config)]) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and "unknown method type" in lines[0]


# ------------------------------------------------------------------------------------------ runner


@pytest.mark.slow
def test_results_cover_every_method_and_split(bench):
    _out, result, _ = bench
    rows = {(r["method"], r["setting"], r["split"]) for r in result.results}
    for name in ("P3M-Net R34", "BASIC", "MODNet"):
        for split in ("P3M-500-P", "P3M-500-NP"):
            assert (name, "B", split) in rows
    assert ("Closed-form", None, "P3M-500-P") in rows
    for r in result.results:
        assert r["images"] == (1 if r["method"] == "Closed-form" else 2)
        assert {"sad", "mse", "mad"} <= set(r["metrics"])
        assert "dim_sad" in r["metrics"] and "sad_t" in r["metrics"]  # both protocols (test trimaps exist)
    by = {(r["method"], r["split"]): r for r in result.results}
    assert by[("P3M-Net R34", "P3M-500-P")]["column"] == "B:B"
    assert by[("P3M-Net R34", "P3M-500-NP")]["column"] == "B:N"
    r34 = models.create("p3m-r34", width=8)
    assert by[("P3M-Net R34", "P3M-500-P")]["params"] == sum(p.numel() for p in r34.parameters())
    assert by[("P3M-Net R34", "P3M-500-P")]["train_steps"] == 2


@pytest.mark.slow
def test_metrics_match_an_independent_sad(bench):
    """The stored mean SAD equals sum|p - a| / 1000 recomputed here from the saved PNGs."""
    from PIL import Image

    out, result, _ = bench
    r = next(x for x in result.results if x["method"] == "BASIC" and x["split"] == "P3M-500-NP")
    pred_dir = out / "predictions" / "b" / "basic" / "P3M-500-NP"
    masks = out / "data" / "validation" / "P3M-500-NP" / "mask"
    sads = []
    for png in sorted(pred_dir.glob("*.png")):
        p = np.asarray(Image.open(png), dtype=np.float64) / 255
        a = np.asarray(Image.open(masks / png.name), dtype=np.float64) / 255
        sads.append(np.abs(p - a).sum() / 1000)
    assert len(sads) == 2 and r["metrics"]["sad"] == pytest.approx(np.mean(sads), rel=1e-9)


@pytest.mark.slow
def test_comparison_is_stated_from_the_numbers(bench):
    _, result, _ = bench
    comp = result.comparison
    rows = comp["rows"]
    assert len(rows) == 2
    for row in rows:
        p = next(r for r in result.results if r["method"] == "P3M-Net R34" and r["split"] == row["split"])
        b = next(r for r in result.results if r["method"] == "BASIC" and r["split"] == row["split"])
        assert (row["p3m_sad"], row["basic_sad"]) == (p["metrics"]["sad"], b["metrics"]["sad"])
        # the paired per-image differences behind the interval are the evaluated ones
        diffs = [b["sad_per_image"][s] - p["sad_per_image"][s] for s in p["sad_per_image"]]
        assert row["pairs"] == 2 and row["difference"] == pytest.approx(np.mean(diffs), rel=1e-12)
        assert row["ci_low"] <= row["difference"] <= row["ci_high"]
        assert row["p3m_better"] is False and row["verdict"] == "within noise"  # 2 images: too few to tell
    assert comp["statement"] in result.report_markdown.read_text()


def _rows(p3m: list[float], basic: list[float]) -> list[dict]:
    stems = [f"s{i}" for i in range(len(p3m))]
    return [
        {
            "type": kind,
            "method": kind,
            "setting": "B",
            "split": "P3M-500-P",
            "metrics": {"sad": float(np.mean(values))},
            "sad_per_image": dict(zip(stems, values, strict=True)),
        }
        for kind, values in (("p3m-r34", p3m), ("basic-r34", basic))
    ]


def test_compare_says_beats_only_above_the_noise():
    cfg = BenchmarkConfig(settings=[SettingConfig(name="B", label="B")], test_splits=["P3M-500-P"])
    rng = np.random.default_rng(0)
    base = rng.uniform(5, 15, 12)
    # P3M-Net lower on every image by 1 +- 0.2: a difference far above the spread
    clear = compare_p3m_basic(_rows(list(base), list(base + rng.normal(1.0, 0.2, 12))), cfg)
    assert clear["all_better"] is True and clear["statement"].startswith("P3M-Net has a lower SAD than BASIC")
    assert clear["rows"][0]["ci_low"] > 0 and "95% bootstrap interval" in clear["statement"]
    # a lower mean, but the images disagree: within noise, and no "beats"
    noisy = rng.normal(0.3, 3.0, 12)
    noise = compare_p3m_basic(_rows(list(base), list(base + noisy)), cfg)
    assert np.mean(noisy) > 0 and noise["rows"][0]["ci_low"] < 0 < noise["rows"][0]["ci_high"]
    assert noise["all_better"] is False and noise["statement"].startswith("No winner")
    assert "within noise" in noise["statement"] and "beats" not in noise["statement"]
    # BASIC clearly lower
    lose = compare_p3m_basic(_rows(list(base + 2.0), list(base)), cfg)
    assert lose["statement"].startswith("P3M-Net does NOT beat BASIC") and "on B:B" in lose["statement"]
    assert lose["rows"][0]["verdict"] == "BASIC lower" and "reasons" in lose["statement"]
    # one image, means only, or fewer than MIN_PAIRS images: no winner
    assert compare_p3m_basic(_rows([1.0], [5.0]), cfg)["rows"][0]["verdict"] == "within noise"
    few = compare_p3m_basic(_rows(list(base[: MIN_PAIRS - 1]), list(base[: MIN_PAIRS - 1] + 1.0)), cfg)["rows"][0]
    assert few["ci_low"] > 0 and few["verdict"] == "within noise"


@pytest.mark.parametrize("needs_trimap", [False, True])
def test_speed_excludes_the_first_call(tmp_path, synth_dataset, needs_trimap):
    """A method whose first call costs 0.5 s (compilation) and every later one nothing: the timed s/img is ~0."""
    import time

    from p3m.bench.config import MethodConfig
    from p3m.bench.methods import Method
    from p3m.bench.runner import _Runner
    from p3m.data.p3m10k import open_dataset

    class Compiling(Method):
        calls = 0

        @property
        def needs_trimap(self) -> bool:
            return needs_trimap

        def predict(self, image, trimap=None):
            assert (trimap is not None) == needs_trimap
            Compiling.calls += 1
            if Compiling.calls == 1:
                time.sleep(0.5)
            return np.zeros(image.shape[:2], np.float32)

    root = synth_dataset(n_train=0, n_test_p=3, n_test_np=0, size=(64, 64), seed=2)
    samples = open_dataset(root, validate=False, require=["P3M-500-P"]).split("P3M-500-P")
    runner = _Runner(BenchmarkConfig(), tmp_path, False, False, lambda line: None)
    seconds, done, failed = runner._predict_all(
        Compiling("c", "closed-form"), MethodConfig(name="c"), "P3M-500-P", samples, tmp_path
    )
    assert (done, failed) == (3, []) and Compiling.calls == 4
    assert seconds < 0.1


def test_paired_difference_matches_a_literal_bootstrap():
    """scipy's percentile bootstrap vs the textbook loop: resample the images with replacement, take the mean of the
    differences, read the 2.5 and 97.5 percentiles (different random draws: equal within the resampling error)."""
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0, 10, 20), rng.uniform(0, 10, 20) + 1.0
    got = paired_difference(a, b)
    diff = b - a
    means = []
    for _ in range(20000):
        idx = rng.integers(0, len(diff), len(diff))
        means.append(diff[idx].mean())
    low, high = np.percentile(means, [2.5, 97.5])
    spread = np.std(means)
    assert got.n == 20 and got.mean == pytest.approx(diff.mean(), rel=1e-12)
    assert abs(got.low - low) < 0.05 * spread and abs(got.high - high) < 0.05 * spread
    assert paired_difference(a, b).low == got.low  # seeded: the same report every time
    same = paired_difference(np.arange(MIN_PAIRS), np.arange(MIN_PAIRS) + 0.5)  # no spread: the difference itself
    assert (same.low, same.high, same.verdict) == (0.5, 0.5, "a lower")


# ------------------------------------------------------------------------------------------ report


@pytest.mark.slow
def test_report_files(bench):
    out, result, _ = bench
    report = out / "report"
    data = json.loads((report / "results.json").read_text())
    assert len(data["results"]) == len(result.results) == 8
    assert data["published"]["p3m_net_r34_ppt"]["P3M-500-P"][0] == 8.73
    rows = list(csv.DictReader(io.StringIO((report / "results.csv").read_text())))
    assert len(rows) == 8 and {"method", "split", "sad", "dim_sad"} <= set(rows[0])
    md = result.report_markdown.read_text()
    assert "| Method | Params (M) | B:B SAD" in md and "B:N SAD" in md
    assert "Published on P3M-10k (not measured here" in md and "8.73" in md and "15.13" in md
    # synthetic 64 px data: no published column beside the measured SADs, and the captions say why and where from
    assert "published SAD" not in result.table_markdown and "64x64 px" in result.table_markdown
    assert "not comparable" in result.table_markdown and "JizhiziLi/P3M core/evaluate.py" in result.table_markdown
    assert "s/img (cpu, warm)" in md and "one-time compilation" in md
    assert "reference 1" not in md  # every source is a paper, table or repository, not a section of a private spec
    assert "Table 2" in md and "issue #11" in md
    assert "DIM protocol" in md and "Trimap-based methods" in md
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (report / link).is_file()
    assert result.table_markdown in md
    html = result.report_html.read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html  # self-contained
    assert html.count("data:image/") >= 3


def test_published_numbers():
    assert published.published_for("p3m-r34", "P3M-500-P")[:2] == (8.73, 0.0026)
    assert published.published_for("p3m-r34", "P3M-500-NP")[:2] == (11.23, None)
    assert published.published_for("basic-r34", "P3M-500-P")[:2] == (15.13, 0.0058)
    assert published.published_for("basic-r34", "P3M-500-NP") is None
    assert published.published_for("modnet-mbv2", "P3M-500-P") is None
    assert published.TRIMAP_BASED["FBA"]["B:B"] == (4.1330, 0.0088)


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("CI"), reason="/usr/bin/chromium not installed")
def test_html_report_renders_in_headless_chromium(bench):
    from playwright.sync_api import sync_playwright

    _, result, _ = bench
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            page = browser.new_page()
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(result.report_html.as_uri())
            page.wait_for_load_state("load")
            widths = page.eval_on_selector_all("img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
            tables = page.eval_on_selector_all("table", "els => els.map(e => e.rows.length)")
            text = page.inner_text("body")
        finally:
            browser.close()
    assert len(widths) >= 3 and all(w > 0 for w in widths)  # bar chart, training curves, grids
    assert len(tables) >= 5 and all(n >= 2 for n in tables)
    assert "P3M-Net R34" in text and "BASIC" in text and "MODNet" in text
    assert all(u.startswith(("file:", "data:")) for u in requests), requests


# ------------------------------------------------------------------------------------------ re-runs (last: they
# rewrite the module's report)


@pytest.mark.slow
def test_rerun_skips_finished_stages(bench, tmp_path):
    out, _, _ = bench
    weights = out / "train" / "b" / "p3m-net-r34" / "last.safetensors"
    before = weights.stat().st_mtime_ns
    lines: list[str] = []
    run_benchmark(_tiny(), out, progress=False, log=lines.append)
    work = [line for line in lines if line.startswith(("[train]", "[predict]", "[evaluate]", "[data]"))]
    assert work and all("skip" in line for line in work), work
    assert weights.stat().st_mtime_ns == before
    # a changed inference setting redoes prediction and evaluation only
    lines.clear()
    run_benchmark(_tiny(inference={"ratio": 0.5}), out, progress=False, log=lines.append)
    assert all("skip" in line for line in lines if line.startswith(("[train]", "[data]")))
    assert any(line.startswith("[predict] P3M-Net") and "skip" not in line for line in lines)
    assert weights.stat().st_mtime_ns == before


@pytest.mark.slow
def test_stage_without_done_marker_is_redone(bench):
    out, _, _ = bench
    marker = out / "predictions" / "b" / "modnet" / "P3M-500-P" / DONE_MARKER
    assert marker.is_file()
    marker.unlink()
    lines: list[str] = []
    run_benchmark(_tiny(inference={"ratio": 0.5}), out, progress=False, log=lines.append)
    assert any(line.startswith("[predict] MODNet (B) on P3M-500-P") and "skip" not in line for line in lines)
    assert any(line.startswith("[evaluate] MODNet (B) on P3M-500-P") and "skip" not in line for line in lines)
    assert "[evaluate] skip: MODNet (B) on P3M-500-NP" in lines
    assert marker.is_file()


@pytest.mark.slow
def test_force_redoes_everything(tmp_path):
    cfg = _tiny(methods=[TINY["methods"][2]])
    out = tmp_path / "forced"
    run_benchmark(cfg, out, progress=False, log=lambda s: None)
    weights = out / "train" / "b" / "modnet" / "last.safetensors"
    before = weights.stat().st_mtime_ns
    lines: list[str] = []
    run_benchmark(cfg, out, force=True, progress=False, log=lines.append)
    work = [line for line in lines if line.startswith(("[train]", "[predict]", "[evaluate]", "[data]"))]
    assert work and not any("skip" in line for line in work)
    assert weights.stat().st_mtime_ns != before


@pytest.mark.slow
def test_interrupted_training_stage_resumes(bench):
    """A training folder with the trainer's resume.pt but no done marker continues instead of starting over."""
    out, _, _ = bench
    folder = out / "train" / "b" / "basic"
    (folder / DONE_MARKER).unlink()
    assert (folder / "resume.pt").is_file()
    lines: list[str] = []
    run_benchmark(_tiny(inference={"ratio": 0.5}), out, progress=False, log=lines.append)
    started = [line for line in lines if line.startswith("[train] BASIC")]
    assert len(started) == 1 and "(resuming)" in started[0]
    assert json.loads((folder / DONE_MARKER).read_text())["resumed"] is True


@pytest.mark.slow
def test_bad_test_image_is_reported_and_skipped(tmp_path, capsys):
    """One unreadable test image: reported, skipped, the others finish; the CLI exit code says so."""
    from p3m.commands import benchmark
    from p3m.data.synth import SynthConfig, generate_dataset

    root = generate_dataset(tmp_path / "data", SynthConfig(n_train=0, n_test_p=2, n_test_np=2, size=(64, 64), seed=1))
    bad = sorted((root / "validation" / "P3M-500-P" / "blurred_image").iterdir())[0]
    bad.write_bytes(bad.read_bytes()[:40])  # truncated JPEG
    config = tmp_path / "cf.yaml"
    config.write_text(
        json.dumps(
            {
                "name": "cf",
                "dataset": {"root": str(root)},
                "evaluation": {"fast": True},
                "methods": [{"name": "Closed-form", "type": "closed-form", "max_side": 64}],
            }
        )
    )
    parser = argparse.ArgumentParser(prog="p3m")
    benchmark.add_parser(parser.add_subparsers(dest="command"))
    code = benchmark.run(parser.parse_args(["benchmark", str(config), "-o", str(tmp_path / "out")]))
    assert code == 1
    err = capsys.readouterr().err
    assert f"skipping {bad.stem}" in err and bad.name in err and "1 image(s) could not be processed" in err
    data = json.loads((tmp_path / "out" / "report" / "results.json").read_text())
    rows = {r["split"]: r for r in data["results"]}
    assert rows["P3M-500-P"]["images"] == 1 and rows["P3M-500-P"]["failed"] == [bad.stem]
    assert rows["P3M-500-NP"]["images"] == 2 and rows["P3M-500-NP"]["failed"] == []
