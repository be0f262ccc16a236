"""MediaPipe's pre- and post-processing steps (p3m.models.mediapipe_calculators) against literal versions.

The end-to-end parity with MediaPipe's own runs is in test_face_detector.py, test_face_mesh.py, test_pose.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from p3m.models.mediapipe_calculators import (
    Detection,
    RotatedRect,
    _remap_bilinear,
    _remap_bilinear_numpy,
    crop,
    decode_detections,
    letterbox,
    opencv_warp_affine,
    opencv_warp_perspective,
    rect_from_alignment_points,
    rect_from_keypoints,
    ssd_anchors,
    to_image,
    transform_rect,
    warp_to_image,
    weighted_nms,
)

RNG = np.random.default_rng(3)


def _bilinear(image: np.ndarray, x: float, y: float) -> np.ndarray:
    """Literal bilinear sample at (x, y), pixel i at coordinate i, edges replicated."""
    h, w = image.shape[:2]
    x0, y0 = math.floor(x), math.floor(y)
    fx, fy = x - x0, y - y0
    at = lambda yy, xx: image[min(max(yy, 0), h - 1), min(max(xx, 0), w - 1)].astype(np.float64)  # noqa: E731
    top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
    bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


def test_crop_is_the_rotated_rectangle_resampled():
    yy, xx = np.mgrid[0:60, 0:80]
    image = np.stack([xx * 3, yy * 4, xx + yy], axis=-1).astype(np.uint8)  # smooth: 1/64 px moves it < 0.1
    rect = RotatedRect(41.3, 28.7, 30.0, 20.0, 0.4)
    out = crop(image, rect, (15, 10))
    assert out.shape == (10, 15, 3) and out.dtype == np.uint8
    for j in range(10):
        for i in range(15):
            ((x, y),) = to_image(np.array([[i / 15, j / 10]]), rect)  # output pixel (i, j) samples here
            # OpenCV rounds coordinates to 1/32 pixel and the result to whole grey levels
            assert np.abs(out[j, i].astype(float) - _bilinear(image, x, y)).max() <= 0.75


def test_crop_borders_and_exact_copies():
    image = RNG.integers(1, 256, (40, 50, 3), dtype=np.uint8)
    # an upright rectangle on whole pixels is an exact copy
    rect = RotatedRect(25.0 + 4, 20.0 + 2, 50.0, 40.0)
    shifted = crop(image, rect, (50, 40), border="zero")
    np.testing.assert_array_equal(shifted[:-2, :-4], image[2:, 4:])
    assert (shifted[-2:] == 0).all() and (shifted[:, -4:] == 0).all()
    replicated = crop(image, rect, (50, 40))
    np.testing.assert_array_equal(replicated[-1, :-4], image[-1, 4:])
    with pytest.raises(ValueError, match="uint8 RGB"):
        crop(image.astype(np.float32), rect, (8, 8))


def test_opencv_warps_resample_in_32nds_of_a_pixel():
    image = RNG.integers(0, 256, (30, 30, 1), dtype=np.uint8)[..., 0]
    half = np.array([[1.0, 0, 0.5], [0, 1.0, 0.0], [0, 0, 1.0]])  # every output pixel half way between two columns
    out = opencv_warp_perspective(image[..., None], half, (29, 30), "replicate")[..., 0]
    expected = (image[:, :29].astype(int) * 16 * 32 * 32 + image[:, 1:30].astype(int) * 16 * 32 * 32 + (1 << 14)) >> 15
    np.testing.assert_array_equal(out, expected)
    values = RNG.random((20, 20)).astype(np.float32)
    third = np.array([[1.0, 0, 1 / 3], [0, 1.0, 0.0]], np.float32)  # 1/3 rounds to 11/32
    warped = opencv_warp_affine(values, third, (19, 20), "zero")
    np.testing.assert_allclose(warped, values[:, :19] * (21 / 32) + values[:, 1:] * (11 / 32), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64, np.uint16])
def test_remap_by_opencv_tables_is_the_tables_spelled_out(dtype):
    # the crops' and warps' resampling by cv2.remap's fixed-point tables against the same tables in numpy: every
    # pixel equal, any channel count, coordinates inside, near and far outside the source, both borders
    rng = np.random.default_rng(int(np.dtype(dtype).itemsize))
    for i in range(40):
        h, w = (int(v) for v in rng.integers(1, 120, 2))
        channels = (None, 1, 3, 4, 6)[i % 5]
        src = (rng.random((h, w) if channels is None else (h, w, channels)) * 255).astype(dtype)
        far = 40000 if i % 4 == 0 else 40  # 1/32 px steps: far beyond int16 pixels
        shape = tuple(int(v) for v in rng.integers(1, 80, 2))
        x = rng.integers(-far * 32, (w + far) * 32, shape)
        y = rng.integers(-far * 32, (h + far) * 32, shape)
        for border in ("replicate", "zero"):
            expected = _remap_bilinear_numpy(src, x, y, border)
            got = _remap_bilinear(src, x, y, border)
            assert got.dtype == expected.dtype and got.shape == expected.shape
            np.testing.assert_array_equal(got, expected)


def test_warp_to_image_inverts_the_crop():
    rect = RotatedRect(60.0, 45.0, 40.0, 40.0, 0.3)
    grid = np.mgrid[0:64, 0:64].astype(np.float32)
    back_x = warp_to_image(grid[1] / 64, rect, (120, 90))  # each crop pixel's own x in [0, 1)
    for x, y in ((60, 45), (70, 40), (52, 55)):
        ((u, _),) = (np.array([[x, y]]) - [rect.center_x, rect.center_y]) @ np.array(
            [[math.cos(rect.rotation), -math.sin(rect.rotation)], [math.sin(rect.rotation), math.cos(rect.rotation)]]
        ) / rect.width + 0.5
        assert back_x[y, x] == pytest.approx(u, abs=0.03)
    assert back_x[2, 2] == 0 and back_x[88, 118] == 0  # outside the rectangle


def test_rectangles_from_detections():
    face = Detection(np.array([10.0, 20.0, 30.0, 60.0]), np.array([[12.0, 30.0], [28.0, 30.0 + 16.0]]), 0.9)
    rect = rect_from_keypoints(face, 0, 1, 0.0)
    assert (rect.center_x, rect.center_y, rect.width, rect.height) == (20.0, 40.0, 20.0, 40.0)
    assert rect.rotation == pytest.approx(math.pi / 4)  # right eye 45 degrees low: turn the crop clockwise
    big = transform_rect(rect, 1.5)
    assert (big.width, big.height, big.center_x) == (60.0, 60.0, 20.0)
    shifted = transform_rect(RotatedRect(0, 0, 10, 20, math.pi / 2), 1.0, square_long=False, shift=(0.0, -0.5))
    assert (shifted.center_x, shifted.center_y) == pytest.approx((10.0, 0.0))  # "up" of a crop turned 90 degrees
    body = Detection(np.zeros(4), np.array([[50.0, 80.0], [50.0, 30.0]]), 0.9)
    upright = rect_from_alignment_points(body, 0, 1, math.pi / 2)
    assert (upright.center_x, upright.width, upright.rotation) == (50.0, 100.0, pytest.approx(0.0))
    wide = letterbox(RotatedRect(50, 20, 100, 40), (128, 128))
    assert (wide.width, wide.height) == (100, 100)


def test_anchors_follow_mediapipe_layout():
    # literal SsdAnchorsCalculator: layers of one stride share a grid, 2 anchors per layer with interpolation
    def literal(size, strides, per_layer):
        out = []
        for stride in sorted(set(strides)):
            cells = -(-size // stride)
            for y in range(cells):
                for x in range(cells):
                    out += [((x + 0.5) / cells, (y + 0.5) / cells)] * per_layer * strides.count(stride)
        return np.array(out)

    short = ssd_anchors(128, [8, 16, 16, 16])
    assert short.shape == (896, 2)
    np.testing.assert_allclose(short, literal(128, [8, 16, 16, 16], 2), atol=1e-7)
    full = ssd_anchors(192, [4], interpolated_scale_aspect_ratio=0.0)
    assert full.shape == (2304, 2)
    np.testing.assert_allclose(full, literal(192, [4], 1), atol=1e-7)
    assert len(ssd_anchors(224, [8, 16, 32, 32, 32])) == 2254  # BlazePose's detector


def test_decoding_and_weighted_suppression():
    anchors = np.array([[0.5, 0.5], [0.5, 0.5], [0.1, 0.1]], np.float32)
    raw = np.zeros((3, 6), np.float32)
    raw[:, 2:4] = 12.8  # 0.1 of a 128 input
    raw[1, 0] = 1.28  # shifted right by 0.01
    raw[:, 4:] = [6.4, 0.0]  # one keypoint 0.05 right of the anchor
    boxes, points, scores = decode_detections(raw, np.array([2.0, 0.0, -5.0]), anchors, 128, min_score=0.4)
    assert len(boxes) == 2  # sigmoid(-5) = 0.007 dropped
    np.testing.assert_allclose(boxes[0], [0.45, 0.45, 0.55, 0.55], atol=1e-6)
    np.testing.assert_allclose(points[0, 0], [0.55, 0.5], atol=1e-6)
    (merged,) = weighted_nms(boxes, points, scores)  # IoU 0.82 > 0.3: one detection
    w = scores / scores.sum()
    np.testing.assert_allclose(merged[0], (boxes * w[:, None]).sum(0), atol=1e-6)
    assert merged[2] == pytest.approx(scores.max())
    far = np.vstack([boxes, [[0.8, 0.8, 0.9, 0.9]]])
    kept = weighted_nms(far, np.vstack([points, points[:1] + 0.3]), np.append(scores, 0.45))
    assert [round(k[2], 3) for k in kept] == [round(float(scores[0]), 3), 0.45]


def test_a_mirrored_detection_gives_the_mirrored_crop():
    """`Detection.mirrored`: x -> width - x for the box and keypoints; the pose crop of the mirrored detection is the
    mirror image of the crop (centre x mirrored, rotation negated), and mirroring twice gives the detection back."""
    from p3m.models.pose_detector import pose_roi

    body = Detection(np.array([30.0, 10.0, 50.0, 34.0]), np.array([[42.0, 80.0], [60.0, 20.0], [41.0, 40.0]]), 0.7)
    flipped = body.mirrored(200)
    assert flipped.box.tolist() == [150.0, 10.0, 170.0, 34.0] and flipped.score == 0.7
    assert flipped.keypoints.tolist() == [[158.0, 80.0], [140.0, 20.0], [159.0, 40.0]]
    again = flipped.mirrored(200)
    assert np.array_equal(again.box, body.box) and np.array_equal(again.keypoints, body.keypoints)
    a, b = pose_roi(body), pose_roi(flipped)
    assert (b.center_x, b.center_y, b.width, b.height) == pytest.approx(
        (200 - a.center_x, a.center_y, a.width, a.height)
    )
    assert b.rotation == pytest.approx(-a.rotation) and abs(a.rotation) > 0.1  # a leaning body: the sign matters


def test_a_scaled_rectangle_has_the_corners_of_the_resized_image_and_keeps_its_rotation():
    rect = RotatedRect(40.0, 30.0, 20.0, 10.0, rotation=0.3)
    scaled = rect.scaled(0.5, 0.5)
    assert scaled.rotation == rect.rotation
    assert np.allclose(scaled.corners(), rect.corners() * 0.5)
    wide = RotatedRect(40.0, 30.0, 20.0, 10.0).scaled(2.0, 0.5)
    assert (wide.center_x, wide.center_y, wide.width, wide.height) == (80.0, 15.0, 40.0, 5.0)
