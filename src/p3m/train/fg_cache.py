"""Foreground/background colours for the composition loss when a dataset ships none.

P3M-10k's 2021 archive has no fg/bg (`JizhiziLi/P3M` README); the authors point to closed-form estimates. We
estimate them once with pymatting's multilevel foreground estimation (`estimate_foreground_ml`, which
also returns the background) and cache them as lossless WebP files:

    <cache_dir>/<image folder name>/fg/<stem>.webp
    <cache_dir>/<image folder name>/bg/<stem>.webp

The default cache_dir is ``<root>/train/fg_bg_cache``. The image folder name is part of the path so that
estimates of obfuscated and original images (``data.image_dir``) never mix. The cache is keyed by stem:
after replacing images, run ``p3m prepare --force``. A cache file that cannot be read, or whose size differs from
the image's, is estimated again and overwritten (one line on stderr for an unreadable one).

Training decodes two of these files per sample at full resolution, the largest cost of a sample, hence the format:
lossless WebP keeps every pixel like PNG but decodes about twice as fast and takes about half the space
(`benchmarks/RESULTS.md`). They are written with OpenCV, 8-bit RGB without metadata, and read back with OpenCV
(`read_cache_image`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from p3m.atomic import write_bytes_atomic
from p3m.data.p3m10k import open_dataset, resolve_image_paths
from p3m.errors import ImageError, P3MError
from p3m.io import read_image, read_mask
from p3m.pymatting_import import import_pymatting

__all__ = [
    "PrepareReport",
    "cache_paths",
    "cached_pair",
    "default_cache_dir",
    "estimate_fg_bg",
    "load_or_estimate",
    "prepare_foreground",
    "read_cache_image",
    "write_cache_image",
]

CACHE_FOLDER = "fg_bg_cache"


def estimate_fg_bg(image_u8: np.ndarray, alpha_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fg, bg) HxWx3 uint8 such that image ~ alpha fg + (1 - alpha) bg (pymatting multilevel estimate)."""
    estimate_foreground_ml = import_pymatting().estimate_foreground_ml

    image = np.asarray(image_u8, dtype=np.float64) / 255.0
    alpha = np.asarray(alpha_u8, dtype=np.float64) / 255.0
    fg, bg = estimate_foreground_ml(image, alpha, return_background=True)
    to_u8 = lambda x: np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)  # noqa: E731
    return to_u8(fg), to_u8(bg)


def default_cache_dir(root: str | os.PathLike) -> Path:
    return Path(root) / "train" / CACHE_FOLDER


CACHE_EXT = ".webp"


def cache_paths(cache_dir: str | os.PathLike, image_folder: str, stem: str) -> tuple[Path, Path]:
    """(fg, bg) paths of one sample's cache entry."""
    base = Path(cache_dir) / image_folder
    return base / "fg" / f"{stem}{CACHE_EXT}", base / "bg" / f"{stem}{CACHE_EXT}"


def cached_pair(cache_dir: str | os.PathLike, image_folder: str, stem: str) -> tuple[Path, Path] | None:
    """The cached (fg, bg) files of one sample; None when there is no complete pair."""
    fg_path, bg_path = cache_paths(cache_dir, image_folder, stem)
    return (fg_path, bg_path) if fg_path.is_file() and bg_path.is_file() else None


def write_cache_image(path: str | os.PathLike, rgb_u8: np.ndarray) -> Path:
    """Write HxWx3 uint8 RGB atomically as lossless WebP (no metadata); the pixels read back are identical."""
    ok, buffer = cv2.imencode(
        CACHE_EXT, cv2.cvtColor(np.ascontiguousarray(rgb_u8), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_WEBP_QUALITY, 101]
    )  # quality > 100 selects lossless
    if not ok:
        raise P3MError(f"{path}: OpenCV could not encode the fg/bg cache image")
    return write_bytes_atomic(Path(path), buffer.tobytes())


def read_cache_image(path: str | os.PathLike) -> np.ndarray:
    """A cache file as HxWx3 RGB uint8: the array `p3m.io.read_image` gives, decoded by OpenCV.

    For the 8-bit RGB lossless files this module writes, OpenCV's decode is PIL's and faster. Anything
    else (grey, alpha, 16 bits, a file OpenCV cannot decode) goes to `read_image`, which applies its own rules and
    raises `p3m.errors.ImageError` naming the file when it cannot read it either.
    """
    array = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)  # as stored: BGR, no conversion of depth or alpha
    if array is None or array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        return read_image(path)
    return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)


def load_or_estimate(
    image_u8: np.ndarray,
    alpha_u8: np.ndarray,
    cache_dir: str | os.PathLike,
    image_folder: str,
    stem: str,
    *,
    force: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Cached (fg, bg) for one sample; estimates and writes them (atomically) on a miss.

    A miss is a missing file, a file of another size than the image, or an unreadable file (reported on stderr).
    """
    found = None if force else cached_pair(cache_dir, image_folder, stem)
    if found is not None:
        try:
            fg, bg = read_cache_image(found[0]), read_cache_image(found[1])
        except ImageError as exc:  # the cache is derived data: repair it rather than lose the sample
            print(f"p3m: fg/bg cache: {exc}; estimating fg/bg again", file=sys.stderr)
        else:
            if fg.shape == image_u8.shape and bg.shape == image_u8.shape:
                return fg, bg
    fg, bg = estimate_fg_bg(image_u8, alpha_u8)
    fg_path, bg_path = cache_paths(cache_dir, image_folder, stem)
    fg_path.parent.mkdir(parents=True, exist_ok=True)
    bg_path.parent.mkdir(parents=True, exist_ok=True)
    write_cache_image(fg_path, fg)
    write_cache_image(bg_path, bg)
    return fg, bg


@dataclass
class PrepareReport:
    """What `prepare_foreground` did."""

    cache_dir: Path
    estimated: int = 0
    cached: int = 0  # already present
    shipped: int = 0  # the dataset has its own fg/bg for these samples
    failures: list[str] = field(default_factory=list)  # one line per bad sample


def prepare_foreground(
    root: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    image_dir: str | None = None,
    force: bool = False,
    limit: int | None = None,
    progress: bool = True,
) -> PrepareReport:
    """Estimate and cache fg/bg for every training sample that has none (``p3m prepare``).

    One unreadable sample is reported in ``failures`` and skipped; the others are processed.
    """
    dataset = open_dataset(root, validate=False, require=("train",))
    samples = dataset.split("train")[:limit] if limit else dataset.split("train")
    folder_name, images = resolve_image_paths(dataset, samples, image_dir)
    cache = Path(cache_dir) if cache_dir else default_cache_dir(dataset.root)
    report = PrepareReport(cache_dir=cache)
    pairs = list(zip(samples, images, strict=True))
    for sample, image_path in tqdm(pairs, desc="fg/bg", disable=not progress, unit="img"):
        if image_dir is None and sample.fg is not None and sample.bg is not None:
            report.shipped += 1
            continue
        if not force and cached_pair(cache, folder_name, sample.stem) is not None:
            report.cached += 1
            continue
        try:
            image, alpha = read_image(image_path), read_mask(sample.mask)
            if image.shape[:2] != alpha.shape:
                raise P3MError(f"{sample.mask}: mask size {alpha.shape} differs from image {image.shape[:2]}")
            load_or_estimate(image, alpha, cache, folder_name, sample.stem, force=True)
            report.estimated += 1
        except P3MError as exc:
            report.failures.append(str(exc))
    return report
