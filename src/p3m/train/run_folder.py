"""The files of a training run folder, and when a new run may write into one.

A run writes (all through `p3m.atomic`, so a kill leaves whole files)::

    resume.pt                           model + optimizer + scaler + step + RNG states (`p3m.train.resume`)
    last.safetensors / last.json        latest weights for inference
    best_<metric>_<split>.safetensors   best weights per validation metric (+ .json)
    train_log.jsonl                     one JSON record per log interval and per validation
    config.yaml                         the resolved config
    curves.png                          loss and validation curves
    tb/                                 TensorBoard scalars (only with the tensorboard package)

A folder **holds a run** when it has any weights (``resume.pt``, ``last.safetensors``, a ``best_*.safetensors``) or
a training log. `plan_run` decides what a new run may do with such a folder:

- no flag: refused, naming the files found;
- ``resume``: continued from ``resume.pt``; refused, saying why, when there is none or it is not a file (an empty or
  missing folder starts from scratch);
- ``overwrite``: the new run starts, and the earlier run's files stay untouched until its first save, which replaces
  them all at once (`RunFolder.take_over`). A new run stopped before it saved leaves the earlier run as it was.

Other files in the folder are never touched.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from p3m.errors import P3MError
from p3m.train.resume import RESUME_FILE

__all__ = [
    "CONFIG_FILE",
    "LAST_FILE",
    "LOG_FILE",
    "PLOT_FILE",
    "TB_DIR",
    "RunFolder",
    "plan_run",
    "run_files",
    "run_marks",
]

LAST_FILE = "last.safetensors"
LOG_FILE = "train_log.jsonl"
PLOT_FILE = "curves.png"
CONFIG_FILE = "config.yaml"
TB_DIR = "tb"


def run_marks(out: Path) -> list[str]:
    """Names of the files that make ``out`` hold a training run (weights or a log), sorted; [] when none."""
    if not out.is_dir():
        return []
    names = [RESUME_FILE, LAST_FILE, LOG_FILE]
    found = [n for n in names if (out / n).exists()]
    found += [p.name for p in out.glob("best_*.safetensors")]
    return sorted(found)


def run_files(out: Path) -> list[Path]:
    """Every file a run writes that exists in ``out`` (the TensorBoard folder's files included)."""
    if not out.is_dir():
        return []
    names = [RESUME_FILE, LAST_FILE, "last.json", LOG_FILE, PLOT_FILE, CONFIG_FILE]
    paths = [out / n for n in names if (out / n).exists()]
    paths += sorted(out.glob("best_*.safetensors")) + sorted(out.glob("best_*.json"))
    paths += sorted(p for p in (out / TB_DIR).rglob("*") if p.is_file())
    return paths


@dataclass
class RunFolder:
    """What a new run does with its folder: ``resume`` from ``resume.pt``, and the files of an earlier run that its
    first save replaces (``previous``, with --overwrite)."""

    out: Path
    resume: bool = False
    previous: list[Path] = field(default_factory=list)

    @property
    def resume_path(self) -> Path:
        return self.out / RESUME_FILE

    @property
    def taking_over(self) -> bool:
        """True until the first save of a run that replaces an earlier one."""
        return bool(self.previous)

    def take_over(self, written: tuple[str, ...]) -> None:
        """After the new run's first save: delete the earlier run's files that it has not just replaced."""
        for path in self.previous:
            if path.parent == self.out and path.name in written:
                continue
            path.unlink(missing_ok=True)
        self.previous = []


def plan_run(out: Path, *, resume: bool, overwrite: bool, announce: bool = True) -> RunFolder:
    """The plan for a new run in ``out`` (see the module doc); P3MError (one line) when the folder is refused.

    ``announce`` prints the one note a user needs (resuming a folder that holds no run starts from scratch).
    """
    if resume and overwrite:
        raise P3MError("--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise P3MError(f"{out}: exists and is not a folder; choose another --out")
    for name in (RESUME_FILE, LAST_FILE, "last.json", LOG_FILE, CONFIG_FILE, PLOT_FILE):
        if (out / name).exists() and not (out / name).is_file():
            raise P3MError(f"{out / name}: not a file, where the run writes one; move it away or choose another --out")
    found = run_marks(out)
    if not found:
        if resume and announce:
            print(f"p3m train: no training run in {out}; starting from scratch", file=sys.stderr)
        return RunFolder(out)
    listed = ", ".join(found)
    if overwrite:
        return RunFolder(out, previous=run_files(out))
    if not resume:
        raise P3MError(
            f"{out} already holds a training run ({listed}); pass --resume to continue it, --overwrite to replace "
            "it (its files stay until the new run first saves), or choose another --out"
        )
    if not (out / RESUME_FILE).exists():
        raise P3MError(
            f"{out}: cannot resume: the folder holds a run ({listed}) but no {RESUME_FILE} to continue from; "
            "pass --overwrite to start afresh (the files stay until the new run first saves) or choose another --out"
        )
    return RunFolder(out, resume=True)
