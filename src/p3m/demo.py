"""`p3m demo`: the whole study on the embedded synthetic dataset, as the sequence of `p3m` verbs a user would type.

Stages (each prints the command it runs, so the demo doubles as a tutorial):

1. ``p3m synth``     — a seeded synthetic dataset in the P3M-10k layout (obfuscated train and P3M-500-P faces).
2. ``p3m benchmark`` — the PPT benchmark of ``configs/benchmark-demo.yaml``: trains P3M-Net R34 (width 16), the BASIC
                       baseline and MODNet on the obfuscated training images for a few CPU minutes each, runs the
                       classical trimap-based solvers, mattes and evaluates both test splits (P3M-500-P: blurred
                       faces, P3M-500-NP: normal faces) with both protocols, and writes the HTML report.
3. the trained P3M-Net is registered in the model store as ``demo-r34`` (``p3m models`` lists it).
4. ``p3m matte``     — cutouts of the real portraits in ``../shared/testdata/portraits`` when present, with the
                       default model (the built-in ``portrait-cf``: a model trained on drawn portraits mattes real
                       photos poorly), and of the synthetic P3M-500-NP test images with ``demo-r34``.

Finished stages are skipped on a re-run unless ``force``; every output lives under one folder, printed at the end.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from p3m.errors import P3MError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "benchmark-demo.yaml"
DEFAULT_TESTDATA = REPO_ROOT.parent / "shared" / "testdata" / "portraits" / "image"
MODEL_NAME = "demo-r34"
P3M_METHOD = "P3M-Net R34"  # the method of the demo config whose weights are registered and used for cutouts


@dataclass
class DemoOptions:
    """What `run_demo` does; the defaults finish in well under 10 minutes on 2 CPU cores."""

    out_dir: Path = Path("demo_output")
    n_train: int = 120
    n_test: int = 12
    size: int = 192
    seed: int = 0
    config: Path = DEFAULT_CONFIG
    testdata: Path | None = DEFAULT_TESTDATA
    force: bool = False
    quiet: bool = False
    overrides: list[str] = field(default_factory=list)  # extra `--set key=value` for the benchmark


@dataclass
class DemoResult:
    out_dir: Path
    table_markdown: str
    comparison: str
    report_html: Path
    checkpoint: Path
    matte_dirs: list[Path]
    seconds: float


def _runner(log: Callable[[str], None]) -> Callable[[list[str]], None]:
    from p3m.cli import main

    def run(argv: list[str]) -> None:
        log(f"\n$ p3m {shlex.join(argv)}")
        code = main(argv)
        if code != 0:
            raise P3MError(f"demo stage `p3m {argv[0]}` failed with exit code {code}")

    return run


def run_demo(opts: DemoOptions, log: Callable[[str], None] = print) -> DemoResult:
    """Run every stage; returns the benchmark table and where everything was written."""
    start = time.perf_counter()
    out = Path(opts.out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    data, bench_dir = out / "data", out / "benchmark"
    run = _runner(log)
    quiet = ["--quiet"] if opts.quiet else []
    if not Path(opts.config).is_file():
        raise P3MError(
            f"demo benchmark config not found: {opts.config} (run `p3m demo` from a p3m checkout, or pass --config)"
        )

    # 1. data
    if opts.force or not _synth_complete(data, opts):
        run(
            [
                "synth",
                str(data),
                "--train",
                str(opts.n_train),
                "--test",
                str(opts.n_test),
                "--size",
                str(opts.size),
                "--seed",
                str(opts.seed),
                "--overwrite",
                *quiet,
            ]
        )
    else:
        log(f"\n[skip] dataset already at {data}")

    # 2. benchmark (skips its own finished stages)
    # dataset.synth=null: benchmark the data of stage 1 instead of generating its own copy.
    argv = [
        "benchmark",
        str(opts.config),
        "-o",
        str(bench_dir),
        "--set",
        f"dataset.root={data}",
        "--set",
        "dataset.synth=null",
    ]
    for item in opts.overrides:
        argv += ["--set", item]
    run(argv + (["--force"] if opts.force else []) + quiet)
    report_dir = bench_dir / "report"
    results = json.loads((report_dir / "results.json").read_text())

    # 3. register the trained P3M-Net
    checkpoint = _trained_checkpoint(bench_dir, results)
    from p3m.models import store

    store.register(checkpoint, MODEL_NAME, arch="p3m-r34", origin=f"p3m demo ({out})")
    log(f"\nregistered {checkpoint} as `{MODEL_NAME}` in {store.model_home()}")

    # 4. cutouts: real portraits when present, synthetic normal-face test images always
    matte_dirs = []
    sources = [("portraits", opts.testdata)] if opts.testdata is not None and Path(opts.testdata).is_dir() else []
    if not sources:
        log("\n[skip] no real portraits found (../shared/testdata/portraits/image)")
    sources.append(("synthetic", data / "validation" / "P3M-500-NP" / "original_image"))
    for name, folder in sources:
        target = out / "cutouts" / name
        # real photos: the default model (the built-in portrait-cf unless the published P3M-Net is dropped in);
        # the synthetic test images: the P3M-Net just trained on their kind
        weights = [] if name == "portraits" else ["--weights", MODEL_NAME]
        run(
            [
                "matte",
                str(folder),
                "-o",
                str(target),
                *weights,
                "--output",
                "alpha,rgba,composite",
                "--background",
                "#3a7bd5",
                "--skip-existing",
                *quiet,
            ]
        )
        matte_dirs.append(target)

    comparison = results.get("comparison", {}).get("statement", "") if isinstance(results, dict) else ""
    return DemoResult(
        out_dir=out,
        table_markdown=_table(report_dir),
        comparison=comparison,
        report_html=report_dir / "report.html",
        checkpoint=checkpoint,
        matte_dirs=matte_dirs,
        seconds=time.perf_counter() - start,
    )


def _trained_checkpoint(bench_dir: Path, results) -> Path:
    """The P3M-Net weights the benchmark trained (train/<setting>/<method>/last.safetensors)."""
    found = sorted((bench_dir / "train").glob("*/p3m-net-r34/last.safetensors"))
    if not found:
        raise P3MError(f"the benchmark under {bench_dir} trained no `{P3M_METHOD}` weights (check the config)")
    return found[0]


def _table(report_dir: Path) -> str:
    """The main trimap-free table of the report (the section of report.md the benchmark writes first)."""
    text = (report_dir / "report.md").read_text()
    lines, keep = [], False
    for line in text.splitlines():
        if line.startswith("|"):
            keep = True
            lines.append(line)
        elif keep:
            break
    return "\n".join(lines)


def _synth_complete(data: Path, opts: DemoOptions) -> bool:
    meta = data / "synth_meta.json"
    if not meta.is_file():
        return False
    try:
        info = json.loads(meta.read_text())
    except (OSError, ValueError):
        return False
    cfg = info.get("config", {})
    return (
        bool(info.get("complete"))
        and cfg.get("n_train") == opts.n_train
        and cfg.get("n_test_p") == opts.n_test
        and list(cfg.get("size", [])) == [opts.size, opts.size]
        and cfg.get("seed") == opts.seed
    )
