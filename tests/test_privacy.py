"""Privacy toolkit: private area, obfuscation operators, face detection, anonymisation pipeline, audit."""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np
import pytest
from skimage import data
from skimage.metrics import structural_similarity

from p3m.data.obfuscate import (
    BLUR_SIGMA_FRACTION,
    MIN_BLUR_SIGMA,
    MIN_MOSAIC_CELL,
    MOSAIC_CELLS_PER_FACE,
    obfuscate,
    private_area,
    private_area_outside,
    transition_band,
)
from p3m.errors import ImageError, P3MError
from tests.paths import TEST_DATA

OPEN_FACE = "p_07141906"  # the one unobfuscated face in the shared test data


def _ellipse_mask(shape, center, axes, angle=0.0) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.ellipse(m, center, axes, angle, 0, 360, 1, -1)
    return m.astype(bool)


def _gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)


def _hf_energy(gray: np.ndarray, region: np.ndarray) -> float:
    """Mean squared 4-neighbour Laplacian inside ``region`` eroded by 2 px (literal, no OpenCV)."""
    g = gray
    lap = np.zeros_like(g)
    lap[1:-1, 1:-1] = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]
    inner = region.copy()
    for _ in range(2):  # erode with a 3x3 cross, literally
        e = inner.copy()
        e[1:, :] &= inner[:-1, :]
        e[:-1, :] &= inner[1:, :]
        e[:, 1:] &= inner[:, :-1]
        e[:, :-1] &= inner[:, 1:]
        inner = e
    inner[[0, -1], :] = False
    inner[:, [0, -1]] = False
    return float((lap[inner] ** 2).mean())


