"""Matting sessions: every way of computing a matte behind one small interface, like rembg's sessions.

A session is one loaded model: a P3M-Net run by torch (`TorchSession`), an exported ONNX file run by ONNX Runtime
(`OnnxSession`), or the built-in `portrait-cf` route (`PortraitSession`: segmentation prior + closed-form matting,
no trained matting network). Each one answers `MattingSession`: what it is (`name`, `arch`, `weights`, `backend`,
`precision`, `device`, `licence`, `warning`), what the network will see (`plan(h, w, options)`), how it mattes
(`method(options)`) and the matte (`predict(rgb, options)` -> `Prediction`: alpha, a one-line warning about this
image, what the session did; `predict_alpha(rgb, options)` its alpha, HxWx3 uint8 -> HxW float32 in [0, 1]). The
`StrategyOptions` say how a P3M-Net pass engine is driven over a whole image (the route has no use for them), so one
loaded session serves any strategy. `new_session` picks and loads one from what a user names (weights or nothing,
an architecture, a backend, a device, a precision); `network_session` wraps a network that is already in memory.
`p3m.infer.matter.Matter` drives any of them the same way.

Torch-free at import: the P3M-Net sessions load torch (`p3m.infer.runtime`) when they are made, and the built-in
route runs its small networks on ONNX Runtime by default (`p3m.models.graph_session`), so `p3m matte` with the
route never imports torch.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from p3m.choices import BACKENDS, RESIZE_MODES, STRATEGIES, check_choice
from p3m.errors import CheckpointError
from p3m.infer.devices import resolve_device
from p3m.infer.portrait import PortraitMatting, PortraitSettings, working_size
from p3m.infer.strategies import NetFn, plan_passes, predict
from p3m.models.registry import find_config
from p3m.models.store import (
    BUILTIN,
    BUILTIN_LICENCE,
    builtin_entry,
    choose_arch,
    default_model,
    load_network,
    missing_weights_help,
    resolve,
    trained_on_synthetic,
)

__all__ = [
    "ROUTE_TORCH_THREADS",
    "MattingSession",
    "OnnxSession",
    "PortraitSession",
    "Prediction",
    "StrategyOptions",
    "TorchSession",
    "network_session",
    "new_session",
]


#: torch threads of the built-in route while it mattes (`p3m.infer.runtime.torch_threads`)
ROUTE_TORCH_THREADS = 1


@dataclass(frozen=True)
class StrategyOptions:
    """How a P3M-Net pass engine is driven over a whole image (p3m.infer.strategies).

    strategy: "hybrid", "resize" or "highres"; resize_mode: "fast" (OpenCV) or "paper" (the published R);
    tile, overlap: the highres local pass's tiles; shorter_side_limit: the SAMPLES mode of 9.5 (None = off).
    """

    strategy: str = "hybrid"
    resize_mode: str = "fast"
    tile: int = 1024
    overlap: int = 128
    shorter_side_limit: int | None = None

    def __post_init__(self) -> None:
        check_choice("strategy", self.strategy, STRATEGIES)
        check_choice("resize mode", self.resize_mode, RESIZE_MODES)

    def plan(self, height: int, width: int) -> dict[str, Any]:
        return plan_passes(
            self.strategy,
            height,
            width,
            tile=self.tile,
            overlap=self.overlap,
            shorter_side_limit=self.shorter_side_limit,
        )

    def predict(self, net: NetFn, rgb: np.ndarray) -> np.ndarray:
        tiles = {"tile": self.tile, "overlap": self.overlap} if self.strategy == "highres" else {}
        return predict(
            net,
            rgb,
            self.strategy,
            resize_mode=self.resize_mode,
            shorter_side_limit=self.shorter_side_limit,
            **tiles,
        )


@dataclass(frozen=True)
class Prediction:
    """One image's matte: ``alpha`` HxW float32 in [0, 1]; ``warning`` one line about this image ("" when there
    is nothing to say, e.g. "no person found"); ``info`` what the session did (the route: person verdict, pose
    prior, hands, solver method, step seconds; empty for networks)."""

    alpha: np.ndarray
    warning: str = ""
    info: dict[str, Any] = field(default_factory=dict)


class MattingSession(Protocol):
    """One loaded model that mattes RGB images.

    name: the model as `p3m models` names it (or a file name); arch: its architecture (registry name);
    weights: the file it was loaded from (None in memory); backend: "torch" or "onnxruntime"; precision: the one
    that runs; device: where it runs (resolved: "cpu", "cuda", "cuda:N"); licence: of the architecture's code and
    published weights ("" when unknown); warning: one line about the weights ("" if none); uses_strategies: whether
    the test strategies (hybrid, resize, highres) apply (the built-in route mattes the whole image its own way).
    """

    @property
    def name(self) -> str: ...
    @property
    def arch(self) -> str | None: ...
    @property
    def weights(self) -> Path | None: ...
    @property
    def backend(self) -> str: ...
    @property
    def precision(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def licence(self) -> str: ...
    @property
    def warning(self) -> str: ...
    @property
    def uses_strategies(self) -> bool: ...

    def plan(self, height: int, width: int, options: StrategyOptions) -> dict[str, Any]:
        """What the network sees for an image of this size (the honest resolution policy); its "strategy" names
        the strategy, or the route."""
        ...

    def method(self, options: StrategyOptions) -> str:
        """How it mattes, in words (run summaries)."""
        ...

    def predict(self, rgb: np.ndarray, options: StrategyOptions) -> Prediction:
        """The matte of an HxWx3 uint8 RGB image with its warning and info (thread-safe)."""
        ...

    def predict_alpha(self, rgb: np.ndarray, options: StrategyOptions) -> np.ndarray:
        """HxW float32 alpha in [0, 1] of an HxWx3 uint8 RGB image: `predict(rgb, options).alpha`."""
        ...


class _NetworkSession:
    """A P3M-Net pass engine (`NetFn`) driven by a test strategy; the torch and ONNX sessions differ in the engine."""

    backend = ""

    uses_strategies = True

    def __init__(
        self,
        net: NetFn,
        *,
        name: str,
        arch: str | None,
        weights: Path | None,
        precision: str,
        device: str,
        warning: str = "",
    ) -> None:
        self.net = net
        self.name, self.arch, self.weights, self.precision, self.warning = name, arch, weights, precision, warning
        self.device = device
        config = find_config(arch)
        self.licence = config.licence if config is not None else ""

    def plan(self, height: int, width: int, options: StrategyOptions) -> dict[str, Any]:
        return options.plan(height, width)

    def method(self, options: StrategyOptions) -> str:
        return f"{self.backend}, {options.strategy}"

    def predict(self, rgb: np.ndarray, options: StrategyOptions) -> Prediction:
        return Prediction(self.predict_alpha(rgb, options))

    def predict_alpha(self, rgb: np.ndarray, options: StrategyOptions) -> np.ndarray:
        return options.predict(self.net, rgb)


class TorchSession(_NetworkSession):
    """A torch network (an nn.Module returning P3MOutput, or any `NetFn`) on a device, in a precision."""

    backend = "torch"

    def __init__(
        self,
        network: Any,
        *,
        device: str,
        precision: str,
        name: str,
        arch: str | None,
        weights: Path | None = None,
        warning: str = "",
    ) -> None:
        from torch import nn  # torch: only where a torch network runs

        from p3m.infer.runtime import TorchNet, resolve_precision

        if isinstance(network, nn.Module):
            precision = resolve_precision(precision, device)
            net: NetFn = TorchNet(network, device, precision)
        else:  # already a NetFn (tests, wrappers): called as it is
            net = network
        super().__init__(
            net, name=name, arch=arch, weights=weights, precision=precision, device=device, warning=warning
        )


class OnnxSession(_NetworkSession):
    """An exported ONNX file (p3m export) run by ONNX Runtime, in fp32."""

    backend = "onnxruntime"

    def __init__(self, path: Path, *, device: str, name: str, arch: str | None, warning: str = "") -> None:
        from p3m.infer.runtime import OnnxNet  # loads torch too (the runtime module holds both engines)

        net = OnnxNet(path, device=device)
        super().__init__(net, name=name, arch=arch, weights=path, precision="fp32", device=device, warning=warning)
        self.licence = net.metadata.get("licence") or self.licence


class PortraitSession:
    """The built-in `portrait-cf` route: selfie and pose priors + closed-form matting (fp32); its warning says when
    no person was found or recognised (`p3m.infer.portrait.RouteResult`).

    ``runtime`` runs its networks (`p3m.models.graph_session.open_graph`): "auto" (ONNX Runtime on the CPU, torch
    on CUDA or where ``P3M_GRAPH_RUNTIME=torch``), "onnxruntime" or "torch"; ``backend`` says which ran.
    """

    name = arch = BUILTIN
    precision = "fp32"
    licence = BUILTIN_LICENCE
    warning = ""

    uses_strategies = False

    def __init__(self, device: str = "cpu", *, hands: bool = False, runtime: str = "auto") -> None:
        self.weights: Path | None = builtin_entry().path
        self.device = device
        self.route = PortraitMatting(PortraitSettings.for_limbs(hands), device=device, runtime=runtime)
        self.backend = self.route.net.runtime

    def plan(self, height: int, width: int, options: StrategyOptions) -> dict[str, Any]:
        return {
            "strategy": BUILTIN,
            "prior": list(self.route.net.input_size),
            "matting": list(working_size(height, width, self.route.settings.matting_side)),
        }

    def method(self, options: StrategyOptions) -> str:
        return "segmentation prior + closed-form matting"

    def _threads(self) -> contextlib.AbstractContextManager[None]:
        """One torch thread while the route runs on torch: its networks are too small to gain from more
        (`p3m.infer.runtime.torch_threads`); ONNX Runtime sessions have their one thread of their own."""
        if self.backend != "torch":
            return contextlib.nullcontext()
        from p3m.infer.runtime import torch_threads

        return torch_threads(ROUTE_TORCH_THREADS)

    def predict(self, rgb: np.ndarray, options: StrategyOptions) -> Prediction:
        with self._threads():
            result = self.route.run(rgb)
        return Prediction(result.alpha, result.warning, {**result.info, "seconds": result.timings})

    def predict_alpha(self, rgb: np.ndarray, options: StrategyOptions) -> np.ndarray:
        with self._threads():
            return self.route(rgb)


def _locate(weights: str | os.PathLike[str] | None, arch: str | None, backend: str) -> tuple[Path, str | None, str]:
    """(path, architecture, the name shown to users) of the weights a user named, or of the default ones."""
    if weights is None:
        entry = default_model(arch, "onnx" if backend == "onnxruntime" else None)
        if entry is None:
            raise CheckpointError(missing_weights_help())
        if backend == "torch" and entry.format == "onnx":
            raise CheckpointError(f"{entry.path}: is an ONNX model; use backend onnxruntime or pass --weights")
        path, found, name = entry.path, entry.arch, entry.name
    else:
        path, found = resolve(weights)
        name = path.name if Path(weights).expanduser().is_file() else str(weights)
    if found == BUILTIN:
        if arch not in (None, BUILTIN):
            raise CheckpointError(f"{BUILTIN} is the built-in route, not a {arch} model")
        return path, BUILTIN, BUILTIN
    return path, choose_arch(path, found, arch), name


def _check_contract(path: Path, arch: str) -> None:
    """The test strategies feed ImageNet-normalised images of sides in multiples of 32: refuse other networks."""
    config = find_config(arch)
    if config is not None and (config.normalisation, config.size_multiple) != ("imagenet", 32):
        raise CheckpointError(
            f"{path}: {arch} takes {config.describe_input()}: it is not a matting network the test strategies can run"
        )


def _synthetic_warning(name: str) -> str:
    """The one-line warning for weights trained on drawn portraits."""
    return (
        f"{name} was trained on synthetic (drawn) portraits: its mattes of real "
        f"photos are poor; use the default ({BUILTIN}) or the published P3M-Net checkpoint"
    )


def new_session(
    *,
    weights: str | os.PathLike[str] | None = None,
    arch: str | None = None,
    backend: str = "auto",
    device: str = "cpu",
    precision: str = "auto",
    hands: bool = False,
) -> MattingSession:
    """Load the model a user named -> its session.

    weights: a file, a name from `p3m models`, or None for the default (the published P3M-Net when it is in the
    model folder, else `portrait-cf`). arch: the architecture wanted (must agree with the weights). backend:
    "auto" (.onnx -> onnxruntime, else torch), "torch" or "onnxruntime" (the built-in route: the runtime of its
    small networks, "auto" = ONNX Runtime on the CPU). device: "auto", "cpu", "cuda" or "cuda:N"
    (`p3m.infer.devices.resolve_device`; "auto" is the CPU for the built-in route, whose networks are too small to
    gain from a GPU, so that it never loads torch). hands: the built-in route also finds hands by their landmarks
    and keeps them (`PortraitSettings.for_limbs`; up to about twice the time where a hand is found; other models
    ignore it).
    Raises CheckpointError (one line) for weights that cannot be used so.
    """
    check_choice("backend", backend, BACKENDS)
    path, arch, name = _locate(weights, arch, backend)
    if arch == BUILTIN:
        device = "cpu" if device == "auto" else resolve_device(device)
        return PortraitSession(device, hands=hands, runtime=backend)
    device = resolve_device(device)
    warning = _synthetic_warning(name) if trained_on_synthetic(path) else ""
    if backend == "auto":
        backend = "onnxruntime" if path.suffix == ".onnx" else "torch"
    if backend == "onnxruntime":
        if path.suffix != ".onnx":
            raise CheckpointError(f"{path}: the onnxruntime backend needs an .onnx file; create one with `p3m export`")
        return OnnxSession(path, device=device, name=name, arch=arch, warning=warning)
    if path.suffix == ".onnx":
        raise CheckpointError(f"{path}: an .onnx file needs --backend onnxruntime")
    assert arch is not None  # choose_arch names one for every torch file
    _check_contract(path, arch)
    model, meta = load_network(path, arch)
    return TorchSession(
        model,
        device=device,
        precision=precision,
        name=name,
        arch=meta.get("arch", arch),
        weights=path,
        warning=warning,
    )


def network_session(network: Any, *, device: str = "cpu", precision: str = "fp32") -> TorchSession:
    """A session around a network already in memory: an nn.Module returning P3MOutput, or any `NetFn`; device as
    `new_session`'s."""
    arch = getattr(network, "arch", None)
    return TorchSession(
        network,
        device=resolve_device(device),
        precision=precision,
        name=f"{arch or type(network).__name__} (in memory)",
        arch=arch,
    )
