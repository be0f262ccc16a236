"""P3M-ICP: image-level copy-and-paste of a face into the private area of a training image (Ma, Li et al., IJCV 2023).

Copy-and-Augment: the source face (bounding box of its facemask) is flipped horizontally with
probability ``flip``, rotated by a uniform angle in [-degree, degree] and scaled by a uniform factor in
``scale`` (IJCV defaults: 30 degrees, [0.8, 1.2], 0.5). Align-and-Merge: the face is first resized so its
box area matches the target face box, its centre is moved onto the target face centre, and it replaces
the target pixels inside the target's private area only (face minus transition band), so the alpha matte
stays valid. The alignment math of the paper is not published; this is our reading of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from p3m.errors import DatasetError
from p3m.io import IMAGE_EXTENSIONS, read_image, read_mask

__all__ = ["Face", "FaceBank", "copy_where", "face_box", "paste_face"]


@dataclass
class Face:
    """A source face: HxWx3 uint8 image and bool HxW face mask (the whole image, cut later)."""

    image: np.ndarray
    mask: np.ndarray


def face_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, x0, y1, x1) exclusive bounding box of a bool mask, or None when empty."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            return None
        return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1
    x, y, w, h = cv2.boundingRect(_as_u8_mask(mask))  # the box of the non-zero pixels, without listing them
    if w == 0 or h == 0:
        return None
    return y, x, y + h, x + w


def _as_u8_mask(mask: np.ndarray) -> np.ndarray:
    """A 2-D mask as uint8, non-zero where ``mask`` is (bool arrays are viewed, not copied)."""
    if mask.dtype == bool:
        return mask.view(np.uint8)
    return mask if mask.dtype == np.uint8 else (mask != 0).view(np.uint8)


def copy_where(dst: np.ndarray, src: np.ndarray, mask: np.ndarray) -> None:
    """``dst[mask] = src[mask]`` for a bool HxW mask and HxW or HxWxC arrays, touching only the mask's bounding box."""
    box = face_box(mask)
    if box is None:
        return
    y0, x0, y1, x1 = box
    where = np.asarray(mask)[y0:y1, x0:x1].astype(bool, copy=False)
    np.copyto(dst[y0:y1, x0:x1], src[y0:y1, x0:x1], where=where[..., None] if dst.ndim == 3 else where)


def paste_face(
    target: np.ndarray,
    target_face: np.ndarray,
    private: np.ndarray,
    source: Face,
    rng: np.random.Generator,
    *,
    degree: float = 30.0,
    scale: tuple[float, float] = (0.8, 1.2),
    flip: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Paste ``source``'s face into ``target`` (HxWx3 uint8) inside ``private`` (bool HxW).

    ``target_face`` (bool HxW) gives the target face box used for alignment. Returns the new image and
    the bool mask of the pixels replaced (empty when either face is empty). Inputs are not modified.
    """
    out = target.copy()
    replaced = np.zeros(target.shape[:2], dtype=bool)
    src_box, dst_box = face_box(source.mask), face_box(target_face)
    if src_box is None or dst_box is None or not private.any():
        return out, replaced
    sy0, sx0, sy1, sx1 = src_box
    patch = source.image[sy0:sy1, sx0:sx1]
    patch_mask = source.mask[sy0:sy1, sx0:sx1].astype(np.uint8) * 255
    if rng.random() < flip:
        patch, patch_mask = patch[:, ::-1], patch_mask[:, ::-1]
    angle = float(rng.uniform(-degree, degree))
    factor = float(rng.uniform(scale[0], scale[1]))
    dy0, dx0, dy1, dx1 = dst_box
    base = np.sqrt(((dy1 - dy0) * (dx1 - dx0)) / ((sy1 - sy0) * (sx1 - sx0)))
    ph, pw = patch.shape[:2]
    patch_centre = ((pw - 1) / 2.0, (ph - 1) / 2.0)
    target_centre = ((dx0 + dx1 - 1) / 2.0, (dy0 + dy1 - 1) / 2.0)
    matrix = cv2.getRotationMatrix2D(patch_centre, angle, base * factor)
    matrix[0, 2] += target_centre[0] - patch_centre[0]
    matrix[1, 2] += target_centre[1] - patch_centre[1]
    h, w = target.shape[:2]

    def warp(a: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(
            np.ascontiguousarray(a),
            matrix,
            (w, h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )

    warped, warped_mask = warp(patch), warp(patch_mask)
    replaced = (warped_mask >= 128) & private
    copy_where(out, warped, replaced)  # out[replaced] = warped[replaced]
    return out, replaced


class FaceBank:
    """Source faces for P3M-ICP: other training samples (``self``) or a folder of faces.

    A face folder holds ``image/<stem>.<ext>`` and ``mask/<stem>.png`` (face masks, > 100 = face, e.g.
    CelebAMask-HQ images with their merged skin/nose/eyes/brows/mouth masks). Faces load lazily.
    """

    def __init__(self, entries: list[tuple[Path, Path]]) -> None:
        self.entries = entries

    @classmethod
    def from_samples(cls, images: list[Path], facemasks: list[Path | None]) -> FaceBank:
        return cls([(i, m) for i, m in zip(images, facemasks, strict=True) if m is not None])

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> FaceBank:
        folder = Path(folder)
        image_dir, mask_dir = folder / "image", folder / "mask"
        if not image_dir.is_dir() or not mask_dir.is_dir():
            raise DatasetError(f"{folder}: a face folder needs image/ and mask/ subfolders")
        masks = {p.stem: p for p in mask_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
        entries = [
            (p, masks[p.stem])
            for p in sorted(image_dir.iterdir())
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.stem in masks
        ]
        if not entries:
            raise DatasetError(f"{folder}: no image/mask pairs with matching stems")
        return cls(entries)

    def __len__(self) -> int:
        return len(self.entries)

    def pick(self, rng: np.random.Generator, exclude: Path | None = None) -> Face | None:
        """A random face other than ``exclude`` (None when the bank has no other face)."""
        candidates = [e for e in self.entries if e[0] != exclude] if exclude is not None else self.entries
        if not candidates:
            return None
        image_path, mask_path = candidates[int(rng.integers(len(candidates)))]
        image, mask = read_image(image_path), read_mask(mask_path) > 100
        if mask.shape != image.shape[:2]:
            mask = cv2.resize(
                mask.astype(np.uint8), (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST
            ).astype(bool)
        return Face(image, mask)