def _ssim_in(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    _, smap = structural_similarity(_gray(a), _gray(b), data_range=255, full=True)
    return float(smap[region].mean())


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def astronaut_face(astronaut) -> np.ndarray:
    return _ellipse_mask(astronaut.shape[:2], (226, 118), (46, 62))


# --------------------------------------------------------------------------------------------- private area


def test_private_area_trimap_removes_exactly_the_unknown_band():
    face = _ellipse_mask((60, 80), (40, 30), (20, 25))
    trimap = np.zeros((60, 80), np.uint8)
    trimap[:, 40:] = 255
    trimap[:, 35:45] = 128
    got = private_area(face, trimap=trimap)
    assert got.dtype == bool
    np.testing.assert_array_equal(got, face & (trimap != 128))


def test_private_area_outside_a_given_band_is_private_area_of_its_matte():
    """The band taken once and handed over gives what private_area computes from the matte, hard and soft, with a
    core; a band of another size is refused in one line."""
    rng = np.random.default_rng(3)
    alpha = (rng.random((30, 40)) * 255).astype(np.uint8)
    alpha[:, :15], alpha[:, 25:] = 0, 255
    soft = rng.random((30, 40)).astype(np.float32)
    core = np.zeros((30, 40), bool)
    core[10:20, 18:22] = True
    band = transition_band(alpha=alpha, band_dilation=2)
    for region in (soft > 0.3, soft):
        want = private_area(region, alpha=alpha, band_dilation=2, band_edge=3.0, core=core)
        np.testing.assert_array_equal(private_area_outside(region, band, band_edge=3.0, core=core), want)
    with pytest.raises(ImageError, match="differs from the face region"):
        private_area_outside(soft, band[:, :30])


def test_private_area_alpha_band_is_dilated_and_dtype_aware():
    face = np.ones((40, 40), bool)
    alpha = np.zeros((40, 40), np.uint8)
    alpha[:, 20:] = 255
    alpha[:, 20] = 128  # one-pixel transition column
    got0 = private_area(face, alpha=alpha, band_dilation=0)
    assert (~got0).sum() == 40 and not got0[:, 20].any()
    got3 = private_area(face, alpha=alpha, band_dilation=3)
    assert not got3[:, 17:24].any() and got3[:, :17].all() and got3[:, 24:].all()
    # the same matte as float in [0, 1]; saturated 0/1 values are not transition
    np.testing.assert_array_equal(private_area(face, alpha=alpha / 255.0, band_dilation=3), got3)
    # uint8 1 and 254 are transition, 0 and 255 are not
    a = np.array([[0, 1, 254, 255]], np.uint8)
    np.testing.assert_array_equal(transition_band(alpha=a, band_dilation=0), [[False, True, True, False]])


def test_private_area_without_matte_is_the_face_region_and_validates():
    face = _ellipse_mask((30, 30), (15, 15), (8, 10))
    got = private_area(face)
    np.testing.assert_array_equal(got, face)
    assert got is not face
    with pytest.raises(ImageError):
        private_area(face, alpha=np.zeros((10, 10), np.uint8))
    with pytest.raises(ImageError):
        private_area(face, alpha=np.full((30, 30), 2.0))
    with pytest.raises(ImageError):
        private_area(np.zeros((3, 3, 3), bool))


def test_private_area_of_soft_weights_is_zero_on_the_band_and_ramps_up_from_it():
    weights = np.full((40, 60), 0.8, np.float32)
    trimap = np.full((40, 60), 255, np.uint8)
    trimap[:, 30:33] = 128
    hard = private_area(weights, trimap=trimap)
    assert hard.dtype == np.float32
    np.testing.assert_array_equal(hard, np.where(trimap == 128, 0.0, 0.8).astype(np.float32))
    # band_edge 4: min(1, distance to the nearest band pixel / 4) times the weight (literal distances along x)
    ramp = private_area(weights, trimap=trimap, band_edge=4.0)
    for x in range(60):
        d = 0 if 30 <= x <= 32 else (30 - x if x < 30 else x - 32)
        np.testing.assert_allclose(ramp[:, x], 0.8 * min(1.0, d / 4.0), atol=1e-6)
    assert private_area(weights).dtype == np.float32 and private_area(weights)[0, 0] == np.float32(0.8)


def test_private_area_leaves_the_band_in_where_it_crosses_the_core():
    """P = R_face \\ (R_trans \\ core): band pixels inside the core stay private, the rest of the band is kept."""
    face = _ellipse_mask((60, 80), (40, 30), (30, 25))
    trimap = np.full((60, 80), 255, np.uint8)
    trimap[:, 35:45] = 128
    core = np.zeros((60, 80), bool)
    core[20:40, 30:50] = True
    got = private_area(face, trimap=trimap, core=core)
    assert got.dtype == bool
    band = trimap == 128
    for y, x in itertools.product(range(60), range(80)):  # literal, pixel by pixel
        assert got[y, x] == (face[y, x] and (not band[y, x] or core[y, x]))
    # soft weights: region * max(keep, core); a soft core edge gives a soft transition inside the band
    weights = face.astype(np.float32) * 0.9
    soft_core = np.zeros((60, 80), np.float32)
    soft_core[20:40, 30:50] = 1.0
    soft_core[20:40, 29] = 0.5
    ramp = private_area(weights, trimap=trimap, band_edge=4.0, core=soft_core)
    plain = private_area(weights, trimap=trimap, band_edge=4.0)
    np.testing.assert_allclose(ramp, weights * np.maximum(plain / np.maximum(weights, 1e-9), soft_core), atol=1e-6)
    assert ramp[30, 40] == np.float32(0.9) and plain[30, 40] == 0.0  # band inside the core: private
    assert ramp[10, 40] == 0.0  # band outside the core: kept
    with pytest.raises(ImageError):
        private_area(face, trimap=trimap, core=np.ones((10, 10), bool))


# --------------------------------------------------------------------------------------------- obfuscate


@pytest.mark.parametrize("method", ["blur", "mosaic", "zero"])
def test_obfuscate_leaves_outside_bit_identical(astronaut, astronaut_face, method):
    out = obfuscate(astronaut, astronaut_face, method)
    assert out.dtype == np.uint8 and out.shape == astronaut.shape
    np.testing.assert_array_equal(out[~astronaut_face], astronaut[~astronaut_face])
    assert not np.array_equal(out[astronaut_face], astronaut[astronaut_face])
    # soft weights: every pixel of weight 0 is left as it was, every one of weight 1 is fully replaced
    weights = cv2.GaussianBlur(astronaut_face.astype(np.float32), (0, 0), 3)
    weights[weights < 0.05] = 0.0
    soft = obfuscate(astronaut, weights, method)
    np.testing.assert_array_equal(soft[weights == 0], astronaut[weights == 0])
    assert not np.array_equal(soft[weights > 0.5], astronaut[weights > 0.5])


def test_blur_removes_identifying_detail(astronaut, astronaut_face):
    out = obfuscate(astronaut, astronaut_face, "blur")
    assert _ssim_in(astronaut, out, astronaut_face) < 0.3
    ratio = _hf_energy(_gray(out), astronaut_face) / _hf_energy(_gray(astronaut), astronaut_face)
    assert ratio < 0.05
    # stronger blur leaves less detail than a weak one
    weak = obfuscate(astronaut, astronaut_face, "blur", strength=0.05)
    assert _hf_energy(_gray(weak), astronaut_face) > _hf_energy(_gray(out), astronaut_face)


def _reference_masked_blur(img: np.ndarray, region: np.ndarray, sigma: float) -> np.ndarray:
    """Literal normalised convolution sum(G*I*M)/sum(G*M) with an explicit sampled kernel (full resolution)."""
    r = math.ceil(3 * sigma)
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2 * sigma**2))
    m = region.astype(np.float64)
    num = img.astype(np.float64) * m[..., None]

    def sep(a):
        # zero padding = only region pixels contribute (outside values are multiplied by M = 0 anyway)
        a = np.apply_along_axis(lambda v: np.convolve(np.pad(v, r), g, mode="valid"), 0, a)
        return np.apply_along_axis(lambda v: np.convolve(np.pad(v, r), g, mode="valid"), 1, a)

    den = sep(m)
    out = np.stack([sep(num[..., c]) for c in range(3)], -1) / np.maximum(den, 1e-12)[..., None]
    res = img.copy()
    res[region] = np.clip(np.rint(out[region]), 0, 255).astype(np.uint8)
    return res


