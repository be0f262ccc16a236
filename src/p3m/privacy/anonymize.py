"""Anonymise images, folders and datasets the P3M way, with a per-image report.

Per image: detect faces -> outline each (`p3m.privacy.landmarks`: P3M's landmark region, a covering shape where
the landmarks are not trusted, or the box ellipse) -> soft, anti-aliased face region (`soft_mask`) -> private
area (minus the transition band of the alpha matte / trimap when one is given) -> obfuscate -> write the image
(same format, no metadata) and its face mask (PNG, 255 wherever a pixel was changed). The band is kept only outside
each face's identifying core (eyes, brows, nose, lips, chin: `p3m.privacy.landmarks.identifying_core`): where it
crosses the core (a profile against the background, hair over the eyes) a kept band would show the face itself,
so it is obfuscated there as well. Every image gets a report row (which region each face got, how much of its core
the band crossed); images where no face was found are flagged for manual review (a back view is
fine, a missed face is a privacy leak). A bad file is reported and skipped, the others finish.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from p3m.atomic import is_whole, remove_orphans
from p3m.data.obfuscate import METHODS, obfuscate, private_area, private_area_outside, transition_band
from p3m.errors import DatasetError, ImageError, P3MError, item_error_message
from p3m.io import (
    ANONYMIZE_REPORT,
    IMAGE_EXTENSIONS,
    collect_images,
    find_inputs,
    read_image,
    read_mask,
    write_image_set,
)
from p3m.privacy.detect import Face, FaceDetector, default_detector
from p3m.privacy.landmarks import REGION_MODES, FaceOutline, FaceOutliner
from p3m.privacy.region import MIN_FEATHER, soft_mask
from p3m.workers import Runner, WorkerFactory, run_here

REPORT_NAME = ANONYMIZE_REPORT
REPORT_FIELDS = ("stem", "source", "output", "faces", "boxes", "scores", "regions", "band_in_core", "status", "message")
DEFAULT_MASK_SCALE = 1.1
DEFAULT_THRESHOLD = 0.2
# a face whose identifying core the transition band crosses by at least this share is named in the summary
BAND_IN_CORE_NOTE = 0.05
# width of the soft edge, relative to the face size (`FaceOutline.size`), and at least MIN_FEATHER px
EDGE_FRACTION = 0.03
# Formats written back as they came; anything else (e.g. .bmp input) is written as PNG (lossless).
_KEEP_FORMATS = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"}


@dataclass
class AnonymizeOptions:
    """How images are anonymised (see docs/privacy.md)."""

    method: str = "blur"
    strength: float = 1.0
    region: str = "landmarks"  # or "ellipse" (the box ellipse at mask_scale)
    forehead: bool = False  # the landmark region reaches the top of the forehead, not the brows
    feather: float | None = None  # width of the soft edge in px; None: EDGE_FRACTION of the face size
    mask_scale: float = DEFAULT_MASK_SCALE
    band_dilation: int = 3
    quality: int = 95

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise P3MError(f"unknown obfuscation method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.region not in REGION_MODES:
            raise P3MError(f"unknown face region {self.region!r}; choose from {', '.join(REGION_MODES)}")
        if not self.mask_scale > 0:
            raise P3MError(f"mask scale must be > 0, got {self.mask_scale}")
        if not self.strength > 0:
            raise P3MError(f"strength must be > 0, got {self.strength}")
        if self.feather is not None and not self.feather >= 0:
            raise P3MError(f"feather must be >= 0, got {self.feather}")
        if not 1 <= self.quality <= 100:
            raise P3MError(f"JPEG quality must be in 1..100, got {self.quality}")

    def outliner(self) -> FaceOutliner:
        """The `FaceOutliner` these options ask for."""
        return FaceOutliner(self.region, forehead=self.forehead, ellipse_scale=self.mask_scale)

    def edge_width(self, outline: FaceOutline) -> float:
        """Width of the soft edge of a face's region in px (at least MIN_FEATHER: always anti-aliased)."""
        width = EDGE_FRACTION * outline.size if self.feather is None else self.feather
        return max(MIN_FEATHER, width)


