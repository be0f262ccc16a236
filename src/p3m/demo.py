"""`p3m demo`: the whole study on the embedded synthetic dataset, through the library functions behind the `p3m` verbs.

Stages (each prints the `p3m` command that does the same, so the demo doubles as a tutorial):

1. synth      — a seeded synthetic dataset in the P3M-10k layout (obfuscated train and P3M-500-P faces):
                `p3m.data.synth.generate_dataset`.
2. benchmark  — the PPT benchmark of the built-in ``ppt-demo`` recipe (`p3m.bench.run_benchmark`): trains P3M-Net
                R34 (width 16), the BASIC baseline and MODNet on the obfuscated training images for a few CPU
                minutes each, runs the classical trimap-based solvers, mattes and evaluates both test splits
                (P3M-500-P: blurred faces, P3M-500-NP: normal faces) with both protocols, and writes the HTML report.
3. register   — the trained P3M-Net goes into the model store as ``demo-r34`` (``p3m models`` lists it).
4. cutouts    — `p3m.infer.Matter` on real photos with the default model (the built-in ``portrait-cf``: a model
                trained on drawn portraits mattes real photos poorly): scikit-image's astronaut photo, or the
                folder given as ``photos``; and on the synthetic P3M-500-NP test images with ``demo-r34``.

Finished stages are skipped on a re-run unless ``force``; every output lives under one folder, printed at the end.
This module is the demo's library home (`run_demo`, usable from Python); `p3m.commands.demo` only parses the
options and prints the summary.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from p3m.errors import P3MError

# The stages' modules (the benchmark, the trainer, the matter: torch) are imported in the functions that run them:
# the CLI reads `DemoOptions` when it starts, and `p3m --help` must not load torch.
if TYPE_CHECKING:
    from p3m.bench.config import BenchmarkConfig
    from p3m.bench.runner import BenchmarkResult
    from p3m.data.synth import SynthConfig

__all__ = ["BACKGROUND", "DEFAULT_CONFIG", "MODEL_NAME", "DemoOptions", "DemoResult", "run_demo"]

DEFAULT_CONFIG = "ppt-demo"  # the built-in benchmark recipe
MODEL_NAME = "demo-r34"
P3M_TYPE = "p3m-r34"  # the method type whose trained weights are registered and used for cutouts
BACKGROUND = (0x3A, 0x7B, 0xD5)  # composite background of the cutouts, "#3a7bd5"
OUTPUTS = ("alpha", "rgba", "composite")
Log = Callable[[str], None]


@dataclass
class DemoOptions:
    """What `run_demo` does; the defaults finish in well under 10 minutes on 2 CPU cores."""

    out_dir: Path = Path("demo_output")
    n_train: int = 120
    n_test: int = 12
    size: int = 192
    seed: int = 0
    config: str | Path = DEFAULT_CONFIG  # a benchmark recipe name or YAML path
    photos: Path | None = None  # folder of real photos to cut out; None: scikit-image's astronaut photo
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


def _echo(log: Log, verb: str, *args: str) -> None:
    """Print the `p3m` command line that does what the next stage does (the demo doubles as a tutorial)."""
    log(f"\n$ p3m {shlex.join([verb, *args])}")


def run_demo(opts: DemoOptions, log: Log = print) -> DemoResult:
    """Run every stage; returns the benchmark table and where everything was written."""
    from p3m.bench.config import load_benchmark_config
    from p3m.bench.runner import run_benchmark
    from p3m.models import store as model_store

    start = time.perf_counter()
    out = Path(opts.out_dir).expanduser().resolve()
    data, bench_dir = out / "data", out / "benchmark"
    # dataset.synth=null: benchmark the data of stage 1 instead of generating its own copy
    overrides = [f"dataset.root={data}", "dataset.synth=null", *opts.overrides]
    cfg = load_benchmark_config(opts.config, overrides)  # config errors before any work
    out.mkdir(parents=True, exist_ok=True)

    _synth(opts, data, log)
    sets = [arg for item in overrides for arg in ("--set", item)]
    _echo(log, "benchmark", str(opts.config), "-o", str(bench_dir), *sets, *(["--force"] if opts.force else []))
    bench = run_benchmark(
        cfg, bench_dir, force=opts.force, progress=not opts.quiet, log=(lambda line: None) if opts.quiet else log
    )
    checkpoint = _trained_checkpoint(bench_dir, cfg)
    model_store.register(checkpoint, MODEL_NAME, arch=P3M_TYPE, origin=f"p3m demo ({out})")
    log(f"\nregistered {checkpoint} as `{MODEL_NAME}` in {model_store.model_home()}")

    photos = Path(opts.photos) if opts.photos is not None else _astronaut(out / "photos")
    synthetic = data / "validation" / "P3M-500-NP" / "original_image"
    sources = [("portraits", photos, None), ("synthetic", synthetic, MODEL_NAME)]
    matte_dirs = []
    for name, folder, weights in sources:
        target = out / "cutouts" / name
        _cutouts(folder, target, weights, quiet=opts.quiet, log=log)
        matte_dirs.append(target)

    return DemoResult(
        out_dir=out,
        table_markdown=_table(bench),
        comparison=bench.comparison.get("statement", ""),
        report_html=bench.report_html,
        checkpoint=checkpoint,
        matte_dirs=matte_dirs,
        seconds=time.perf_counter() - start,
    )


# ------------------------------------------------------------------------------------------- stages


def _synth(opts: DemoOptions, data: Path, log: Log) -> None:
    """Stage 1: the synthetic dataset, unless an identical one is already there."""
    from p3m.data.synth import SynthConfig, generate_dataset

    config = SynthConfig(
        n_train=opts.n_train, n_test_p=opts.n_test, n_test_np=opts.n_test, size=(opts.size, opts.size), seed=opts.seed
    )
    if not opts.force and _synth_complete(data, config):
        log(f"\n[skip] dataset already at {data}")
        return
    args = ["--train", str(opts.n_train), "--test", str(opts.n_test), "--size", str(opts.size)]
    _echo(log, "synth", str(data), *args, "--seed", str(opts.seed), "--overwrite")
    generate_dataset(data, config, progress=not opts.quiet and sys.stderr.isatty(), overwrite=True)


def _synth_complete(data: Path, config: SynthConfig) -> bool:
    """True when ``data`` holds a finished synthetic dataset drawn with ``config``'s counts, size and seed."""
    from p3m.data.synth import META_FILE

    try:
        info = json.loads((data / META_FILE).read_text())
    except (OSError, ValueError):
        return False
    saved = info.get("config", {}) if isinstance(info, dict) else {}
    return (
        bool(info.get("complete"))
        and saved.get("n_train") == config.n_train
        and saved.get("n_test_p") == config.n_test_p
        and list(saved.get("size", [])) == list(config.size)
        and saved.get("seed") == config.seed
    )


