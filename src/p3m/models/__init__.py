"""P3M-Net model family: registry, architectures, checkpoint I/O.

>>> from p3m import models
>>> net = models.create("p3m-r34")               # published R34 layout (713 state-dict keys)
>>> small = models.create("p3m-r34", width=16)   # same graph, 1/4 of the channels (demos, tests)
>>> net, meta = models.load_model("p3mnet_pretrained_on_p3m10k.pth", arch="p3m-r34")

Every model built by `create` carries `arch` (its registry name) and `arch_kwargs` (the keyword
arguments it was built with), which `save_checkpoint` stores so `load_model` can rebuild it.
This package imports nothing of p3m outside `p3m.models` and `p3m.errors`, and only torch
(plus safetensors for checkpoints), so it runs on a bare GPU box with `PYTHONPATH=src`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from p3m.errors import P3MError

__all__ = [
    "UnknownModelError",
    "register_model",
    "create",
    "list_models",
    "load_checkpoint",
    "save_checkpoint",
    "load_model",
    "P3MOutput",
    "fuse",
]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


class UnknownModelError(P3MError, ValueError):
    """The requested architecture name is not registered."""


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a builder `fn(**kwargs) -> nn.Module` under `name`."""

    def decorate(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return decorate


def list_models() -> list[str]:
    """Registered architecture names, sorted."""
    return sorted(_REGISTRY)


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build the architecture `name` with random weights; sets `model.arch` and `model.arch_kwargs`."""
    try:
        builder = _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None
    model = builder(**kwargs)
    model.arch = name
    model.arch_kwargs = dict(kwargs)
    return model


# builders register themselves on import; keep these imports below the registry definitions
from p3m.models.blocks import P3MOutput, fuse  # noqa: E402
from p3m.models import basic, modnet, p3mnet_r34, p3mnet_transformer  # noqa: E402,F401
from p3m.models.checkpoint import load_checkpoint, load_model, save_checkpoint  # noqa: E402
