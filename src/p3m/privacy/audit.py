"""Privacy audit of anonymised images: identifying detail left in faces, metadata, faces outside the facemask.

A blurred face can still look like a face to a detector, so a detection alone is no leak. For every face
the detector finds, the audit measures the detail left at the face's own scale:

- ``detail``: the median absolute Laplacian (grey levels) inside the face's core ellipse (0.7 x its box
  ellipse) after resizing the image so that the face box is 64 px wide (never upscaled). The median
  ignores hair strands and mosaic cell edges crossing the face, which cover a minority of its pixels.
  Measured here: un-obfuscated faces 5-15, P3M-blurred and p3m-blurred faces 0.1-1.0, mosaic 0-2.8.
- ``detail_ratio``: ``detail`` over the same statistic of the rest of the image (faces excluded), that
  statistic counted as at least ``min_detail`` (2.5 grey levels): a face that stands out from the picture's
  own texture. The floor is the level that 8-bit rounding alone leaves on smooth skin when a small face is
  measured at its native size (blurred faces of 12-64 px measure 1-2), so a properly blurred small face on a
  flat background is not taken for a detailed one.

A face leaks when ``detail >= max_detail`` (5.5: detailed whatever the picture) or ``detail_ratio >=
max_detail_ratio`` (1.0: at least as detailed as the rest of the picture, and at least ``min_detail``).
Measured on the shared portraits: the three un-obfuscated faces have detail 5.1-14.4, ratio 1.34-2.35; a
P3M-blurred face hidden under curly hair that was kept untouched (``p_bd6af989``) 5.18, ratio 0.96, and
passes; the other P3M-blurred faces 0.4-0.5. The price: a face with detail between 2.5 and 5.5 in a picture
at least as textured as the face passes.

With the originals given, the faces detected in each original that carry detail themselves (a leak by the
two criteria above; already blurred faces are not compared) are compared with the audited image at the same
64 px scale, through the SSIM map (`skimage.metrics.structural_similarity`) over the core ellipse, weighted
by the original's local contrast so that flat skin does not count as "similar":

- ``ssim``: the weighted mean; ``>= max_ssim`` (0.5) is a leak. Measured: blur 0.07-0.16, mosaic 0.11-0.35,
  zero 0.0, untouched 1.0.
- ``kept``: the weighted share whose local SSIM is at least 0.9, i.e. left as it was; ``>= max_kept`` (0.1) is
  a leak. It catches what the mean dilutes: a profile whose nose and lips lie in the kept transition band
  (``p_818e689d``: kept 0.34 / 0.31 / 0.16 and SSIM 0.47 / 0.51 / 0.25 for blur / mosaic / zero) while fully
  obfuscated faces keep at most 0.03.

- ``reid``: re-identification by a public face recogniser (`p3m.privacy.reid`: dlib's 128-d ResNet descriptors,
  the optional extra ``p3m[audit]``): the recogniser's distance between the original face and the audited
  image at the same place; below ``min_reid_distance`` (0.6, dlib's same-person threshold) the face is still
  recognised: a leak. Only where the recogniser matches a mild blur (σ 2 px) of the original face (otherwise it
  cannot match that face at all) and does not match a uniform grey picture to it (otherwise it cannot tell the
  face from none); the report notes the faces it could not check. Without the extra installed this check is
  skipped and the summary says how to install it.

Also a leak: any metadata block (EXIF, XMP, ICC, comments, PNG text; `p3m.io.has_metadata`) and, when face
masks are available, a detected face whose core ellipse the facemask covers less than ``min_coverage`` (0.5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from p3m.errors import P3MError, item_error_message
from p3m.io import collect_images, has_metadata, read_image, read_mask, write_csv
from p3m.privacy.detect import Face, FaceDetector, default_detector
from p3m.privacy.landmarks import FaceOutliner
from p3m.privacy.region import face_region
from p3m.privacy.reid import INSTALL_HINT, SAME_PERSON, FaceRecognizer, reidentify, shared_recognizer

AUDIT_REPORT_NAME = "audit_report.csv"
AUDIT_FIELDS = (
    "stem",
    "file",
    "status",
    "faces",
    "max_detail",
    "max_detail_ratio",
    "max_ssim",
    "max_kept",
    "min_coverage",
    "min_reid_distance",
    "metadata",
    "reasons",
    "notes",
)
KEPT_SSIM = 0.9  # local SSIM from which a pixel of the original face counts as kept as it was
FACE_SCALE_PX = 64.0
CORE_SCALE = 0.7
# the brow line, in eye-to-mouth distances above the eye line (the brows' upper edge measured at 0.4-0.55 on the
# real faces of the test data): what lies above it is forehead, which P3M's face region leaves as it is
BROW_ABOVE_EYES = 0.35


@dataclass
class AuditThresholds:
    """Leak thresholds (see the module docstring for what each number measures and the values observed)."""

    max_detail: float = 5.5
    max_detail_ratio: float = 1.0
    max_ssim: float = 0.5
    max_kept: float = 0.1
    min_coverage: float = 0.5
    detect_threshold: float = 0.2
    min_detail: float = 2.5  # floor of the ratio's denominator: 8-bit rounding noise of small, smooth faces
    min_reid_distance: float = SAME_PERSON  # recogniser distance below which a face is still recognised
    max_visible_detail: float = 3.0  # detail from which a face the face mesh fits (a visible face) leaks

    def detail_leaks(self, detail: float, ratio: float, visible: bool = False) -> bool:
        """True when a face keeps identifying detail (see the module docstring); ``visible``: the face mesh fits
        the face, which then leaks from `max_visible_detail` on."""
        return (
            detail >= self.max_detail
            or ratio >= self.max_detail_ratio
            or (visible and detail >= self.max_visible_detail)
        )


def _size(array: np.ndarray) -> str:
    return f"{array.shape[1]}x{array.shape[0]}"


def _scaled(face: Face, s: float) -> Face:
    lms = None if face.landmarks is None else np.asarray(face.landmarks) * s
    x0, y0, x1, y1 = face.box
    return Face((x0 * s, y0 * s, x1 * s, y1 * s), face.score, lms)


def _face_scale(face: Face) -> float:
    return min(1.0, FACE_SCALE_PX / max(face.width, 1.0))


def _gray_at(image: np.ndarray, s: float) -> np.ndarray:
    gray: np.ndarray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    if s < 1.0:
        gray = cv2.resize(gray, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    return gray


def face_core(shape: tuple[int, ...], face: Face) -> np.ndarray:
    """bool HxW: the face's core, where its identity is: the core ellipse (`CORE_SCALE` x the box ellipse) below
    the brow line when the detector gave landmarks (the line parallel to the eyes, `BROW_ABOVE_EYES`
    eye-to-mouth distances above them), the whole core ellipse otherwise."""
    core = face_region(shape, [face], CORE_SCALE)
    lms = face.landmarks
    if lms is None or not np.all(np.isfinite(lms)):
        return core
    lms = np.asarray(lms, np.float64).reshape(-1, 2)
    eyes, mouth = lms[:2].mean(0), lms[3:5].mean(0)
    down = mouth - eyes
    if float(np.hypot(*down)) < 1e-6:
        return core
    bx, by = eyes - BROW_ABOVE_EYES * down
    ys, xs = np.mgrid[0 : core.shape[0], 0 : core.shape[1]]
    return core & ((xs - bx) * down[0] + (ys - by) * down[1] >= 0)


def coverage(face: Face, mask: np.ndarray) -> float:
    """Fraction of the face's core (`face_core`) that ``mask`` covers, in [0, 1] (1 for an empty core)."""
    core = face_core(mask.shape, face)
    n = int(core.sum())
    return 1.0 if n == 0 else float((core & (np.asarray(mask) > 0)).sum()) / n


