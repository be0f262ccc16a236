"""The architecture registry: a leaf that every architecture file imports, and nothing above it.

Like pytorch-image-models: each architecture file decorates its builder with `register_model`, which records the
builder, the numeric limits of its construction arguments and an `ArchConfig` (its input contract and licence,
like timm's pretrained cfgs) beside it. `create` builds a registered architecture; `list_architectures` names them.

The registry fills lazily: `ARCH_MODULES` names the module of each architecture, and the first lookup of a name
(`create`, `arch_config`, `check_arch_kwargs`, `find_config`) imports that module, which registers it. So naming the
architectures costs nothing, and a command that builds no network never imports torch (importing every
architecture file took 2.4 s of `p3m models`' 2.6 s on the 2-core CPU dev machine).

Torch-free at import (builders are only called, never inspected for torch types), so this module stays a leaf.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from p3m.errors import ModelArgumentError, UnknownModelError

if TYPE_CHECKING:  # annotations only: the registry itself never touches torch
    from torch import nn

__all__ = [
    "ARCH_MODULES",
    "NORMALISATIONS",
    "ArchConfig",
    "arch_config",
    "check_arch_kwargs",
    "create",
    "find_config",
    "list_architectures",
    "register_model",
]

#: How an architecture wants its input: "imagenet" = RGB, x/255, then ImageNet mean/std
#: (`p3m.infer.preprocess.normalize`); "unit" = RGB, x/255 (values in [0, 1]); "signed" = RGB, x/127.5 - 1 (values
#: in [-1, 1], MediaPipe's detectors).
NORMALISATIONS = ("imagenet", "unit", "signed")
_NORMALISATION_WORDS = {
    "imagenet": "x/255, ImageNet mean/std, RGB",
    "unit": "x/255, RGB",
    "signed": "x/127.5 - 1, RGB",
}


@dataclass(frozen=True)
class ArchConfig:
    """What an architecture expects and under which licence its code and published weights come.

    normalisation: one of `NORMALISATIONS`. size_multiple: input height and width must be multiples of it; 0 means
    a fixed input size (the model's ``input_size``). licence: of the upstream code and published weights.
    """

    licence: str = ""
    normalisation: str = "imagenet"
    size_multiple: int = 32

    def describe_input(self) -> str:
        """The input contract in words (stored in exported ONNX files)."""
        norm = _NORMALISATION_WORDS[self.normalisation]
        size = f"H and W multiples of {self.size_multiple}" if self.size_multiple else "the model's fixed input size"
        return f"{norm}, {size}"


#: The module that registers each architecture (imported on its first lookup). tests/test_models.py checks that
#: every architecture file registers exactly the names it is given here.
ARCH_MODULES = {
    "basic-r34": "p3m.models.basic",
    "mediapipe-face-detection": "p3m.models.face_detector",
    "mediapipe-face-mesh": "p3m.models.face_mesh",
    "mediapipe-hand-landmark": "p3m.models.hand_landmark",
    "mediapipe-palm-detection": "p3m.models.palm_detector",
    "mediapipe-pose-detection": "p3m.models.pose_detector",
    "mediapipe-pose-landmark": "p3m.models.pose_landmark",
    "mediapipe-selfie": "p3m.models.selfie",
    "modnet-mbv2": "p3m.models.modnet",
    "p3m-r34": "p3m.models.p3mnet_r34",
    "p3m-swin-t": "p3m.models.p3mnet_transformer",
    "p3m-vitae-s": "p3m.models.p3mnet_transformer",
}

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
# per architecture: keyword -> (lowest, highest) accepted value, for numeric construction arguments
_LIMITS: dict[str, dict[str, tuple[float, float]]] = {}
_CONFIGS: dict[str, ArchConfig] = {}


def register_model(
    name: str,
    *,
    licence: str = "",
    limits: Mapping[str, tuple[float, float]] | None = None,
    normalisation: str = "imagenet",
    size_multiple: int = 32,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a builder `fn(**kwargs) -> nn.Module` under `name`, with its input contract and licence.

    ``limits``: ``{keyword: (lowest, highest)}`` for numeric arguments, checked by `check_arch_kwargs` before
    anything is built (a checkpoint sidecar asking for ``width=40000`` must not try to allocate 57 GB).
    """
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {', '.join(NORMALISATIONS)}, got {normalisation!r}")
    config = ArchConfig(licence=licence, normalisation=normalisation, size_multiple=size_multiple)

    def decorate(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS and _BUILDERS[name] is not fn:
            raise ValueError(f"model {name!r} is already registered")
        _BUILDERS[name] = fn
        _LIMITS[name] = dict(limits or {})
        _CONFIGS[name] = config
        return fn

    return decorate


def _load(name: object) -> None:
    """Import the module of architecture `name` when it is known but not registered yet (it registers itself)."""
    if isinstance(name, str) and name not in _BUILDERS and name in ARCH_MODULES:
        importlib.import_module(ARCH_MODULES[name])


def _builder(name: str) -> Callable[..., nn.Module]:
    try:
        _load(name)
        return _BUILDERS[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name (a JSON list in a sidecar)
        raise UnknownModelError(f"unknown model {name!r}; available: {', '.join(list_architectures())}") from None


def arch_config(name: str) -> ArchConfig:
    """The `ArchConfig` of a registered architecture (`UnknownModelError` for another name)."""
    _builder(name)
    return _CONFIGS[name]


def find_config(name: object) -> ArchConfig | None:
    """The `ArchConfig` of `name` when it is a registered architecture, else None (e.g. a model built by hand)."""
    _load(name)
    return _CONFIGS.get(name) if isinstance(name, str) else None


def _type_ok(default: Any, value: Any) -> bool:
    """A value of the type of the builder's default: an int (never a bool) for an int, a number for a float, ..."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def check_arch_kwargs(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Validate construction arguments of `name` without building anything -> a plain dict of them.

    Names must be parameters of the builder, values of the type of its default (an int where the default is an
    int, never a bool; a number where it is a float; a string where it is a string) and within the registered
    limits. Raises `ModelArgumentError` (one line) otherwise, `UnknownModelError` for an unknown `name`.
    """
    builder = _builder(name)
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
        if not _type_ok(default, value):
            raise ModelArgumentError(
                f"{name}: {key} must be {type(default).__name__} like its default {default!r}, got {value!r}"
            )
        if key in limits:
            low, high = limits[key]
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high):
                raise ModelArgumentError(f"{name}: {key}={value!r} is outside the accepted range {low:g}..{high:g}")
    return dict(kwargs)


def list_architectures() -> list[str]:
    """Architecture names (those of `ARCH_MODULES` and any registered elsewhere), sorted; imports nothing."""
    return sorted(set(ARCH_MODULES) | set(_BUILDERS))


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build the architecture `name` with random weights; sets `model.arch` and `model.arch_kwargs`."""
    model = _builder(name)(**check_arch_kwargs(name, kwargs))
    # plain attributes, set as nn.Module.__setattr__ would (its annotation admits tensors and modules only)
    vars(model).update(arch=name, arch_kwargs=dict(kwargs))
    return model