def test_blur_matches_literal_masked_gaussian():
    rng = np.random.default_rng(0)
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, :32] = (250, 10, 10)  # saturated red outside the region must not bleed in
    img[16:48, 16:48] = rng.integers(60, 200, (32, 32, 3), dtype=np.uint8)
    region = np.zeros((64, 64), bool)
    region[20:44, 20:44] = True
    # component size = sqrt(24*24) = 24: sigma = max(MIN_BLUR_SIGMA, fraction * 24 * 2) (no downscaling at sigma 4)
    sigma = max(MIN_BLUR_SIGMA, BLUR_SIGMA_FRACTION * 24 * 2.0)
    assert sigma <= 8.0
    got = obfuscate(img, region, "blur", strength=2.0)
    ref = _reference_masked_blur(img, region, sigma)
    diff = np.abs(got.astype(int) - ref.astype(int))[region]
    assert diff.max() <= 1 and diff.mean() < 0.2
    # no red from outside: the region's mean red stays the mean red of its own pixels
    assert abs(got[region][:, 0].mean() - img[region][:, 0].mean()) < 2.0


def test_blur_large_face_is_close_to_literal_reference():
    rng = np.random.default_rng(1)
    img = cv2.GaussianBlur(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8), (0, 0), 3)
    region = _ellipse_mask((200, 200), (100, 100), (60, 80))
    got = obfuscate(img, region, "blur")
    # bbox 121x161 -> size ~139.6 -> sigma = fraction x size: computed on a downscaled copy; compare with the
    # literal one
    _x, _y, w, h = cv2.boundingRect(region.astype(np.uint8))
    sigma = BLUR_SIGMA_FRACTION * math.sqrt(w * h)
    assert sigma > 8.0  # large enough to be computed on a downscaled copy
    ref = _reference_masked_blur(img, region, sigma)
    diff = np.abs(got.astype(int) - ref.astype(int))[region]
    assert diff.mean() < 0.1 and diff.max() <= 2