def face_detail(
    image: np.ndarray, face: Face, faces: Sequence[Face] = (), min_detail: float = AuditThresholds.min_detail
) -> tuple[float, float]:
    """(detail, detail_ratio) of ``face`` in an HxWx3 uint8 RGB image; ``faces`` are excluded from the rest,
    whose level counts as at least ``min_detail``."""
    s = _face_scale(face)
    gray = _gray_at(image, s)
    lap = np.abs(cv2.Laplacian(gray, cv2.CV_32F, ksize=1))
    core = face_region(gray.shape, [_scaled(face, s)], CORE_SCALE)
    if not core.any():
        return 0.0, 0.0
    others = face_region(gray.shape, [_scaled(f, s) for f in (list(faces) or [face])], 1.3)
    detail = float(np.median(lap[core]))
    rest = lap[~others]
    floor = max(float(min_detail), 1e-6)
    rest_level = max(floor, float(np.median(rest))) if rest.size else floor
    return detail, detail / rest_level


def face_similarity(image: np.ndarray, original: np.ndarray, face: Face) -> float:
    """Mean SSIM (grey, at the 64 px face scale) over the face's core ellipse between image and original."""
    return face_similarity_parts(image, original, face)[0]


def face_similarity_parts(image: np.ndarray, original: np.ndarray, face: Face) -> tuple[float, float]:
    """(mean SSIM, kept) of the face's core ellipse, both weighted by the original's local contrast: kept is
    the share of the face's structure whose local SSIM is at least ``KEPT_SSIM`` (0.9), i.e. left as it was."""
    from skimage.metrics import structural_similarity

    if image.shape != original.shape:
        raise P3MError(f"image {_size(image)} and original {_size(original)} differ in size")
    s = _face_scale(face)
    x0, y0, x1, y1 = face.box
    pad = 0.3 * max(face.width, face.height)
    h, w = image.shape[:2]
    cx0, cy0 = max(0, int(x0 - pad)), max(0, int(y0 - pad))
    cx1, cy1 = min(w, int(np.ceil(x1 + pad))), min(h, int(np.ceil(y1 + pad)))
    a = _gray_at(image[cy0:cy1, cx0:cx1], s)
    b = _gray_at(original[cy0:cy1, cx0:cx1], s)
    if min(a.shape) < 7:
        same = float(np.array_equal(a, b))
        return same, same
    _, smap = structural_similarity(a, b, data_range=255.0, full=True)
    local = Face(
        ((x0 - cx0) * s, (y0 - cy0) * s, (x1 - cx0) * s, (y1 - cy0) * s),
        face.score,
        None if face.landmarks is None else (np.asarray(face.landmarks) - [cx0, cy0]) * s,
    )
    core = face_core(a.shape, local)
    if not core.any():
        return 1.0, 1.0
    # Weight by the original's local contrast: flat skin is "similar" to any smooth replacement, while the
    # identity sits in eyes, brows, nose and mouth.
    mean = cv2.GaussianBlur(b, (0, 0), 1.5)
    weight = np.sqrt(np.maximum(cv2.GaussianBlur(b * b, (0, 0), 1.5) - mean * mean, 0.0))[core]
    values = smap[core]
    if weight.sum() < 1e-6:
        return float(values.mean()), float((values >= KEPT_SSIM).mean())
    total = float(weight.sum())
    return float((values * weight).sum() / total), float(weight[values >= KEPT_SSIM].sum() / total)


