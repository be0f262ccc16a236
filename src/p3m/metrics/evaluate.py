"""Evaluate alpha predictions against ground truth: file matching, parallel scoring, summaries and tables.

Protocols: ``"p3m"`` (whole image, the official P3M code; the default), ``"dim"`` (unknown region,
the Deep Image Matting MATLAB code; needs trimaps) or ``"both"``. Every table states its protocol.

Reading convention (IJCV ``core/eval.py``): predictions are 8-bit grayscale images (PNG), scored as value / 255 — i.e.
the truncated, quantised prediction a dataset-mode inference run saves (`ViTAE-Transformer/P3M-Net` core/infer.py and
core/eval.py). Ground truth is the mask / 255; trimaps are read as stored; face masks are binarised ``> 100``
(`JizhiziLi/P3M` core/evaluate.py).

Averaging: every metric is computed per image and averaged arithmetically over the images (`ViTAE-Transformer/P3M-Net`
core/eval.py). Privacy metrics are undefined for an image without face pixels (e.g. a back view): such images are left
out of that mean, and the summary says over how many images each mean is taken. A -T metric of an image whose trimap has
no unknown pixel is inf or nan, as in the reference code, and so is then the mean.

Importing this module has no side effects; `evaluate_arrays` and `evaluate_dirs` are the API used by training
(validation) and by benchmarks.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from p3m.atomic import write_bytes_atomic
from p3m.choices import OUTPUT_KINDS, PROTOCOLS
from p3m.data.p3m10k import open_dataset
from p3m.errors import DatasetError, ImageError, P3MError
from p3m.io import IMAGE_EXTENSIONS, read_mask
from p3m.metrics.dim import dim_metrics
from p3m.metrics.p3m import p3m_metrics
from p3m.workers import Runner

__all__ = [
    "DIM_KEYS",
    "P3M_KEYS",
    "PRIVACY_KEYS",
    "PROTOCOLS",
    "TRIMAP_KEYS",
    "EvaluationResult",
    "binarize_facemask",
    "evaluate_arrays",
    "evaluate_dataset",
    "evaluate_dirs",
    "format_problems",
]

#: P3M protocol, whole image (always).
P3M_KEYS = ("sad", "mse", "mad", "grad", "conn")
#: P3M protocol, with a trimap.
TRIMAP_KEYS = ("sad_t", "mse_t", "mad_t", "sad_fg", "sad_bg")
#: P3M protocol (IJCV 2024), with a face mask.
PRIVACY_KEYS = ("sad_privacy", "mse_privacy", "mad_privacy")
#: DIM protocol, unknown region (needs a trimap).
DIM_KEYS = ("dim_sad", "dim_mse", "dim_grad", "dim_conn")
_FAST_SKIPPED = ("grad", "conn", "dim_grad", "dim_conn")

# Column titles of the Markdown table, with the reference's log names and scales.
_TITLES = {
    "sad": "SAD",
    "mse": "MSE",
    "mad": "MAD",
    "grad": "Grad",
    "conn": "Conn",
    "sad_t": "SAD-T",
    "mse_t": "MSE-T",
    "mad_t": "MAD-T",
    "sad_fg": "SAD-FG",
    "sad_bg": "SAD-BG",
    "sad_privacy": "SAD-P",
    "mse_privacy": "MSE-P",
    "mad_privacy": "MAD-P",
    "dim_sad": "SAD (U)",
    "dim_mse": "MSE (U)",
    "dim_grad": "Grad (U)",
    "dim_conn": "Conn (U)",
}
_GRAYSCALE_MODES = {"L", "1", "I", "I;16", "I;16B", "I;16L", "I;16N"}


def binarize_facemask(facemask: np.ndarray) -> np.ndarray:
    """Face mask as boolean: ``value > 100`` for 8-bit masks (IJCV 2024 code), unchanged when already boolean."""
    mask = np.asarray(facemask)
    if mask.dtype == bool:
        return mask
    if np.issubdtype(mask.dtype, np.floating) and mask.size and float(mask.max()) <= 1.0:
        return mask * 255 > 100  # a [0, 1] float mask
    return mask > 100


def _as_unit_float(x: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (H, W) array, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{what} must be float in [0, 1] or uint8, got dtype {arr.dtype}")
    out = np.ascontiguousarray(arr, dtype=np.float64)
    lo, hi = float(out.min(initial=0.0)), float(out.max(initial=0.0))
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0.0 or hi > 1.0:
        raise ValueError(f"{what} values must lie in [0, 1] (uint8 arrays are divided by 255), got [{lo}, {hi}]")
    return out


def evaluate_arrays(
    pred: np.ndarray,
    gt: np.ndarray,
    trimap: np.ndarray | None = None,
    facemask: np.ndarray | None = None,
    protocol: str = "p3m",
    *,
    fast: bool = False,
) -> dict[str, float]:
    """Metrics of one prediction.

    ``pred``/``gt``: (H, W) float in [0, 1], or uint8 (divided by 255). ``trimap``: uint8 {0, 128, 255}; adds the
    P3M -T/-FG/-BG metrics and is required by the DIM protocol. ``facemask``: boolean or 8-bit (binarised
    ``> 100``); adds the privacy metrics. ``protocol``: "p3m", "dim" or "both". ``fast`` skips Grad and Conn.
    Keys: `P3M_KEYS`, `TRIMAP_KEYS`, `PRIVACY_KEYS`, `DIM_KEYS` (only those that apply).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    p = _as_unit_float(pred, "pred")
    a = _as_unit_float(gt, "gt")
    if p.shape != a.shape:
        raise ValueError(f"pred shape {p.shape} differs from gt shape {a.shape}")
    tri = None
    if trimap is not None:
        tri = np.asarray(trimap)
        if tri.shape != a.shape:
            raise ValueError(f"trimap shape {tri.shape} differs from gt shape {a.shape}")
        if tri.dtype != np.uint8:
            if tri.size and (tri.min() < 0 or tri.max() > 255 or np.any(tri != np.round(tri))):
                raise ValueError("trimap must hold 8-bit values {0, 128, 255}")
            tri = tri.astype(np.uint8)
    face = None
    if facemask is not None:
        face = binarize_facemask(facemask)
        if face.shape != a.shape:
            raise ValueError(f"facemask shape {face.shape} differs from gt shape {a.shape}")
    if protocol in ("dim", "both") and tri is None:
        raise ValueError("the DIM protocol scores the unknown region only: it needs a trimap")
    out: dict[str, float] = {}
    if protocol in ("p3m", "both"):
        out.update(p3m_metrics(p, a, tri, face, fast=fast))
    if protocol in ("dim", "both"):
        assert tri is not None  # checked above
        out.update(dim_metrics(p, a, tri, fast=fast))
    return out