def _reference_mosaic(img, region, cell):
    """Literal loop: each cell of the region's bbox grid gets the mean of its region pixels."""
    out = img.copy()
    ys, xs = np.nonzero(region)
    y0, x0 = ys.min(), xs.min()
    for cy in range(y0, ys.max() + 1, cell):
        for cx in range(x0, xs.max() + 1, cell):
            sel = np.zeros_like(region)
            sel[cy : cy + cell, cx : cx + cell] = True
            sel &= region
            if sel.any():
                mean = img[sel].astype(np.float64).mean(axis=0)
                out[sel] = np.clip(np.rint(mean), 0, 255).astype(np.uint8)
    return out


def test_mosaic_matches_literal_reference_and_scales_with_face():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    region = _ellipse_mask((90, 120), (60, 45), (30, 36))
    _x, _y, w, h = cv2.boundingRect(region.astype(np.uint8))
    cell = max(MIN_MOSAIC_CELL, round(math.sqrt(w * h) / MOSAIC_CELLS_PER_FACE))
    np.testing.assert_array_equal(obfuscate(img, region, "mosaic"), _reference_mosaic(img, region, cell))
    cell2 = max(MIN_MOSAIC_CELL, round(math.sqrt(w * h) * 2 / MOSAIC_CELLS_PER_FACE))
    np.testing.assert_array_equal(obfuscate(img, region, "mosaic", strength=2.0), _reference_mosaic(img, region, cell2))


def test_zero_blacks_out_and_soft_weights_blend():
    img = np.full((40, 40, 3), 200, np.uint8)
    region = np.zeros((40, 40), bool)
    region[10:30, 10:30] = True
    out = obfuscate(img, region, "zero")
    assert (out[region] == 0).all() and (out[~region] == 200).all()
    weights = np.zeros((40, 40), np.float32)
    weights[10:30, 10:30] = 1.0
    weights[10, 10:30] = 0.25
    f = obfuscate(img, weights, "zero")
    # a pixel of weight w becomes w * 0 + (1 - w) * 200, rounded
    assert f[10, 20, 0] == 150 and f[20, 20, 0] == 0 and (f[weights == 0] == 200).all()


def _reference_weighted(img: np.ndarray, weights: np.ndarray, replaced: np.ndarray) -> np.ndarray:
    """Literal blend w * replaced + (1 - w) * img, rounded, pixel by pixel."""
    out = img.copy()
    for y, x in zip(*np.nonzero(weights > 0), strict=True):
        w = float(weights[y, x])
        out[y, x] = np.clip(np.rint(w * replaced[y, x] + (1 - w) * img[y, x].astype(np.float64)), 0, 255)
    return out


def test_soft_weights_enter_the_mosaic_as_weighted_means():
    rng = np.random.default_rng(5)
    img = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    weights = np.zeros((32, 32), np.float32)
    weights[4:28, 4:28] = rng.uniform(0.1, 1.0, (24, 24)).astype(np.float32)
    cell = max(MIN_MOSAIC_CELL, round(24 / MOSAIC_CELLS_PER_FACE))
    means = np.zeros((32, 32, 3))
    for cy in range(4, 28, cell):  # grid anchored at the region's box, each cell's weight-weighted mean
        for cx in range(4, 28, cell):
            w = weights[cy : cy + cell, cx : cx + cell, None].astype(np.float64)
            means[cy : cy + cell, cx : cx + cell] = (img[cy : cy + cell, cx : cx + cell] * w).sum((0, 1)) / w.sum()
    got = obfuscate(img, weights, "mosaic")
    diff = np.abs(got.astype(int) - _reference_weighted(img, weights, means).astype(int))
    assert diff.max() <= 1  # float32 in the implementation


def test_components_are_obfuscated_independently():
    img = np.zeros((50, 100, 3), np.uint8)
    img[:, 50:] = 255
    region = np.zeros((50, 100), bool)
    region[10:40, 10:40] = True
    region[10:40, 60:90] = True
    out = obfuscate(img, region, "blur")
    # the dark face stays dark and the bright one bright: no mixing between faces
    assert (out[10:40, 10:40] == 0).all() and (out[10:40, 60:90] == 255).all()