@dataclass
class AuditRecord:
    """Audit of one image: status "pass", "leak" or "error", with the measurements and the reasons."""

    stem: str
    file: str
    faces: list[Face] = field(default_factory=list)
    details: list[float] = field(default_factory=list)
    detail_ratios: list[float] = field(default_factory=list)
    similarities: list[float] = field(default_factory=list)
    kept: list[float] = field(default_factory=list)
    coverages: list[float] = field(default_factory=list)
    reid_distances: list[float] = field(default_factory=list)
    metadata: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def status(self) -> str:
        return "error" if self.error else ("leak" if self.reasons else "pass")

    def row(self) -> dict[str, str]:
        def fmt(values: list[float], pick) -> str:
            return f"{pick(values):.3f}" if values else ""

        return {
            "stem": self.stem,
            "file": self.file,
            "status": self.status,
            "faces": str(len(self.faces)),
            "max_detail": fmt(self.details, max),
            "max_detail_ratio": fmt(self.detail_ratios, max),
            "max_ssim": fmt(self.similarities, max),
            "max_kept": fmt(self.kept, max),
            "min_coverage": fmt(self.coverages, min),
            "min_reid_distance": fmt(self.reid_distances, min),
            "metadata": ";".join(self.metadata),
            "reasons": "; ".join(self.reasons) or self.error,
            "notes": "; ".join(self.notes),
        }