@dataclass
class AnonymizeResult:
    """One anonymised image: the pixels; ``weights`` the private area's obfuscation weights (float32 HxW in [0, 1],
    soft at the edge); ``private`` where pixels were changed (bool HxW, weights > 0); the faces found and the
    outline each got; ``band_in_core`` per face, the share of its identifying core that the transition band crossed
    (obfuscated all the same; empty without a matte or trimap)."""

    image: np.ndarray
    private: np.ndarray
    faces: list[Face]
    outlines: list[FaceOutline] = field(default_factory=list)
    weights: np.ndarray | None = None
    band_in_core: list[float] = field(default_factory=list)


def anonymize_image(
    image: np.ndarray,
    *,
    detector: FaceDetector | None = None,
    options: AnonymizeOptions | None = None,
    alpha: np.ndarray | None = None,
    trimap: np.ndarray | None = None,
    faces: Sequence[Face] | None = None,
    outliner: FaceOutliner | None = None,
) -> AnonymizeResult:
    """Detect faces in an HxWx3 uint8 RGB image (or use ``faces``), outline each (``outliner``, default from
    ``options``) and obfuscate their private area."""
    options = options or AnonymizeOptions()
    if faces is None:
        faces = (detector or default_detector(DEFAULT_THRESHOLD)).detect(image)
    faces = list(faces)
    for name, arr in (("alpha matte", alpha), ("trimap", trimap)):
        if arr is not None and arr.shape[:2] != image.shape[:2]:
            raise ImageError(
                f"{name} is {arr.shape[1]}x{arr.shape[0]} but the image is {image.shape[1]}x{image.shape[0]}"
            )
    outliner = outliner or options.outliner()
    outlines = outliner.outlines(image, faces)
    edges = [options.edge_width(o) for o in outlines]
    region = soft_mask(image.shape, [o.polygon for o in outlines], edges)
    band_edge = float(np.median(edges)) if edges else 0.0
    if alpha is None and trimap is None:
        weights, band_in_core = private_area(region), []
    else:
        band = transition_band(alpha=alpha, trimap=trimap, band_dilation=options.band_dilation)
        cores = [
            soft_mask(image.shape, [o.core], e) for o, e in zip(outlines, edges, strict=True) if o.core is not None
        ]
        band_in_core = [float(c[band].sum() / max(float(c.sum()), 1e-6)) for c in cores]
        core = np.maximum.reduce(cores) if cores else None
        weights = private_area_outside(region, band, band_edge=band_edge, core=core)
    out = obfuscate(image, weights, options.method, strength=options.strength)
    return AnonymizeResult(out, weights > 0, faces, outlines, weights, band_in_core)


@dataclass
class ImageRecord:
    """One report row. status: "ok" (faces obfuscated), "no_face" (written unchanged, review it), "error"."""

    stem: str
    source: str
    output: str = ""
    faces: list[Face] = field(default_factory=list)
    outlines: list[FaceOutline] = field(default_factory=list)
    band_in_core: list[float] = field(default_factory=list)
    status: str = "ok"
    message: str = ""

    def row(self) -> dict[str, str]:
        return {
            "stem": self.stem,
            "source": self.source,
            "output": self.output,
            "faces": str(len(self.faces)),
            "boxes": ";".join(" ".join(f"{v:.1f}" for v in f.box) for f in self.faces),
            "scores": ";".join(f"{f.score:.3f}" for f in self.faces),
            "regions": ";".join(o.method for o in self.outlines),
            "band_in_core": ";".join(f"{v:.2f}" for v in self.band_in_core),
            "status": self.status,
            "message": self.message,
        }


