"""Training: the published P3M-Net recipe (losses, data pipeline, resumable trainer, DDP).

>>> from p3m.train import train, load_config
>>> result = train(load_config("demo", ["data.root=/tmp/synth"]), out_dir="runs/demo")   # a recipe or a YAML path

Submodules import lazily so that `p3m.train.losses` runs on a bare GPU box (torch only).
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainConfig", "TrainResult", "load_config", "train"]


def __getattr__(name: str) -> Any:
    if name in ("train", "TrainResult"):
        from p3m.train import trainer

        return getattr(trainer, name)
    if name in ("load_config", "TrainConfig"):
        from p3m.train import config

        return getattr(config, name)
    raise AttributeError(f"module 'p3m.train' has no attribute {name!r}")