def audit_image(
    image: np.ndarray,
    *,
    detector: FaceDetector | None = None,
    thresholds: AuditThresholds | None = None,
    original: np.ndarray | None = None,
    facemask: np.ndarray | None = None,
    record: AuditRecord | None = None,
    recognizer: FaceRecognizer | None = None,
) -> AuditRecord:
    """Audit pixels: detail in detected faces, similarity to ``original`` faces (and, with a ``recognizer``,
    whether it still recognises them), coverage by ``facemask``."""
    t = thresholds or AuditThresholds()
    detector = detector or default_detector(t.detect_threshold)
    rec = record or AuditRecord(stem="", file="")
    faces = detector.detect(image)
    rec.faces = faces
    # a second opinion on each detection: does the face mesh fit a face there (`p3m.privacy.landmarks`)?
    visible = [o.method == "landmarks" for o in FaceOutliner().outlines(image, faces)] if faces else []
    detailed = []
    for i, face in enumerate(faces):
        detail, ratio = face_detail(image, face, faces, t.min_detail)
        rec.details.append(detail)
        rec.detail_ratios.append(ratio)
        where = f"face {i} at ({face.box[0]:.0f},{face.box[1]:.0f},{face.box[2]:.0f},{face.box[3]:.0f})"
        detailed.append(t.detail_leaks(detail, ratio, visible[i]))
        if detailed[-1]:
            seen = ", a face the face mesh fits" if visible[i] else ""
            rec.reasons.append(f"{where} keeps detail {detail:.1f} (ratio {ratio:.2f}{seen})")
    # a detection in the audited image counts as a face outside the facemask when it is one: the face mesh fits
    # it or it keeps detail (a blurred patch or a suit's collar that the detector takes for a face is neither)
    checked = [(f, v or d) for f, v, d in zip(faces, visible, detailed, strict=True)]
    if original is not None:
        if original.shape != image.shape:
            raise P3MError(f"original is {_size(original)} but the image is {_size(image)}")
        orig_faces = detector.detect(original)
        checked += [(f, True) for f in orig_faces]
        for face in orig_faces:
            sim, kept = face_similarity_parts(image, original, face)
            rec.similarities.append(sim)
            rec.kept.append(kept)
            # A face that was already featureless in the original (e.g. re-anonymising P3M-blurred data) has
            # nothing left to identify, however similar the output is to it.
            if not t.detail_leaks(*face_detail(original, face, orig_faces, t.min_detail)):
                continue
            where = f"original face at ({face.box[0]:.0f},{face.box[1]:.0f},{face.box[2]:.0f},{face.box[3]:.0f})"
            if sim >= t.max_ssim:
                rec.reasons.append(f"{where} is still similar (SSIM {sim:.2f})")
            if kept >= t.max_kept:
                rec.reasons.append(f"{where} is {kept:.0%} left as it was (local SSIM >= {KEPT_SSIM})")
            if recognizer is not None:
                _check_reidentification(rec, image, original, face, recognizer, t, where)
    if facemask is not None:
        if facemask.shape != image.shape[:2]:
            raise P3MError(f"facemask is {_size(facemask)} but the image is {_size(image)}")
        # P3M binarises face masks at > 100 (`JizhiziLi/P3M` core/evaluate.py)
        covered = facemask > 100
        for face, is_face in checked:
            cov = coverage(face, covered)
            rec.coverages.append(cov)
            if cov >= t.min_coverage:
                continue
            where = f"face at ({face.box[0]:.0f},{face.box[1]:.0f},{face.box[2]:.0f},{face.box[3]:.0f})"
            if is_face:
                rec.reasons.append(f"{where} is outside the facemask ({cov:.0%} covered)")
            else:
                rec.notes.append(
                    f"{where} is outside the facemask ({cov:.0%} covered), but the face mesh fits no face there and "
                    "it keeps no detail: a false detection"
                )
    return rec


def _check_reidentification(
    rec: AuditRecord,
    image: np.ndarray,
    original: np.ndarray,
    face: Face,
    recognizer: FaceRecognizer,
    t: AuditThresholds,
    where: str,
) -> None:
    r = reidentify(image, original, face, recognizer)
    threshold = t.min_reid_distance
    if r.control >= threshold:
        rec.notes.append(
            f"{where}: the face recogniser does not match even a mild blur of it (distance {r.control:.2f}): "
            "not checked for re-identification"
        )
    elif r.blank < threshold:
        rec.notes.append(
            f"{where}: the face recogniser matches a uniform grey picture to it (distance {r.blank:.2f}): it cannot "
            f"tell this face from none, not checked for re-identification (anonymised: {r.distance:.2f})"
        )
    else:
        rec.reid_distances.append(r.distance)
        if r.leaks(threshold):
            rec.reasons.append(f"{where} is still recognised (face recogniser distance {r.distance:.2f} < {threshold})")


