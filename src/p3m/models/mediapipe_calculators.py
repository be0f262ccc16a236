"""MediaPipe's pre- and post-processing between its networks, as pure functions of arrays (image pixels).

The ported MediaPipe networks (`face_detector`, `face_mesh`, `pose_detector`, `pose_landmark`) see the image
through a rotated square crop and answer in the crop's normalised coordinates; these functions reproduce the
MediaPipe 0.10.21 calculators that link them, so that the PyTorch pipelines give MediaPipe's own results:

- `crop` - ImageToTensorCalculator (OpenCV backend): `cv2.warpPerspective` of the rotated rectangle onto the
  tensor, bilinear, on the uint8 image (so the network input is quantised to 8 bits, as in MediaPipe);
  `letterbox` - its `keep_aspect_ratio` padding.
- `to_image` - LandmarkProjection / DetectionProjection / letterbox removal: crop-normalised -> image pixels.
- `rect_from_keypoints`, `rect_from_alignment_points`, `transform_rect` - DetectionsToRects,
  AlignmentPointsRects and RectTransformation calculators (the crop a detection asks for).
- `ssd_anchors`, `decode_detections`, `weighted_nms` - SsdAnchors, TensorsToDetections and the WEIGHTED
  NonMaxSuppression calculators of the BlazeFace / BlazePose detectors.
- `warp_to_image` - WarpAffineCalculator (OpenCV compatibility mode): a crop-sized map back onto the image.

Conventions: image coordinates in pixels, x to the right, y down, as MediaPipe scales its normalised ones
(x_pixels = x_normalised * width; its crops sample pixel column i at x = i). A `RotatedRect` rotation is in
radians, positive = clockwise as seen on screen. OpenCV (box corners, 3x3 solves) is imported only where a crop
is made, so importing `p3m.models` stays torch-only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

__all__ = [
    "Detection",
    "RotatedRect",
    "crop",
    "decode_detections",
    "letterbox",
    "normalize_radians",
    "opencv_warp_affine",
    "opencv_warp_perspective",
    "rect_from_alignment_points",
    "rect_from_keypoints",
    "ssd_anchors",
    "to_image",
    "transform_rect",
    "warp_to_image",
    "weighted_nms",
]


@dataclass(frozen=True)
class RotatedRect:
    """A rectangle in image pixels: centre, size, rotation (radians, clockwise on screen) about its centre."""

    center_x: float
    center_y: float
    width: float
    height: float
    rotation: float = 0.0

    @classmethod
    def whole_image(cls, width: int, height: int) -> RotatedRect:
        """The rectangle of the whole image (MediaPipe's default region of interest)."""
        return cls(width / 2, height / 2, float(width), float(height))

    def scaled(self, kx: float, ky: float) -> RotatedRect:
        """The same rectangle in the image resized by `kx` across and `ky` down (a resize's two ratios, nearly
        equal: the rotation is kept)."""
        return replace(
            self,
            center_x=self.center_x * kx,
            center_y=self.center_y * ky,
            width=self.width * kx,
            height=self.height * ky,
        )

    def corners(self) -> np.ndarray:
        """(4, 2) corners in image pixels: top-left, top-right, bottom-right, bottom-left of the rectangle."""
        return to_image(np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), self)


@dataclass(frozen=True)
class Detection:
    """One detected object: ``box`` (x0, y0, x1, y1) and ``keypoints`` (K, 2) in image pixels, ``score`` in [0, 1]."""

    box: np.ndarray
    keypoints: np.ndarray
    score: float

    def mirrored(self, width: float) -> Detection:
        """The same detection in the image mirrored left to right (an image `width` px wide): x -> width - x."""
        x0, y0, x1, y1 = self.box
        keypoints = self.keypoints.copy()
        keypoints[:, 0] = width - keypoints[:, 0]
        return Detection(np.array([width - x1, y0, width - x0, y1], dtype=self.box.dtype), keypoints, self.score)