def test_obfuscate_empty_region_and_bad_inputs(astronaut):
    empty = np.zeros(astronaut.shape[:2], bool)
    out = obfuscate(astronaut, empty, "blur")
    np.testing.assert_array_equal(out, astronaut)
    assert out is not astronaut
    with pytest.raises(ImageError, match="method"):
        obfuscate(astronaut, empty, "pixelate")
    with pytest.raises(ImageError, match="HxWx3 uint8"):
        obfuscate(astronaut.astype(np.float32), empty)
    with pytest.raises(ImageError, match="size"):
        obfuscate(astronaut, np.zeros((10, 10), bool))
    with pytest.raises(ImageError, match="strength"):
        obfuscate(astronaut, empty, strength=0)
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        obfuscate(astronaut, np.full(astronaut.shape[:2], 1.5, np.float32))
    assert issubclass(ImageError, P3MError)
    # 0/255 masks are accepted like bool masks
    region = np.zeros(astronaut.shape[:2], np.uint8)
    region[100:150, 200:250] = 255
    np.testing.assert_array_equal(obfuscate(astronaut, region, "zero"), obfuscate(astronaut, region > 0, "zero"))


# --------------------------------------------------------------------------------------------- detection

from p3m.privacy.detect import CenterFaceDetector, Face, FaceDetector, nms  # noqa: E402
from p3m.privacy.region import box_coverage, face_region  # noqa: E402


@pytest.fixture(scope="module")
def detector() -> CenterFaceDetector:
    return CenterFaceDetector(threshold=0.3)


def _center(face: Face) -> tuple[float, float]:
    return (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2


def test_detects_astronaut_face_with_landmarks(detector, astronaut):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    f = faces[0]
    cx, cy = _center(f)
    assert 205 < cx < 250 and 95 < cy < 135  # her face: eyes ~(205..250, 110), chin ~y 170
    assert 60 < f.width < 120 and 80 < f.height < 150 and f.score > 0.8
    lm = f.landmarks
    assert lm.shape == (5, 2)
    assert lm[0, 0] < lm[1, 0]  # left eye left of right eye (image coordinates)
    assert lm[2, 1] > lm[0, 1] and lm[3, 1] > lm[2, 1]  # nose below the eyes, mouth below the nose
    assert all(f.box[0] <= x <= f.box[2] and f.box[1] <= y <= f.box[3] for x, y in lm)
    assert isinstance(detector, FaceDetector)


def test_detects_cameraman_face_in_gray_image(detector):
    img = np.repeat(data.camera()[..., None], 3, axis=2)
    faces = detector.detect(img)
    assert len(faces) == 1
    cx, cy = _center(faces[0])
    assert 210 < cx < 250 and 135 < cy < 180


def test_detects_open_face_in_testdata(detector):
    from p3m.io import read_image

    # the open face (OPEN_FACE, 1080x1080) as shipped in tests/data, resized to 480x480
    faces = detector.detect(read_image(TEST_DATA / "people_cap.jpg"))
    assert len(faces) == 1
    cx, cy = _center(faces[0])
    assert 351 < cx < 382 and 155 < cy < 187 and faces[0].score > 0.8


def test_pyramid_finds_small_faces_a_single_level_misses():
    img = np.full((640, 640, 3), 128, np.uint8)
    img[300:380, 400:480] = cv2.resize(data.astronaut(), (80, 80), interpolation=cv2.INTER_AREA)
    coarse = CenterFaceDetector(0.4, base_side=256, multiscale=False)
    assert coarse.levels(640, 640) == [0.4]
    assert coarse.detect(img) == []
    pyramid = CenterFaceDetector(0.4, base_side=256)
    assert pyramid.levels(640, 640) == pytest.approx([0.4, 1.0])
    faces = pyramid.detect(img)
    assert len(faces) == 1
    cx, cy = _center(faces[0])
    # the astronaut's face (x 182..270, y 58..178 in the 512 px image) scaled by 80/512 and shifted
    assert 425 < cx < 445 and 308 < cy < 330


def test_pyramid_levels():
    d = CenterFaceDetector()
    assert d.levels(1080, 1920) == pytest.approx([640 / 1920, 1.0])
    assert d.levels(512, 512) == [1.0]  # small image: native only
    assert d.levels(700, 700) == [640 / 700]  # within 1.25x of the base: one level
    four_k = d.levels(2160, 3840)  # capped at 2560, steps of at most 3x
    assert four_k[0] == pytest.approx(640 / 3840) and four_k[-1] == pytest.approx(2560 / 3840)
    assert all(b / a <= 3.0 + 1e-9 for a, b in itertools.pairwise(four_k))
    assert CenterFaceDetector(multiscale=False).levels(1080, 1920) == pytest.approx([640 / 1920])
    with pytest.raises(ValueError):
        CenterFaceDetector(threshold=1.5)


def _reference_nms(boxes, scores, iou, contain):
    """Literal greedy NMS over all pairs, best first."""
    idx = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep = []
    for i in idx:
        bi = boxes[i]
        ai = (bi[2] - bi[0]) * (bi[3] - bi[1])
        drop = False
        for j in keep:
            bj = boxes[j]
            aj = (bj[2] - bj[0]) * (bj[3] - bj[1])
            inter = max(0, min(bi[2], bj[2]) - max(bi[0], bj[0])) * max(0, min(bi[3], bj[3]) - max(bi[1], bj[1]))
            if inter / (ai + aj - inter) >= iou or inter / ai >= contain:
                drop = True
        if not drop:
            keep.append(i)
    return keep


def test_nms_matches_literal_reference():
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 100, (40, 2))
    wh = rng.uniform(5, 40, (40, 2))
    boxes = np.concatenate([xy, xy + wh], 1)
    scores = rng.uniform(0, 1, 40)
    assert nms(boxes, scores, 0.3, 0.8) == _reference_nms(boxes.tolist(), scores.tolist(), 0.3, 0.8)
    # a small box inside a bigger, better one is dropped even though their IoU is low
    assert nms(np.array([[0, 0, 100, 100], [10, 10, 30, 30]]), np.array([0.9, 0.8])) == [0]


