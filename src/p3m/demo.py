"""`p3m demo`: the whole study on the embedded synthetic dataset, through the library functions behind the `p3m` verbs.

Stages (each prints the `p3m` command that does the same, so the demo doubles as a tutorial):

1. synth      — a seeded synthetic dataset in the P3M-10k layout (obfuscated train and P3M-500-P faces):
                `p3m.data.synth.generate_dataset`.
2. photos     — the default model (the built-in ``portrait-cf``, or the published P3M-Net when it is in the model
                folder) on real photos: scikit-image's astronaut photo (public domain), or the folder given as
                ``photos``; alpha, cutout and composite per photo, shown first in the report.
3. benchmark  — the PPT benchmark of the built-in ``ppt-demo`` recipe (`p3m.bench.run_benchmark`): trains P3M-Net
                R34 (width 16), the BASIC baseline and MODNet on the obfuscated training images for a few CPU
                minutes each, runs the classical trimap-based solvers, mattes and evaluates both test splits
                (P3M-500-P: blurred faces, P3M-500-NP: normal faces) with both protocols, and writes the HTML report.
4. register   — the trained P3M-Net goes into the model store as ``demo-r34`` (``p3m models`` lists it; a
                ``demo-r34`` of another demo run, e.g. in another checkout, is replaced, and the demo says so).
5. cutouts    — ``demo-r34`` on the synthetic P3M-500-NP test images (a model trained on drawn portraits mattes
                real photos poorly: it is never used on them).

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
    from p3m.bench.report import Section
    from p3m.bench.runner import BenchmarkResult
    from p3m.data.synth import SynthConfig

__all__ = ["BACKGROUND", "DEFAULT_CONFIG", "MODEL_NAME", "OWN_PHOTOS_COMMAND", "DemoOptions", "DemoResult", "run_demo"]

DEFAULT_CONFIG = "ppt-demo"  # the built-in benchmark recipe
MODEL_NAME = "demo-r34"
P3M_TYPE = "p3m-r34"  # the method type whose trained weights are registered and used for cutouts
BACKGROUND = (0x3A, 0x7B, 0xD5)  # composite background of the cutouts, "#3a7bd5"
OUTPUTS = ("alpha", "rgba", "composite")
GRID_PHOTOS = 6  # real photos shown in the report (all are matted)
#: The one command that mattes a user's own photos with the default model: the demo's last words.
OWN_PHOTOS_COMMAND = "p3m matte photo.jpg -o out"
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
    matte_dirs: list[Path]  # the real photos' outputs first, then the synthetic ones'
    seconds: float
    photos_model: str = ""  # what the real photos were matted with (`Matter.describe()`)
    registration_note: str = ""  # what registering demo-r34 replaced ("" when nothing made elsewhere)


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
    photos = Path(opts.photos) if opts.photos is not None else _astronaut(out / "photos")
    photo_dir = out / "cutouts" / "photos"
    photos_model = _cutouts(photos, photo_dir, None, quiet=opts.quiet, log=log)
    section = _photo_section(photos, photo_dir, photos_model)

    sets = [arg for item in overrides for arg in ("--set", item)]
    _echo(log, "benchmark", str(opts.config), "-o", str(bench_dir), *sets, *(["--force"] if opts.force else []))
    bench = run_benchmark(
        cfg,
        bench_dir,
        force=opts.force,
        progress=not opts.quiet,
        log=(lambda line: None) if opts.quiet else log,
        sections=[section],
    )
    checkpoint = _trained_checkpoint(bench_dir, cfg)
    origin = f"p3m demo ({out})"
    note = model_store.replacement_note(MODEL_NAME, origin)
    model_store.register(checkpoint, MODEL_NAME, arch=P3M_TYPE, origin=origin)
    log(f"\nregistered {checkpoint} as `{MODEL_NAME}` in {model_store.model_home()}")
    if note:
        log(f"note: {note}")

    synthetic_dir = out / "cutouts" / "synthetic"
    _cutouts(
        data / "validation" / "P3M-500-NP" / "original_image", synthetic_dir, MODEL_NAME, quiet=opts.quiet, log=log
    )

    return DemoResult(
        out_dir=out,
        table_markdown=_table(bench),
        comparison=bench.comparison.get("statement", ""),
        report_html=bench.report_html,
        checkpoint=checkpoint,
        matte_dirs=[photo_dir, synthetic_dir],
        seconds=time.perf_counter() - start,
        photos_model=photos_model,
        registration_note=note,
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


def _cutouts(folder: Path, target: Path, weights: str | None, *, quiet: bool, log: Log) -> str:
    """Alpha, straight RGBA and a composite of every image in ``folder`` whose set is not written yet (what
    `p3m matte` does, through the same `p3m.infer.batch` functions) -> the model used, in words."""
    from p3m.infer.batch import plan_outputs, write_outputs
    from p3m.infer.matter import Matter
    from p3m.io import collect_images

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
    jobs, clashes = plan_outputs(paths, target, list(OUTPUTS))
    jobs = [(src, outs) for src, outs in jobs if not all(o.exists() for o in outs.values())]
    failed: list[str] = list(clashes)
    with warnings.catch_warnings():  # the model warning is logged once below, as one line
        warnings.simplefilter("ignore")
        matter = Matter(weights=weights)
    if matter.model_warning and jobs:
        log(f"warning: {matter.model_warning}")
    for src, outs in jobs:
        try:
            write_outputs(matter, src, outs, BACKGROUND)
        except (P3MError, OSError, ValueError) as exc:
            failed.append(str(exc) if str(src) in str(exc) else f"{src}: {exc}")
    if not quiet:
        log(
            f"{len(jobs) - len(failed)} image(s) written to {target}, {len(paths) - len(jobs)} already there "
            f"[{matter.describe()}]"
        )
    if failed:
        raise P3MError(f"demo cutouts: {len(failed)} image(s) failed: " + "; ".join(failed))
    return matter.describe()


def _photo_section(photos: Path, cutouts: Path, model: str) -> Section:
    """The report's first section: each real photo beside the default model's alpha and composite."""
    from p3m.bench.report import Section, make_grid
    from p3m.io import collect_images, encode_image, read_image, read_mask

    paths, _ = collect_images([photos])
    rows = [
        [
            (path.name, read_image(path)),
            ("alpha", read_mask(cutouts / f"{path.stem}_alpha.png")),
            ("cutout", read_image(cutouts / f"{path.stem}_composite.png")),
        ]
        for path in paths[:GRID_PHOTOS]
    ]
    shown = f"{len(rows)} of {len(paths)}" if len(paths) > len(rows) else str(len(rows))
    text = (
        f"The default model, {model}, on {shown} real photo(s) from {photos}: nothing trained by this demo is "
        "used here. The built-in portrait-cf route is MediaPipe's selfie segmentation network (Apache-2.0, ported "
        "to PyTorch, shipped with p3m) as a person prior, refined by closed-form matting of the edge band; the "
        "published P3M-Net R34 replaces it when its checkpoint is in the model folder (`p3m models`). The same on "
        f"your own photos: `{OWN_PHOTOS_COMMAND}`. All outputs: {cutouts}."
    )
    figure = (
        "photos.jpg",
        "Real photos: the photo, the default model's alpha matte, and the cutout composited on blue.",
        encode_image(make_grid(rows, height=240), "jpg", quality=90),
        "image/jpeg",
    )
    return Section("Real photos, default model", text, [figure])