# --------------------------------------------------------------------------- results


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _format(value: float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.6g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"


@dataclass
class EvaluationResult:
    """Per-image rows (``{"name": stem, metric: value, ...}``), per-metric means and how many images each mean
    averages, plus the items left out (``excluded``: missing predictions with ``allow_missing``; ``failures``:
    files that could not be scored)."""

    protocol: str
    keys: list[str]
    rows: list[dict] = field(default_factory=list)
    means: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    source: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # one line each, e.g. binary masks scored as mattes

    @property
    def ok(self) -> bool:
        """True when every listed image was scored."""
        return not self.failures

    def summary(self) -> dict:
        """JSON-ready summary: protocol, conventions, means, counts, exclusions and failures."""
        return {
            "protocol": self.protocol,
            "protocol_description": _protocol_description(self.protocol),
            "prediction_reading": "8-bit grayscale image / 255 (IJCV core/eval.py convention)",
            "averaging": "per image, arithmetic mean over the images (privacy: images with face pixels only)",
            "images": len(self.rows),
            "means": {k: _json_number(v) for k, v in self.means.items()},
            "counts": dict(self.counts),
            "excluded": list(self.excluded),
            "failures": list(self.failures),
            "warnings": list(self.warnings),
            "source": dict(self.source),
        }

    def to_markdown(self) -> str:
        """Markdown table of the means, one column per metric, with its protocol stated."""
        keys = [k for k in self.keys if k in self.means]
        lines = [
            f"**{_protocol_title(self.protocol)}**, {len(self.rows)} images "
            "(predictions read as 8-bit PNG / 255; per-image arithmetic mean)",
            "",
            "| " + " | ".join(_TITLES.get(k, k) for k in keys) + " |",
            "|" + "|".join("---:" for _ in keys) + "|",
            "| " + " | ".join(_format(self.means[k]) for k in keys) + " |",
        ]
        partial = [f"{_TITLES.get(k, k)} over {self.counts[k]}" for k in keys if self.counts.get(k) != len(self.rows)]
        notes = []
        if partial:
            notes.append("Means over fewer images: " + ", ".join(partial) + ".")
        if any(k in keys for k in P3M_KEYS + TRIMAP_KEYS + PRIVACY_KEYS):
            notes.append("P3M protocol: SAD/SAD-T/-FG/-BG/-P and Conn / 1000, Grad / 10, MSE and MAD raw.")
        if any(k in keys for k in DIM_KEYS):
            notes.append("DIM protocol: unknown region only; SAD, Grad, Conn / 1000, MSE raw.")
        if self.excluded:
            notes.append(f"Excluded (no prediction): {len(self.excluded)} images.")
        if self.failures:
            notes.append(f"Not scored (unreadable): {len(self.failures)} files.")
        if notes:
            lines += ["", *notes]
        return "\n".join(lines) + "\n"

    def per_image_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["name", *self.keys])
        for row in self.rows:
            writer.writerow([row["name"], *(repr(float(row[k])) if k in row else "" for k in self.keys)])
        return buffer.getvalue()

    def write(self, outdir: str | os.PathLike) -> list[Path]:
        """Write ``per_image.csv``, ``summary.json`` and ``summary.md`` into ``outdir`` (atomically, each file)."""
        out = Path(outdir)
        out.mkdir(parents=True, exist_ok=True)
        written = [
            write_bytes_atomic(out / "per_image.csv", self.per_image_csv().encode()),
            write_bytes_atomic(out / "summary.json", (json.dumps(self.summary(), indent=2) + "\n").encode()),
            write_bytes_atomic(out / "summary.md", self.to_markdown().encode()),
        ]
        return [Path(p) for p in written]


