"""Training data: the published P3M augmentation over the P3M-10k dataset layer (`JizhiziLi/P3M` core/data.py).

Per sample (full resolution first, then crop and resize):

1. trimap from a random k x k elliptical dilate/erode of the alpha, k uniform in ``data.trimap_kernel``;
2. optional on-the-fly obfuscation of the private area (face mask minus transition band) with
   blur / mosaic / zero, for the PPT study on un-obfuscated images (``data.image_dir``);
3. optional P3M-ICP copy-paste of another face into the private area (``copy_paste``);
4. crop size c from ``data.crop_sizes`` (c = ``data.resize`` when c >= min(h, w)); crop location by the
   IJCV policy (centre on an unknown pixel with probability ``unknown_prob``, window clamped into the
   image, `safe_crop`) or the MM21 policy (top-left corner on an unknown pixel with that probability);
5. horizontal flip, resize of every item to ``resize`` x ``resize`` (INTER_LINEAR);
6. trimap re-quantisation (IJCV: > 180 -> 255, < 50 -> 0, else 128) or none (MM21);
7. ImageNet normalisation of image, fg and bg, alpha / 255, trimap as float: on the training device, by
   `prepare_batch`.

A dataset item is a dict of **uint8** tensors: ``image`` [3,S,S], ``alpha`` [1,S,S] (0-255), ``trimap`` [1,S,S]
(0/128/255 with the IJCV re-quantisation) and, with the composition loss, ``fg``, ``bg`` [3,S,S]. That is 11 bytes
per pixel through the worker -> main process queue, the pinned copy and the host -> device copy instead of the 44
of float32; the trainer calls ``prepare_batch(batch, device)`` on each collated batch, which moves it and converts
it on the device to exactly the float32 tensors the CPU formulas give (normalised image/fg/bg,
alpha in [0, 1], trimap values as float).

Randomness is a function of (seed, epoch, index) only, so results do not depend on the number of
DataLoader workers, and a resumed run sees the same samples.

Speed (one sample is about 1080 x 1620 px in P3M-10k; ``benchmarks/bench_data.py``): the fg/bg cache (lossless
WebP written by p3m) is decoded with OpenCV (`p3m.train.fg_cache.read_cache_image`, same pixels as
`read_image`); the full-resolution trimap is built only when the crop is anchored on an unknown pixel (which needs
all of them), otherwise only over the crop window (`p3m.data.trimap.trimap_crop`, same values).
``tests/test_train_data_speed.py`` checks every output against a literal copy of the code these replaced.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from p3m.data.obfuscate import obfuscate, private_area
from p3m.data.p3m10k import open_dataset, resolve_image_paths
from p3m.data.trimap import random_kernel_size, trimap_crop, trimap_from_alpha
from p3m.errors import DatasetError, P3MError
from p3m.infer.preprocess import normalize
from p3m.io import read_image, read_mask
from p3m.train.config import CopyPasteConfig, DataConfig
from p3m.train.copy_paste import FaceBank, copy_where, paste_face
from p3m.train.fg_cache import default_cache_dir, load_or_estimate

__all__ = [
    "P3MTrainDataset",
    "ResumableSampler",
    "augment_sample",
    "choose_crop",
    "crop_resize",
    "make_loader",
    "prepare_batch",
    "requantize_trimap",
    "resolve_workers",
    "sample_rng",
    "to_tensors",
    "worker_init",
]

MAX_REPLACEMENTS = 16  # readable samples tried in place of an unreadable one
MAX_AUTO_WORKERS = 16  # the most DataLoader workers data.workers = null (automatic) starts per process


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The augmentation RNG of one sample: a function of the base seed, the epoch and the index only."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def choose_crop(
    trimap: np.ndarray,
    crop_sizes: list[int] | tuple[int, ...],
    fallback: int,
    rng: np.random.Generator,
    *,
    policy: str = "ijcv",
    unknown_prob: float = 0.5,
) -> tuple[int, int, int, int]:
    """Crop window (y0, x0, ch, cw) on an HxW trimap (as the published training code, `JizhiziLi/P3M` core/data.py).

    c is drawn from ``crop_sizes``; when c >= min(h, w) it becomes ``fallback`` (the resize size), and is
    clamped to each side so that small images are never padded.
    """
    return _crop_window(
        trimap.shape[:2], lambda: trimap, crop_sizes, fallback, rng, policy=policy, unknown_prob=unknown_prob
    )


def _crop_window(
    shape: tuple[int, int],
    full_trimap,
    crop_sizes: list[int] | tuple[int, ...],
    fallback: int,
    rng: np.random.Generator,
    *,
    policy: str,
    unknown_prob: float,
) -> tuple[int, int, int, int]:
    """`choose_crop` on an HxW image whose trimap ``full_trimap()`` returns. ``full_trimap`` is called only when
    the crop is anchored on an unknown pixel; the unknown pixels are taken in row-major order, as ``np.nonzero``
    lists them, so the same draw picks the same pixel."""
    h, w = shape
    c = int(crop_sizes[int(rng.integers(len(crop_sizes)))])
    if c >= min(h, w):
        c = fallback
    ch, cw = min(c, h), min(c, w)
    on_unknown = rng.random() < unknown_prob
    if policy == "ijcv":
        unknown = np.flatnonzero(full_trimap() == 128) if on_unknown else None
        if unknown is not None and unknown.size:
            cy, cx = divmod(int(unknown[int(rng.integers(unknown.size))]), w)
        else:
            cy, cx = int(rng.integers(h)), int(rng.integers(w))
        # safe_crop: the centred window is clamped into the image
        y0 = min(max(cy - ch // 2, 0), h - ch)
        x0 = min(max(cx - cw // 2, 0), w - cw)
        return y0, x0, ch, cw
    if policy == "mm21":
        ry, rx = max(h - ch, 1), max(w - cw, 1)  # top-left corner range [0, h - c) (0 when c == h)
        if on_unknown:
            unknown = np.flatnonzero(full_trimap()[:ry, :rx] == 128)
            if unknown.size:
                y0, x0 = divmod(int(unknown[int(rng.integers(unknown.size))]), rx)
                return y0, x0, ch, cw
        return int(rng.integers(ry)), int(rng.integers(rx)), ch, cw
    raise ValueError(f"unknown crop policy {policy!r}")


def requantize_trimap(trimap_u8: np.ndarray) -> np.ndarray:
    """IJCV re-quantisation after resize: > 180 -> 255, < 50 -> 0, else 128."""
    out = np.full(trimap_u8.shape, 128, dtype=np.uint8)
    out[trimap_u8 > 180] = 255
    out[trimap_u8 < 50] = 0
    return out


def augment_sample(
    image: np.ndarray,
    alpha: np.ndarray,
    rng: np.random.Generator,
    cfg: DataConfig,
    *,
    fg: np.ndarray | None = None,
    bg: np.ndarray | None = None,
    trimap: np.ndarray | None = None,
    kernel_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Trimap, crop, flip, resize and re-quantise one full-resolution sample (uint8 arrays in and out).

    ``trimap`` defaults to the random dilate/erode trimap of the alpha, with ``kernel_size`` when given (the caller
    drew it from ``rng``) or k drawn from ``cfg.trimap_kernel``; it is built over the whole image only when the crop
    is anchored on an unknown pixel, else over the crop window only (same values). Returns a dict with keys image,
    alpha, trimap and, when given, fg and bg, all ``resize`` x ``resize``.
    """
    if trimap is None:
        k = (
            random_kernel_size(rng, cfg.trimap_kernel[0], cfg.trimap_kernel[1])
            if kernel_size is None
            else int(kernel_size)
        )
        built: list[np.ndarray] = []

        def full_trimap() -> np.ndarray:
            if not built:
                built.append(trimap_from_alpha(alpha, k))
            return built[0]

        y0, x0, ch, cw = _crop_window(
            alpha.shape[:2],
            full_trimap,
            cfg.crop_sizes,
            cfg.resize,
            rng,
            policy=cfg.crop_policy,
            unknown_prob=cfg.unknown_prob,
        )
        trimap_window = built[0][y0 : y0 + ch, x0 : x0 + cw] if built else trimap_crop(alpha, k, y0, x0, ch, cw)
    else:
        y0, x0, ch, cw = choose_crop(
            trimap, cfg.crop_sizes, cfg.resize, rng, policy=cfg.crop_policy, unknown_prob=cfg.unknown_prob
        )
        trimap_window = trimap[y0 : y0 + ch, x0 : x0 + cw]
    flip = rng.random() < cfg.flip_prob
    items = {"image": image, "alpha": alpha}
    if fg is not None and bg is not None:
        items["fg"], items["bg"] = fg, bg
    out = crop_resize(items, (y0, x0, ch, cw), flip, cfg.resize)
    out["trimap"] = crop_resize({"trimap": trimap_window}, (0, 0, ch, cw), flip, cfg.resize)["trimap"]
    if cfg.trimap_variant == "ijcv":
        out["trimap"] = requantize_trimap(out["trimap"])
    return {name: out[name] for name in ("image", "alpha", "trimap", "fg", "bg") if name in out}


