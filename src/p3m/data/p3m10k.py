"""The P3M-10k dataset on disk: discovery of both release layouts, pairing by stem, validation.

Layouts accepted (the 2021 and 2024 releases, `JizhiziLi/P3M` and `ViTAE-Transformer/P3M-Net` READMEs):

- test splits under ``validation/P3M-500-P`` (README trees, IJCV code) or directly under the root
  (``JizhiziLi/P3M:core/config.py``); when both exist, ``validation/`` wins;
- train as in the 2021 release (``blurred_image``, ``mask``), the 2024 release (adds ``fg_blurred``,
  ``bg``, ``facemask``) or the 2021 README convention (``fg``, ``bg``).

Files are paired by stem, whatever their image extension. Validation reads image headers only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from p3m.errors import DatasetError, ImageError
from p3m.io import IMAGE_EXTENSIONS, image_size

__all__ = ["SPLITS", "P3M10k", "Sample", "find_by_stem", "open_dataset", "resolve_image_paths", "summarize"]

SPLITS = ("train", "P3M-500-P", "P3M-500-NP")

# Folder holding the RGB images of each split: obfuscated for train and P, original faces for NP.
IMAGE_FOLDER = {"train": "blurred_image", "P3M-500-P": "blurred_image", "P3M-500-NP": "original_image"}
# Optional companion folders, tried in order; the first present one is used.
_COMPANION_FOLDERS = {
    "trimap": ("trimap",),
    "facemask": ("facemask",),
    "fg": ("fg", "fg_blurred"),  # 2021 README convention, then the 2024 release
    "bg": ("bg",),
}
# Companions that may be absent for some stems: facemasks were a separate download, and a back-view portrait
# has no face. A missing facemask gives `Sample.facemask = None`; other companions missing are problems.
_OPTIONAL_PER_STEM = {"facemask"}


@dataclass(frozen=True)
class Sample:
    """One dataset item: paths of the image and its partner files (None where the split has none)."""

    stem: str
    image: Path
    mask: Path
    trimap: Path | None = None
    facemask: Path | None = None
    fg: Path | None = None
    bg: Path | None = None


class P3M10k:
    """A discovered (and usually validated) P3M-10k root; build it with `open_dataset`."""

    def __init__(self, root: Path, splits: dict[str, list[Sample]], split_dirs: dict[str, Path]) -> None:
        self.root = root
        self._splits = {name: splits[name] for name in SPLITS if name in splits}
        self.split_dirs = {name: split_dirs[name] for name in self._splits}

    @property
    def splits(self) -> dict[str, list[Sample]]:
        """Samples of every split present, in `SPLITS` order."""
        return dict(self._splits)

    def split(self, name: str) -> list[Sample]:
        """Samples of one split, sorted by stem."""
        if name not in SPLITS:
            raise DatasetError(f"unknown split {name!r}; valid splits: {', '.join(SPLITS)}")
        if name not in self._splits:
            present = ", ".join(self._splits) or "none"
            raise DatasetError(f"split {name!r} is not present in {self.root} (present: {present})")
        return list(self._splits[name])

    def ppt(self) -> dict:
        """The Privacy-Preserving Training setting (Li et al., ACM MM 2021): train obfuscated, test on both."""
        return {"train": "train", "test": ["P3M-500-P", "P3M-500-NP"]}

    def __len__(self) -> int:
        return sum(len(samples) for samples in self._splits.values())

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}={len(samples)}" for name, samples in self._splits.items())
        return f"P3M10k({str(self.root)!r}, {counts})"


def _image_extensions() -> set[str]:
    return {ext.lower() for ext in IMAGE_EXTENSIONS}


def _index_folder(folder: Path, extensions: set[str], problems: list[str]) -> dict[str, Path]:
    """Map stem -> file for the image files of one folder; hidden files and other types are ignored."""
    index: dict[str, Path] = {}
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        problems.append(f"{folder}: cannot list folder ({exc.strerror or exc})")
        return index
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_file():
            continue
        path = Path(entry.path)
        if path.suffix.lower() not in extensions:
            continue
        if path.stem in index:
            problems.append(f"{path}: two files share stem {path.stem!r} (also {index[path.stem].name})")
            continue
        index[path.stem] = path
    return index


def _locate_split(root: Path, name: str) -> Path | None:
    candidates = [root / "train"] if name == "train" else [root / "validation" / name, root / name]
    return next((c for c in candidates if c.is_dir()), None)


def _discover_split(name: str, split_dir: Path, extensions: set[str], problems: list[str]) -> list[Sample]:
    image_dir = split_dir / IMAGE_FOLDER[name]
    mask_dir = split_dir / "mask"
    missing = [d for d in (image_dir, mask_dir) if not d.is_dir()]
    for d in missing:
        problems.append(f"{d}: missing folder (split {name} needs {IMAGE_FOLDER[name]}/ and mask/)")
    if missing:
        return []
    images = _index_folder(image_dir, extensions, problems)
    masks = _index_folder(mask_dir, extensions, problems)
    companions: dict[str, tuple[Path, dict[str, Path]]] = {}
    for field, folder_names in _COMPANION_FOLDERS.items():
        folder = next((split_dir / f for f in folder_names if (split_dir / f).is_dir()), None)
        if folder is not None:
            companions[field] = (folder, _index_folder(folder, extensions, problems))

    stems = sorted(set(images) | set(masks))
    for stem in stems:
        if stem not in images:
            problems.append(f"{masks[stem]}: no image with stem {stem!r} in {image_dir}")
        if stem not in masks:
            problems.append(f"{images[stem]}: no mask with stem {stem!r} in {mask_dir}")
    for field, (folder, index) in companions.items():
        for stem in sorted(set(index) - set(stems)):
            problems.append(f"{index[stem]}: {field} file without image or mask")
        for stem in stems:
            if stem not in index and field not in _OPTIONAL_PER_STEM:
                problems.append(f"{images.get(stem) or masks[stem]}: no {field} with stem {stem!r} in {folder}")

    samples = []
    for stem in stems:
        if stem not in images or stem not in masks:
            continue
        extra = {field: index.get(stem) for field, (_, index) in companions.items()}
        samples.append(Sample(stem=stem, image=images[stem], mask=masks[stem], **extra))
    return samples


def _header_size(path: Path, problems: list[str]) -> tuple[int, int] | None:
    """(height, width) as decoded pixels will have it (EXIF rotation applied), from the header only."""
    try:
        return image_size(path)
    except ImageError as exc:
        problems.append(str(exc))
    except OSError as exc:
        problems.append(f"{path}: cannot be read ({exc.strerror or exc})")
    return None


def _validate_sizes(samples: Iterable[Sample], problems: list[str]) -> None:
    for sample in samples:
        image_hw = _header_size(sample.image, problems)
        for field in ("mask", "trimap", "facemask", "fg", "bg"):
            path = getattr(sample, field)
            if path is None:
                continue
            size = _header_size(path, problems)
            if image_hw is not None and size is not None and size != image_hw:
                problems.append(
                    f"{path}: {field} is {size[1]}x{size[0]} but image {sample.image.name} is "
                    f"{image_hw[1]}x{image_hw[0]} (WxH)"
                )


def open_dataset(root: str | os.PathLike, *, validate: bool = True, require: Iterable[str] = ()) -> P3M10k:
    """Discover a P3M-10k root; with `validate`, also check every file header and size.

    Raises `DatasetError` listing every problem found (one per line) when the root has no split, a
    split in `require` is absent, a file lacks its partner, a file is empty or unreadable, or sizes differ.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root is not a folder")
    required = list(require)
    for name in required:
        if name not in SPLITS:
            raise DatasetError(f"unknown split {name!r}; valid splits: {', '.join(SPLITS)}")
    extensions = _image_extensions()
    problems: list[str] = []
    splits: dict[str, list[Sample]] = {}
    split_dirs: dict[str, Path] = {}
    for name in SPLITS:
        split_dir = _locate_split(root, name)
        if split_dir is None:
            if name in required:
                where = "train/" if name == "train" else f"validation/{name}/ or {name}/"
                problems.append(f"{root}: missing split folder {where}")
            continue
        split_dirs[name] = split_dir
        splits[name] = _discover_split(name, split_dir, extensions, problems)
        if not splits[name] and (split_dir / IMAGE_FOLDER[name]).is_dir():
            problems.append(f"{split_dir}: split {name} has no images")
    if not split_dirs:
        problems.append(
            f"{root}: no P3M-10k split found (expected train/, validation/P3M-500-P/, "
            "validation/P3M-500-NP/, or P3M-500-P/ and P3M-500-NP/ under the root)"
        )
    if validate:
        for samples in splits.values():
            _validate_sizes(samples, problems)
    if problems:
        raise DatasetError(_format_problems(root, problems))
    return P3M10k(root, splits, split_dirs)


