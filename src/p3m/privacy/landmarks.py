"""The outline of each detected face: P3M's landmark region where the landmarks can be trusted, a covering shape
where they cannot.

P3M spans the face region by facial landmarks "from the jaw line up to the brows" (Li et al., ACM MM 2021; figure
demo/face_obfuscation.jpg of `JizhiziLi/P3M`). Here the landmarks are MediaPipe's face mesh (`p3m.models.face_mesh`, 468
points, Apache-2.0, shipped with p3m), run on a crop around each face the detector found, and the region is the **convex
hull of the mesh points at or below the upper edge of the brows** (with ``forehead=True``: of all mesh points, up to the
top of the forehead). Taking every mesh point rather than only the oval keeps a profile's nose and lips inside the
region: seen from the side they project beyond the face's oval.

Trust. The mesh always answers, also for a crop that holds no face or a face it cannot fit (a strong profile,
a face upside down, a small or half-hidden face). Each face is therefore fitted from up to two crops (rotated
by the eye line, as MediaPipe does, and by the line from the mouth to the eyes, which stays right for profiles
and upturned faces) and the fit is kept only when the mesh's face-presence score is at least `MIN_PRESENCE`
and its eyes, nose and mouth corners lie within `MAX_KEYPOINT_ERROR` (relative to the face box size) of the
detector's five landmarks. Otherwise the face gets the **covering shape**: the convex hull of its box
ellipse at `COVER_SCALE`, rotated with the face, of discs round the detector's landmarks and of the mesh's
region when the mesh at least found a face. Every `FaceOutline` says which it got and why.

Identifying core. Each outline also carries the face's **identifying core** (`identifying_core`): the convex hull of
the mesh's eyes, brows, nose, lips and chin (without a trusted mesh: discs round the detector's five landmarks and
its chin estimate, `keypoint_core`). P3M keeps the matting transition band out of the private area; where that
band crosses the core (a profile against the background holds its nose, lips and chin in the band, hair hangs
over the eyes) `p3m.privacy.anonymize` obfuscates the band as well, so the band is kept only on the cheeks, the
jaw's sides, the temples and the hairline, as in P3M's images of frontal faces.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from p3m.privacy.detect import Face
from p3m.privacy.region import ellipse_polygon, face_ellipse

REGION_MODES = ("landmarks", "ellipse")

# P3M's blurred regions (the six visible in its released demo images) are about 10 % larger than the mesh's
# jaw-to-brows hull below the brows: IoU with them is highest at this scale about the brows (docs/privacy.md)
JAW_SCALE = 1.1
MIN_PRESENCE = 0.5  # MediaPipe keeps a face mesh from this presence score on
# largest distance between a mesh keypoint and the detector's, relative to sqrt(box area); measured on the
# real faces of the test data: 0.03-0.21 where the mesh fits, 0.4 and more where it does not
MAX_KEYPOINT_ERROR = 0.3
COVER_SCALE = 1.3  # the covering shape's ellipse, relative to the detector's box
# the detector's own jaw-to-brows region (`detector_region`): its box ellipse at this scale, below the brow line
DETECTOR_SCALE = 1.15
# the brows' upper edge in eye-to-mouth distances above the eye line: 0.4-0.55 on the real faces of the test data
BROW_ABOVE_EYES = 0.45
KEYPOINT_DISC = 0.25  # radius of the discs round the detector's landmarks, relative to sqrt(box area)
# the chin (mesh point 152) below the mouth, in eye-to-mouth distances (`keypoint_core`): 0.71-0.87 on the frontal
# real faces at hand, 0.35-0.49 on the profiles (foreshortened), which the hull with the mouth's disc still covers
CHIN_BELOW_MOUTH = 0.8
ROTATION_STEP = math.radians(20.0)  # a second crop when the mouth-to-eyes line turns the face this much more

# face mesh indices: eye corners (subject's right eye, image left when facing the camera; then the left eye),
# nose tip, mouth corners (image left, image right), top of the forehead, chin
_MESH_RIGHT_EYE = (33, 133)
_MESH_LEFT_EYE = (362, 263)
_MESH_NOSE = 1
_MESH_MOUTH = (61, 291)
_MESH_TOP, _MESH_CHIN = 10, 152
# the identifying core (`identifying_core`): MediaPipe's face-mesh contours of both eyes (FACEMESH_LEFT_EYE,
# FACEMESH_RIGHT_EYE), the lips' outer contour, the nose (FACEMESH_NOSE) and the chin (152 and its neighbours
# on the oval); the brows are added from `RIGHT_EYEBROW` and `LEFT_EYEBROW`
_CORE_POINTS = (
    33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173,
    263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398,
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
    168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327, 294, 278, 344, 440, 275, 45, 220, 115, 48, 64,
    152, 148, 377, 176, 400,
)  # fmt: skip


@dataclass(frozen=True)
class FaceOutline:
    """The region outline of one face.

    ``polygon`` (N, 2) float64, image pixels (x, y; pixel centres at +0.5); ``method`` "landmarks" (P3M's
    landmark region), "cover" (the covering shape, see the module docstring) or "ellipse" (``--region
    ellipse``); ``confidence`` in [0, 1]: the mesh's presence score when its keypoints agree with the detector's,
    else 0 (NaN for "ellipse"); ``reason`` why a face got the covering shape; ``points`` the mesh (468, 3) when one
    was fitted; ``core`` the face's identifying core (module docstring), (M, 2) float64 like ``polygon``.
    """

    face: Face
    polygon: np.ndarray
    method: str
    confidence: float = float("nan")
    reason: str = ""
    points: np.ndarray | None = None
    core: np.ndarray | None = None

    @property
    def size(self) -> float:
        """sqrt of the polygon's bounding-box area, px: the face size the obfuscation scales with."""
        span = np.ptp(self.polygon, axis=0)
        return float(math.sqrt(max(span[0], 1e-6) * max(span[1], 1e-6)))