def _json_number(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def _protocol_title(protocol: str) -> str:
    return {
        "p3m": "P3M protocol (whole image)",
        "dim": "DIM protocol (unknown region)",
        "both": "P3M protocol (whole image) and DIM protocol (unknown region)",
    }[protocol]


#: Where each protocol's definitions come from, cited wherever its numbers are shown.
P3M_PROTOCOL_SOURCE = "the P3M authors' evaluation code, JizhiziLi/P3M core/evaluate.py"
DIM_PROTOCOL_SOURCE = "the Deep Image Matting MATLAB evaluation code, as in Yaoyi-Li/GCA-Matting DIM_evaluation_code"


def _protocol_description(protocol: str) -> str:
    p3m = (
        f"P3M protocol ({P3M_PROTOCOL_SOURCE}): whole-image SAD/MAD/MSE, Grad (Gaussian derivatives sigma 1.4, "
        "/10), Conn (/1000); -T: p forced to 0/1 on the trimap's known pixels; privacy: inside the face mask"
    )
    dim = (
        f"DIM protocol ({DIM_PROTOCOL_SOURCE}): unknown region only (trimap 128), MATLAB conventions (mat2gray, "
        "normalised 9x9 kernel, replicate border), SAD/Grad/Conn /1000"
    )
    return {"p3m": p3m, "dim": dim, "both": p3m + "; " + dim}[protocol]


# --------------------------------------------------------------------------- directories


@dataclass(frozen=True)
class _Item:
    name: str
    pred: Path
    gt: Path
    trimap: Path | None
    facemask: Path | None


def _index(folder: Path, role: str, problems: list[str]) -> dict[str, Path]:
    if not folder.is_dir():
        problems.append(f"{folder}: {role} folder does not exist")
        return {}
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if path.stem in found:
            problems.append(f"{path}: two {role} files share the stem {path.stem!r} ({found[path.stem].name})")
            continue
        found[path.stem] = path
    if not found and folder.is_dir():
        problems.append(f"{folder}: {role} folder contains no images")
    return found


def _header(path: Path, problems: list[str], *, grayscale: bool) -> tuple[int, int] | None:
    """(H, W) from the file header; a problem (and None) when it is not a readable (grayscale) image."""
    from PIL import Image, UnidentifiedImageError

    try:
        if path.stat().st_size == 0:
            problems.append(f"{path}: empty file (0 bytes), not an image")
            return None
        with Image.open(path) as img:
            mode, (w, h) = img.mode, img.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        problems.append(f"{path}: not a readable image ({exc.__class__.__name__})")
        return None
    if grayscale and mode not in _GRAYSCALE_MODES:
        problems.append(f"{path}: prediction is not a grayscale image (mode {mode}); save alpha as 8-bit gray PNG")
        return None
    return h, w


MATTE_SUFFIX = "_alpha"
# the other files `p3m matte` writes beside <stem>_alpha.png (p3m.choices.OUTPUT_KINDS): not predictions
_OTHER_SUFFIXES = tuple(f"_{kind}" for kind in OUTPUT_KINDS if f"_{kind}" != MATTE_SUFFIX)


def _accept_matte_names(preds: dict[str, Path], gt: dict[str, Path]) -> dict[str, Path]:
    """Read a `p3m matte` output folder: ``<stem>_alpha.png`` stands for ``<stem>`` when no exact-stem prediction
    exists, and its other kinds (``<stem>_rgba.png``, ``_fg``, ``_composite``) are left out, never reported as
    extra predictions. A ground truth that is itself named like one of those files keeps its prediction."""
    out = dict(preds)
    for stem in preds:
        base = stem[: -len(MATTE_SUFFIX)]
        if stem.endswith(MATTE_SUFFIX) and stem not in gt and base in gt and base not in preds:
            out[base] = out.pop(stem)
    for stem in preds:
        suffix = next((s for s in _OTHER_SUFFIXES if stem.endswith(s)), None)
        if suffix is not None and stem not in gt:
            base = stem[: -len(suffix)]
            if base in gt or base + MATTE_SUFFIX in preds:
                out.pop(stem, None)
    return out


def _match(
    pred_dir: Path,
    gt: dict[str, Path],
    trimaps: dict[str, Path] | None,
    facemasks: dict[str, Path] | None,
    problems: list[str],
    allow_missing: bool,
) -> tuple[list[_Item], list[str]]:
    """Pair predictions with ground truth by stem; every problem is appended (missing ones only if not allowed).

    Returns the items and the ground-truth files without a prediction."""
    preds = _accept_matte_names(_index(pred_dir, "prediction", problems), gt)
    if not preds or not gt:  # an empty folder: said once by _index, not once per file of the other side
        return [], []
    missing = [str(gt[stem]) for stem in sorted(gt) if stem not in preds]
    for stem in sorted(set(preds) - set(gt)):
        problems.append(f"{preds[stem]}: extra prediction, no ground truth with stem {stem!r}")
    if not allow_missing:
        for stem in sorted(gt):
            if stem not in preds:
                problems.append(f"{gt[stem]}: missing prediction (no file {stem}.* in {pred_dir})")
    items = []
    for stem in sorted(gt):
        if stem not in preds:
            continue
        tri = trimaps.get(stem) if trimaps is not None else None
        face = facemasks.get(stem) if facemasks is not None else None
        if trimaps is not None and tri is None:
            problems.append(f"{gt[stem]}: no trimap with stem {stem!r}")
        sizes = {"ground truth": _header(gt[stem], problems, grayscale=False)}
        pred_size = _header(preds[stem], problems, grayscale=True)
        if tri is not None:
            sizes["trimap"] = _header(tri, problems, grayscale=False)
        if face is not None:
            sizes["facemask"] = _header(face, problems, grayscale=False)
        gt_size = sizes["ground truth"]
        if pred_size is not None and gt_size is not None and pred_size != gt_size:
            problems.append(
                f"{preds[stem]}: size {pred_size[1]}x{pred_size[0]} differs from the ground truth "
                f"{gt_size[1]}x{gt_size[0]} (W x H)"
            )
        for role in ("trimap", "facemask"):
            size = sizes.get(role)
            if size is not None and gt_size is not None and size != gt_size:
                problems.append(f"{tri if role == 'trimap' else face}: {role} size differs from the ground truth")
        items.append(_Item(stem, preds[stem], gt[stem], tri, face))
    return items, missing


def _mask_kind(values: np.ndarray) -> str | None:
    """ "zero_one" for an 8-bit matte holding only 0 and 1 (a 0/1 mask saved as is: alpha <= 1/255), "binary"
    for one holding only 0 and 255 (a hard mask, no soft edge); None for a soft matte."""
    if not values.any():
        return None
    if values.max() <= 1:
        return "zero_one"
    if np.isin(values, (0, 255)).all() and (values == 0).any():
        return "binary"
    return None


def _score(item: _Item, protocol: str, fast: bool) -> tuple[str, dict[str, float] | None, str | None, tuple]:
    """Worker: read the files of one item and compute its metrics; errors come back as one line. The last
    element says which of prediction / ground truth look like masks rather than mattes (see `_mask_kind`)."""
    try:
        pred = read_mask(item.pred)
        gt = read_mask(item.gt)
        trimap = read_mask(item.trimap) if item.trimap is not None else None
        face = read_mask(item.facemask) > 100 if item.facemask is not None else None
        kinds = (_mask_kind(pred), _mask_kind(gt))
        return item.name, evaluate_arrays(pred, gt, trimap, face, protocol, fast=fast), None, kinds
    except (ImageError, ValueError) as exc:
        return item.name, None, str(exc), (None, None)


@dataclass(frozen=True)
class _Scorer:
    """`_score` as a worker factory (`p3m.workers.WorkerFactory`) for runners in other processes (a cluster)."""

    protocol: str
    fast: bool

    def __call__(self):
        return lambda item, data: _score(item, self.protocol, self.fast)

    def failed(self, item: _Item, message: str) -> tuple:
        return item.name, None, f"{item.pred}: {message}", (None, None)


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def _run(items: Sequence[_Item], protocol: str, fast: bool, workers: int, progress: bool, runner: Runner | None):
    bar = tqdm(total=len(items), desc="evaluate", unit="img", file=sys.stderr, disable=not progress)
    try:
        if runner is not None:
            for _, scored in runner(_Scorer(protocol, fast), items):
                yield scored
                bar.update(1)
            return
        if workers <= 1 or len(items) <= 1:
            for item in items:
                yield _score(item, protocol, fast)
                bar.update(1)
            return
        import multiprocessing

        # spawn: safe whatever the parent holds (torch threads during training, numba, OpenCV pools)
        context = multiprocessing.get_context("spawn")
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
                futures = [pool.submit(_score, item, protocol, fast) for item in items]
                for future in as_completed(futures):  # rows are put back in order by the caller
                    yield future.result()
                    bar.update(1)
        except BrokenProcessPool as exc:
            raise P3MError(
                "an evaluation worker process died (out of memory? a script without an "
                "`if __name__ == '__main__':` guard?); retry with workers=1 / --workers 1"
            ) from exc
    finally:
        bar.close()


def _keys(protocol: str, with_trimap: bool, with_face: bool, fast: bool) -> list[str]:
    keys: list[str] = []
    if protocol in ("p3m", "both"):
        keys += list(P3M_KEYS)
        if with_trimap:
            keys += list(TRIMAP_KEYS)
        if with_face:
            keys += list(PRIVACY_KEYS)
    if protocol in ("dim", "both"):
        keys += list(DIM_KEYS)
    return [k for k in keys if not (fast and k in _FAST_SKIPPED)]


def _evaluate_items(
    items: list[_Item],
    missing: list[str],
    protocol: str,
    *,
    with_trimap: bool,
    with_face: bool,
    workers: int | None,
    progress: bool,
    fast: bool,
    source: dict[str, str],
    runner: Runner | None,
) -> EvaluationResult:
    keys = _keys(protocol, with_trimap, with_face, fast)
    result = EvaluationResult(protocol=protocol, keys=keys, excluded=list(missing), source=source)
    n_workers = max(1, min(workers if workers else (os.cpu_count() or 1), len(items)))
    by_name: dict[str, dict[str, float]] = {}
    kinds_by_name: dict[str, tuple] = {}
    for name, metrics, error, kinds in _run(items, protocol, fast, n_workers, progress, runner):
        if error is not None:
            result.failures.append(error)
        else:
            by_name[name] = metrics
            kinds_by_name[name] = kinds
    result.warnings = _mask_warnings(items, kinds_by_name)
    for item in items:
        if item.name in by_name:
            result.rows.append({"name": item.name, **by_name[item.name]})
    for key in keys:
        values = [row[key] for row in result.rows if key in row]
        if key in PRIVACY_KEYS:
            values = [v for v in values if not math.isnan(v)]  # images without face pixels
        result.means[key] = _mean(values)
        result.counts[key] = len(values)
    return result


def _mask_warnings(items: list[_Item], kinds: dict[str, tuple]) -> list[str]:
    """One line per kind of mask found among the scored files, naming the first of them."""
    scored = [item for item in items if item.name in kinds]
    lines = []
    for index, role in ((0, "prediction"), (1, "ground-truth matte")):
        for kind in ("zero_one", "binary") if index == 0 else ("zero_one",):
            hits = [item for item in scored if kinds[item.name][index] == kind]
            if not hits:
                continue
            first = hits[0].pred if index == 0 else hits[0].gt
            if kind == "zero_one":
                lines.append(
                    f"{len(hits)} of {len(scored)} {role}s hold only the values 0 and 1 (e.g. {first}): they "
                    "are read as alpha = value / 255, i.e. almost fully transparent; save a 0/1 mask "
                    "as 0/255"
                )
            else:
                lines.append(
                    f"{len(hits)} of {len(scored)} {role}s are binary masks (only 0 and 255, no soft "
                    f"edge; e.g. {first}): they are scored as mattes as they are"
                )
    return lines


def _check_folders(folders: list[tuple[str, str | os.PathLike | None]]) -> None:
    """DatasetError naming exactly the folders that are missing (or are files), before anything else is looked at."""
    problems = []
    for role, folder in folders:
        if folder is None:
            continue
        path = Path(folder)
        if not path.exists():
            problems.append(f"{role} folder {path} does not exist")
        elif not path.is_dir():
            problems.append(f"{role} folder {path} is a file, not a folder")
    if problems:
        raise DatasetError("; ".join(problems))


def _raise_problems(problems: list[str], what: str) -> None:
    unique = list(dict.fromkeys(problems))
    noun = "problem" if len(unique) == 1 else "problems"
    raise DatasetError(f"{what}: {len(unique)} {noun}:\n" + "\n".join(f"  - {p}" for p in unique))


def _check_protocol(protocol: str, has_trimaps: bool) -> None:
    if protocol not in PROTOCOLS:
        raise DatasetError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if protocol in ("dim", "both") and not has_trimaps:
        raise DatasetError("the DIM protocol scores the unknown region only: it needs trimaps (--trimap)")


def evaluate_dirs(
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    trimap_dir: str | os.PathLike | None = None,
    facemask_dir: str | os.PathLike | None = None,
    *,
    protocol: str = "p3m",
    workers: int | None = None,
    allow_missing: bool = False,
    progress: bool = False,
    fast: bool = False,
    runner: Runner | None = None,
) -> EvaluationResult:
    """Score every ground-truth matte in ``gt_dir`` against the prediction with the same stem in ``pred_dir``.

    Trimaps / face masks (same stems) add the -T and privacy metrics; a face mask may be absent for some stems
    (no face). Every problem (missing or extra prediction, size mismatch, non-grayscale or unreadable file) is
    collected and raised at once as `DatasetError`; with ``allow_missing`` missing predictions are listed in
    ``result.excluded`` instead. Files that fail to decode while scoring are skipped and listed in
    ``result.failures``. ``workers``: processes (default: all cores); ``runner`` (`p3m.workers`): score
    elsewhere instead, e.g. on a Ray cluster (`p3m.cluster.runner.RayRunner`; the files must be where every
    worker sees them).
    """
    _check_protocol(protocol, trimap_dir is not None)
    _check_folders(
        [("prediction", pred_dir), ("ground truth", gt_dir), ("trimap", trimap_dir), ("facemask", facemask_dir)]
    )
    problems: list[str] = []
    gt = _index(Path(gt_dir), "ground truth", problems)
    trimaps = _index(Path(trimap_dir), "trimap", problems) if trimap_dir is not None else None
    facemasks = _index(Path(facemask_dir), "facemask", []) if facemask_dir is not None else None
    if facemask_dir is not None and not Path(facemask_dir).is_dir():
        problems.append(f"{facemask_dir}: facemask folder does not exist")
    items, missing = _match(Path(pred_dir), gt, trimaps, facemasks, problems, allow_missing)
    if problems:
        _raise_problems(problems, f"cannot evaluate {pred_dir} against {gt_dir}")
    if not items:
        raise DatasetError(f"{pred_dir}: no prediction matches a ground-truth matte in {gt_dir}")
    source = {"pred": str(pred_dir), "gt": str(gt_dir)}
    if trimap_dir is not None:
        source["trimap"] = str(trimap_dir)
    if facemask_dir is not None:
        source["facemask"] = str(facemask_dir)
    return _evaluate_items(
        items,
        missing,
        protocol,
        with_trimap=trimap_dir is not None,
        with_face=facemask_dir is not None,
        workers=workers,
        progress=progress,
        fast=fast,
        source=source,
        runner=runner,
    )


def evaluate_dataset(
    pred_dir: str | os.PathLike,
    root: str | os.PathLike,
    split: str,
    *,
    protocol: str = "p3m",
    workers: int | None = None,
    allow_missing: bool = False,
    progress: bool = False,
    fast: bool = False,
    runner: Runner | None = None,
) -> EvaluationResult:
    """`evaluate_dirs` on a P3M-10k test split (``"P3M-500-P"`` or ``"P3M-500-NP"``) found by
    `p3m.data.p3m10k.open_dataset`: its masks, trimaps and (where present) face masks."""
    _check_folders([("prediction", pred_dir)])
    # Sizes are checked below for this split only (validating the whole root would read every train header).
    samples = open_dataset(root, validate=False, require=[split]).split(split)
    if not samples:
        raise DatasetError(f"{root}: split {split} has no samples")
    has_trimaps = all(s.trimap is not None for s in samples)
    has_faces = any(s.facemask is not None for s in samples)
    _check_protocol(protocol, has_trimaps)
    problems: list[str] = []
    gt = {s.stem: Path(s.mask) for s in samples}
    trimaps = {s.stem: Path(s.trimap) for s in samples if s.trimap is not None} if has_trimaps else None
    facemasks = {s.stem: Path(s.facemask) for s in samples if s.facemask is not None} if has_faces else None
    items, missing = _match(Path(pred_dir), gt, trimaps, facemasks, problems, allow_missing)
    if problems:
        _raise_problems(problems, f"cannot evaluate {pred_dir} against {split} of {root}")
    if not items:
        raise DatasetError(f"{pred_dir}: no prediction matches a {split} matte")
    source = {"pred": str(pred_dir), "dataset": str(root), "split": split}
    return _evaluate_items(
        items,
        missing,
        protocol,
        with_trimap=has_trimaps,
        with_face=has_faces,
        workers=workers,
        progress=progress,
        fast=fast,
        source=source,
        runner=runner,
    )


def format_problems(lines: Iterable[str]) -> str:
    """Indented list, one line per entry (used by the CLI for exclusions and failures)."""
    return "\n".join(f"  - {line}" for line in lines)