def _trained_checkpoint(bench_dir: Path, cfg: BenchmarkConfig) -> Path:
    """The P3M-Net R34 weights the benchmark trained (train/<setting>/<method>/last.safetensors)."""
    from p3m.bench.config import slug

    trained = [m for m in cfg.methods if m.type == P3M_TYPE and not m.weights]
    for setting in cfg.settings:
        for method in trained:
            path = bench_dir / "train" / slug(setting.name) / slug(method.name) / "last.safetensors"
            if path.is_file():
                return path
    raise P3MError(f"the benchmark under {bench_dir} trained no {P3M_TYPE} weights (check the config's methods)")


def _table(bench: BenchmarkResult) -> str:
    """The rows of the main trimap-free table (P3M protocol), without its title and caption."""
    return "\n".join(line for line in bench.table_markdown.splitlines() if line.startswith("|"))


def _astronaut(folder: Path) -> Path:
    """A folder holding one real portrait photo: scikit-image's astronaut (Eileen Collins, NASA, public domain)."""
    from skimage import data as skimage_data

    from p3m.io import write_image

    path = folder / "astronaut.png"
    if not path.is_file():
        write_image(path, skimage_data.astronaut())
    return folder


def _cutouts(folder: Path, target: Path, weights: str | None, *, quiet: bool, log: Log) -> None:
    """Stage 4: alpha, straight RGBA and a composite of every image in ``folder`` whose set is not written yet."""
    from p3m.infer.matter import Matter
    from p3m.io import collect_images, write_image_set

    _echo(
        log,
        "matte",
        str(folder),
        "-o",
        str(target),
        *(["--weights", weights] if weights else []),
        "--save",
        ",".join(OUTPUTS),
        "--background",
        "#{:02x}{:02x}{:02x}".format(*BACKGROUND),
        "--skip-existing",
    )
    paths, problems = collect_images([folder])
    if not paths:
        raise P3MError(f"demo cutouts: no input images ({'; '.join(problems)})")
    jobs = [(p, [target / f"{p.stem}_{kind}.png" for kind in OUTPUTS]) for p in paths]
    jobs = [(p, outs) for p, outs in jobs if not all(o.exists() for o in outs)]
    failed: list[str] = []
    with warnings.catch_warnings():  # the model warning is logged once below, as one line
        warnings.simplefilter("ignore")
        matter = Matter(weights=weights)
    if matter.model_warning and jobs:
        log(f"warning: {matter.model_warning}")
    for src, (alpha_path, rgba_path, composite_path) in jobs:
        try:
            result = matter.matte(src, foreground=True)
            assert result.cutout is not None  # asked for with foreground=True
            write_image_set(
                [
                    (alpha_path, result.alpha_uint8()),
                    (rgba_path, result.cutout),
                    (composite_path, result.composite(BACKGROUND)),
                ]
            )
        except (P3MError, OSError, ValueError) as exc:
            failed.append(str(exc) if str(src) in str(exc) else f"{src}: {exc}")
    if not quiet:
        log(f"{len(jobs) - len(failed)} image(s) written to {target}, {len(paths) - len(jobs)} already there")
    if failed:
        raise P3MError(f"demo cutouts: {len(failed)} image(s) failed: " + "; ".join(failed))
