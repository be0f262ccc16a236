"""Matting many files: where each input's outputs go, which inputs cannot be written, and one image's output set.

`plan_outputs` names the files of every input (`<stem>_<kind>.png`, the composite optionally `.jpg`): flat in the
output folder, unless two inputs share a stem (then their folders are mirrored). Inputs whose outputs would
collide with another input's, or overwrite an input, are reported and left out. `write_outputs` mattes one
image and writes its whole set (every kind rendered first, then all written or none, `p3m.io.write_image_set`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from p3m.infer.foreground import WHITE
from p3m.infer.matter import Matter, MatteResult
from p3m.io import write_image_set

__all__ = ["Job", "plan_outputs", "write_outputs"]

#: One input and its output file per kind.
Job = tuple[Path, dict[str, Path]]


def _output_paths(src: Path, folder: Path, kinds: list[str], composite_ext: str) -> dict[str, Path]:
    return {k: folder / f"{src.stem}_{k}{composite_ext if k == 'composite' else '.png'}" for k in kinds}


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
    matter: Matter, src: Path, outputs: dict[str, Path], background: np.ndarray | tuple[int, int, int] = WHITE
) -> MatteResult:
    """Matte `src` and write every output of `outputs` (kind -> file) as one set: all of them or none."""
    result = matter.matte(src, foreground=any(k != "alpha" for k in outputs))
    write_image_set([(dest, result.render(kind, background)) for kind, dest in outputs.items()])
    return result
