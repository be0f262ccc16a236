"""Matting many files: where each input's outputs go, which inputs cannot be written, and one image's output set.

`plan_outputs` names the files of every input (`<stem>_<kind>.png`, the composite optionally `.jpg`): flat in the
output folder, unless two inputs share a stem (then their folders are mirrored). Inputs whose outputs would
collide with another input's, or overwrite an input, are reported and left out. `write_outputs` mattes one
image and writes its whole set (every kind rendered first, then all written or none, `p3m.io.write_image_set`).

Before a run: `prepare_output_folders` creates the output folders and clears the temporary files a killed run left
there, and `set_state` tells each input's set apart: "new" (none of its files exists), "done" (every file is whole,
`p3m.atomic.is_whole`) or "incomplete" (some are missing, or a kill interrupted the set: redone by
``--skip-existing``, named by `existing_outputs_error`).

`matte_job` is the whole work of one input as `p3m matte` does it, on one machine or on a cluster (`p3m.workers`):
decode, matte, render, encode, write, and every failure turned into one line (`MatteOutcome`); `MatteWorker` builds
it once per worker process from `Matter`'s arguments. `MatteStages` is the same work cut into three stages (decode;
alpha; foreground, render, encode and write), and `matte_here` runs a folder through them on threads of this
process (`p3m.workers.run_stages`): the next images decode and compute their alpha while an image's outputs are
estimated and written. The alpha stage, the slowest, runs on `alpha_threads` threads: for the built-in route, one
per usable CPU up to `ROUTE_ALPHA_THREADS` (its networks take turns under a lock; its closed-form solve, OpenCV and
the networks themselves release the GIL, so two images' alphas are computed at once); for a P3M-Net one (its
passes use every core already). The outputs are the same bytes either way, in the same order.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from p3m.atomic import is_whole, remove_orphans
from p3m.errors import P3MError, item_error_message
from p3m.infer.foreground import WHITE
from p3m.infer.matter import Matter, MatteResult
from p3m.io import matte_output_name, read_image, write_image_set
from p3m.models.store import BUILTIN
from p3m.workers import ItemFunction, run_stages, usable_cpus

__all__ = [
    "ROUTE_ALPHA_THREADS",
    "Job",
    "MatteOutcome",
    "MatteStages",
    "MatteWorker",
    "alpha_threads",
    "existing_outputs_error",
    "matte_here",
    "matte_job",
    "plan_outputs",
    "prepare_output_folders",
    "set_state",
    "write_outputs",
    "write_result",
]

#: One input and its output file per kind.
Job = tuple[Path, dict[str, Path]]
_SHOWN = 5

#: The most threads that compute the built-in route's alphas at once in a folder job. Its networks run one at a time
#: (a lock) and take about 0.11 s of its ~0.24 s per 1080 px portrait (prior and person check; 2-core CPU dev
#: machine, quiet), so the alpha stage cannot go more than ~2.2x faster than on one thread: a third thread reaches
#: that, a fourth would wait for the lock while holding another image's working arrays (memory).
ROUTE_ALPHA_THREADS = 3


def _output_paths(src: Path, folder: Path, kinds: list[str], composite_ext: str) -> dict[str, Path]:
    return {k: folder / matte_output_name(src.stem, k, composite_ext) for k in kinds}


def _subdirs(paths: list[Path]) -> list[Path]:
    """Relative output sub-folders: none, unless two inputs share a stem (then mirror their folders)."""
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return [Path()] * len(paths)
    parents = [p.resolve().parent for p in paths]
    root = Path(os.path.commonpath([str(p) for p in parents]))
    return [par.relative_to(root) for par in parents]


def _drop_clashes(jobs: list[Job]) -> tuple[list[Job], list[str]]:
    """Keep the first input of each group whose outputs share a file name (``p.png`` and ``p.jpg`` in one folder)
    and report the others, one line each; an output that would replace an input is reported too."""
    inputs = {p.resolve(): p for p, _ in jobs}
    owner: dict[Path, Path] = {}
    kept, clashes = [], []
    for src, outs in jobs:
        keys = [o.resolve() for o in outs.values()]
        other = next((owner[k] for k in keys if k in owner), None)
        over_input = next((inputs[k] for k in keys if k in inputs), None)
        if other is not None:
            names = ", ".join(o.name for o in outs.values())
            clashes.append(f"{src}: skipped: it would write the same files as {other} ({names}); rename one of them")
        elif over_input is not None:
            clashes.append(f"{src}: skipped: an output would overwrite the input {over_input}; choose another -o")
        else:
            owner.update((k, src) for k in keys)
            kept.append((src, outs))
    return kept, clashes


def plan_outputs(
    paths: list[Path], outdir: Path, kinds: list[str], *, composite_ext: str = ".png"
) -> tuple[list[Job], list[str]]:
    """(jobs, clashes): each input with its output file per kind, and one line per input left out."""
    jobs = [
        (p, _output_paths(p, outdir / sub, kinds, composite_ext)) for p, sub in zip(paths, _subdirs(paths), strict=True)
    ]
    return _drop_clashes(jobs)


def write_outputs(
    matter: Matter,
    src: Path | np.ndarray,
    outputs: dict[str, Path],
    background: np.ndarray | tuple[int, int, int] = WHITE,
) -> MatteResult:
    """Matte `src` (a file, or its decoded pixels) and write every output of `outputs` (kind -> file) as one set:
    all of them or none."""
    return write_result(matter.matte(src), outputs, background)


def write_result(
    result: MatteResult, outputs: dict[str, Path], background: np.ndarray | tuple[int, int, int] = WHITE
) -> MatteResult:
    """Write every output of `outputs` (kind -> file) of a matted image as one set (all of them or none); the
    foreground colours are estimated once when a kind needs them."""
    if any(k != "alpha" for k in outputs):
        result.add_foreground()
    write_image_set([(dest, result.render(kind, background)) for kind, dest in outputs.items()])
    return result


def prepare_output_folders(jobs: list[Job]) -> list[Path]:
    """Create the jobs' output folders (an OSError naming the folder when one cannot be made, so that a read-only
    or misnamed -o fails once, not once per image) and remove the temporary files (and stale marks) that killed runs
    left there (`p3m.atomic.remove_orphans`; a live run's files are never touched) -> the files removed."""
    folders = list(dict.fromkeys(dest.parent for _, outs in jobs for dest in outs.values()))
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return [path for folder in folders for path in remove_orphans(folder)]


def set_state(outputs: dict[str, Path]) -> str:
    """The state of one input's output set: "new" when none of its files exists, "done" when every one is whole
    (`p3m.atomic.is_whole`), else "incomplete" (a file is missing, or was left by an interrupted set)."""
    present = [dest for dest in outputs.values() if os.path.lexists(dest)]
    if not present:
        return "new"
    return "done" if len(present) == len(outputs) and all(is_whole(d) for d in outputs.values()) else "incomplete"


def _what_is_wrong(outputs: dict[str, Path]) -> str:
    missing = [kind for kind, dest in outputs.items() if not os.path.lexists(dest)]
    broken = [kind for kind, dest in outputs.items() if os.path.lexists(dest) and not is_whole(dest)]
    parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
        [f"interrupted {', '.join(broken)}"] if broken else []
    )
    return "; ".join(parts)