def _format_problems(root: Path, problems: list[str]) -> str:
    unique = list(dict.fromkeys(problems))
    noun = "problem" if len(unique) == 1 else "problems"
    return f"dataset {root} has {len(unique)} {noun}:\n" + "\n".join(f"  - {p}" for p in unique)


def summarize(dataset: P3M10k) -> str:
    """One paragraph: where the dataset is, its layout, and the count of images per split."""
    parts = []
    for name, samples in dataset.splits.items():
        extras = [f for f in ("trimap", "facemask", "fg", "bg") if samples and all(getattr(s, f) for s in samples)]
        detail = f" (with {', '.join(extras)})" if extras else ""
        parts.append(f"{name}: {len(samples)} images{detail}")
    test_dirs = [d for name, d in dataset.split_dirs.items() if name != "train"]
    if not test_dirs:
        layout = ""
    elif all(d.parent.name == "validation" for d in test_dirs):
        layout = " (test splits under validation/)"
    else:
        layout = " (test splits directly under the root)"
    counts = "; ".join(parts) if parts else "no splits"
    return (
        f"P3M-10k dataset at {dataset.root}{layout}: {counts}; {len(dataset)} images in total. "
        f"PPT setting: train on {dataset.ppt()['train']}, test on {' and '.join(dataset.ppt()['test'])}."
    )


def find_by_stem(folder: Path, stem: str) -> Path | None:
    """The image file ``<stem>.<ext>`` in ``folder`` (any of `p3m.io.IMAGE_EXTENSIONS`, lower or upper case)."""
    for ext in sorted(IMAGE_EXTENSIONS):
        for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def resolve_image_paths(dataset: P3M10k, samples: list[Sample], image_dir: str | None) -> tuple[str, list[Path]]:
    """(image folder name, image path per training sample), honouring the ``data.image_dir`` override.

    The override names a folder under the train split (e.g. ``original_image`` for un-obfuscated
    images); every sample must have an image with its stem there.
    """
    if image_dir is None:
        folder = samples[0].image.parent.name if samples else "blurred_image"
        return folder, [s.image for s in samples]
    folder_path = Path(dataset.split_dirs["train"]) / image_dir
    if not folder_path.is_dir():
        raise DatasetError(f"{folder_path}: data.image_dir folder not found")
    paths, missing = [], []
    for s in samples:
        p = find_by_stem(folder_path, s.stem)
        (missing.append(s.stem) if p is None else paths.append(p))
    if missing:
        raise DatasetError(f"{folder_path}: no image for {len(missing)} training stems (first: {missing[0]})")
    return image_dir, paths