# --------------------------------------------------------------------------------------------- face region


def test_face_region_is_the_scaled_box_ellipse():
    face = Face((20.0, 10.0, 60.0, 70.0), 0.9, None)
    m = face_region((100, 100, 3), [face], scale=1.0)
    assert m.shape == (100, 100) and m.dtype == bool
    assert m[40, 40] and not m[10, 20] and not m[69, 59]  # centre in, box corners out
    assert m.sum() == pytest.approx(math.pi / 4 * 40 * 60, rel=0.04)
    big = face_region((100, 100), [face], scale=1.2)
    assert big.sum() == pytest.approx(math.pi / 4 * 48 * 72, rel=0.04) and (big | m).sum() == big.sum()
    assert not face_region((100, 100), []).any()


def test_face_region_follows_eye_line_roll():
    # eyes on a 30 degree line: the ellipse's long axis (box height) turns with them
    lms = np.array(
        [
            [40, 40],
            [40 + 10 * math.cos(math.radians(30)), 40 + 10 * math.sin(math.radians(30))],
            [45, 50],
            [42, 58],
            [50, 58],
        ],
        float,
    )
    face = Face((30.0, 20.0, 70.0, 100.0), 0.9, lms)
    m = face_region((120, 120), [face])
    ys, xs = np.nonzero(m)
    cov = np.cov(np.stack([xs, ys]))
    _evals, evecs = np.linalg.eigh(cov)
    major = evecs[:, 1]
    angle = math.degrees(math.atan2(major[1], major[0])) % 180
    assert angle == pytest.approx(120, abs=3)  # vertical axis (90) rotated by +30


def test_box_coverage():
    face = Face((20.0, 20.0, 60.0, 60.0), 0.9, None)
    full = np.ones((80, 80), bool)
    assert box_coverage(face, full) == 1.0
    half = np.zeros((80, 80), bool)
    half[:, :40] = True
    assert box_coverage(face, half) == pytest.approx(0.5, abs=0.05)
    assert box_coverage(face, np.zeros((80, 80), bool)) == 0.0