def existing_outputs_error(jobs: list[Job]) -> str | None:
    """Why a run without ``--overwrite`` or ``--skip-existing`` must not start (outputs exist), naming the
    incomplete sets apart from the whole ones; None when no output exists."""
    states = [(src, outs, set_state(outs)) for src, outs in jobs]
    done = [dest for _, outs, state in states if state == "done" for dest in outs.values()]
    incomplete = [(src, outs) for src, outs, state in states if state == "incomplete"]
    if not done and not incomplete:
        return None
    parts = []
    if done:
        more = f" and {len(done) - _SHOWN} more" if len(done) > _SHOWN else ""
        parts.append(f"{len(done)} existing output(s): {', '.join(str(o) for o in done[:_SHOWN])}{more}")
    if incomplete:
        shown = "; ".join(f"{src} ({_what_is_wrong(outs)})" for src, outs in incomplete[:_SHOWN])
        more = f"; and {len(incomplete) - _SHOWN} more" if len(incomplete) > _SHOWN else ""
        parts.append(
            f"{len(incomplete)} incomplete output set(s) (an interrupted run, or files removed): {shown}{more}"
        )
    return (
        "refusing to overwrite "
        + "; ".join(parts)
        + "; pass --skip-existing (redoes only the incomplete sets) or --overwrite"
    )


@dataclass(frozen=True)
class MatteOutcome:
    """What became of one input: ``error`` (one line naming the input) when nothing was written for it, else the
    route's ``warning`` about the image (e.g. no person found), if any."""

    source: str
    error: str | None = None
    warning: str | None = None


def _failure(src: Path, exc: BaseException) -> MatteOutcome:
    """The outcome of an input whose work raised: one line that names the input."""
    return MatteOutcome(str(src), error=item_error_message(exc, src))


#: The failures that become an input's error line (anything else is a bug and stops the run).
_REPORTED = (P3MError, OSError, ValueError, RuntimeError, MemoryError)


@dataclass
class _Work:
    """One input between stages: its job, then its pixels, then its matte; ``outcome`` once it failed."""

    job: Job
    image: np.ndarray | None = None
    result: MatteResult | None = None
    outcome: MatteOutcome | None = None


