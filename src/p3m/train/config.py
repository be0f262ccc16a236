"""Typed training configuration: the dataclasses of a P3M-Net training run, read by `p3m.config.load`.

A YAML file (or built-in recipe: `p3m.config.list_recipes("train")`) mirrors :class:`TrainConfig` (sections
``model``, ``data``, ``copy_paste``, ``optim``, ``train``, ``val`` plus top-level ``name`` and ``register_as``).
Unknown keys, wrongly typed values and out-of-range settings are rejected with one message listing every problem.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from p3m.choices import OBFUSCATION_METHODS
from p3m.config import check_choice, load
from p3m.errors import ConfigError

__all__ = [
    "COMPILE_MODES",
    "CopyPasteConfig",
    "DataConfig",
    "LoopConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "ValConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
]


RECIPE_KIND = "train"
LABEL = "training config"

#: `train.compile` values besides true/false (true = "default"); see torch.compile.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class ModelConfig:
    arch: str = "p3m-r34"
    width: int | None = None  # R34 base width (default 64 = published); 16/32 give small fast variants
    backbone: str | None = None  # ImageNet backbone weights (r34mp_pretrained_imagenet.pth.tar, vitae/swin ckpts)
    pretrained: str | None = None  # full P3M-Net checkpoint to fine-tune from (non-strict load)


@dataclass
class DataConfig:
    root: str = "data/P3M-10k"
    split: str = "train"
    image_dir: str | None = None  # train image folder name under train/ (e.g. "original_image"); default: the dataset's
    crop_sizes: list[int] = field(default_factory=lambda: [512, 768, 1024])
    resize: int = 512
    trimap_kernel: list[int] = field(default_factory=lambda: [15, 30])  # k range, px at dataset resolution
    crop_policy: str = "ijcv"  # "ijcv": centre on an unknown pixel + safe_crop clamp; "mm21": top-left corner
    unknown_prob: float = 0.5  # probability that the crop is anchored on an unknown pixel
    flip_prob: float = 0.5
    trimap_variant: str = "ijcv"  # "ijcv": re-quantise after resize; "mm21": keep interpolated values
    obfuscation: str = "none"  # "none" (PPT: images as stored) | "blur" | "mosaic" | "zero" (on the fly)
    composition: bool = True  # composition loss; needs fg/bg (estimated and cached when the dataset has none)
    fg_cache: str | None = None  # folder for estimated fg/bg; default <root>/train/fg_bg_cache
    max_samples: int | None = None  # use only the first N training samples (debugging, demos)
    workers: int | None = None  # DataLoader workers per process; None: the process's CPU cores / WORLD_SIZE - 1, <= 16
    pin_memory: bool = True


@dataclass
class CopyPasteConfig:
    """P3M-ICP image-level copy-paste (Ma, Li et al., IJCV 2023; defaults of `DATA.CUT_AND_PASTE` in
    `ViTAE-Transformer/P3M-Net` core/config_yacs.py)."""

    enabled: bool = False
    prob: float = 0.5
    source: str = "self"  # "self": faces of other training samples; "folder": face_dir with image/ and mask/
    face_dir: str | None = None
    degree: float = 30.0
    scale: list[float] = field(default_factory=lambda: [0.8, 1.2])
    flip: float = 0.5  # horizontal flip probability


@dataclass
class OptimConfig:
    lr: float = 1e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    schedule: str = "constant"  # "constant" | "cosine"
    warmup_steps: int = 0
    min_lr: float = 0.0
    clip_grad: float | None = None  # max gradient norm; None disables clipping
    fused: bool | None = None  # fused (single-kernel) Adam; None: on CUDA only


@dataclass
class LoopConfig:
    epochs: int = 150
    batch_size: int = 8  # per process (per GPU under DDP)
    max_steps: int | None = None  # stop after this many optimizer steps (overrides epochs when smaller)
    amp: str = "none"  # "none" | "bf16" | "fp16" | "auto" (bf16 where the device runs it natively)
    channels_last: bool = False
    compile: bool | str = False  # torch.compile the network and loss; true or a mode ("reduce-overhead", ...)
    cuda_graph: bool = False  # capture the whole step (forward, loss, backward, Adam) as one CUDA graph
    find_unused_parameters: bool = False  # DDP: set for backbones with parameters that never reach the loss
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    seed: int = 10007
    save_every: int = 500  # steps between resumable checkpoints (also saved at each epoch end)
    log_every: int = 20  # steps between JSONL log records
    threads: int | None = None  # torch CPU threads; None leaves the default


@dataclass
class ValConfig:
    every: int = 1  # epochs between validations; 0 disables
    every_steps: int | None = None  # validate every N steps instead (short runs)
    splits: list[str] = field(default_factory=lambda: ["P3M-500-P", "P3M-500-NP"])
    scale: float = 0.5  # RESIZE strategy ratio (`JizhiziLi/P3M` core/test.py); sides floored to multiples of 32
    max_side: int = 1600
    max_images: int | None = None
    fast: bool = True  # skip Grad and Conn (IJCV FAST_TEST)
    best: list[str] = field(default_factory=lambda: ["sad", "sad_privacy"])


@dataclass
class TrainConfig:
    name: str = "p3m"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    copy_paste: CopyPasteConfig = field(default_factory=CopyPasteConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    val: ValConfig = field(default_factory=ValConfig)
    register_as: str | None = None  # register the final checkpoint in the model store under this name

    def problems(self) -> list[str]:
        """Every semantic problem (ranges, choices, combinations), one phrase each; empty when the config is fine."""
        problems: list[str] = []
        d, o, t = self.data, self.optim, self.train
        if not d.crop_sizes or any(c <= 0 for c in d.crop_sizes):
            problems.append("data.crop_sizes must be a non-empty list of positive sizes")
        if d.resize <= 0 or d.resize % 32:
            problems.append(f"data.resize must be a positive multiple of 32, got {d.resize}")
        if len(d.trimap_kernel) != 2 or not 1 <= d.trimap_kernel[0] <= d.trimap_kernel[1]:
            problems.append(f"data.trimap_kernel must be [low, high] with 1 <= low <= high, got {d.trimap_kernel}")
        if d.workers is not None and d.workers < 0:
            problems.append(f"data.workers must be >= 0 or null (automatic), got {d.workers}")
        check_choice(problems, "data.crop_policy", d.crop_policy, ("ijcv", "mm21"))
        check_choice(problems, "data.trimap_variant", d.trimap_variant, ("ijcv", "mm21"))
        check_choice(problems, "data.obfuscation", d.obfuscation, ("none", *OBFUSCATION_METHODS))
        check_choice(problems, "copy_paste.source", self.copy_paste.source, ("self", "folder"))
        if self.copy_paste.enabled and self.copy_paste.source == "folder" and not self.copy_paste.face_dir:
            problems.append("copy_paste.source 'folder' needs copy_paste.face_dir")
        if len(self.copy_paste.scale) != 2 or not 0 < self.copy_paste.scale[0] <= self.copy_paste.scale[1]:
            problems.append(f"copy_paste.scale must be [low, high], got {self.copy_paste.scale}")
        check_choice(problems, "optim.schedule", o.schedule, ("constant", "cosine"))
        if o.lr <= 0:
            problems.append(f"optim.lr must be positive, got {o.lr}")
        check_choice(problems, "train.amp", t.amp, ("none", "bf16", "fp16", "auto"))
        if t.batch_size < 1 or t.epochs < 1 or t.save_every < 1 or t.log_every < 1:
            problems.append("train.batch_size, train.epochs, train.save_every and train.log_every must be >= 1")
        if t.max_steps is not None and t.max_steps < 1:
            problems.append("train.max_steps must be >= 1")
        if isinstance(t.compile, str):
            check_choice(problems, "train.compile", t.compile, COMPILE_MODES)
        if t.cuda_graph and t.compile:
            problems.append(
                "train.cuda_graph and train.compile exclude each other "
                "(use train.compile=reduce-overhead for compiled code in CUDA graphs)"
            )
        if t.cuda_graph and t.amp == "fp16":
            problems.append(
                "train.cuda_graph does not work with train.amp=fp16 (loss scaling syncs the host); use bf16"
            )
        return problems

    def validate(self) -> None:
        """Raise ConfigError listing every semantic problem."""
        problems = self.problems()
        if problems:
            raise ConfigError(f"invalid {LABEL}: " + "; ".join(problems))


def config_from_dict(data: Mapping[str, Any] | None) -> TrainConfig:
    """Build and check a TrainConfig from a nested mapping (missing keys take the defaults)."""
    config, _ = load(TrainConfig, data or {}, kind=RECIPE_KIND, label=LABEL)
    return config


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def load_config(
    source: str | os.PathLike[str] | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> TrainConfig:
    """Read a training config and apply ``--set`` overrides: ``source`` is a YAML file, the name of a built-in
    recipe (`p3m.config.list_recipes("train")`: ``demo``, ``p3m-r34``, ...), or None for the defaults."""
    config, _ = load(TrainConfig, source, overrides, kind=RECIPE_KIND, label=LABEL)
    return config
