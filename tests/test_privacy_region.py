"""The face region: P3M's landmark polygon, the covering shape where landmarks are not trusted, soft anti-aliased
masks (`p3m.privacy.landmarks`, `p3m.privacy.region`)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from skimage import data

from p3m.privacy.anonymize import AnonymizeOptions, anonymize_image
from p3m.privacy.detect import CenterFaceDetector, Face
from p3m.privacy.landmarks import (
    CHIN_BELOW_MOUTH,
    COVER_SCALE,
    FaceOutliner,
    covering_shape,
    identifying_core,
    jaw_to_brows,
    keypoint_core,
    keypoint_error,
)
from p3m.privacy.region import (
    MIN_FEATHER,
    ellipse_polygon,
    face_ellipse,
    polygon_area,
    polygon_signed_distance,
    soft_mask,
)

# mesh points of the parts a face region must cover (MediaPipe's canonical face mesh) and the top of the forehead
EYES, NOSE, MOUTH, CHIN, FOREHEAD_TOP = (33, 133, 362, 263), (1,), (61, 291, 13, 14), (152,), 10


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def astronaut_face(astronaut) -> Face:
    (face,) = CenterFaceDetector(0.3).detect(astronaut)
    return face


def _inside(polygon: np.ndarray, points: np.ndarray) -> np.ndarray:
    return polygon_signed_distance(points, polygon) > 0


def _literal_distance(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """OpenCV's own signed distance (pointPolygonTest) at every pixel centre (x + 0.5, y + 0.5)."""
    contour = polygon.astype(np.float32).reshape(-1, 1, 2)
    out = np.empty(shape)
    for y in range(shape[0]):
        for x in range(shape[1]):
            out[y, x] = cv2.pointPolygonTest(contour, (x + 0.5, y + 0.5), True)
    return out


# ----------------------------------------------------------------------------------------------- geometry


def test_signed_distance_matches_opencv_and_counts_crossing_loops_as_a_union():
    rng = np.random.default_rng(0)
    angles = np.sort(rng.uniform(0, 2 * math.pi, 12))
    radii = rng.uniform(10, 25, 12)
    polygon = np.stack([40 + radii * np.cos(angles), 35 + radii * np.sin(angles)], axis=1)  # star-shaped, concave
    points = rng.uniform(0, 80, (500, 2))
    contour = polygon.astype(np.float32).reshape(-1, 1, 2)
    literal = [cv2.pointPolygonTest(contour, (float(x), float(y)), True) for x, y in points]
    np.testing.assert_allclose(polygon_signed_distance(points, polygon), literal, atol=1e-3)
    # a figure of eight crossing itself: both loops are inside (non-zero winding), the outside is not
    eight = np.array([[0, 0], [10, 10], [20, 0], [20, 10], [10, 0], [0, 10]], float)
    d = polygon_signed_distance(np.array([[2.0, 5.0], [18.0, 5.0], [10.0, -5.0]]), eight)
    assert d[0] > 0 and d[1] > 0 and d[2] < 0
    with pytest.raises(ValueError):
        polygon_signed_distance(points, polygon[:2])


def test_soft_mask_is_the_exact_distance_ramp():
    polygon = ellipse_polygon((50.3, 40.7), (60.0, 45.0), 20.0, n=40)
    for feather in (1.0, 4.0):
        weights = soft_mask((90, 110), [polygon], feather)
        expected = np.clip(0.5 + _literal_distance(polygon, (90, 110)) / feather, 0.0, 1.0)
        np.testing.assert_allclose(weights, expected, atol=1e-4)
    # narrower than one pixel is raised to one (always anti-aliased); the union of two polygons takes the maximum
    np.testing.assert_array_equal(soft_mask((90, 110), [polygon], 0.2), soft_mask((90, 110), [polygon], MIN_FEATHER))
    other = ellipse_polygon((90.0, 70.0), (30.0, 30.0))
    both = soft_mask((90, 110), [polygon, other], [4.0, 2.0])
    np.testing.assert_array_equal(
        both, np.maximum(soft_mask((90, 110), [polygon], 4.0), soft_mask((90, 110), [other], 2.0))
    )
    # a polygon partly outside the picture is clipped, not an error
    assert soft_mask((20, 20), [polygon], 2.0).shape == (20, 20)
    with pytest.raises(ValueError):
        soft_mask((20, 20), [polygon], [1.0, 2.0])