def jaw_to_brows(points: np.ndarray, *, forehead: bool = False, scale: float = JAW_SCALE) -> np.ndarray:
    """P3M's face region from 468 face-mesh points: the convex hull of the points at or below the brows' upper
    edge (all points with ``forehead``), scaled by ``scale`` about the middle of the brows, as (N, 2) float64
    vertices.

    "Below" is measured along the face's own up axis (chin -> top of the forehead), so a tilted or upturned face
    is cut at its brows, not at an image row. The brow edge is the polyline of `RIGHT_EYEBROW` and
    `LEFT_EYEBROW` across the face, held level beyond its ends. The scale about the brows moves the jaw line and
    the cheeks out and leaves the brow line nearly where it is (`JAW_SCALE`).
    """
    from p3m.models.face_mesh import LEFT_EYEBROW, RIGHT_EYEBROW

    xy = np.asarray(points, np.float64)[:, :2]
    brows = xy[list(RIGHT_EYEBROW + LEFT_EYEBROW)]
    if not forehead:
        up = xy[_MESH_TOP] - xy[_MESH_CHIN]
        up /= max(float(np.linalg.norm(up)), 1e-9)
        side = np.array([-up[1], up[0]])
        bs, bh = brows @ side, brows @ up
        order = np.argsort(bs)
        limit = np.interp(xy @ side, bs[order], bh[order])
        xy = np.concatenate([xy[xy @ up <= limit], brows])
    hull = _hull(xy)
    anchor = brows.mean(axis=0)
    return anchor + (hull - anchor) * scale


def landmark_region(points: np.ndarray, face: Face, *, forehead: bool = False) -> np.ndarray:
    """The landmark region of a face: `jaw_to_brows` of its mesh points, with the detector's own jaw-to-brows
    region (`detector_region`) added (their convex hull), so that what the detector takes for the face stays
    covered where the mesh falls short of it (a chin the mesh puts too high, a face turned far). (N, 2) float64."""
    polygon = jaw_to_brows(points, forehead=forehead)
    core = detector_region(face)
    return polygon if core is None else _hull(polygon, core)