def crop_resize(
    items: dict[str, np.ndarray], window: tuple[int, int, int, int], flip: bool, size: int
) -> dict[str, np.ndarray]:
    """Crop every array to ``window`` (y0, x0, h, w), flip it horizontally if asked, resize it to size x size
    (INTER_LINEAR)."""
    y0, x0, ch, cw = window
    out = {}
    for name, array in items.items():
        crop = array[y0 : y0 + ch, x0 : x0 + cw]
        if not _opencv_view(crop):
            crop = np.ascontiguousarray(crop)
        # cv2.flip writes the mirrored crop contiguously, as np.ascontiguousarray(crop[:, ::-1]) does, faster; an
        # unflipped crop goes to cv2.resize as a view (OpenCV reads the rows through their stride: no copy)
        crop = cv2.flip(crop, 1) if flip else crop
        out[name] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR)
    return out


def _opencv_view(array: np.ndarray) -> bool:
    """True when OpenCV takes ``array`` as it is: rows of contiguous pixels at a positive row stride."""
    if array.ndim not in (2, 3) or array.size == 0:
        return False
    pixel = array.itemsize * (array.shape[2] if array.ndim == 3 else 1)
    inner = array.ndim == 2 or array.strides[2] == array.itemsize
    return inner and array.strides[1] == pixel and array.strides[0] >= pixel * array.shape[1]


