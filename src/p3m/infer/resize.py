"""Image resize functions of the inference path.

`resize_paper` is the function R of the published test code (`JizhiziLi/P3M` core/util.py, used by core/test.py):
scikit-image 0.14.5's `resize(img, (h, w))` defaults, i.e. bilinear, no anti-aliasing, constant (zero) border, clipped
to the input range, uint8 scaled to float in [0, 1]. It is written here as two separable gathers so that it is fast and
keeps constant regions exactly constant (the HYBRID rule compares against exactly 0 and exactly 255). `resize_fast` is
the same sampling geometry with a replicated border (OpenCV `INTER_LINEAR` on float32): no darkened one-pixel frame,
several times faster."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from p3m.choices import RESIZE_MODES

__all__ = ["RESIZE_MODES", "mask_resized", "resize", "resize_fast", "resize_paper", "shrunk", "working_size"]


def working_size(height: int, width: int, side: int) -> tuple[int, int]:
    """(h, w) of a working resolution: long side at most `side`, never upscaled, at least 1 px."""
    scale = min(1.0, side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def shrunk(a: np.ndarray, side: int) -> np.ndarray:
    """`a` (HxW or HxWxC) with its long side at most `side` px (`working_size`), by area interpolation; `a` itself
    when it already fits."""
    h, w = a.shape[:2]
    sh, sw = working_size(h, w, side)
    return a if (sh, sw) == (h, w) else cv2.resize(a, (sw, sh), interpolation=cv2.INTER_AREA)


def mask_resized(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """HxW bool `mask` resized to `shape` (h, w) by nearest neighbour; `mask` itself when it has that shape."""
    if mask.shape == tuple(shape):
        return mask
    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)


def _axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps along one axis: (i0, i1, w0, w1) with zero weight for taps outside [0, n_in)."""
    coord = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    i0 = np.floor(coord).astype(np.int64)
    t = coord - i0
    i1 = i0 + 1
    w0 = 1.0 - t
    w1 = t
    # constant border: a tap outside the input reads cval = 0, i.e. contributes nothing
    w0 = np.where((i0 >= 0) & (i0 < n_in), w0, 0.0)
    w1 = np.where((i1 >= 0) & (i1 < n_in), w1, 0.0)
    return np.clip(i0, 0, n_in - 1), np.clip(i1, 0, n_in - 1), w0, w1


def _interp_axis(a: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    n_in = a.shape[axis]
    if n_in == n_out:
        return a
    i0, i1, w0, w1 = _axis_weights(n_in, n_out)
    shape = [1] * a.ndim
    shape[axis] = n_out
    v0 = np.take(a, i0, axis=axis)
    v1 = np.take(a, i1, axis=axis)
    # v0 + t*(v1 - v0) keeps constant runs exactly constant ...
    out = v1 - v0
    out *= w1.reshape(shape).astype(a.dtype, copy=False)
    out += v0
    # ... and the few border taps that read the zero padding use w0*v0 + w1*v1
    edge = np.flatnonzero((w0 + w1) != 1)
    if edge.size:
        e0 = np.take(v0, edge, axis=axis) * w0[edge].reshape([*shape[:axis], -1, *shape[axis + 1 :]])
        e1 = np.take(v1, edge, axis=axis) * w1[edge].reshape([*shape[:axis], -1, *shape[axis + 1 :]])
        idx: list[Any] = [slice(None)] * a.ndim
        idx[axis] = edge
        out[tuple(idx)] = e0 + e1
    return out


def resize_paper(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """R(image, (h, w)) of the published code: float64 result, see module docstring.

    Equals `skimage.transform.resize(image, size, order=1, mode="constant", cval=0, clip=True,
    preserve_range=False, anti_aliasing=False)` (tested to 1e-6).
    """
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"resize target must be positive, got {h}x{w}")
    a = _to_float(image, np.float64)
    out = _interp_axis(a, 0, h)
    out = _interp_axis(out, 1, w)
    if out is a:
        out = a.copy()
    lo, hi = float(a.min()), float(a.max())
    # scikit-image's clip: keep the range of the input, widened to cval=0 only when the output reaches it
    if not lo <= 0.0 <= hi and out.min() <= 0.0 <= out.max():
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    np.clip(out, lo, hi, out=out)
    return out


def resize_fast(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with replicated border (OpenCV INTER_LINEAR on float32), float32 in [0, 1] for uint8."""
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"resize target must be positive, got {h}x{w}")
    a = _to_float(image, np.float32)
    if a.shape[:2] == (h, w):
        return a.copy()
    if a.ndim == 3 and a.shape[2] > 4:
        return np.stack([cv2.resize(a[..., c], (w, h), interpolation=cv2.INTER_LINEAR) for c in range(a.shape[2])], -1)
    out = cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR)
    if a.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return out


def resize(image: np.ndarray, size: tuple[int, int], mode: str = "paper") -> np.ndarray:
    """Dispatch to `resize_paper` ("paper") or `resize_fast` ("fast")."""
    if mode == "paper":
        return resize_paper(image, size)
    if mode == "fast":
        return resize_fast(image, size)
    raise ValueError(f"unknown resize mode {mode!r}; expected one of {RESIZE_MODES}")


def _to_float(image: np.ndarray, dtype: type) -> np.ndarray:
    """uint8 -> [0, 1] (scikit-image's img_as_float); bool -> 0/1; floats pass through."""
    a = np.asarray(image)
    if a.dtype == np.uint8:
        return a.astype(dtype) / dtype(255)
    if a.dtype == np.uint16:
        return a.astype(dtype) / dtype(65535)
    if a.dtype == bool:
        return a.astype(dtype)
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(dtype, copy=False)
    raise TypeError(f"unsupported image dtype {a.dtype}")