@pytest.mark.slow
@pytest.mark.parametrize("side", [40, 100, 400])
def test_mask_edge_is_anti_aliased_at_every_face_size(astronaut, astronaut_face, side):
    """The astronaut scaled so that her face box is ``side`` px wide, anonymised with default settings: every edge
    pixel's weight is the exact ramp of its distance to the face's outline, neighbours never jump from 0 to 1 (a
    stair-stepped binary mask does: the old ellipse region fails the same check)."""
    s = side / astronaut_face.width
    image = cv2.resize(astronaut, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    x0, y0, x1, y1 = astronaut_face.box
    face = Face((x0 * s, y0 * s, x1 * s, y1 * s), astronaut_face.score, astronaut_face.landmarks * s)
    options = AnonymizeOptions()
    result = anonymize_image(image, faces=[face], options=options)
    (outline,) = result.outlines
    assert outline.method == "landmarks"
    feather = options.edge_width(outline)
    weights = result.weights
    assert weights is not None
    # the exact ramp on a window round the outline
    px0, py0 = np.floor(outline.polygon.min(axis=0) - feather).astype(int).clip(0)
    px1, py1 = np.ceil(outline.polygon.max(axis=0) + feather).astype(int)
    window = weights[py0:py1, px0:px1]
    shifted = outline.polygon - [px0, py0]
    expected = np.clip(0.5 + _literal_distance(shifted, window.shape) / feather, 0.0, 1.0)
    np.testing.assert_allclose(window, expected, atol=1e-3)
    # no stair steps: 4-neighbours differ by at most 1 / feather (the distance is 1-Lipschitz), never 0 -> 1
    steps = max(np.abs(np.diff(weights, axis=0)).max(), np.abs(np.diff(weights, axis=1)).max())
    assert steps <= 1.0 / feather + 1e-3 and steps < 0.95
    edge = (weights > 0) & (weights < 1)
    assert edge.sum() >= 0.9 * cv2.arcLength(outline.polygon.astype(np.float32), True)  # the whole outline is soft
    old = face_ellipse(face, 1.1)
    hard = np.zeros(image.shape[:2], np.uint8)
    cv2.ellipse(
        hard, (round(old[0][0]), round(old[0][1])), (round(old[1][0] / 2), round(old[1][1] / 2)), 0, 0, 360, 1, -1
    )
    assert np.abs(np.diff(hard.astype(float), axis=1)).max() == 1.0  # what the check above rules out


# ----------------------------------------------------------------------------------------------- landmark region


def test_region_spans_the_face_from_the_jaw_line_up_to_the_brows(astronaut, astronaut_face):
    (outline,) = FaceOutliner().outlines(astronaut, [astronaut_face])
    assert outline.method == "landmarks" and outline.confidence > 0.9 and outline.points is not None
    xy = outline.points[:, :2]
    for part in (EYES, NOSE, MOUTH, CHIN):
        assert _inside(outline.polygon, xy[list(part)]).all(), part
    assert not _inside(outline.polygon, xy[[FOREHEAD_TOP]]).any()  # the forehead is left as it is (P3M)
    forehead = jaw_to_brows(outline.points, forehead=True)
    assert _inside(forehead, xy[[FOREHEAD_TOP]]).all()
    assert polygon_area(forehead) > 1.1 * polygon_area(jaw_to_brows(outline.points))
    # about the size of the face: between the detector's box ellipse at 0.8 and 1.3 in area
    box_area = math.pi / 4 * astronaut_face.width * astronaut_face.height
    assert 0.64 * box_area < polygon_area(outline.polygon) < 1.69 * box_area


def test_region_follows_a_turned_face(astronaut, astronaut_face):
    """The brow cut runs along the face's own axis: the region of the picture turned by 90 degrees is the turned
    region of the upright picture."""
    turned = np.ascontiguousarray(np.rot90(astronaut, -1))  # clockwise: (x, y) -> (H - 1 - y, x)
    detected = CenterFaceDetector(0.3).detect(turned)
    assert detected
    upright = FaceOutliner().outlines(astronaut, [astronaut_face])[0]
    got = FaceOutliner().outlines(turned, detected[:1])[0]
    assert upright.points is not None and got.points is not None

    def iou(ours: np.ndarray, upright_polygon: np.ndarray) -> float:
        moved = np.stack([astronaut.shape[0] - upright_polygon[:, 1], upright_polygon[:, 0]], axis=1)
        a = soft_mask(turned.shape, [ours], 1.0) >= 0.5
        b = soft_mask(turned.shape, [moved], 1.0) >= 0.5
        return float((a & b).sum() / (a | b).sum())

    # the brow cut is a function of the face, not of the picture's axes: the polygon of the turned points is the
    # turned polygon
    h = astronaut.shape[0]
    turned_points = np.stack([h - upright.points[:, 1], upright.points[:, 0], upright.points[:, 2]], axis=1)
    assert iou(jaw_to_brows(turned_points), jaw_to_brows(upright.points)) > 0.99
    # the whole pipeline on the turned picture: the mesh fits another crop (the detector's box and landmarks of a
    # face lying on its side differ), the region stays close (measured IoU 0.84)
    assert iou(got.polygon, upright.polygon) > 0.75


def test_untrusted_landmarks_get_the_covering_shape(astronaut, astronaut_face):
    outliner = FaceOutliner()
    # no face in the crop at all: the mesh's presence score says so
    grey = np.full((300, 300, 3), 128, np.uint8)
    lms = np.array([[120, 130], [180, 130], [150, 160], [130, 190], [170, 190]], float)
    nothing = Face((100.0, 90.0, 200.0, 220.0), 0.5, lms)
    (outline,) = outliner.outlines(grey, [nothing])
    assert outline.method == "cover" and "presence" in outline.reason and outline.confidence == 0.0
    # the covering shape holds the box ellipse at COVER_SCALE and discs round the detector's landmarks
    ellipse = ellipse_polygon(*face_ellipse(nothing, COVER_SCALE))
    assert (polygon_signed_distance(ellipse, outline.polygon) >= -1e-3).all()  # float32 hull vertices
    assert (polygon_signed_distance(lms, outline.polygon) > 5).all()
    np.testing.assert_allclose(outline.polygon, covering_shape(nothing))
    # the detector's landmarks far off the face the mesh fits (here: shifted below the chin): covered, and why
    shifted = Face(
        astronaut_face.box,
        astronaut_face.score,
        astronaut_face.landmarks + np.array([0.0, 0.9 * astronaut_face.height]),
    )
    (outline,) = outliner.outlines(astronaut, [shifted])
    assert outline.method == "cover" and "off the detector's landmarks" in outline.reason
    assert _inside(outline.polygon, astronaut_face.landmarks).all()  # the real face is still inside


def test_keypoint_error_accepts_the_mirrored_eye_order(astronaut, astronaut_face):
    (outline,) = FaceOutliner().outlines(astronaut, [astronaut_face])
    assert outline.points is not None
    assert keypoint_error(outline.points, astronaut_face) < 0.1
    swapped = astronaut_face.landmarks[[1, 0, 2, 4, 3]]
    assert keypoint_error(outline.points, Face(astronaut_face.box, 0.9, swapped)) == pytest.approx(
        keypoint_error(outline.points, astronaut_face)
    )
    assert keypoint_error(outline.points, Face(astronaut_face.box, 0.9, None)) == math.inf


def test_ellipse_mode_is_the_box_ellipse(astronaut, astronaut_face):
    (outline,) = FaceOutliner("ellipse", ellipse_scale=1.2).outlines(astronaut, [astronaut_face])
    assert outline.method == "ellipse" and math.isnan(outline.confidence)
    np.testing.assert_allclose(outline.polygon, ellipse_polygon(*face_ellipse(astronaut_face, 1.2)))
    with pytest.raises(ValueError):
        FaceOutliner("oval")


def test_identifying_core_holds_eyes_brows_nose_mouth_and_chin_but_not_the_jaw_sides(astronaut, astronaut_face):
    (outline,) = FaceOutliner().outlines(astronaut, [astronaut_face])
    assert outline.points is not None and outline.core is not None
    np.testing.assert_allclose(outline.core, identifying_core(outline.points))
    xy = outline.points[:, :2].astype(np.float64)
    parts = xy[list(EYES + NOSE + MOUTH + CHIN + (70, 105, 300, 334))]  # brows: outer and middle
    assert (polygon_signed_distance(parts, outline.core) >= -1e-3).all()
    # inside P3M's region, and narrower: the jaw's sides and the cheeks' outline stay outside (there hair may hang)
    assert (polygon_signed_distance(outline.core, outline.polygon) > 0).all()
    jaw_sides = xy[[172, 136, 397, 365, 234, 454]]
    assert (polygon_signed_distance(jaw_sides, outline.core) < 0).all()
    assert polygon_area(outline.core) < 0.7 * polygon_area(outline.polygon)


def test_faces_without_a_trusted_mesh_get_the_detector_core(astronaut, astronaut_face):
    lms = astronaut_face.landmarks
    for outline in (
        FaceOutliner("ellipse").outlines(astronaut, [astronaut_face])[0],
        FaceOutliner().outlines(np.full_like(astronaut, 128), [astronaut_face])[0],  # no face there: "cover"
    ):
        assert outline.method in ("ellipse", "cover") and outline.core is not None
        np.testing.assert_allclose(outline.core, keypoint_core(astronaut_face))
    core = keypoint_core(astronaut_face)
    mouth, eyes = (lms[3] + lms[4]) / 2, (lms[0] + lms[1]) / 2
    chin = mouth + CHIN_BELOW_MOUTH * (mouth - eyes)
    assert (polygon_signed_distance(np.vstack([lms, chin]), core) > 5).all()
    # no landmarks: the box ellipse at 0.7
    bare = Face(astronaut_face.box, 0.9, None)
    np.testing.assert_allclose(keypoint_core(bare), ellipse_polygon(*face_ellipse(bare, 0.7)))


def test_band_is_kept_on_a_frontal_face_with_hair_and_obfuscated_where_it_crosses_a_profile():
    """The shipped photos with their reference mattes: the man in a cap (frontal, hair and cap at the temples)
    keeps his band as P3M does (the private area changes by under 1 %: measured 0.8 %, the band's ramp at the
    core's edge); the upturned profile's nose, lips and chin lie in the band (measured: 47 % of its core) and are
    obfuscated there too."""
    from p3m.data.obfuscate import transition_band
    from p3m.io import read_image, read_mask
    from tests.paths import REFERENCE_ALPHA, TEST_DATA

    detector = CenterFaceDetector(0.2)
    for name in ("cap", "profile"):
        image = read_image(TEST_DATA / f"people_{name}.jpg")
        alpha = read_mask(REFERENCE_ALPHA / f"people_{name}.png")
        faces = detector.detect(image)
        ours = anonymize_image(image, faces=faces, alpha=alpha)
        literal = anonymize_image(image, faces=faces, alpha=alpha, outliner=FaceOutliner(core=False))
        assert ours.weights is not None and literal.weights is not None
        changed = np.abs(ours.weights - literal.weights).sum() / literal.weights.sum()
        band = transition_band(alpha=alpha) & (soft_mask(image.shape, [ours.outlines[0].polygon], 1.0) > 0)
        edge = AnonymizeOptions().edge_width(ours.outlines[0])  # the core's soft edge, as anonymize draws it
        core = soft_mask(image.shape, [ours.outlines[0].core], edge) > 0
        assert ours.outlines[0].method == "landmarks" and band.any()
        assert not literal.private[band].any()  # without the core the whole band is kept
        if name == "cap":
            assert ours.band_in_core[0] < 0.02 and changed < 0.01
            np.testing.assert_array_equal(ours.image[band & ~core], image[band & ~core])
        else:
            assert ours.band_in_core[0] > 0.3 and changed > 0.15
            assert ours.private[band & core].mean() > 0.99  # the band inside the core is obfuscated


TRANSFORMS = ["turned 30", "turned -90", "cut at the left edge", "face 40 px", "block over mouth and chin"]


@pytest.mark.parametrize("change", TRANSFORMS)
def test_region_covers_eyes_nose_mouth_and_chin_where_landmarks_are_hard(astronaut, astronaut_face, change):
    """The mesh points of the upright photo, moved with the change, lie in the default region (chin pulled 10 %
    towards the face centre: the chin area, not its outline). The same measurement on 127 transformed copies of
    six real faces is `python -m benchmarks.bench_privacy coverage` (docs/privacy.md)."""
    (upright,) = FaceOutliner().outlines(astronaut, [astronaut_face])
    assert upright.points is not None
    points = upright.points[:, :2].astype(np.float64)
    centre = points[[33, 133, 362, 263, 61, 291]].mean(axis=0)
    points[list(CHIN)] = centre + 0.9 * (points[list(CHIN)] - centre)
    image = astronaut
    if change.startswith("turned"):
        angle = float(change.split()[1])
        m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, 1.0)
        image = cv2.warpAffine(astronaut, m, (512, 512), borderMode=cv2.BORDER_REFLECT)
        points = points @ m[:, :2].T + m[:, 2]
    elif change == "cut at the left edge":
        cut = int(astronaut_face.box[0] + 0.4 * astronaut_face.width)
        image, points = np.ascontiguousarray(astronaut[:, cut:]), points - [cut, 0]
    elif change == "face 40 px":
        s = 40 / astronaut_face.width
        image = np.full((400, 400, 3), 128, np.uint8)
        small = cv2.resize(astronaut, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        image[100 : 100 + small.shape[0], 100 : 100 + small.shape[1]] = small
        points = points * s + 100
    else:
        image = astronaut.copy()
        y = int(points[13, 1] - 0.1 * astronaut_face.height)
        image[y : int(astronaut_face.box[3] + 5), int(astronaut_face.box[0]) : int(astronaut_face.box[2])] = (
            200,
            160,
            140,
        )
    result = anonymize_image(image)
    assert result.faces and result.weights is not None
    h, w = result.weights.shape
    for part in (EYES, NOSE, MOUTH, CHIN):
        for x, y in points[list(part)]:
            if 0 <= x < w and 0 <= y < h:
                assert result.weights[int(y), int(x)] >= 0.5, (change, part, [o.method for o in result.outlines])


@pytest.mark.slow
def test_landmark_polygon_meets_p3ms_own_blurred_region(shared_portraits):
    """On the six P3M-obfuscated demo portraits whose blurred region is visible, the landmark polygon (fitted on the
    blurred image) overlaps P3M's region measured from the image (measured: IoU 0.74-0.91, mean 0.82; the old
    ellipse 0.55-0.77, mean 0.69). Each row of docs/privacy.md's table is `python -m benchmarks.bench_privacy iou`."""
    from benchmarks.bench_privacy import P3M_VISIBLE, p3m_region
    from p3m.io import read_image, read_mask

    detector, outliner = CenterFaceDetector(0.2), FaceOutliner()
    ious, old = [], []
    for stem in P3M_VISIBLE:
        image = read_image(shared_portraits / "image" / f"{stem}.jpg")
        alpha = read_mask(shared_portraits / "reference_alpha" / f"{stem}.png")
        theirs = p3m_region(image, alpha)
        assert theirs.sum() > 5000, stem
        ys, xs = np.nonzero(theirs)
        found = [
            f for f in detector.detect(image) if theirs[int((f.box[1] + f.box[3]) / 2), int((f.box[0] + f.box[2]) / 2)]
        ]
        face = found[0] if found else Face((float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())), 1.0)
        (outline,) = outliner.outlines(image, [face])
        assert outline.points is not None
        band = cv2.dilate(((alpha > 0) & (alpha < 255)).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        for polygon, into in ((jaw_to_brows(outline.points), ious), (ellipse_polygon(*face_ellipse(face, 1.1)), old)):
            ours = (soft_mask(image.shape, [polygon], 1.0) >= 0.5) & ~band
            into.append((ours & theirs).sum() / (ours | theirs).sum())
    print(f"\nIoU with P3M's region: landmarks {np.round(ious, 2).tolist()}, old ellipse {np.round(old, 2).tolist()}")
    assert min(ious) >= 0.7 and float(np.mean(ious)) >= 0.8
    assert float(np.mean(ious)) > float(np.mean(old)) + 0.08