def identifying_core(points: np.ndarray) -> np.ndarray:
    """The identifying core of a fitted face mesh: the convex hull of its eyes, brows, nose, lips and chin (468
    points in, (M, 2) float64 vertices out). Seen from the side, nose, lips and chin are the face's outline."""
    from p3m.models.face_mesh import LEFT_EYEBROW, RIGHT_EYEBROW

    xy = np.asarray(points, np.float64)[:, :2]
    return _hull(xy[list(_CORE_POINTS + RIGHT_EYEBROW + LEFT_EYEBROW)])


def keypoint_core(face: Face) -> np.ndarray:
    """The identifying core from the detector alone (no trusted mesh): the convex hull of discs of radius
    `KEYPOINT_DISC` (relative to sqrt(box area)) round its five landmarks and round the chin, `CHIN_BELOW_MOUTH`
    eye-to-mouth distances below the mouth; without landmarks the box ellipse at 0.7 (the audit's face core).
    (M, 2) float64."""
    kp = _keypoints(face)
    if kp is None:
        return ellipse_polygon(*face_ellipse(face, 0.7))
    mouth = (kp[3] + kp[4]) / 2.0
    chin = mouth + CHIN_BELOW_MOUTH * (mouth - (kp[0] + kp[1]) / 2.0)
    r = KEYPOINT_DISC * math.sqrt(max(face.width * face.height, 1e-6))
    disc = ellipse_polygon((0.0, 0.0), (2 * r, 2 * r), 0.0, n=16)
    return _hull(*[disc + p for p in (*kp, chin)])


def _keypoints(face: Face) -> np.ndarray | None:
    """The detector's five landmarks (eye, eye, nose, mouth corner, mouth corner; image left before right)."""
    lms = face.landmarks
    if lms is None:
        return None
    lms = np.asarray(lms, np.float64).reshape(-1, 2)
    return lms if lms.shape == (5, 2) and np.all(np.isfinite(lms)) else None


def _mesh_keypoints(points: np.ndarray) -> np.ndarray:
    xy = np.asarray(points, np.float64)[:, :2]
    return np.stack(
        [
            xy[list(_MESH_RIGHT_EYE)].mean(0),
            xy[list(_MESH_LEFT_EYE)].mean(0),
            xy[_MESH_NOSE],
            xy[_MESH_MOUTH[0]],
            xy[_MESH_MOUTH[1]],
        ]
    )


def keypoint_error(points: np.ndarray, face: Face) -> float:
    """Largest distance between the mesh's eyes, nose tip and mouth corners and the detector's five landmarks,
    relative to sqrt(box area); the mirrored assignment counts too (a detector may order the eyes of a face
    upside down by image position). inf without detector landmarks."""
    kp = _keypoints(face)
    if kp is None:
        return math.inf
    mesh = _mesh_keypoints(points)
    scale = math.sqrt(max(face.width * face.height, 1e-6))
    direct = np.linalg.norm(mesh - kp, axis=1).max()
    mirrored = np.linalg.norm(mesh[[1, 0, 2, 4, 3]] - kp, axis=1).max()
    return float(min(direct, mirrored) / scale)


def brow_line(face: Face, above: float = BROW_ABOVE_EYES) -> tuple[np.ndarray, np.ndarray] | None:
    """The brow line from the detector's landmarks: (a point on it, the face's down direction, unit), the line
    being parallel to the eyes, ``above`` eye-to-mouth distances above them; None without landmarks."""
    kp = _keypoints(face)
    if kp is None:
        return None
    eyes, mouth = (kp[0] + kp[1]) / 2.0, (kp[3] + kp[4]) / 2.0
    down = mouth - eyes
    length = float(np.hypot(*down))
    if length < 1e-6:
        return None
    return eyes - above * down, down / length


