"""P3M-Net model family: registry, architectures, checkpoint I/O, the model folder.

>>> from p3m import models
>>> net = models.create("p3m-r34")               # published R34 layout (713 state-dict keys)
>>> small = models.create("p3m-r34", width=16)   # same graph, 1/4 of the channels (demos, tests)
>>> net, meta = models.load_model("p3mnet_pretrained_on_p3m10k.pth", arch="p3m-r34")

Layers, each importing only those below it: `registry` (the leaf: `register_model`, `create`,
`list_architectures`, each architecture's `ArchConfig`) <- `blocks` and one file per architecture (`p3mnet_r34`,
`basic`, `modnet`, `p3mnet_transformer` over `swin` / `vitae`; the MediaPipe ports `selfie`, `face_detector`,
`face_mesh`, `palm_detector`, `hand_landmark`, `pose_detector`, `pose_landmark` over `tflite_graph` and
`graph_session`, which runs them on ONNX Runtime or torch) <-
`checkpoint` (weights files and their JSON sidecar) <- `store` (the model folder, `list_weights`). `counting`
counts parameters and FLOPs.

Every model built by `create` carries `arch` (its registry name) and `arch_kwargs` (the keyword
arguments it was built with), which `save_checkpoint` stores so `load_model` can rebuild it.
This package imports nothing of p3m outside `p3m.models`, `p3m.errors` and `p3m.atomic`, and only torch
(plus safetensors for checkpoints, onnxruntime for the shipped ONNX graphs), so it runs on a bare GPU box with
`PYTHONPATH=src`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from p3m.models.registry import ArchConfig, arch_config, check_arch_kwargs, create, list_architectures, register_model

if TYPE_CHECKING:  # for type checkers; at run time `__getattr__` imports these on first use
    from p3m.models import (
        basic,
        face_detector,
        face_mesh,
        hand_landmark,
        modnet,
        p3mnet_r34,
        p3mnet_transformer,
        palm_detector,
        pose_detector,
        pose_landmark,
        selfie,
    )
    from p3m.models.blocks import P3MOutput, fuse
    from p3m.models.checkpoint import load_checkpoint, load_model, save_checkpoint

# everything that needs torch, imported on first access (PEP 562): `p3m models`, `p3m --help` and every command that
# runs no network import this package without torch; the registry imports an architecture's file when it is named
_LAZY = {
    "P3MOutput": "p3m.models.blocks",
    "fuse": "p3m.models.blocks",
    "load_checkpoint": "p3m.models.checkpoint",
    "load_model": "p3m.models.checkpoint",
    "save_checkpoint": "p3m.models.checkpoint",
}
__all__ = [
    "ArchConfig",
    "P3MOutput",
    "arch_config",
    "basic",
    "check_arch_kwargs",
    "create",
    "face_detector",
    "face_mesh",
    "fuse",
    "hand_landmark",
    "list_architectures",
    "load_checkpoint",
    "load_model",
    "modnet",
    "p3mnet_r34",
    "p3mnet_transformer",
    "palm_detector",
    "pose_detector",
    "pose_landmark",
    "register_model",
    "save_checkpoint",
    "selfie",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in __all__:  # the rest of what is not defined here: the architecture files
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