@dataclass
class AuditReport:
    """Rows of an audit run."""

    records: list[AuditRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    reid_skipped: str = ""  # why the re-identification check did not run ("" when it ran or was not asked for)

    @property
    def leaks(self) -> list[AuditRecord]:
        return [r for r in self.records if r.status == "leak"]

    @property
    def errors(self) -> list[AuditRecord]:
        return [r for r in self.records if r.status == "error"]

    def exit_code(self) -> int:
        """0 when every image passes; 1 when anything leaks or could not be audited."""
        return 1 if (self.leaks or self.errors or self.problems) else 0

    def write_csv(self, path: str | Path) -> Path:
        return write_csv(path, AUDIT_FIELDS, (r.row() for r in self.records))

    def summary(self) -> str:
        n = len(self.records)
        n_pass = n - len(self.leaks) - len(self.errors)
        lines = [f"audited {n} images: {n_pass} pass, {len(self.leaks)} leak, {len(self.errors)} errors"]
        for r in self.leaks:
            lines.append(f"LEAK {r.file}: " + "; ".join(r.reasons))
        for r in self.errors:
            lines.append(f"error: {r.error}")
        for p in self.problems:
            lines.append(f"input problem: {p}")
        if self.reid_skipped:
            lines.append(f"re-identification check skipped: {self.reid_skipped}")
        return "\n".join(lines)


def _by_stem(folder: Path) -> dict[str, Path]:
    paths, _ = collect_images([folder], recursive_hint=None)
    out: dict[str, Path] = {}
    for p in paths:
        out.setdefault(p.stem, p)
    return out


def audit_folder(
    folder: str | Path,
    *,
    originals: str | Path | None = None,
    facemask_dir: str | Path | None = None,
    detector: FaceDetector | None = None,
    thresholds: AuditThresholds | None = None,
    report_path: str | Path | None = None,
    progress: Callable[[AuditRecord], None] | None = None,
    reid: bool = True,
) -> AuditReport:
    """Audit every image in ``folder`` (not recursive; a ``facemask/`` subfolder is used when present).

    originals: folder of the un-anonymised images, matched by stem. facemask_dir: face masks matched by stem
    (default ``folder/facemask`` when it exists). The report goes to ``report_path`` (default
    ``folder/audit_report.csv``). reid: with the originals, also check re-identification (`p3m.privacy.reid`)
    when the optional extra is installed; the report says when it is not.
    """
    t = thresholds or AuditThresholds()
    detector = detector or default_detector(t.detect_threshold)
    folder = Path(folder)
    if not folder.is_dir():
        raise P3MError(f"{folder}: folder not found")
    for name, d in (("originals", originals), ("facemask", facemask_dir)):
        if d is not None and not Path(d).is_dir():
            raise P3MError(f"{d}: {name} folder not found")
    if facemask_dir is None and (folder / "facemask").is_dir():
        facemask_dir = folder / "facemask"
    paths, problems = collect_images([folder], recursive_hint=None)  # audit reads DIR itself only
    report = AuditReport(problems=problems)
    recognizer = None
    if reid and originals is not None:
        try:
            recognizer = shared_recognizer()
        except P3MError:
            report.reid_skipped = f"the face recogniser is not installed: {INSTALL_HINT}"
    originals_by_stem = _by_stem(Path(originals)) if originals is not None else {}
    masks_by_stem = _by_stem(Path(facemask_dir)) if facemask_dir is not None else {}
    for path in paths:
        rec = AuditRecord(stem=path.stem, file=str(path))
        try:
            image = read_image(path)  # first: a broken file gets read_image's clear one-line error
            rec.metadata = has_metadata(path)
            if rec.metadata:
                rec.reasons.append("metadata: " + ", ".join(rec.metadata))
            original = None
            if originals is not None:
                if path.stem not in originals_by_stem:
                    raise P3MError(f"{path}: no original {path.stem}.* in {originals}")
                original = read_image(originals_by_stem[path.stem])
            facemask = None
            if facemask_dir is not None:
                if path.stem not in masks_by_stem:
                    rec.reasons.append(f"no facemask {path.stem}.png in {facemask_dir}")
                else:
                    facemask = read_mask(masks_by_stem[path.stem])
            audit_image(
                image,
                detector=detector,
                thresholds=t,
                original=original,
                facemask=facemask,
                record=rec,
                recognizer=recognizer,
            )
        except (P3MError, OSError, ValueError) as exc:
            rec.error = item_error_message(exc, path)
        report.records.append(rec)
        if progress:
            progress(rec)
    report.write_csv(Path(report_path) if report_path is not None else folder / AUDIT_REPORT_NAME)
    return report