def detector_region(face: Face) -> np.ndarray | None:
    """The face's box ellipse, turned with the mouth-to-eyes line, below its brow line (`brow_line`): what the
    detector alone says about the jaw-to-brows region, as (N, 2) float64 vertices; None without landmarks."""
    line = brow_line(face)
    if line is None:
        return None
    point, down = line
    angle = math.degrees(math.atan2(-down[0], down[1]))
    ellipse = ellipse_polygon(*_turned_ellipse(face, DETECTOR_SCALE, angle))
    return clip_below(ellipse, point, down)


def _turned_ellipse(face: Face, scale: float, angle: float) -> tuple[tuple[float, float], tuple[float, float], float]:
    """The ellipse of a face turned by ``angle`` degrees (clockwise on screen) whose detector box is upright: the
    box's sides along the image axes are the face's width and height where it is turned less than 45 degrees,
    its height and width where it is turned more (a face lying on its side has a wide box)."""
    (cx, cy), (fw, fh), _ = face_ellipse(face, scale)
    if round(angle / 90.0) % 2:
        fw, fh = fh, fw
    return (cx, cy), (fw, fh), angle


def clip_below(polygon: np.ndarray, point: np.ndarray, normal: np.ndarray) -> np.ndarray | None:
    """The part of a convex polygon on the side of the line through ``point`` that ``normal`` points to (one
    Sutherland-Hodgman step); None when nothing is left."""
    poly = np.asarray(polygon, np.float64)
    side = (poly - point) @ normal
    out = []
    for i in range(len(poly)):
        j = (i + 1) % len(poly)
        if side[i] >= 0:
            out.append(poly[i])
        if (side[i] >= 0) != (side[j] >= 0):
            t = side[i] / (side[i] - side[j])
            out.append(poly[i] + t * (poly[j] - poly[i]))
    return np.array(out) if len(out) >= 3 else None


def _crops(face: Face):
    """The crops (RotatedRect) to fit the mesh on: MediaPipe's, from a square box of the detector box's mean side,
    rotated by the eye line; and, when it differs by `ROTATION_STEP` or more, by the mouth-to-eyes line."""
    from p3m.models.face_mesh import face_roi

    x0, y0, x1, y1 = face.box
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    half = (face.width + face.height) / 4.0
    box = (cx - half, cy - half, cx + half, cy + half)
    kp = _keypoints(face)
    if kp is None:
        return [face_roi(box)]
    first = face_roi(box, (kp[0], kp[1]))
    up = (kp[0] + kp[1]) / 2.0 - (kp[3] + kp[4]) / 2.0
    if float(np.hypot(*up)) < 1e-6:
        return [first]
    # a rectangle rotated by r (clockwise on screen) has its up direction at (sin r, -cos r) in the image
    rotation = math.atan2(up[0], -up[1])
    turn = abs(math.remainder(rotation - first.rotation, 2 * math.pi))
    return [first, replace(first, rotation=rotation)] if turn >= ROTATION_STEP else [first]


def covering_shape(face: Face, mesh_polygon: np.ndarray | None = None) -> np.ndarray:
    """The covering shape of a face whose landmarks are not trusted: the convex hull of its box ellipse at
    `COVER_SCALE` (rotated with the mouth-to-eyes line when the detector gave landmarks), of discs of radius
    `KEYPOINT_DISC` round the landmarks, and of ``mesh_polygon`` when given. (N, 2) float64."""
    ellipse = face_ellipse(face, COVER_SCALE)
    kp = _keypoints(face)
    parts = []
    if kp is not None:
        up = (kp[0] + kp[1]) / 2.0 - (kp[3] + kp[4]) / 2.0
        if float(np.hypot(*up)) > 1e-6:
            ellipse = _turned_ellipse(face, COVER_SCALE, math.degrees(math.atan2(up[0], -up[1])))
        r = KEYPOINT_DISC * math.sqrt(max(face.width * face.height, 1e-6))
        disc = ellipse_polygon((0.0, 0.0), (2 * r, 2 * r), 0.0, n=16)
        parts += [disc + p for p in kp]
    parts.append(ellipse_polygon(*ellipse))
    if mesh_polygon is not None:
        parts.append(np.asarray(mesh_polygon, np.float64))
    return _hull(*parts)


