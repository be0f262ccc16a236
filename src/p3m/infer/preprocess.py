"""Any input -> RGB uint8 -> a normalised network input; shared by inference (strategies, the portrait route,
`Matter`) and training (the data pipeline and the trainer's validation).

One conversion, `to_rgb`, with one rule set for every input type:

- a path or encoded bytes: read by `p3m.io.read_image` (pixel limit, EXIF orientation, errors naming the file);
- a PIL image of any mode: the same rules as the file it came from (`p3m.io.pil_to_rgb`): EXIF orientation,
  16-bit modes (``I;16``, ``I``) scaled by 1/257, ``F`` taken as [0, 1] when its maximum is at most 1;
- a numpy array, HxW, HxWx1, HxWx2 (grey + alpha), HxWx3 or HxWx4 (RGBA), of one of the documented ranges:
  ``uint8`` 0..255, ``uint16`` 0..65535 (scaled by 1/257, like 16-bit files), float 0..1 (scaled by 255). An
  array outside its range (e.g. float32 holding 0..255), of another dtype, empty or not finite is an `ImageError`
  (one line), never silently clipped;
- alpha (RGBA, grey + alpha, palette transparency) is composited over white, as an image viewer shows it.

`normalize` is the one network normalisation (reference 8.1 step 8): x/255, then ImageNet mean/std, channels first.
"""

from __future__ import annotations

import os
from typing import Any

import cv2
import numpy as np
from PIL import Image

from p3m.errors import ImageError
from p3m.io import channels_to_rgb, pil_to_rgb, read_image, scale_16bit

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "array_to_rgb", "is_greyscale", "normalize", "to_rgb"]

#: ImageNet channel statistics (RGB) of the P3M-Net family's input normalisation.
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

_RANGES = "uint8 (0-255), uint16 (0-65535) or float (0-1)"


def to_rgb(image: Any) -> np.ndarray:
    """Path / bytes / PIL image / ndarray -> HxWx3 uint8 RGB, by the rules of the module docstring."""
    if isinstance(image, (str, os.PathLike, bytes)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return pil_to_rgb(image)
    return array_to_rgb(image)


def array_to_rgb(image: Any) -> np.ndarray:
    """An image array of a documented range (see the module docstring) -> HxWx3 uint8 RGB; ImageError otherwise.

    An HxWx3 uint8 array is returned as it is (no copy when it is contiguous).
    """
    a = np.asarray(image)
    if a.dtype == object or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 2, 3, 4)):
        raise ImageError(f"expected an HxW, HxWx3 or HxWx4 image array, got {a.dtype} {a.shape}")
    if a.size == 0:
        raise ImageError(f"empty image array of shape {a.shape}")
    if a.dtype == np.uint16:
        a = scale_16bit(a)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageError("image array contains NaN or infinite values")
        low, high = float(a.min()), float(a.max())
        if low < 0.0 or high > 1.0:
            raise ImageError(
                f"float image arrays must hold values in [0, 1], this {a.dtype} array holds {low:g}..{high:g} "
                f"(divide 0-255 data by 255, or pass it as uint8)"
            )
        a = np.rint(a * 255.0).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise ImageError(f"image arrays must be {_RANGES}, got {a.dtype}")
    return channels_to_rgb(a)


def normalize(pixels: np.ndarray) -> np.ndarray:
    """HxWx3 RGB values in 0..255 (uint8, or float from resizing such) -> [3,H,W] float32: x/255, ImageNet mean/std.

    The published pipeline normalises R(I)*255 (the resized image scaled back to 0..255) this way.
    """
    x = np.asarray(pixels).astype(np.float32) / np.float32(255.0)
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def is_greyscale(rgb: np.ndarray, *, tolerance: int = 8, share: float = 0.001) -> bool:
    """Whether an HxWx3 uint8 image is a black-and-white photo: its three channels equal, or nearly (a scan of a
    print, a grey JPEG stored in colour): no more than `share` of the pixels have channels more than `tolerance`
    levels apart. (The 12 P3M-10k test photos in colour have 29-99.7% of their pixels past 8 levels; a grey JPEG at
    quality 60 none.)"""
    r, g, b = cv2.split(rgb)
    spread = cv2.max(cv2.max(cv2.absdiff(r, g), cv2.absdiff(g, b)), cv2.absdiff(r, b))  # max - min per pixel
    return bool(np.count_nonzero(spread > tolerance) <= share * spread.size)