@dataclass
class AnonymizeReport:
    """All rows of a run; `exit_code` says whether it succeeded."""

    records: list[ImageRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # inputs that matched nothing etc.

    @property
    def errors(self) -> list[ImageRecord]:
        return [r for r in self.records if r.status == "error"]

    @property
    def no_face(self) -> list[ImageRecord]:
        return [r for r in self.records if r.status == "no_face"]

    def exit_code(self, strict: bool = False) -> int:
        """0 when every image was written; 1 on any error (and, with ``strict``, any image without a face)."""
        if self.errors or self.problems or (strict and self.no_face):
            return 1
        return 0

    def write_csv(self, path: str | Path) -> Path:
        """Write the report as CSV (atomically)."""
        from p3m.io import write_csv

        return write_csv(path, REPORT_FIELDS, (r.row() for r in self.records))

    def summary(self) -> str:
        """A few human-readable lines."""
        n = len(self.records)
        n_faces = sum(len(r.faces) for r in self.records if r.status == "ok")
        n_ok = sum(r.status == "ok" for r in self.records)
        lines = [f"anonymized {n_ok + len(self.no_face)} of {n} images: {n_faces} faces obfuscated in {n_ok} images"]
        covered = [r.stem for r in self.records if any(o.method == "cover" for o in r.outlines)]
        if covered:
            names = ", ".join(covered[:20]) + (" ..." if len(covered) > 20 else "")
            lines.append(
                f"{len(covered)} images have faces whose landmarks were not trusted: covered by a larger shape "
                f"instead (see the report's regions column): {names}"
            )
        crossed = [r.stem for r in self.records if any(v >= BAND_IN_CORE_NOTE for v in r.band_in_core)]
        if crossed:
            names = ", ".join(crossed[:20]) + (" ..." if len(crossed) > 20 else "")
            lines.append(
                f"{len(crossed)} images have faces whose eyes, nose, mouth or chin lie in the matte's transition band "
                f"(a profile, hair over the eyes): obfuscated there as well (report column band_in_core): {names}"
            )
        if self.no_face:
            names = ", ".join(r.stem for r in self.no_face[:20]) + (" ..." if len(self.no_face) > 20 else "")
            lines.append(
                f"NO FACE FOUND in {len(self.no_face)} images (check them by hand; a missed face is a leak): {names}"
            )
        if self.errors:
            lines.append(f"{len(self.errors)} images failed: " + ", ".join(r.stem for r in self.errors[:20]))
        for p in self.problems:
            lines.append(f"input problem: {p}")
        return "\n".join(lines)


def _output_suffix(path: Path) -> str:
    ext = path.suffix.lower()
    return ext if ext in _KEEP_FORMATS else ".png"


def _find_by_stem(folder: Path, stem: str) -> Path | None:
    """`<stem>.<ext>`, else `p3m matte`'s `<stem>_alpha.png`, in `folder` (None when neither exists)."""
    for name in (stem, f"{stem}_alpha"):
        for ext in (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"):
            p = folder / f"{name}{ext}"
            if p.is_file():
                return p
        for p in sorted(folder.glob(f"{name}.*")):
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                return p
    return None


Progress = Callable[[ImageRecord], None]


@dataclass(frozen=True)
class AnonymizeTask:
    """One image to anonymise and where its files go (planned by `anonymize_files` / `anonymize_dataset`).

    ``alpha_path`` / ``trimap_path``: the matte and trimap whose transition band is kept; ``extra_writes``:
    (source, destination) files re-encoded into the same set (a dataset's mask and trimap)."""

    source: Path
    stem: str
    image_out: Path
    facemask_out: Path
    alpha_path: Path | None = None
    trimap_path: Path | None = None
    extra_writes: tuple[tuple[Path, Path], ...] = ()


def anonymize_task(
    detector: FaceDetector,
    outliner: FaceOutliner,
    options: AnonymizeOptions,
    task: AnonymizeTask,
    data: bytes | None = None,
) -> ImageRecord:
    """Anonymise one image and write its whole set; every failure becomes an "error" record naming the file.

    ``data``: the image file's bytes when they were read already (a cluster reads them where they are stored),
    else the file is read from ``task.source``; the same pixels either way.
    """
    source = task.source
    rec = ImageRecord(stem=task.stem, source=str(source))
    try:
        image = read_image(source if data is None else data, name=str(source))
        alpha = read_mask(task.alpha_path) if task.alpha_path is not None else None
        trimap = read_mask(task.trimap_path) if task.trimap_path is not None else None
        try:
            result = anonymize_image(
                image, detector=detector, options=options, alpha=alpha, trimap=trimap, outliner=outliner
            )
        except ImageError as exc:
            raise ImageError(f"{source}: {exc}") from None
        # Copies (dataset masks, trimaps) are decoded and re-encoded so that they carry no metadata either.
        # The whole set (copies, face mask, image) is written at once, or nothing of it.
        outputs = [(dst, read_mask(src)) for src, dst in task.extra_writes]
        outputs += [(task.facemask_out, result.private.astype(np.uint8) * 255), (task.image_out, result.image)]
        write_image_set(outputs, quality=options.quality)
        rec.output = str(task.image_out)
        rec.faces = result.faces
        rec.outlines = result.outlines
        rec.band_in_core = result.band_in_core
        rec.status = "ok" if result.faces else "no_face"
        if not result.faces:
            rec.message = "no face found: written unchanged; check by hand"
    except (P3MError, OSError, ValueError) as exc:
        rec.status = "error"
        rec.message = item_error_message(exc, source)
    return rec


@dataclass(frozen=True)
class AnonymizeWorker:
    """A picklable worker factory (`p3m.workers.WorkerFactory`): builds the face detector once (``make_detector``,
    e.g. ``functools.partial(CenterFaceDetector, 0.2)``) and returns `anonymize_task` bound to it."""

    make_detector: Callable[[], FaceDetector]
    options: AnonymizeOptions

    def __call__(self) -> Callable[[AnonymizeTask, bytes | None], ImageRecord]:
        return partial(anonymize_task, self.make_detector(), self.options.outliner(), self.options)

    def failed(self, task: AnonymizeTask, message: str) -> ImageRecord:
        return ImageRecord(task.stem, str(task.source), status="error", message=f"{task.source}: {message}")


def _run_tasks(
    planned: list[ImageRecord | AnonymizeTask],
    worker: WorkerFactory,
    runner: Runner,
    progress: Progress | None,
) -> list[ImageRecord]:
    """Run the planned tasks (records decided while planning stay as they are) -> records in planned order;
    ``progress`` sees each record as it is done."""
    records: list[ImageRecord | None] = [p if isinstance(p, ImageRecord) else None for p in planned]
    slots = [i for i, p in enumerate(planned) if isinstance(p, AnonymizeTask)]
    decided = iter([i for i, r in enumerate(records) if r is not None] + [len(planned)])
    next_decided = next(decided)

    def report_decided(before: int) -> None:  # in planned order when the runner keeps it (one machine)
        nonlocal next_decided
        while next_decided < before:
            if progress:
                progress(planned[next_decided])  # type: ignore[arg-type]
            next_decided = next(decided)

    for index, rec in runner(worker, [planned[i] for i in slots]):
        report_decided(slots[index])
        records[slots[index]] = rec
        if progress:
            progress(rec)
    report_decided(len(planned))
    return [r for r in records if r is not None]


def _worker(
    detector: FaceDetector | None, make_detector: Callable[[], FaceDetector] | None, options: AnonymizeOptions
) -> WorkerFactory:
    """The worker factory: `AnonymizeWorker` when the detector is described by ``make_detector`` (what a cluster
    needs: each worker builds its own), else one bound to the given (or default) detector, for this process."""
    if make_detector is not None:
        return AnonymizeWorker(make_detector, options)
    fixed = detector or default_detector(DEFAULT_THRESHOLD)
    return lambda: partial(anonymize_task, fixed, options.outliner(), options)


def _refuse_overwrite(planned: Iterable[Path], inputs: Iterable[Path], outdir: Path) -> None:
    """P3MError when any planned output exists (the input images themselves when OUTDIR is their folder)."""
    existing = [p for p in dict.fromkeys(planned) if p.exists()]
    if not existing:
        return
    sources = {p.resolve() for p in inputs}
    originals = sum(p.resolve() in sources for p in existing)
    shown = ", ".join(str(p) for p in existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
    what = f", {originals} of them the input images themselves" if originals else ""
    interrupted = [str(p) for p in existing if not is_whole(p)]  # p3m.atomic.commit_set: a kill mid-set
    if interrupted:
        what += f", {len(interrupted)} of them left incomplete by an interrupted run ({', '.join(interrupted[:5])})"
    raise P3MError(
        f"refusing to overwrite {len(existing)} existing file(s) in {outdir}{what}: {shown}; "
        "pass --overwrite or choose another -o"
    )


def anonymize_files(
    inputs: Iterable[str | Path],
    outdir: str | Path,
    *,
    alpha_dir: str | Path | None = None,
    detector: FaceDetector | None = None,
    options: AnonymizeOptions | None = None,
    recursive: bool = False,
    progress: Progress | None = None,
    overwrite: bool = False,
    make_detector: Callable[[], FaceDetector] | None = None,
    runner: Runner = run_here,
    collect: Callable[..., tuple[list[Path], list[str], list[Path]]] = find_inputs,
) -> AnonymizeReport:
    """Anonymise files/folders/globs into ``outdir/<stem>.<ext>`` + ``outdir/facemask/<stem>.png``.

    alpha_dir: folder of alpha mattes matched by stem (`<stem>.<ext>` or `p3m matte`'s `<stem>_alpha.png`);
    their transition band is kept untouched. An image without its matte is an error (nothing written for it). Writes
    ``outdir/anonymize_report.csv``. Existing outputs (the input images themselves when ``outdir`` is their
    folder) are a P3MError before anything is written, unless ``overwrite``.

    ``runner`` (`p3m.workers`): where the images are processed, here by default, or on a cluster
    (`p3m.cluster.runner.RayRunner`, with a picklable ``make_detector`` that each worker calls once, and
    ``collect=p3m.cluster.sources.collect_inputs`` for inputs on other file systems).
    """
    options = options or AnonymizeOptions()
    worker = _worker(detector, make_detector, options)
    outdir = Path(outdir)
    paths, problems, _ = collect(list(inputs), recursive, verb="anonymize")  # p3m's own outputs are no inputs
    alpha_folder = Path(alpha_dir) if alpha_dir is not None else None
    if alpha_folder is not None and not alpha_folder.is_dir():
        raise P3MError(f"{alpha_folder}: alpha folder not found")
    if not overwrite:
        first: dict[str, Path] = {}
        for path in paths:
            first.setdefault(path.stem, path)
        planned: list[Path] = []  # the report is rewritten on every run
        for stem, path in first.items():
            planned += [outdir / f"{stem}{_output_suffix(path)}", outdir / "facemask" / f"{stem}.png"]
        _refuse_overwrite(planned, paths, outdir)
    for folder in (outdir, outdir / "facemask"):  # temporary files a killed run left
        remove_orphans(folder)
    work: list[ImageRecord | AnonymizeTask] = []
    seen: dict[str, Path] = {}
    for path in paths:
        stem = path.stem
        rec: ImageRecord | AnonymizeTask
        if stem in seen:
            rec = ImageRecord(
                stem,
                str(path),
                status="error",
                message=f"{path}: same name as {seen[stem]}; outputs would overwrite each other",
            )
        else:
            seen[stem] = path
            alpha_path = None
            if alpha_folder is not None:
                alpha_path = _find_by_stem(alpha_folder, stem)
            if alpha_folder is not None and alpha_path is None:
                rec = ImageRecord(
                    stem,
                    str(path),
                    status="error",
                    message=f"{path}: no alpha matte {stem}.* or {stem}_alpha.* in {alpha_folder}",
                )
            else:
                rec = AnonymizeTask(
                    path,
                    stem,
                    outdir / f"{stem}{_output_suffix(path)}",
                    outdir / "facemask" / f"{stem}.png",
                    alpha_path=alpha_path,
                )
        work.append(rec)
    report = AnonymizeReport(_run_tasks(work, worker, runner, progress), problems)
    outdir.mkdir(parents=True, exist_ok=True)
    report.write_csv(outdir / REPORT_NAME)
    return report


def anonymize_dataset(
    root: str | Path,
    outdir: str | Path,
    *,
    detector: FaceDetector | None = None,
    options: AnonymizeOptions | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
    make_detector: Callable[[], FaceDetector] | None = None,
    runner: Runner = run_here,
) -> AnonymizeReport:
    """Convert ``ROOT/{image or original_image}/`` + ``ROOT/mask/`` (+ optional ``ROOT/trimap/``) to the P3M-10k layout.

    Writes ``OUTDIR/blurred_image/<stem>.jpg`` (whatever the method; P3M's folder name), ``OUTDIR/mask/<stem>.png``,
    ``OUTDIR/facemask/<stem>.png`` and, when present, ``OUTDIR/trimap/<stem>.png``; the mask (and trimap) bound
    the transition band that stays untouched. An image without a mask is an error. Existing outputs are a
    P3MError before anything is written, unless ``overwrite``. ``make_detector``, ``runner``: as in
    `anonymize_files` (the dataset's files must be where every worker sees them).
    """
    options = options or AnonymizeOptions()
    worker = _worker(detector, make_detector, options)
    root, outdir = Path(root), Path(outdir)
    image_dir = next((root / n for n in ("image", "original_image") if (root / n).is_dir()), None)
    mask_dir = root / "mask"
    missing = []
    if image_dir is None:
        missing.append(f"{root}: no image/ or original_image/ folder")
    if not mask_dir.is_dir():
        missing.append(f"{root}: no mask/ folder")
    if missing or image_dir is None:
        raise DatasetError("; ".join(missing))
    trimap_dir = root / "trimap" if (root / "trimap").is_dir() else None
    paths, problems = collect_images([image_dir], recursive_hint=None)
    if not overwrite:
        planned: list[Path] = []  # the report is rewritten on every run
        for path in paths:
            planned += [
                outdir / sub / f"{path.stem}{ext}"
                for sub, ext in (("blurred_image", ".jpg"), ("mask", ".png"), ("facemask", ".png"), ("trimap", ".png"))
                if sub != "trimap" or trimap_dir is not None
            ]
        _refuse_overwrite(planned, paths, outdir)
    for folder in (outdir, *(outdir / sub for sub in ("blurred_image", "mask", "facemask", "trimap"))):
        remove_orphans(folder)  # temporary files a killed run left
    work: list[ImageRecord | AnonymizeTask] = []
    seen: set[str] = set()
    for path in paths:
        stem = path.stem
        mask_path = _find_by_stem(mask_dir, stem)
        trimap_path = _find_by_stem(trimap_dir, stem) if trimap_dir is not None else None
        rec: ImageRecord | AnonymizeTask
        if stem in seen:
            rec = ImageRecord(stem, str(path), status="error", message=f"{path}: duplicate stem {stem}")
        elif mask_path is None:
            rec = ImageRecord(stem, str(path), status="error", message=f"{path}: no mask {stem}.* in {mask_dir}")
        else:
            extra: list[tuple[Path, Path]] = [(mask_path, outdir / "mask" / f"{stem}.png")]
            if trimap_path is not None:
                extra.append((trimap_path, outdir / "trimap" / f"{stem}.png"))
            rec = AnonymizeTask(
                path,
                stem,
                outdir / "blurred_image" / f"{stem}.jpg",
                outdir / "facemask" / f"{stem}.png",
                alpha_path=mask_path,
                trimap_path=trimap_path,
                extra_writes=tuple(extra),
            )
        seen.add(stem)
        work.append(rec)
    report = AnonymizeReport(_run_tasks(work, worker, runner, progress), problems)
    outdir.mkdir(parents=True, exist_ok=True)
    report.write_csv(outdir / REPORT_NAME)
    return report


def print_progress(rec: ImageRecord) -> None:
    """Default progress: one line per image that needs attention, on stderr."""
    if rec.status == "error":
        print(f"error: {rec.message}", file=sys.stderr)
    elif rec.status == "no_face":
        print(f"warning: {rec.source}: no face found (written unchanged; check by hand)", file=sys.stderr)
    for outline in rec.outlines:
        if outline.method == "cover":
            box = " ".join(f"{v:.0f}" for v in outline.face.box)
            print(f"note: {rec.source}: face at ({box}) covered by a larger shape: {outline.reason}", file=sys.stderr)