def normalize_radians(angle: float) -> float:
    """`angle` wrapped into [-pi, pi)."""
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def crop(rgb: np.ndarray, rect: RotatedRect, size: tuple[int, int], border: str = "replicate") -> np.ndarray:
    """(H, W, 3) uint8 image -> (size[1], size[0], 3) uint8: the rectangle resampled upright onto `size`.

    ``size`` is (width, height) of the output. ``border``: "replicate" (MediaPipe's default) or "zero".
    MediaPipe's OpenCV converter: `cv2.boxPoints` of the rectangle mapped by a perspective transform onto the
    output corners, bilinear `warpPerspective` on the 8-bit image, as OpenCV 4.10 and earlier compute it (the
    OpenCV built into MediaPipe; `opencv_warp_perspective`).
    """
    import cv2

    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    if not (rect.width > 0 and rect.height > 0):
        raise ValueError(f"the crop rectangle must have a positive size, got {rect.width} x {rect.height}")
    box = ((rect.center_x, rect.center_y), (rect.width, rect.height), rect.rotation * 180.0 / math.pi)
    src = cv2.boxPoints(box).astype(np.float32)  # bottom-left, top-left, top-right, bottom-right
    w, h = size
    dst = np.array([[0, h], [0, 0], [w, 0], [w, h]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    _, inverse = cv2.invert(matrix, flags=cv2.DECOMP_LU)  # output pixel -> image pixel, as warpPerspective does
    return opencv_warp_perspective(rgb, inverse, size, border)


def letterbox(rect: RotatedRect, size: tuple[int, int]) -> RotatedRect:
    """The rectangle grown (about its centre) to the aspect ratio of `size` (width, height): what MediaPipe crops
    with ``keep_aspect_ratio``, so the original rectangle fills the middle and the rest is border."""
    tensor_ratio = size[1] / size[0]
    if tensor_ratio > rect.height / rect.width:
        return replace(rect, height=rect.width * tensor_ratio)
    return replace(rect, width=rect.height / tensor_ratio)


def to_image(points: np.ndarray, rect: RotatedRect) -> np.ndarray:
    """(N, 2+) crop-normalised points (x, y in [0, 1] over the crop; extra columns ignored) -> (N, 2) pixels."""
    p = np.asarray(points, dtype=np.float64)[:, :2] - 0.5
    c, s = math.cos(rect.rotation), math.sin(rect.rotation)
    x = (c * p[:, 0] * rect.width - s * p[:, 1] * rect.height) + rect.center_x
    y = (s * p[:, 0] * rect.width + c * p[:, 1] * rect.height) + rect.center_y
    return np.stack([x, y], axis=1)


def rect_from_keypoints(detection: Detection, start: int, end: int, target_angle: float) -> RotatedRect:
    """DetectionsToRectsCalculator: the detection's box, rotated so the vector keypoint `start` -> `end` points at
    `target_angle` (radians, counter-clockwise from the x axis with y up: 0 = right, pi/2 = up)."""
    x0, y0, x1, y1 = (float(v) for v in detection.box)
    (ax, ay), (bx, by) = detection.keypoints[start], detection.keypoints[end]
    rotation = normalize_radians(target_angle - math.atan2(-(by - ay), bx - ax))
    return RotatedRect((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, rotation)


def rect_from_alignment_points(detection: Detection, center: int, scale: int, target_angle: float) -> RotatedRect:
    """AlignmentPointsRectsCalculator: a square centred on keypoint `center`, twice as wide as its distance to
    keypoint `scale`, rotated so that `center` -> `scale` points at `target_angle` (as in `rect_from_keypoints`)."""
    (cx, cy), (sx, sy) = detection.keypoints[center], detection.keypoints[scale]
    size = 2.0 * math.hypot(sx - cx, sy - cy)
    rotation = normalize_radians(target_angle - math.atan2(-(sy - cy), sx - cx))
    return RotatedRect(float(cx), float(cy), size, size, rotation)


def transform_rect(
    rect: RotatedRect, scale: float, *, square_long: bool = True, shift: tuple[float, float] = (0.0, 0.0)
) -> RotatedRect:
    """RectTransformationCalculator: shift by a fraction of the size along the rotated axes, make square on the
    long side, scale about the centre."""
    c, s = math.cos(rect.rotation), math.sin(rect.rotation)
    dx = rect.width * shift[0] * c - rect.height * shift[1] * s
    dy = rect.width * shift[0] * s + rect.height * shift[1] * c
    width, height = rect.width, rect.height
    if square_long:
        width = height = max(width, height)
    return RotatedRect(rect.center_x + dx, rect.center_y + dy, width * scale, height * scale, rect.rotation)


def ssd_anchors(
    input_size: int,
    strides: list[int],
    *,
    offset: float = 0.5,
    interpolated_scale_aspect_ratio: float = 1.0,
) -> np.ndarray:
    """SsdAnchorsCalculator with ``fixed_anchor_size`` and one aspect ratio (all of MediaPipe's Blaze detectors):
    (N, 2) anchor centres, normalised to the square input. Layers sharing a stride share a grid; each layer adds
    one anchor per cell, two with an interpolated scale (``interpolated_scale_aspect_ratio`` > 0)."""
    per_layer = 2 if interpolated_scale_aspect_ratio > 0 else 1
    centres = []
    layer = 0
    while layer < len(strides):
        same = layer
        while same < len(strides) and strides[same] == strides[layer]:
            same += 1
        cells = math.ceil(input_size / strides[layer])
        grid = (np.arange(cells) + offset) / cells
        yy, xx = np.meshgrid(grid, grid, indexing="ij")
        repeats = per_layer * (same - layer)
        centres.append(np.repeat(np.stack([xx.ravel(), yy.ravel()], axis=1), repeats, axis=0))
        layer = same
    return np.concatenate(centres).astype(np.float32)


def decode_detections(
    raw_boxes: np.ndarray,
    raw_scores: np.ndarray,
    anchors: np.ndarray,
    input_size: int,
    min_score: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TensorsToDetectionsCalculator (x, y, w, h order, sigmoid scores clipped at +-100, fixed-size anchors).

    raw_boxes (N, 4 + 2K) and raw_scores (N,) of one image -> (boxes (M, 4) x0, y0, x1, y1; keypoints (M, K, 2);
    scores (M,)) of the boxes scoring at least `min_score`, all normalised to the (square) network input.
    """
    raw = np.asarray(raw_boxes, dtype=np.float32) / np.float32(input_size)
    xy = raw[:, :2] + anchors
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([xy - half, xy + half], axis=1)
    keypoints = raw[:, 4:].reshape(len(raw), -1, 2) + anchors[:, None, :]
    scores = 1.0 / (1.0 + np.exp(-np.clip(np.asarray(raw_scores, dtype=np.float64), -100.0, 100.0)))
    keep = (scores >= min_score) & (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
    return boxes[keep], keypoints[keep], scores[keep]


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, threshold: float = 0.3
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """NonMaxSuppressionCalculator, WEIGHTED: take the best remaining box; every remaining box overlapping it by
    IoU > `threshold` (itself included) is merged into a score-weighted mean of boxes and keypoints, which keeps
    the best score. -> [(box (4,), keypoints (K, 2), score)], best first."""
    order = np.argsort(-scores, kind="stable")
    out = []
    while len(order):
        best = order[0]
        overlap = _iou(boxes[best], boxes[order]) > threshold
        if not overlap[0]:  # a box of no area overlaps nothing, itself included: MediaPipe keeps it and stops
            out.append((boxes[best], keypoints[best], float(scores[best])))
            break
        members, order = order[overlap], order[~overlap]
        weights = scores[members][:, None]
        total = weights.sum()
        box = (boxes[members] * weights).sum(axis=0) / total
        points = (keypoints[members] * weights[:, :, None]).sum(axis=0) / total
        out.append((box, points, float(scores[best])))
    return out


def warp_to_image(values: np.ndarray, rect: RotatedRect, image_size: tuple[int, int]) -> np.ndarray:
    """A crop-sized float map (h, w) that covered `rect` -> (H, W) float32 over the image (`image_size` = (W, H)),
    zero outside the rectangle: MediaPipe's WarpAffineCalculator with the crop's inverse matrix, bilinear, in its
    OpenCV compatibility mode (no half-pixel offset)."""
    h, w = values.shape[:2]
    width, height = image_size
    c, s = math.cos(rect.rotation), math.sin(rect.rotation)
    # image pixel -> crop-normalised (inverse of `to_image`) -> crop pixel, as one affine map
    ux = np.array([c, s]) / rect.width
    uy = np.array([-s, c]) / rect.height
    centre = np.array([rect.center_x, rect.center_y])
    matrix = np.array([[*(ux * w), w * (0.5 - ux @ centre)], [*(uy * h), h * (0.5 - uy @ centre)], [0, 0, 1]])
    # only the rectangle's bounding box (and a pixel of bilinear spill round it) can be non-zero
    corners = rect.corners()
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 2
    window = (max(x0, 0), max(y0, 0), min(x1, width), min(y1, height))
    out = np.zeros((height, width), np.float32)
    if window[2] > window[0] and window[3] > window[1]:
        # MediaPipe hands OpenCV a float32 matrix
        out[window[1] : window[3], window[0] : window[2]] = opencv_warp_affine(
            np.asarray(values, dtype=np.float32), matrix.astype(np.float32), image_size, "zero", window
        )
    return out


# OpenCV's fixed-point resampling (imgwarp.cpp of OpenCV <= 4.10): source coordinates in 1/32 pixel steps
# (INTER_BITS = 5), 8-bit bilinear weights in 1/32768 (INTER_REMAP_COEF_BITS = 15). OpenCV 4.11 and 5 resample
# in floating point instead, which moves 8-bit results by one grey level on some pixels and MediaPipe's outputs
# with them; these keep p3m's crops those of the OpenCV built into MediaPipe, whatever OpenCV is installed.
_TAB = 32


# OpenCV's remap with fixed-point maps (integer part CV_16SC2, fraction index CV_16UC1) still resamples with those
# tables: `_remap_bilinear` hands it the coordinates (tests/test_mediapipe_calculators.py checks it against
# `_remap_bilinear_numpy`, which spells the tables out); its integer part must fit in int16
_REMAP_LIMIT = 32000


def _remap_bilinear(src: np.ndarray, x: np.ndarray, y: np.ndarray, border: str) -> np.ndarray:
    """OpenCV remap, bilinear: x, y (h, w) int64 source coordinates in 1/32 pixel -> (h, w, C) of src's dtype
    (uint8; float32 for any other dtype), as `_remap_bilinear_numpy` computes it, by cv2.remap's tables."""
    import cv2

    height, width = src.shape[:2]
    if max(height, width) >= _REMAP_LIMIT or x.size == 0:
        return _remap_bilinear_numpy(src, x, y, border)
    image = src.reshape(height, width, -1)
    if image.dtype != np.uint8:
        image = image.astype(np.float32)  # the numpy code weighs every corner as float32
    # coordinates far outside: clipped, still outside (the fraction, which OpenCV needs, is kept)
    whole = np.stack([x >> 5, y >> 5], axis=-1).clip(-_REMAP_LIMIT, _REMAP_LIMIT).astype(np.int16)
    fraction = ((y & (_TAB - 1)) * _TAB + (x & (_TAB - 1))).astype(np.uint16)
    mode = cv2.BORDER_REPLICATE if border == "replicate" else cv2.BORDER_CONSTANT
    channels = [
        cv2.remap(image[..., c : c + 4], whole, fraction, cv2.INTER_LINEAR, borderMode=mode, borderValue=0)
        for c in range(0, image.shape[2], 4)
    ]
    out = channels[0] if len(channels) == 1 else np.concatenate([c.reshape(*x.shape, -1) for c in channels], -1)
    return out.reshape(*x.shape, *src.shape[2:])


def _remap_bilinear_numpy(src: np.ndarray, x: np.ndarray, y: np.ndarray, border: str) -> np.ndarray:
    """`_remap_bilinear` spelled out: OpenCV <= 4.10's bilinear tables in numpy (any size of source)."""
    height, width = src.shape[:2]
    x0, y0 = x >> 5, y >> 5
    fx, fy = x & (_TAB - 1), y & (_TAB - 1)
    image = src.reshape(height, width, -1)
    corners = []
    for dy in (0, 1):
        for dx in (0, 1):
            xs, ys = x0 + dx, y0 + dy
            value = image[np.clip(ys, 0, height - 1), np.clip(xs, 0, width - 1)]
            if border == "zero":
                inside = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
                value = np.where(inside[..., None], value, 0)
            corners.append(value)
    if src.dtype == np.uint8:
        wx = np.stack([_TAB - fx, fx]).astype(np.int64)
        wy = np.stack([_TAB - fy, fy]).astype(np.int64)
        weights = [wy[i] * wx[j] * _TAB for i in (0, 1) for j in (0, 1)]  # sum 32768
        total = sum(v.astype(np.int64) * w[..., None] for v, w in zip(corners, weights, strict=True))
        out = np.clip((total + (1 << 14)) >> 15, 0, 255).astype(np.uint8)
    else:
        step = np.float32(1.0 / _TAB)
        tx, ty = fx.astype(np.float32) * step, fy.astype(np.float32) * step
        fweights = [(np.float32(1) - ty, ty)[i] * (np.float32(1) - tx, tx)[j] for i in (0, 1) for j in (0, 1)]
        out = corners[0].astype(np.float32) * fweights[0][..., None]
        for v, w in zip(corners[1:], fweights[1:], strict=True):
            out = out + v.astype(np.float32) * w[..., None]
    return out.reshape(*x.shape, *src.shape[2:])


def opencv_warp_perspective(src: np.ndarray, inverse: np.ndarray, size: tuple[int, int], border: str) -> np.ndarray:
    """`cv2.warpPerspective(src, M, size, INTER_LINEAR, border)` of OpenCV <= 4.10, bit for bit, given
    ``inverse`` = M^-1 (output pixel -> source pixel, 3x3 float64)."""
    m = np.asarray(inverse, dtype=np.float64).reshape(-1)
    width, height = size
    rows = min(16, height)  # OpenCV computes coordinates in blocks of rows x cols; the block start enters the sum
    cols = min(1024 // rows, width)
    xd = np.arange(width)
    xb, x1 = (xd // cols) * cols, xd % cols
    yy = np.arange(height, dtype=np.float64)[:, None]
    x_start = m[0] * xb + m[1] * yy + m[2]
    y_start = m[3] * xb + m[4] * yy + m[5]
    w_start = m[6] * xb + m[7] * yy + m[8]
    w = w_start + m[6] * x1
    w = np.where(w != 0, _TAB / np.where(w != 0, w, 1), 0.0)
    limit = (-(2.0**31), 2.0**31 - 1)
    x = np.rint(np.clip((x_start + m[0] * x1) * w, *limit)).astype(np.int64)
    y = np.rint(np.clip((y_start + m[3] * x1) * w, *limit)).astype(np.int64)
    return _remap_bilinear(src, x, y, border)


def opencv_warp_affine(
    src: np.ndarray,
    inverse: np.ndarray,
    size: tuple[int, int],
    border: str,
    window: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """`cv2.warpAffine(src, M, size, INTER_LINEAR | WARP_INVERSE_MAP, border)` of OpenCV <= 4.10, bit for bit, with
    ``inverse`` = M (output pixel -> source pixel, 2x3 or 3x3): coordinates in 1/1024 pixel, rounded to 1/32.
    ``window`` (x0, y0, x1, y1): compute only that part of the output (and return it), same values."""
    m = np.asarray(inverse, dtype=np.float64).reshape(-1)[:6]
    x_lo, y_lo, x_hi, y_hi = window or (0, 0, *size)
    scale, round_delta = 1024, 1024 // _TAB // 2
    xd = np.arange(x_lo, x_hi, dtype=np.float64)
    yd = np.arange(y_lo, y_hi, dtype=np.float64)[:, None]
    adelta = np.rint(m[0] * xd * scale).astype(np.int64)
    bdelta = np.rint(m[3] * xd * scale).astype(np.int64)
    x_row = np.rint((m[1] * yd + m[2]) * scale).astype(np.int64) + round_delta
    y_row = np.rint((m[4] * yd + m[5]) * scale).astype(np.int64) + round_delta
    return _remap_bilinear(src, (x_row + adelta) >> 5, (y_row + bdelta) >> 5, border)
