"""Typed benchmark configuration: the dataclasses of a PPT benchmark, read by `p3m.config.load`.

A YAML file (or a built-in recipe: `p3m.config.list_recipes("benchmark")`) mirrors :class:`BenchmarkConfig`:
``name``, ``dataset`` (a P3M-10k ``root`` and/or a ``synth`` section of `p3m.data.synth.SynthConfig` fields),
``test_splits``, the training ``settings`` (obfuscation, copy-paste), the base ``train`` config of every trained
method (a partial `p3m.train.config.TrainConfig` mapping), ``inference``, ``evaluation``, ``report`` and the
``methods``. Unknown keys, wrong types, unknown method types, duplicate names, unknown test splits or
obfuscations and a missing dataset are rejected with one message listing every problem.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p3m.bench.methods import METHOD_TYPES
from p3m.choices import OBFUSCATION_METHODS
from p3m.config import check_choice, load
from p3m.errors import BenchmarkConfigError

__all__ = [
    "TEST_SPLITS",
    "BenchmarkConfig",
    "DatasetSection",
    "EvaluationSection",
    "InferenceSection",
    "MethodConfig",
    "ReportSection",
    "SettingConfig",
    "load_benchmark_config",
    "slug",
]

RECIPE_KIND = "benchmark"
TEST_SPLITS = ("P3M-500-P", "P3M-500-NP")
STRATEGIES = ("resize", "hybrid", "highres")  # the whole-image strategies a benchmark may use


def slug(text: str) -> str:
    """A folder name for a method or setting name: ``"P3M-Net R34"`` -> ``"p3m-net-r34"``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-").lower() or "method"


@dataclass
class DatasetSection:
    root: str | None = None  # the P3M-10k folder; relative paths: the working directory, else the config's folder
    synth: dict[str, Any] | None = None  # SynthConfig fields: generate a synthetic set (under <out>/data without root)


@dataclass
class SettingConfig:
    """One training setting of the PPT study ([MM21] Li et al., ACM MM 2021): how the training faces are obfuscated."""

    name: str = ""
    obfuscation: str = "none"  # "none" trains on the images as stored (PPT: the released blurred faces)
    copy_paste: bool = False  # P3M-ICP ([IJCV23] Ma et al., Rethinking Portrait Matting with Privacy Preserving)
    label: str = ""  # column label in the report; default: the name

    def __post_init__(self) -> None:
        self.label = self.label or self.name


@dataclass
class MethodConfig:
    """One benchmarked method: a network to train (or to load from ``weights``) or a classical solver."""

    name: str = ""  # display name; default: the type
    type: str = ""  # a registry name of p3m.models or a pymatting solver (bench.methods.METHOD_TYPES)
    width: int | None = None
    train: dict[str, Any] = field(default_factory=dict)  # training config overrides for this method
    weights: str | None = None  # evaluate these weights instead of training
    arch_kwargs: dict[str, Any] | None = None
    max_side: int | None = 512  # classical solvers: solve at most this size
    max_images: int | None = None

    def __post_init__(self) -> None:
        self.name = self.name or self.type


@dataclass
class InferenceSection:
    strategy: str = "resize"
    ratio: float = 0.5
    resize_mode: str = "paper"
    max_size: int | None = 1600
    max_images: int | None = None
    device: str = "cpu"
    precision: str = "fp32"


@dataclass
class EvaluationSection:
    fast: bool = False  # skip Grad and Conn


@dataclass
class ReportSection:
    title: str | None = None
    grid_samples: int = 2
    grid_tile: int = 160


def _default_settings() -> list[SettingConfig]:
    return [SettingConfig(name="B", obfuscation="none")]


@dataclass
class BenchmarkConfig:
    name: str = "benchmark"
    dataset: DatasetSection = field(default_factory=DatasetSection)
    test_splits: list[str] = field(default_factory=lambda: list(TEST_SPLITS))
    settings: list[SettingConfig] = field(default_factory=_default_settings)
    train: dict[str, Any] = field(default_factory=dict)  # base training config of every trained method
    inference: InferenceSection = field(default_factory=InferenceSection)
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)
    report: ReportSection = field(default_factory=ReportSection)
    methods: list[MethodConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.settings = self.settings or _default_settings()  # an empty list: the PPT main protocol

    def problems(self) -> list[str]:
        """Every semantic problem, one phrase each; empty when the config is fine."""
        problems: list[str] = []
        if not self.dataset.root and not self.dataset.synth:
            problems.append(
                "dataset.root is missing (the P3M-10k folder), and no dataset.synth section asks for a synthetic one"
            )
        if not self.test_splits:
            problems.append("test_splits must be a non-empty list")
        for split in self.test_splits:
            if split not in TEST_SPLITS:
                problems.append(f"unknown test split {split!r} (valid: {', '.join(TEST_SPLITS)})")
        for i, s in enumerate(self.settings):
            if not s.name:
                problems.append(f"settings[{i}] must have a name")
            check_choice(problems, f"settings[{i}].obfuscation", s.obfuscation, ("none", *OBFUSCATION_METHODS))
        names = [s.name for s in self.settings]
        if len(set(map(slug, names))) != len(names):
            problems.append(f"setting names must be unique: {names}")
        if not self.methods:
            problems.append("methods must be a non-empty list of {name, type, ...}")
        for i, m in enumerate(self.methods):
            if m.type not in METHOD_TYPES:
                problems.append(
                    f"methods[{i}] ({m.name}): unknown method type {m.type!r}; available: {', '.join(METHOD_TYPES)}"
                )
        method_names = [m.name for m in self.methods]
        if len(set(map(slug, method_names))) != len(method_names):
            problems.append(f"method names must be unique: {method_names}")
        check_choice(problems, "inference.strategy", self.inference.strategy, STRATEGIES)
        return problems


def load_benchmark_config(
    config: BenchmarkConfig | Mapping[str, Any] | str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = ()
) -> BenchmarkConfig:
    """A checked `BenchmarkConfig` from a YAML path, a built-in recipe name (``ppt-demo``, ``ppt-p3m10k``) or a
    mapping, with ``key.sub=value`` overrides applied. A BenchmarkConfig is checked and returned as it is.

    Raises BenchmarkConfigError naming every problem.
    """
    if isinstance(config, BenchmarkConfig):
        config = dataclasses.asdict(config)
    cfg, path = load(
        BenchmarkConfig, config, overrides, kind=RECIPE_KIND, label="benchmark config", error=BenchmarkConfigError
    )
    root = cfg.dataset.root
    if root is not None and path is not None and not Path(root).expanduser().is_absolute():
        # relative to the working directory, as the trainer's data.root; the config folder is tried when the
        # working directory has no such folder
        candidate = path.parent / root
        if candidate.exists() and not Path(root).exists():
            cfg.dataset.root = str(candidate)
    return cfg