_RGB = ("image", "fg", "bg")  # ImageNet-normalised by prepare_batch; alpha is divided by 255, trimap only made float


def to_tensors(out: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The dataset item of `augment_sample`'s uint8 arrays, as uint8 tensors: image (and fg, bg) HxWx3 -> [3,H,W],
    alpha and trimap HxW -> [1,H,W]. `prepare_batch` converts a batch of them to float32 on the device."""

    def planes(array: np.ndarray, channels: int) -> torch.Tensor:
        if array.dtype != np.uint8:
            raise TypeError(f"to_tensors expects uint8 arrays, got {array.dtype}")
        chw = array.transpose(2, 0, 1) if channels == 3 else array[None]
        return torch.from_numpy(np.ascontiguousarray(chw))

    names = ("image", "alpha", "trimap", "fg", "bg") if "fg" in out else ("image", "alpha", "trimap")
    return {name: planes(out[name], 3 if name in _RGB else 1) for name in names}


def _conversion_table() -> torch.Tensor:
    """[4, 256] float32: rows 0-2 `normalize` of every uint8 value for R, G, B; row 3 the value / 255 (alpha).

    These are the CPU pipeline's float32 results for each possible byte, so looking bytes up reproduces them bit
    for bit on any device. Evaluating the formula on the device would not always: PyTorch's CUDA division by a
    Python scalar multiplies by its reciprocal, and x * (1 / 255) differs from x / 255 in the last bit for 126 of
    the 256 byte values.
    """
    values = np.arange(256, dtype=np.uint8)
    rgb = torch.from_numpy(normalize(np.repeat(values[None, :, None], 3, axis=2)))[:, 0, :]  # [3, 256]
    alpha = torch.from_numpy(values.astype(np.float32) / 255.0)[None]  # the old item's alpha formula
    return torch.cat([rgb, alpha]).contiguous()


_TABLES: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def _table(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(the conversion table flattened to [1024], the offsets [3,1,1] of the R, G, B rows) on ``device``."""
    if device not in _TABLES:
        _TABLES[device] = (_conversion_table().view(-1).to(device), (torch.arange(3) * 256).view(3, 1, 1).to(device))
    return _TABLES[device]


def prepare_batch(
    batch: dict[str, torch.Tensor], device: torch.device | str, *, non_blocking: bool = True
) -> dict[str, torch.Tensor]:
    """Move a collated batch of dataset items to ``device`` and convert it there to the training tensors.

    uint8 inputs become float32: ``image``, ``fg``, ``bg`` [B,3,S,S] ImageNet-normalised (x / 255 - mean) / std,
    ``alpha`` [B,1,S,S] x / 255, ``trimap`` (and any other uint8 entry) the values as float. The results are bit
    for bit what the CPU pipeline computed before items became uint8 (each byte is looked up in a table of those
    float32 results). Entries that are not uint8 are only moved. With ``non_blocking`` and a pinned batch the copy
    overlaps the host; the conversion is queued after it on the device.
    """
    out: dict[str, torch.Tensor] = {}
    for name, value in batch.items():
        x = value.to(device, non_blocking=non_blocking)
        if x.dtype == torch.uint8:
            if name in _RGB:
                if x.ndim < 3 or x.shape[-3] != 3:
                    raise ValueError(f"prepare_batch: {name} must be [..., 3, H, W], got {tuple(x.shape)}")
                table, rows = _table(x.device)
                x = table[x.long() + rows]  # channel c reads row c
            elif name == "alpha":
                table, _ = _table(x.device)
                x = table[x.long() + 3 * 256]
            else:
                x = x.float()
        out[name] = x
    return out


class P3MTrainDataset(Dataset):
    """Torch dataset over the P3M-10k train split with the published augmentation.

    Items are dicts of uint8 tensors: ``image`` [3,S,S], ``alpha`` [1,S,S] 0-255, ``trimap`` [1,S,S] values
    0/128/255 and, with composition, ``fg``, ``bg`` [3,S,S]; `prepare_batch` turns a collated batch into the
    training tensors (normalised image/fg/bg, alpha in [0, 1], float trimap) on the device.
    Set ``epoch`` before each epoch (the trainer does); workers must not be persistent.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        cfg: DataConfig,
        *,
        copy_paste: CopyPasteConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.cfg = cfg
        self.copy_paste = copy_paste if copy_paste is not None and copy_paste.enabled else None
        self.seed = seed
        self.epoch = 0
        self._reported: set[int] = set()
        dataset = open_dataset(root, validate=False, require=(cfg.split,))
        samples = dataset.split(cfg.split)
        if cfg.max_samples:
            samples = samples[: cfg.max_samples]
        if not samples:
            raise DatasetError(f"{root}: split {cfg.split} is empty")
        self.samples = samples
        self.image_folder, self.images = resolve_image_paths(dataset, samples, cfg.image_dir)
        # shipped fg/bg belong to the stored (obfuscated) images; with an image override we estimate
        self.use_shipped_fg = cfg.image_dir is None
        self.cache_dir = Path(cfg.fg_cache) if cfg.fg_cache else default_cache_dir(dataset.root)
        needs_faces = cfg.obfuscation != "none" or self.copy_paste is not None
        if needs_faces and not any(s.facemask is not None for s in samples):
            raise DatasetError(f"{root}: obfuscation/copy-paste need train/facemask/, which this dataset lacks")
        self.face_bank: FaceBank | None = None
        if self.copy_paste is not None:
            if self.copy_paste.source == "folder":
                assert self.copy_paste.face_dir is not None  # TrainConfig.problems requires it
                self.face_bank = FaceBank.from_folder(self.copy_paste.face_dir)
            else:
                self.face_bank = FaceBank.from_samples(self.images, [s.facemask for s in samples])

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> dict[str, np.ndarray]:
        """Full-resolution uint8 arrays of one sample (image, alpha, optional facemask, fg, bg)."""
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
                out["fg"], out["bg"] = load_or_estimate(image, alpha, self.cache_dir, self.image_folder, sample.stem)
        return out

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        # an unreadable sample is reported and replaced by the next readable one, so one bad file in
        # 9,421 does not stop a two-day run; a dataset with no readable sample at all still fails
        for offset in range(min(len(self), MAX_REPLACEMENTS)):
            candidate = (index + offset) % len(self)
            try:
                return self._item(candidate, sample_rng(self.seed, self.epoch, index))
            except P3MError as exc:
                if candidate not in self._reported:
                    self._reported.add(candidate)
                    print(f"p3m train: skipping sample: {exc}", file=sys.stderr)
        raise DatasetError(f"{self.samples[index].image}: no readable sample among {MAX_REPLACEMENTS} tried")

    def _item(self, index: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        data = self.load(index)
        image, alpha = data["image"], data["alpha"]
        fg, bg = data.get("fg"), data.get("bg")
        kernel_size = None
        face = data.get("face")
        if face is not None and face.any():
            # the trimap's k is drawn first (the published order); the trimap itself is built in augment_sample
            kernel_size = random_kernel_size(rng, self.cfg.trimap_kernel[0], self.cfg.trimap_kernel[1])
            private = private_area(face, alpha=alpha)
            if self.cfg.obfuscation != "none":
                image = obfuscate(image, private, self.cfg.obfuscation)
                if fg is not None:  # alpha is 1 in the private area: the foreground is the image there
                    fg = fg.copy()
                    copy_where(fg, image, private)  # fg[private] = image[private]
            cp = self.copy_paste
            if cp is not None and rng.random() < cp.prob:
                assert self.face_bank is not None  # built with the copy-paste config
                source = self.face_bank.pick(rng, exclude=self.images[index])
                if source is not None:
                    image, replaced = paste_face(
                        image,
                        face,
                        private,
                        source,
                        rng,
                        degree=cp.degree,
                        scale=(cp.scale[0], cp.scale[1]),
                        flip=cp.flip,
                    )
                    if fg is not None and replaced.any():
                        fg = fg.copy()
                        copy_where(fg, image, replaced)  # fg[replaced] = image[replaced]
        out = augment_sample(image, alpha, rng, self.cfg, fg=fg, bg=bg, kernel_size=kernel_size)
        return to_tensors(out)


class ResumableSampler(DistributedSampler):
    """`DistributedSampler` (shuffled per epoch from ``seed + epoch``, padded to equal shards) that can
    skip the first ``start`` indices of this rank's shard, so a resumed run continues mid-epoch."""

    def __init__(self, dataset, *, num_replicas: int = 1, rank: int = 0, seed: int = 0, shuffle: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self):
        indices = list(super().__iter__())
        return iter(indices[self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start


def worker_init(worker_id: int) -> None:
    """Seed the global RNGs of a DataLoader worker from torch's per-worker seed (base seed + worker)."""
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    # no cv2.setNumThreads here: reconfiguring OpenCV's thread pool in a forked child can deadlock


def resolve_workers(workers: int | None) -> int:
    """DataLoader workers per process for ``data.workers``: an integer as given; None (automatic) the CPU cores this
    process may run on (its affinity mask, else the machine's count) shared among the ``WORLD_SIZE`` training
    processes, minus one for the process itself, between 0 and `MAX_AUTO_WORKERS`."""
    if workers is not None:
        return int(workers)
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity API (macOS, Windows)
        cores = os.cpu_count() or 1
    try:
        world = max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        world = 1
    return max(0, min(MAX_AUTO_WORKERS, cores // world - 1))


def make_loader(
    dataset: P3MTrainDataset,
    sampler: ResumableSampler,
    *,
    batch_size: int,
    workers: int | None,
    pin_memory: bool,
    seed: int,
    epoch: int,
) -> torch.utils.data.DataLoader:
    """DataLoader of one epoch (fresh workers each epoch, so they see ``dataset.epoch``); ``workers`` None picks
    the number with `resolve_workers`. Batches hold uint8 tensors: pass them through `prepare_batch`."""
    workers = resolve_workers(workers)
    generator = torch.Generator()
    generator.manual_seed(seed * 1000 + epoch)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        drop_last=False,
        worker_init_fn=worker_init if workers > 0 else None,
        generator=generator,
        persistent_workers=False,
    )