@dataclass(frozen=True)
class MatteStages:
    """`matte_job`'s work in three stages, each a function of what the previous one returned: `decode` ((job,
    data) -> pixels), `alpha` (the matte) and `write` (foreground colours, every kind rendered, encoded and written as
    one set -> `MatteOutcome`). A failure in any stage becomes the input's error line and the later stages pass it
    on. Stateless but for the `Matter` (whose network calls are locked), so each stage may run on its own thread."""

    matter: Matter
    background: np.ndarray | tuple[int, int, int] = WHITE

    def decode(self, item: tuple[Job, bytes | None]) -> _Work:
        job, data = item
        src = job[0]
        work = _Work(job)
        try:
            work.image = read_image(src) if data is None else read_image(data, name=str(src))
        except _REPORTED as exc:
            work.outcome = _failure(src, exc)
        return work

    def alpha(self, work: _Work) -> _Work:
        if work.outcome is None:
            try:
                work.result = self.matter.matte(work.image)
            except _REPORTED as exc:
                work.outcome = _failure(work.job[0], exc)
            work.image = None
        return work

    def write(self, work: _Work) -> MatteOutcome:
        if work.outcome is not None:
            return work.outcome
        src, outputs = work.job
        assert work.result is not None  # set by `alpha` whenever no outcome is
        try:
            write_result(work.result, outputs, self.background)
        except _REPORTED as exc:
            return _failure(src, exc)
        return MatteOutcome(str(src), warning=work.result.info.get("warning"))

    def __call__(self, job: Job, data: bytes | None = None) -> MatteOutcome:
        """The three stages one after the other: the whole work of one input."""
        return self.write(self.alpha(self.decode((job, data))))


def matte_job(
    matter: Matter,
    job: Job,
    data: bytes | None = None,
    *,
    background: np.ndarray | tuple[int, int, int] = WHITE,
) -> MatteOutcome:
    """Matte one job's input and write its outputs (`write_outputs`); any failure becomes the outcome's error line.

    ``data``: the input file's bytes when they were read already (a cluster reads them where they are stored), else
    the file is read from ``job``'s path. The same pixels either way, so the outputs are the same bytes.
    """
    return MatteStages(matter, background)(job, data)


def alpha_threads(matter: Matter, cpus: int | None = None) -> int:
    """How many threads compute alphas at once in `matte_here`: for the built-in route, one per CPU this process may
    use (``cpus``, default `p3m.workers.usable_cpus`) up to `ROUTE_ALPHA_THREADS`; 1 for any other model, whose
    network passes use every core already."""
    if matter.model_name != BUILTIN:
        return 1
    return max(1, min(usable_cpus() if cpus is None else cpus, ROUTE_ALPHA_THREADS))


def matte_here(
    matter: Matter,
    jobs: list[Job],
    *,
    background: np.ndarray | tuple[int, int, int] = WHITE,
    threads: int | None = None,
) -> Iterator[tuple[int, MatteOutcome]]:
    """(index, MatteOutcome) of every job, in order, by `MatteStages` on threads of this process
    (`p3m.workers.run_stages`): one decodes, ``threads`` (default `alpha_threads`) compute alphas, one estimates,
    renders and writes the outputs; the same outputs as `matte_job` one input after the other. The built-in route
    runs its networks on one torch thread whatever the stages do (`p3m.infer.sessions.ROUTE_TORCH_THREADS`); a
    P3M-Net's large passes keep every thread."""
    stages = MatteStages(matter, background)
    counts = [1, alpha_threads(matter) if threads is None else threads, 1]
    yield from run_stages([stages.decode, stages.alpha, stages.write], [(job, None) for job in jobs], threads=counts)


@dataclass(frozen=True)
class MatteWorker:
    """A picklable worker factory (`p3m.workers.WorkerFactory`): loads ``Matter(**matter_args)`` once, returns
    ``matte_job`` bound to it and to the composite ``background``. ``expected_model``: the model the caller
    resolved; a worker that loads another one (another machine's model folder) stops instead of mixing models."""

    matter_args: dict[str, Any]
    background: np.ndarray | tuple[int, int, int] = WHITE
    expected_model: str | None = None

    def __call__(self) -> ItemFunction:
        with warnings.catch_warnings():  # the model warning was printed once, by the caller
            warnings.simplefilter("ignore")
            matter = Matter(**self.matter_args)
        if self.expected_model is not None and matter.model_name != self.expected_model:
            raise P3MError(f"this worker loaded {matter.model_name}, not {self.expected_model}")
        return partial(matte_job, matter, background=self.background)

    @classmethod
    def like(
        cls, matter: Matter, matter_args: dict[str, Any], background: np.ndarray | tuple[int, int, int] = WHITE
    ) -> MatteWorker:
        """Workers that load the model ``matter`` resolved (``matter_args`` as the caller gave them, with the weights
        pinned: another machine's default could be another model) and stop if theirs is not that one."""
        weights = BUILTIN if matter.model_name == BUILTIN else str(matter.weights)
        return cls({**matter_args, "weights": weights, "arch": matter.arch}, background, matter.model_name)

    def failed(self, job: Job, message: str) -> MatteOutcome:
        return MatteOutcome(str(job[0]), error=f"{job[0]}: {message}")
