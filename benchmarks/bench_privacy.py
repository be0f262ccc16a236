"""The measurements behind docs/privacy.md, on the shared test portraits and the photos of people that packages ship.

Run, from the repository root: `.venv/bin/python -m benchmarks.bench_privacy MEASURE [options]`, MEASURE one of

- ``timing``: median ms per image of each stage of `p3m anonymize` and `p3m audit` on the 1080 px portraits;
- ``recall``: face detector recall (CenterFace pyramid, MediaPipe BlazeFace short and full range) on the real faces
  and on transformed copies (scaled down to 16-200 px, turned by 30-180 degrees, cut at the picture's edge, partly
  covered), where a face counts as found when a detection's centre lies in its landmark box;
- ``coverage``: on the same copies, whether the default face region covers each face's eyes, nose, mouth, chin
  and jaw (the mesh points of the unchanged photo, moved with the copy; chin and jaw pulled 10 % towards the face
  centre: the area, not the outline), and which faces got the covering shape;
- ``iou``: IoU of the face region with P3M's own blurred region on the P3M-obfuscated portraits (`p3m_region`);
- ``reid``: the face recogniser's distances (`p3m.privacy.reid`) between each real face and its anonymised
  versions (default settings, every method, with and without the matte, the old ellipse region), and the
  mild-blur and blank controls;
- ``figure``: the side-by-side picture of docs/privacy.md (P3M's obfuscated faces above, p3m's below).

Everything is measured in this one run on this machine; state the machine when quoting the numbers. The shared
portraits come from `tests.paths` (``$P3M_TESTDATA``: the P3M demo portraits, `JizhiziLi/P3M` demo/imgs).
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from p3m.io import read_image, read_mask, write_image
from p3m.privacy.anonymize import AnonymizeOptions, anonymize_image
from p3m.privacy.audit import audit_image
from p3m.privacy.detect import CenterFaceDetector, Face
from p3m.privacy.landmarks import FaceOutliner, jaw_to_brows, landmark_region
from p3m.privacy.region import soft_mask
from tests.paths import PORTRAITS, TEST_DATA

# the three P3M-10k demo portraits whose faces were left as they were (the shared README), the nine others
OPEN_FACES = ("p_07141906", "p_818e689d", "p_bac3c1ff")
# the six P3M-obfuscated portraits where P3M's blurred region is visible (the others: back views, a face under hair)
P3M_VISIBLE = ("p_09ba26b4", "p_22fc0130", "p_514ca06a", "p_51c916fc", "p_71bcce3a", "p_d684dae3")
# mesh points of the parts a face region must cover (MediaPipe's canonical face mesh)
PARTS = {
    "eyes": (33, 133, 362, 263),
    "nose": (1,),
    "mouth": (61, 291, 13, 14),
    "chin": (152,),
    "jaw": (172, 136, 150, 149, 176, 148, 377, 400, 378, 379, 365, 397),
}


def real_photos() -> dict[str, np.ndarray]:
    """Every real, un-obfuscated face at hand: the three open P3M portraits (when the shared data is there),
    scikit-image's astronaut and cameraman, and matplotlib's Grace Hopper (public domain)."""
    from matplotlib import cbook
    from skimage import data

    photos = {stem: read_image(PORTRAITS / "image" / f"{stem}.jpg") for stem in OPEN_FACES if _shared(stem)}
    photos["astronaut"] = data.astronaut()
    photos["camera"] = np.repeat(data.camera()[..., None], 3, axis=2)
    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        photos["grace_hopper"] = cv2.cvtColor(cv2.imdecode(np.frombuffer(fh.read(), np.uint8), 1), cv2.COLOR_BGR2RGB)
    return photos


def _shared(stem: str) -> bool:
    return (PORTRAITS / "image" / f"{stem}.jpg").is_file()


def _alpha(stem: str) -> np.ndarray | None:
    path = PORTRAITS / "reference_alpha" / f"{stem}.png"
    return read_mask(path) if path.is_file() else None


def p3m_region(image: np.ndarray, alpha: np.ndarray, *, sigma: float = 1.0, window: int = 7) -> np.ndarray:
    """P3M's blurred face region in one of its obfuscated images, measured where the high-frequency energy
    collapses: the local RMS of ``gray - Gaussian(gray, sigma)`` over ``window`` px is below 0.5 grey levels
    (skin, hair and JPEG noise measure 1 and more; P3M's blur 0.2-0.3), inside the opaque foreground
    (``alpha`` >= 250); the largest compact component (solidity >= 0.8), grown back by the window's reach at its
    hard edge, holes filled. bool HxW (all False when none is found)."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    residual = gray - cv2.GaussianBlur(gray, (0, 0), sigma)
    rms = np.sqrt(np.maximum(cv2.blur(residual * residual, (window, window)), 0.0))
    low = ((rms < 0.5) & (alpha >= 250)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(low, connectivity=8)
    best, best_area = 0, 0
    for k in range(1, n):
        area = int(stats[k, cv2.CC_STAT_AREA])
        if area < 0.002 * low.size:
            continue
        contours, _ = cv2.findContours((labels == k).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        hull = cv2.contourArea(cv2.convexHull(np.concatenate(contours)))
        if area / max(hull, 1.0) >= 0.8 and area > best_area:
            best, best_area = k, area
    region = np.zeros(low.shape, np.uint8)
    if best:
        grown = cv2.dilate((labels == best).astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (8, 8)))
        contours, _ = cv2.findContours(grown, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(region, contours, -1, 1, -1)
    return region.astype(bool) & (alpha >= 250)


# ----------------------------------------------------------------------------------------------- transformed faces


def _box(points: np.ndarray) -> tuple[float, float, float, float]:
    return float(points[:, 0].min()), float(points[:, 1].min()), float(points[:, 0].max()), float(points[:, 1].max())


def transformed_faces(photos: dict[str, np.ndarray]) -> Iterator[tuple[str, str, np.ndarray, np.ndarray]]:
    """(photo, change, image, mesh points of the face in it) for each photo and change: as it is; scaled so the
    face is 16-200 px wide in a 1920x1080 picture; turned by +-30, +-60, +-90 and 180 degrees; cut at the left
    edge or the bottom edge so that 60 % or 40 % of the face is left; a dark band over the eyes, a skin-coloured
    block over mouth and chin, hair over half the face. The points come from the face mesh on the unchanged
    photo (its MediaPipe crop), moved with the change."""
    from p3m.models.face_detector import FaceDetector
    from p3m.models.face_mesh import FaceMesh

    detector, mesh = FaceDetector("full", min_score=0.3), FaceMesh()
    canvas_photo = read_image(PORTRAITS / "image" / "p_bc5cfad1.jpg") if _shared("p_bc5cfad1") else None
    hair_photo = read_image(PORTRAITS / "image" / "p_514ca06a.jpg") if _shared("p_514ca06a") else None
    for name, image in photos.items():
        points = mesh.landmarks(image, detector.detect(image)[0]).points[:, :2].astype(np.float64)
        x0, y0, x1, y1 = _box(points)
        yield name, "as it is", image, points
        for side in (16, 24, 32, 48, 64, 100, 200):
            s = side / (x1 - x0)
            small = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
            if small.shape[0] > 980 or small.shape[1] > 1720:
                continue
            canvas = np.full((1080, 1920, 3), 110, np.uint8)
            if canvas_photo is not None:  # a real background without faces (a child seen from behind)
                canvas = cv2.resize(canvas_photo, (1920, 1080), interpolation=cv2.INTER_AREA)
            canvas[100 : 100 + small.shape[0], 200 : 200 + small.shape[1]] = small
            yield name, f"face {side} px", canvas, points * s + [200, 100]
        cx, cy = points.mean(axis=0)
        for angle in (-90, -60, -30, 30, 60, 90, 180):
            m = cv2.getRotationMatrix2D((float(cx), float(cy)), angle, 1.0)
            turned = cv2.warpAffine(image, m, (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REFLECT)
            yield name, f"turned {angle}", turned, points @ m[:, :2].T + m[:, 2]
        for keep in (0.6, 0.4):
            cut = int(x0 + (1 - keep) * (x1 - x0))
            yield name, f"left edge, {keep:.0%} left", np.ascontiguousarray(image[:, cut:]), points - [cut, 0]
            cut = int(y1 - (1 - keep) * (y1 - y0))
            yield name, f"bottom edge, {keep:.0%} left", np.ascontiguousarray(image[:cut]), points
        h = int(0.15 * (y1 - y0))
        covered = image.copy()
        eyes_y = int(points[[33, 263], 1].mean())
        covered[eyes_y - h : eyes_y + h, int(x0) : int(x1)] = 20
        yield name, "band over the eyes", covered, points
        covered = image.copy()
        nx, ny = (int(v) for v in points[1])
        skin = np.median(image[max(0, ny - 3) : ny + 3, max(0, nx - 3) : nx + 3].reshape(-1, 3), axis=0)
        covered[int(points[13, 1] - 0.1 * (y1 - y0)) : int(y1 + 0.05 * (y1 - y0)), int(x0) : int(x1)] = skin
        yield name, "block over mouth and chin", covered, points
        if hair_photo is not None:
            covered = image.copy()
            xm = int((x0 + x1) / 2)
            patch = cv2.resize(hair_photo[300:700, 300:700], (int(x1) - xm, int(y1 - y0)))
            covered[int(y0) : int(y0) + patch.shape[0], xm : xm + patch.shape[1]] = patch[: image.shape[0] - int(y0)]
            yield name, "hair over half the face", covered, points


def _kind(change: str) -> str:
    for prefix in ("face", "turned", "left edge", "bottom edge"):
        if change.startswith(prefix):
            return {"face": "small", "turned": "turned"}.get(prefix, "cut at the edge")
    return change


def _found(boxes: list, points: np.ndarray) -> bool:
    x0, y0, x1, y1 = _box(points)
    return any(x0 <= (b[0] + b[2]) / 2 <= x1 and y0 <= (b[1] + b[3]) / 2 <= y1 for b in boxes)


def measure_recall() -> None:
    from p3m.models.face_detector import FaceDetector

    detectors: dict[str, Callable] = {
        "CenterFace pyramid, 0.2": CenterFaceDetector(0.2).detect,
        "BlazeFace short, 0.5": FaceDetector("short").detect,
        "BlazeFace short, 0.3": FaceDetector("short", min_score=0.3).detect,
        "BlazeFace full, 0.6": FaceDetector("full").detect,
        "BlazeFace full, 0.3": FaceDetector("full", min_score=0.3).detect,
    }
    found: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    union = collections.Counter()
    for _name, change, image, points in transformed_faces(real_photos()):
        hits = {d: _found([f.box for f in fn(image)], points) for d, fn in detectors.items()}
        kind = _kind(change)
        found[kind]["n"] += 1
        for d, hit in hits.items():
            found[kind][d] += hit
        union[kind] += hits["CenterFace pyramid, 0.2"] or hits["BlazeFace full, 0.3"] or hits["BlazeFace short, 0.3"]
    print("| faces | n | " + " | ".join(detectors) + " | CenterFace or BlazeFace (0.3) |")
    print("|---" * (len(detectors) + 3) + "|")
    for kind, c in [*found.items(), ("all", sum(found.values(), collections.Counter()))]:
        u = union[kind] if kind != "all" else sum(union.values())
        print(f"| {kind} | {c['n']} | " + " | ".join(str(c[d]) for d in detectors) + f" | {u} |")


def measure_coverage() -> None:
    detector = CenterFaceDetector(0.2)
    rows: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    misses = []
    for name, change, image, points in transformed_faces(real_photos()):
        result = anonymize_image(image, faces=detector.detect(image))
        pts = points.copy()
        centre = pts[[33, 133, 362, 263, 61, 291]].mean(axis=0)
        outline = [*PARTS["chin"], *PARTS["jaw"]]
        pts[outline] = centre + 0.9 * (pts[outline] - centre)
        h, w = result.weights.shape
        missed = []
        for part, index in PARTS.items():
            inside = visible = 0
            for x, y in pts[list(index)]:
                if 0 <= x < w and 0 <= y < h:
                    visible += 1
                    inside += bool(result.weights[int(y), int(x)] >= 0.5)
            if visible and inside < (0.8 * visible if part == "jaw" else visible):
                missed.append(f"{part} {inside}/{visible}")
        kind = _kind(change)
        rows[kind]["n"] += 1
        rows[kind]["covered"] += not missed
        rows[kind]["cover"] += any(o.method == "cover" for o in result.outlines)
        if missed:
            misses.append(f"{name}, {change}: " + ", ".join(missed))
    print("| faces | n | eyes, nose, mouth, chin, jaw covered | covering shape used |\n|---|---|---|---|")
    for kind, c in [*rows.items(), ("all", sum(rows.values(), collections.Counter()))]:
        print(f"| {kind} | {c['n']} | {c['covered']} | {c['cover']} |")
    print("\nnot covered:\n" + "\n".join(misses))


def measure_iou() -> None:
    detector, outliner = CenterFaceDetector(0.2), FaceOutliner()
    print(
        "| portrait | face found by | landmark polygon (jaw to brows) | with the detector's region (as drawn) "
        "| ellipse 1.1 (old default) |\n|---|---|---|---|---|"
    )
    for stem in P3M_VISIBLE:
        if not _shared(stem):
            continue
        image, alpha = read_image(PORTRAITS / "image" / f"{stem}.jpg"), _alpha(stem)
        assert alpha is not None
        theirs = p3m_region(image, alpha)
        ys, xs = np.nonzero(theirs)
        centres = [(f, int((f.box[0] + f.box[2]) / 2), int((f.box[1] + f.box[3]) / 2)) for f in detector.detect(image)]
        inside = [f for f, x, y in centres if theirs[y, x]]
        face = inside[0] if inside else Face((float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())), 1.0)
        # the mesh finds no face in a blurred one (presence ~0): its landmark region is measured regardless
        points = outliner.outlines(image, [face])[0].points
        assert points is not None
        polygons = [jaw_to_brows(points), landmark_region(points, face) if inside else None]
        polygons.append(FaceOutliner("ellipse").outlines(image, [face])[0].polygon)
        band = cv2.dilate(((alpha > 0) & (alpha < 255)).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        cells = []
        for polygon in polygons:
            if polygon is None:
                cells.append("-")
                continue
            ours = (soft_mask(image.shape, [polygon], 1.0) >= 0.5) & ~band
            cells.append(f"{(ours & theirs).sum() / max((ours | theirs).sum(), 1):.2f}")
        found = "CenterFace" if inside else "none: the box of P3M's region"
        print(f"| `{stem}` | {found} | " + " | ".join(cells) + " |")


def real_mattes(photos: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """An alpha matte (uint8) per photo: the shared reference matte where there is one, else the built-in
    portrait-cf route's prediction (what `p3m matte` writes when no other model is installed)."""
    from p3m.infer.matter import Matter

    mattes, matter = {}, None
    for name, image in photos.items():
        alpha = _alpha(name)
        if alpha is None:
            matter = matter or Matter(weights="portrait-cf", device="cpu")
            alpha = np.clip(np.rint(matter.matte(image).alpha * 255.0), 0, 255).astype(np.uint8)
        mattes[name] = alpha
    return mattes


def measure_reid() -> None:
    from p3m.privacy.reid import reidentify, shared_recognizer

    recognizer = shared_recognizer()
    detector, outliner = CenterFaceDetector(0.2), FaceOutliner()
    methods = ("blur", "mosaic", "zero")
    print(
        "| face | mild blur (must match) | grey picture | blur | mosaic | zero | --alpha: blur | mosaic | zero "
        "| --alpha, band kept everywhere (P3M literal): blur | mosaic | zero | band in core | private area changed |"
    )
    print("|---" * 14 + "|")
    photos = real_photos()
    photos["people_profile (tests/data)"] = read_image(TEST_DATA / "people_profile.jpg")
    mattes = real_mattes({k: v for k, v in photos.items() if "tests/data" not in k})
    mattes["people_profile (tests/data)"] = read_mask(TEST_DATA / "reference_alpha" / "people_profile.png")
    for name, image in photos.items():
        faces = detector.detect(image)
        alpha, found, blurred = mattes[name], [], {}
        variants = {
            "no matte": (None, outliner),
            "matte": (alpha, outliner),
            "literal": (alpha, FaceOutliner(core=False)),
        }
        for variant, (matte, chosen) in variants.items():
            for method in methods:
                options = AnonymizeOptions(method=method)
                result = anonymize_image(image, faces=faces, alpha=matte, options=options, outliner=chosen)
                control = reidentify(result.image, image, faces[0], recognizer)
                found.append(control.distance)
                if method == "blur":
                    blurred[variant] = result
        new, literal = blurred["matte"], blurred["literal"]
        assert new.weights is not None and literal.weights is not None
        changed = float(np.abs(new.weights - literal.weights).sum() / max(float(literal.weights.sum()), 1e-6))
        share = new.band_in_core
        cells = [f"{d:.2f}" for d in found]
        print(
            f"| {name} | {control.control:.2f} | {control.blank:.2f} | "
            + " | ".join(cells)
            + f" | {share[0]:.2f} | +{100 * changed:.1f} % |"
        )


def _old_default(image: np.ndarray, faces: list[Face]) -> np.ndarray:
    """p3m anonymize before the landmark region: the box ellipse at 1.1 (hard edge) and a blur of σ = 0.4 x size."""
    from p3m.data.obfuscate import obfuscate
    from p3m.privacy.region import face_region

    return obfuscate(image, face_region(image.shape, faces, 1.1), "blur", strength=0.4 / 0.15)


def draw_figure(path: Path) -> None:
    """P3M's obfuscated faces (top) beside p3m's default output on other real faces (bottom), 4 + 4 tiles."""
    tile = 280

    def crop(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        ys, xs = np.nonzero(mask)
        cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
        r = 0.8 * max(np.ptp(xs), np.ptp(ys))
        h, w = image.shape[:2]
        y0, y1 = int(max(0, cy - r)), int(min(h, cy + r))
        x0, x1 = int(max(0, cx - r)), int(min(w, cx + r))
        return cv2.resize(image[y0:y1, x0:x1], (tile, tile), interpolation=cv2.INTER_AREA)

    top = []
    for stem in ("p_22fc0130", "p_71bcce3a", "p_d684dae3", "p_514ca06a"):
        image, alpha = read_image(PORTRAITS / "image" / f"{stem}.jpg"), _alpha(stem)
        assert alpha is not None
        top.append(crop(image, p3m_region(image, alpha)))
    photos = real_photos()
    bottom = []
    for name in ("p_bac3c1ff", "grace_hopper", "p_07141906", "astronaut"):
        result = anonymize_image(photos[name], alpha=_alpha(name))
        bottom.append(crop(result.image, result.private))
    write_image(path, np.vstack([np.hstack(top), np.hstack(bottom)]), quality=90)
    print(f"wrote {path}")


def measure_timing(n_images: int, repeat: int) -> None:
    from p3m.privacy.reid import reidentify, shared_recognizer

    paths = [PORTRAITS / "image" / f"{stem}.jpg" for stem in OPEN_FACES if _shared(stem)][:n_images]
    if not paths:
        raise SystemExit(f"no test portraits under {PORTRAITS}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads)"
    )
    detector, outliner, options = CenterFaceDetector(0.2), FaceOutliner(), AnonymizeOptions()
    recognizer = shared_recognizer()
    rows: dict[str, list[float]] = collections.defaultdict(list)
    for path in paths:
        image = read_image(path)
        alpha = _alpha(path.stem)
        faces = detector.detect(image)
        outlines = outliner.outlines(image, faces)
        stages: dict[str, Callable] = {
            "detect (CenterFace pyramid)": partial(detector.detect, image),
            "outline (face mesh, 1-2 crops per face)": partial(outliner.outlines, image, faces),
            "soft mask": partial(soft_mask, image.shape, [o.polygon for o in outlines], 5.0),
            "anonymize_image, faces given (outline, mask, blur)": partial(
                anonymize_image, image, faces=faces, alpha=alpha, options=options
            ),
        }
        stages["old default, faces given (ellipse, hard edge, flat blur)"] = partial(_old_default, image, faces)
        result = anonymize_image(image, faces=faces, alpha=alpha)
        stages["audit_image with the original (two detections)"] = partial(audit_image, result.image, original=image)
        stages["re-identification per face"] = partial(reidentify, result.image, image, faces[0], recognizer)
        for name, fn in stages.items():
            fn()  # warm-up
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t) * 1000.0)
            rows[name].append(statistics.median(times))
        print(f"{path.name}: {image.shape[1]}x{image.shape[0]}, {len(faces)} faces")
    print(f"\nmedian ms per image over {len(paths)} portraits (each stage timed {repeat}x):")
    for name, values in rows.items():
        print(f"  {name:52s} {statistics.median(values):8.1f} ms   (range {min(values):.1f}-{max(values):.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("measure", choices=("timing", "recall", "coverage", "iou", "reid", "figure"))
    parser.add_argument("--images", type=int, default=3, help="timing: number of portraits (default 3)")
    parser.add_argument("--repeat", type=int, default=3, help="timing: runs per stage and image (default 3)")
    parser.add_argument("--out", type=Path, default=Path("docs/images/privacy_comparison.jpg"), help="figure: file")
    args = parser.parse_args()
    if args.measure == "timing":
        measure_timing(args.images, args.repeat)
    elif args.measure == "recall":
        measure_recall()
    elif args.measure == "coverage":
        measure_coverage()
    elif args.measure == "iou":
        measure_iou()
    elif args.measure == "reid":
        measure_reid()
    else:
        draw_figure(args.out)


if __name__ == "__main__":
    main()
