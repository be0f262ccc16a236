"""The work of one request, run in a worker thread: decode, matte or anonymise, encode; then give memory back.

`matte_job` is the one place where the server turns a matting result into the bytes it answers with.
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from p3m.errors import ApiError, ImageError

__all__ = ["FaceDetectors", "anonymize_job", "decode", "matte_job", "release_memory", "returns_memory"]

T = TypeVar("T")

# The shared face detector runs at this floor; a request's threshold filters its faces (greedy NMS keeps the
# best-scoring box of each cluster, so filtering afterwards gives the same faces as detecting at that threshold).
MIN_FACE_THRESHOLD = 0.05
#: Largest finest pyramid level (pixels) the shared detector analyses. OpenCV keeps the buffers of the largest
#: input a network has seen (~250 bytes per pixel of the finest level: ~1.3 GB at the detector's 2560-px cap),
#: so larger images get a network of their own, freed with the job.
SHARED_DETECTOR_PIXELS = 1_200_000


def decode(data: bytes, max_pixels: int) -> np.ndarray:
    """An uploaded image -> HxWx3 uint8 RGB; the decoder's one-line errors as HTTP answers (413 / 422)."""
    from p3m.io import read_image

    try:
        return read_image(data, max_pixels=max_pixels, name="image")
    except ImageError as exc:
        message = str(exc)
        if exc.reason == "too_large":
            raise ApiError(413, "too_many_pixels", message) from None
        if exc.reason == "truncated":
            raise ApiError(422, "truncated_image", message) from None
        raise ApiError(422, "invalid_image", message) from None


def returns_memory(job: Callable[..., T]) -> Callable[..., T]:
    """`job`, followed by `release_memory` once its arrays are gone."""

    @functools.wraps(job)
    def run(*args: Any) -> T:
        try:
            return job(*args)
        finally:
            release_memory()

    return run


@returns_memory
def matte_job(
    matter: Any, data: bytes, output: str, background: tuple[int, int, int], strategy: str, max_pixels: int
) -> tuple[bytes, dict[str, Any]]:
    """Decode, matte and encode one upload -> (PNG bytes, info for the answer's headers)."""
    from p3m.io import encode_image

    t0 = time.perf_counter()
    rgb = decode(data, max_pixels)
    decoded = time.perf_counter() - t0  # the upload is decoded here; Matter.matte only checks the array it gets
    job = copy.copy(matter)  # shares the network (its lock serialises passes); strategy is per request
    job.strategy = strategy
    result = job.matte(rgb, foreground=output != "alpha")
    t0 = time.perf_counter()
    pixels = result.render(output, background)
    png = encode_image(pixels, "png")
    seconds = dict(result.info["seconds"], encode=time.perf_counter() - t0)
    seconds["decode"] += decoded
    info = {"width": rgb.shape[1], "height": rgb.shape[0], "seconds": seconds, "strategy": result.info["strategy"]}
    return png, {**info, "warning": result.info.get("warning", "")}


class FaceDetectors:
    """The CenterFace detector for each job: one shared network for ordinary images, and a network of its own
    for an image whose pyramid is large, so that its buffers are freed with the job, not kept for good."""

    def __init__(self) -> None:
        from p3m.privacy.detect import CenterFaceDetector

        self.shared = CenterFaceDetector(MIN_FACE_THRESHOLD)  # its network loads on first use; calls are locked

    def for_image(self, height: int, width: int) -> Any:
        from p3m.privacy.detect import CenterFaceDetector

        finest = max(self.shared.levels(height, width))
        if finest * finest * height * width <= SHARED_DETECTOR_PIXELS:
            return self.shared
        return CenterFaceDetector(MIN_FACE_THRESHOLD)


@returns_memory
def anonymize_job(
    detectors: FaceDetectors,
    data: bytes,
    method: str,
    strength: float,
    threshold: float,
    mask_scale: float,
    fmt: str,
    max_pixels: int,
) -> tuple[bytes, dict[str, Any]]:
    """Decode, detect faces, obfuscate them and encode one upload -> (image bytes, info with the faces)."""
    from p3m.io import encode_image
    from p3m.privacy.anonymize import AnonymizeOptions, anonymize_image

    rgb = decode(data, max_pixels)
    detector = detectors.for_image(*rgb.shape[:2])
    faces = [f for f in detector.detect(rgb) if f.score >= threshold]
    del detector
    options = AnonymizeOptions(method=method, strength=strength, mask_scale=mask_scale)
    result = anonymize_image(rgb, options=options, faces=faces)
    encoded = encode_image(result.image, fmt, quality=95)
    info = {
        "width": rgb.shape[1],
        "height": rgb.shape[0],
        "faces": [{"box": [round(v, 1) for v in f.box], "score": round(f.score, 4)} for f in faces],
        "private_pixels": int(result.private.sum()),
    }
    return encoded, info


@functools.cache
def _malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


def release_memory() -> None:
    """Hand freed heap memory back to the system. glibc keeps the pages of a big job's freed arrays in its
    arenas (one per worker thread), so without this the server's RSS stays at its peak after a large image."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
