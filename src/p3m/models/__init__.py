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

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from p3m.errors import ModelArgumentError, UnknownModelError

__all__ = [
    "P3MOutput",
    "check_arch_kwargs",
    "create",
    "fuse",
    "list_models",
    "load_checkpoint",
    "load_model",
    "register_model",
    "save_checkpoint",
]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
# per architecture: keyword -> (lowest, highest) accepted value, for numeric construction arguments
_LIMITS: dict[str, dict[str, tuple[float, float]]] = {}


def register_model(
    name: str, *, limits: Mapping[str, tuple[float, float]] | None = None
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a builder `fn(**kwargs) -> nn.Module` under `name`.

    ``limits``: ``{keyword: (lowest, highest)}`` for numeric arguments, checked by `check_arch_kwargs` before
    anything is built (a checkpoint sidecar asking for ``width=40000`` must not try to allocate 57 GB).
    """

    def decorate(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        _LIMITS[name] = dict(limits or {})
        return fn

    return decorate


def check_arch_kwargs(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Validate construction arguments of `name` without building anything -> a plain dict of them.

    Names must be parameters of the builder, values of the type of its default (an int where the default is an
    int, never a bool; a number where it is a float; a string where it is a string) and within the registered
    limits. Raises `ModelArgumentError` (one line) otherwise, `UnknownModelError` for an unknown `name`.
    """
    try:
        builder = _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None
    if not isinstance(kwargs, Mapping):
        raise ModelArgumentError(
            f"{name}: the arguments must be a mapping of names to values (a JSON object), got {type(kwargs).__name__}"
        )
    params = inspect.signature(builder).parameters
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = [
        n
        for n, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    unknown = [str(k) for k in kwargs if k not in allowed]
    if unknown and not open_ended:
        raise ModelArgumentError(
            f"{name} takes no argument {', '.join(map(repr, unknown))}; it takes {', '.join(allowed) or 'no arguments'}"
        )
    limits = _LIMITS.get(name, {})
    for key, value in kwargs.items():
        default = params[key].default if key in params else inspect.Parameter.empty
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        else:
            ok = True
        if not ok:
            raise ModelArgumentError(
                f"{name}: {key} must be {type(default).__name__} like its default {default!r}, got {value!r}"
            )
        if key in limits:
            low, high = limits[key]
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high):
                raise ModelArgumentError(f"{name}: {key}={value!r} is outside the accepted range {low:g}..{high:g}")
    return dict(kwargs)


def list_models() -> list[str]:
    """Registered architecture names, sorted."""
    return sorted(_REGISTRY)


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build the architecture `name` with random weights; sets `model.arch` and `model.arch_kwargs`."""
    check_arch_kwargs(name, kwargs)
    model = _REGISTRY[name](**kwargs)
    model.arch = name
    model.arch_kwargs = dict(kwargs)
    return model


# builders register themselves on import; keep these imports below the registry definitions
from p3m.models import (  # noqa: E402,F401
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
from p3m.models.blocks import P3MOutput, fuse  # noqa: E402
from p3m.models.checkpoint import load_checkpoint, load_model, save_checkpoint  # noqa: E402
