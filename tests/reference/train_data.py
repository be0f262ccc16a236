"""Literal copy of the training data pipeline before the speed-up (as of commit 31bc777), for tests and benchmarks only.

`p3m.train.data` was made faster without changing what it produces; this module keeps the code it replaced, verbatim
(only renamed), so that `tests/test_train_data_speed.py` can check the new pipeline against it sample by sample and
`benchmarks/bench_data.py` can time both in one run. Do not "fix" or speed up anything here: it is the reference.

What it covers: the trimap (int32 arithmetic on the full-resolution dilate/erode), the crop choice, the
crop/flip/resize, the re-quantisation and the normalisation, the fg/bg cache read, the copy-paste (`paste_face`,
`face_box`, `FaceBank.pick`) and the dataset's `load` / `_item` (PIL decoding of image, alpha, fg and bg). The
obfuscation, the private area and the fg/bg estimation it calls are imported from `p3m`, unchanged.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from p3m.errors import DatasetError
from p3m.infer.preprocess import IMAGENET_MEAN, IMAGENET_STD
from p3m.train.config import DataConfig
from p3m.train.data import P3MTrainDataset

__all__ = [
    "ReferenceTrainDataset",
    "ref_augment_sample",
    "ref_choose_crop",
    "ref_face_box",
    "ref_load_or_estimate",
    "ref_normalize",
    "ref_paste_face",
    "ref_pick",
    "ref_random_trimap",
    "ref_requantize_trimap",
    "ref_trimap_from_alpha",
]


# ------------------------------------------------------------------------ p3m/data/trimap.py


def ref_trimap_from_alpha(alpha_u8: np.ndarray, kernel_size: int) -> np.ndarray:
    alpha = np.asarray(alpha_u8)
    if alpha.ndim == 3:
        alpha = alpha[..., 0]  # masks stored with 3 channels use channel 0 (reference §1.2)
    if alpha.ndim != 2:
        raise ValueError(f"alpha must be HxW, got shape {alpha.shape}")
    if alpha.dtype != np.uint8:
        raise ValueError(f"alpha must be uint8 0-255, got {alpha.dtype}")
    k = int(kernel_size)
    if k < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    nonzero = (alpha != 0).astype(np.uint8)
    opaque = (alpha == 255).astype(np.uint8)
    # BORDER_CONSTANT with 0 for dilate and 1 for erode matches the reference's cv2 defaults
    # (pixels outside the image never add foreground nor erase it).
    dilated = cv2.dilate(nonzero, element, iterations=1)
    eroded = cv2.erode(opaque, element, iterations=1)
    trimap = eroded.astype(np.int32) * 255 + (dilated.astype(np.int32) - eroded.astype(np.int32)) * 128
    return trimap.astype(np.uint8)


def ref_random_trimap(alpha_u8: np.ndarray, rng: np.random.Generator, low: int = 15, high: int = 30) -> np.ndarray:
    if low > high:
        raise ValueError(f"low ({low}) must not exceed high ({high})")
    k = int(rng.integers(low, high, endpoint=True))
    return ref_trimap_from_alpha(alpha_u8, k)


# ------------------------------------------------------------------------ p3m/train/data.py


def ref_normalize(rgb_u8: np.ndarray) -> torch.Tensor:
    x = (rgb_u8.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def ref_choose_crop(
    trimap: np.ndarray,
    crop_sizes,
    fallback: int,
    rng: np.random.Generator,
    *,
    policy: str = "ijcv",
    unknown_prob: float = 0.5,
) -> tuple[int, int, int, int]:
    h, w = trimap.shape[:2]
    c = int(crop_sizes[int(rng.integers(len(crop_sizes)))])
    if c >= min(h, w):
        c = fallback
    ch, cw = min(c, h), min(c, w)
    on_unknown = rng.random() < unknown_prob
    if policy == "ijcv":
        ys, xs = np.nonzero(trimap == 128) if on_unknown else (None, None)
        if ys is not None and ys.size:
            k = int(rng.integers(ys.size))
            cy, cx = int(ys[k]), int(xs[k])
        else:
            cy, cx = int(rng.integers(h)), int(rng.integers(w))
        # safe_crop: the centred window is clamped into the image
        y0 = min(max(cy - ch // 2, 0), h - ch)
        x0 = min(max(cx - cw // 2, 0), w - cw)
        return y0, x0, ch, cw
    if policy == "mm21":
        ry, rx = max(h - ch, 1), max(w - cw, 1)  # top-left corner range [0, h - c) (0 when c == h)
        if on_unknown:
            ys, xs = np.nonzero(trimap[:ry, :rx] == 128)
            if ys.size:
                k = int(rng.integers(ys.size))
                return int(ys[k]), int(xs[k]), ch, cw
        return int(rng.integers(ry)), int(rng.integers(rx)), ch, cw
    raise ValueError(f"unknown crop policy {policy!r}")


def ref_requantize_trimap(trimap_u8: np.ndarray) -> np.ndarray:
    out = np.full(trimap_u8.shape, 128, dtype=np.uint8)
    out[trimap_u8 > 180] = 255
    out[trimap_u8 < 50] = 0
    return out


def ref_augment_sample(
    image: np.ndarray,
    alpha: np.ndarray,
    rng: np.random.Generator,
    cfg: DataConfig,
    *,
    fg: np.ndarray | None = None,
    bg: np.ndarray | None = None,
    trimap: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    if trimap is None:
        trimap = ref_random_trimap(alpha, rng, cfg.trimap_kernel[0], cfg.trimap_kernel[1])
    y0, x0, ch, cw = ref_choose_crop(
        trimap, cfg.crop_sizes, cfg.resize, rng, policy=cfg.crop_policy, unknown_prob=cfg.unknown_prob
    )
    flip = rng.random() < cfg.flip_prob
    items = {"image": image, "alpha": alpha, "trimap": trimap}
    if fg is not None and bg is not None:
        items["fg"], items["bg"] = fg, bg
    size = (cfg.resize, cfg.resize)
    out = {}
    for name, array in items.items():
        crop = array[y0 : y0 + ch, x0 : x0 + cw]
        if flip:
            crop = crop[:, ::-1]
        out[name] = cv2.resize(np.ascontiguousarray(crop), size, interpolation=cv2.INTER_LINEAR)
    if cfg.trimap_variant == "ijcv":
        out["trimap"] = ref_requantize_trimap(out["trimap"])
    return out


# ------------------------------------------------------------------------ p3m/train/foreground.py (now fg_cache.py)


def ref_load_or_estimate(image_u8, alpha_u8, cache_dir, image_folder, stem, *, force=False):
    from p3m.io import read_image, write_image
    from p3m.train.fg_cache import estimate_fg_bg

    base = Path(cache_dir) / image_folder  # the cache was PNG then
    fg_path, bg_path = base / "fg" / f"{stem}.png", base / "bg" / f"{stem}.png"
    if not force and fg_path.is_file() and bg_path.is_file():
        fg, bg = read_image(fg_path), read_image(bg_path)
        if fg.shape == image_u8.shape and bg.shape == image_u8.shape:
            return fg, bg
    fg, bg = estimate_fg_bg(image_u8, alpha_u8)
    fg_path.parent.mkdir(parents=True, exist_ok=True)
    bg_path.parent.mkdir(parents=True, exist_ok=True)
    write_image(fg_path, fg)
    write_image(bg_path, bg)
    return fg, bg


# ------------------------------------------------------------------------ p3m/train/copy_paste.py


def ref_face_box(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def ref_paste_face(target, target_face, private, source, rng, *, degree=30.0, scale=(0.8, 1.2), flip=0.5):
    out = target.copy()
    replaced = np.zeros(target.shape[:2], dtype=bool)
    src_box, dst_box = ref_face_box(source.mask), ref_face_box(target_face)
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
    warped = cv2.warpAffine(
        np.ascontiguousarray(patch),
        matrix,
        (w, h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    warped_mask = cv2.warpAffine(
        np.ascontiguousarray(patch_mask),
        matrix,
        (w, h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    replaced = (warped_mask >= 128) & private
    out[replaced] = warped[replaced]
    return out, replaced


def ref_pick(bank, rng: np.random.Generator, exclude=None):
    """`FaceBank.pick` as it was (PIL decoding)."""
    from p3m.io import read_image, read_mask
    from p3m.train.copy_paste import Face

    candidates = [e for e in bank.entries if e[0] != exclude] if exclude is not None else bank.entries
    if not candidates:
        return None
    image_path, mask_path = candidates[int(rng.integers(len(candidates)))]
    image, mask = read_image(image_path), read_mask(mask_path) > 100
    if mask.shape != image.shape[:2]:
        mask = cv2.resize(
            mask.astype(np.uint8), (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST
        ).astype(bool)
    return Face(image, mask)


# ------------------------------------------------------------------------ P3MTrainDataset.load / _item


class ReferenceTrainDataset(P3MTrainDataset):
    """`P3MTrainDataset` with the old `load` and `_item` (same constructor, sampler and error handling)."""

    def load(self, index: int) -> dict[str, np.ndarray]:
        from p3m.io import read_image, read_mask

        sample = self.samples[index]
        image = read_image(self.images[index])
        alpha = read_mask(sample.mask)
        if alpha.shape != image.shape[:2]:
            raise DatasetError(f"{sample.mask}: mask size {alpha.shape} differs from image {image.shape[:2]}")
        out = {"image": image, "alpha": alpha}
        if sample.facemask is not None and (self.cfg.obfuscation != "none" or self.copy_paste is not None):
            face = read_mask(sample.facemask) > 100
            out["face"] = face if face.shape == alpha.shape else np.zeros(alpha.shape, bool)
        if self.cfg.composition:
            if self.use_shipped_fg and sample.fg is not None and sample.bg is not None:
                out["fg"], out["bg"] = read_image(sample.fg), read_image(sample.bg)
            else:
                out["fg"], out["bg"] = ref_load_or_estimate(
                    image, alpha, self.cache_dir, self.image_folder, sample.stem
                )
        return out

    def _item(self, index: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        data = self.load(index)
        image, alpha = data["image"], data["alpha"]
        fg, bg = data.get("fg"), data.get("bg")
        trimap = None
        face = data.get("face")
        if face is not None and face.any():
            from p3m.data.obfuscate import obfuscate, private_area

            trimap = ref_random_trimap(alpha, rng, self.cfg.trimap_kernel[0], self.cfg.trimap_kernel[1])
            private = private_area(face, alpha=alpha)
            if self.cfg.obfuscation != "none":
                image = obfuscate(image, private, self.cfg.obfuscation)
                if fg is not None:  # alpha is 1 in the private area: the foreground is the image there
                    fg = fg.copy()
                    fg[private] = image[private]
            cp = self.copy_paste
            if cp is not None and rng.random() < cp.prob:
                source = ref_pick(self.face_bank, rng, exclude=self.images[index])
                if source is not None:
                    image, replaced = ref_paste_face(
                        image, face, private, source, rng, degree=cp.degree, scale=tuple(cp.scale), flip=cp.flip
                    )
                    if fg is not None and replaced.any():
                        fg = fg.copy()
                        fg[replaced] = image[replaced]
        out = ref_augment_sample(image, alpha, rng, self.cfg, fg=fg, bg=bg, trimap=trimap)
        item = {
            "image": ref_normalize(out["image"]),
            "alpha": torch.from_numpy(out["alpha"].astype(np.float32) / 255.0)[None],
            "trimap": torch.from_numpy(out["trimap"].astype(np.float32))[None],
        }
        if "fg" in out:
            item["fg"], item["bg"] = ref_normalize(out["fg"]), ref_normalize(out["bg"])
        return item