def _hull(*polygons: np.ndarray) -> np.ndarray:
    points = np.concatenate([np.asarray(p, np.float64) for p in polygons]).astype(np.float32)
    return cv2.convexHull(points).reshape(-1, 2).astype(np.float64)


class FaceOutliner:
    """Outlines of detected faces (see the module docstring).

    mode: "landmarks" (P3M's region, the covering shape where the mesh is not trusted) or "ellipse" (the box
    ellipse at ``ellipse_scale``, rotated by the eye line: p3m's region before the landmarks). forehead: the
    landmark region reaches the top of the forehead instead of the brows. mesh: a `FaceMesh` (default: one
    shared CPU instance, loaded on first use). core: give each outline its identifying core (`FaceOutline.core`);
    False leaves it None, and the whole transition band is then kept (P3M's literal P = R_face \\ R_trans).
    """

    def __init__(
        self,
        mode: str = "landmarks",
        *,
        forehead: bool = False,
        ellipse_scale: float = 1.1,
        mesh=None,
        core: bool = True,
    ):
        if mode not in REGION_MODES:
            raise ValueError(f"unknown region {mode!r}; choose from {', '.join(REGION_MODES)}")
        if not ellipse_scale > 0:
            raise ValueError(f"ellipse scale must be > 0, got {ellipse_scale}")
        self.mode = mode
        self.forehead = forehead
        self.ellipse_scale = float(ellipse_scale)
        self._mesh = mesh
        self.core = core

    @property
    def mesh(self):
        if self._mesh is None:
            self._mesh = shared_mesh()
        return self._mesh

    def outlines(self, image: np.ndarray, faces: Sequence[Face]) -> list[FaceOutline]:
        """One `FaceOutline` per face of an (H, W, 3) uint8 RGB image, in the order of ``faces``."""
        found = self._outlines(image, list(faces))
        return found if self.core else [replace(o, core=None) for o in found]

    def _outlines(self, image: np.ndarray, faces: list[Face]) -> list[FaceOutline]:
        if self.mode == "ellipse":
            return [
                FaceOutline(f, ellipse_polygon(*face_ellipse(f, self.ellipse_scale)), "ellipse", core=keypoint_core(f))
                for f in faces
            ]
        if not faces:
            return []
        crops = [_crops(f) for f in faces]
        flat = [c for cs in crops for c in cs]
        fits = iter(self.mesh.run(np.ascontiguousarray(image), flat))
        out = []
        for face, cs in zip(faces, crops, strict=True):
            candidates = [next(fits) for _ in cs]
            scored = [(keypoint_error(c.points, face), c) for c in candidates]
            error, best = min(scored, key=lambda ec: (ec[1].score < MIN_PRESENCE, ec[0]))
            polygon = landmark_region(best.points, face, forehead=self.forehead)
            if best.score >= MIN_PRESENCE and error <= MAX_KEYPOINT_ERROR:
                core = identifying_core(best.points)
                out.append(FaceOutline(face, polygon, "landmarks", float(best.score), points=best.points, core=core))
                continue
            if best.score < MIN_PRESENCE:
                reason = f"face mesh presence {best.score:.2f} < {MIN_PRESENCE}"
                mesh_polygon = None
            else:
                reason = f"face mesh off the detector's landmarks by {error:.2f} > {MAX_KEYPOINT_ERROR}"
                mesh_polygon = polygon
            cover = covering_shape(face, mesh_polygon)
            out.append(FaceOutline(face, cover, "cover", 0.0, reason, best.points, keypoint_core(face)))
        return out


_MESH = None
_MESH_LOCK = threading.Lock()


def shared_mesh():
    """One `p3m.models.face_mesh.FaceMesh` on the CPU for the process (its weights load once, ~1 MB)."""
    global _MESH
    with _MESH_LOCK:
        if _MESH is None:
            from p3m.models.face_mesh import FaceMesh

            _MESH = FaceMesh()
        return _MESH
