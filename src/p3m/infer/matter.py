"""`Matter`: the reusable Python API for matting portraits.

>>> from p3m import Matter
>>> matter = Matter()                                  # the default: published P3M-Net if present, else portrait-cf
>>> matter = Matter(weights="demo-r34")                # a name from `p3m models`, or a path
>>> result = matter.matte("portrait.jpg", foreground=True)
>>> result.alpha          # HxW float32 in [0, 1]
>>> result.cutout         # HxWx4 uint8 straight RGBA, decontaminated colours
>>> for r in matter.matte_batch(["a.jpg", "b.png"]): ...

One object loads the network once; `matte` may be called from several threads (the network call is
serialised by a lock, everything else is per-call state).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from p3m import model_store
from p3m.choices import BACKENDS, PRECISIONS
from p3m.errors import CheckpointError, DeviceError, ImageError, P3MError
from p3m.infer.foreground import FOREGROUND_METHODS, alpha_to_uint8, composite, cutout_rgba, estimate_foreground
from p3m.infer.resize import RESIZE_MODES
from p3m.infer.strategies import STRATEGIES, NetFn, TorchNet, plan_passes, predict
from p3m.model_store import BUILTIN

__all__ = ["BACKENDS", "MatteResult", "Matter", "resolve_device", "resolve_precision", "to_rgb_array"]


@dataclass
class MatteResult:
    """Result of one `Matter.matte` call.

    alpha: HxW float32 in [0, 1]. foreground: HxWx3 uint8 decontaminated colours (on request).
    cutout: HxWx4 uint8 straight RGBA = (foreground, alpha) (on request). image: the RGB input.
    info: strategy, network pass sizes, timings in seconds.
    """

    alpha: np.ndarray
    image: np.ndarray
    foreground: np.ndarray | None = None
    cutout: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def alpha_uint8(self, rounding: str = "round") -> np.ndarray:
        """Alpha as uint8 ("truncate" = the published dataset-mode cast)."""
        return alpha_to_uint8(self.alpha, rounding)

    def composite(self, background: np.ndarray | tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
        """The cutout over a colour or an image of the same size (foreground estimated if not yet)."""
        fg = self.foreground if self.foreground is not None else estimate_foreground(self.image, self.alpha)
        return composite(fg, self.alpha, background)


def resolve_device(device: str = "auto") -> str:
    """ "auto" -> "cuda" if available else "cpu"; an explicit CUDA request without CUDA raises DeviceError."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise DeviceError(f"device {device!r} requested but CUDA is unavailable ({why}); use --device cpu")
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        return device
    raise DeviceError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


def resolve_precision(precision: str, device: str) -> str:
    """ "auto": bf16 on CPUs with native bf16 (AVX512-BF16/AMX) and on CUDA, else fp32."""
    if precision not in PRECISIONS:
        raise P3MError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    import torch

    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    try:
        if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return "bf16"
    except (AttributeError, RuntimeError):
        pass
    return "fp32"


def to_rgb_array(image: Any) -> np.ndarray:
    """Path / bytes / PIL image / ndarray -> HxWx3 uint8 RGB (EXIF orientation applied for files and PIL)."""
    from p3m.io import read_image

    if isinstance(image, (str, os.PathLike, bytes)):
        return read_image(image)
    try:
        from PIL import Image, ImageOps
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        img = ImageOps.exif_transpose(image)
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
            a = rgba[..., 3:] / 255.0
            return np.rint(rgba[..., :3] * a + 255.0 * (1 - a)).astype(np.uint8)  # over white, as read_image
        return np.ascontiguousarray(np.asarray(img.convert("RGB")))
    a = np.asarray(image)
    if a.dtype == bool or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise ImageError(f"expected an HxW, HxWx3 or HxWx4 image array, got {a.dtype} {a.shape}")
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageError("image array contains NaN or infinite values")
        a = np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise ImageError(f"image arrays must be uint8 (0-255) or float (0-1), got {a.dtype}")
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        alpha = a[..., 3:].astype(np.float32) / 255.0
        a = np.rint(a[..., :3] * alpha + 255.0 * (1 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(a)


class Matter:
    """Reusable portrait matting: network loaded once, any number of images.

    model: architecture name (default: from the weights' metadata, else "p3m-r34").
    weights: path to a checkpoint / .onnx file or a name from `p3m models`; None = the default: the published
        R34 if dropped into the model folder, else the built-in "portrait-cf" route (MediaPipe selfie
        segmentation prior + closed-form matting, p3m.infer.portrait; no training, no download). An untrained
        network is never used silently; weights trained on synthetic (drawn) portraits give a one-line
        warning (`model_warning`, also a Python warning).
    After construction: `model_name` names the weights actually used (a `p3m models` name or a file name).
    device: "auto", "cpu", "cuda", "cuda:N" (explicit CUDA without CUDA -> DeviceError).
    strategy: "hybrid" (default), "resize" or "highres" (see p3m.infer.strategies).
    backend: "auto" (.onnx -> onnxruntime, else torch), "torch", "onnxruntime".
    precision: "auto" (bf16 where the hardware has it), "fp32", "bf16", "fp16" (torch backend).
    resize_mode: "fast" (default, OpenCV, replicated border) or "paper" (the published R, 9.1).
    shorter_side_limit: SAMPLES mode of 9.5 (1080 in the published code); None = off.
    """

    def __init__(
        self,
        model: str | None = None,
        weights: str | os.PathLike[str] | None = None,
        device: str = "auto",
        strategy: str = "hybrid",
        backend: str = "auto",
        precision: str = "auto",
        *,
        resize_mode: str = "fast",
        foreground_method: str = "ml",
        tile: int = 1024,
        overlap: int = 128,
        shorter_side_limit: int | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise P3MError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
        if backend not in BACKENDS:
            raise P3MError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        if resize_mode not in RESIZE_MODES:
            raise P3MError(f"unknown resize mode {resize_mode!r}; use one of {', '.join(RESIZE_MODES)}")
        if foreground_method not in FOREGROUND_METHODS:
            raise P3MError(
                f"unknown foreground method {foreground_method!r}; use one of {', '.join(FOREGROUND_METHODS)}"
            )
        self.strategy = strategy
        self.resize_mode = resize_mode
        self.foreground_method = foreground_method
        self.tile, self.overlap = tile, overlap
        self.shorter_side_limit = shorter_side_limit
        self.device = resolve_device(device)
        path, arch, kwargs, self.model_name = self._find_weights(model, weights, backend)
        self.weights = path
        self.route = None
        self.model_warning = ""
        if arch == BUILTIN:
            if backend == "onnxruntime":
                raise CheckpointError(f"{BUILTIN} runs on the torch backend only; use --backend auto or torch")
            from p3m.infer.portrait import PortraitMatting

            self.backend, self.precision, self.arch = "torch", "fp32", BUILTIN
            self.route = PortraitMatting(device=self.device)
            self.net = self.route  # type: ignore[assignment]  # whole-image route, not a P3M-Net pass
            return
        if model_store.trained_on_synthetic(path):
            self.model_warning = (
                f"{self.model_name} was trained on synthetic (drawn) portraits: its mattes of real "
                f"photos are poor; use the default ({BUILTIN}) or the published P3M-Net checkpoint"
            )
            warnings.warn(self.model_warning, stacklevel=2)
        if backend == "auto":
            backend = "onnxruntime" if path.suffix == ".onnx" else "torch"
        self.backend = backend
        if backend == "onnxruntime":
            if path.suffix != ".onnx":
                raise CheckpointError(
                    f"{path}: the onnxruntime backend needs an .onnx file; create one with `p3m export`"
                )
            from p3m.infer.export import OnnxNet

            self.precision = "fp32"
            self.arch = arch
            self.net: NetFn = OnnxNet(path, device=self.device)
        else:
            if path.suffix == ".onnx":
                raise CheckpointError(f"{path}: an .onnx file needs --backend onnxruntime")
            from p3m.models.checkpoint import load_model

            net_model, meta = load_model(path, arch=arch, arch_kwargs=kwargs or None, device="cpu")
            self.arch = meta.get("arch", arch)
            self.precision = resolve_precision(precision, self.device)
            self.net = TorchNet(net_model, self.device, self.precision)

    @classmethod
    def from_model(
        cls,
        model: Any,
        *,
        device: str = "auto",
        strategy: str = "hybrid",
        precision: str = "fp32",
        resize_mode: str = "fast",
        **options: Any,
    ) -> Matter:
        """A Matter around an in-memory torch model (or any NetFn when `model` is not an nn.Module)."""
        self = cls.__new__(cls)
        self.strategy, self.resize_mode = strategy, resize_mode
        self.foreground_method = options.pop("foreground_method", "ml")
        self.tile, self.overlap = options.pop("tile", 1024), options.pop("overlap", 128)
        self.shorter_side_limit = options.pop("shorter_side_limit", None)
        if options:
            raise TypeError(f"unexpected options: {', '.join(options)}")
        if strategy not in STRATEGIES:
            raise P3MError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
        self.device = resolve_device(device)
        self.weights = None
        self.route = None
        self.model_warning = ""
        self.backend = "torch"
        self.arch = getattr(model, "arch", None)
        self.model_name = f"{self.arch or type(model).__name__} (in memory)"
        import torch

        if isinstance(model, torch.nn.Module):
            self.precision = resolve_precision(precision, self.device)
            self.net = TorchNet(model, self.device, self.precision)
        else:
            self.precision = precision
            self.net = model
        return self

    @staticmethod
    def _find_weights(model: str | None, weights: Any, backend: str) -> tuple[Path, str | None, dict[str, Any], str]:
        """(path, arch, arch kwargs, the name shown to users) of the weights to load."""
        if weights is None:
            fmt = "onnx" if backend == "onnxruntime" else None
            entry = model_store.default_model(model, fmt)
            if entry is None and model is None:
                entry = model_store.default_model(None, fmt)
            if entry is None:
                raise CheckpointError(model_store.missing_weights_help())
            if backend == "torch" and entry.format == "onnx":
                raise CheckpointError(f"{entry.path}: is an ONNX model; use backend onnxruntime or pass --weights")
            path, found_arch, name = entry.path, entry.arch, entry.name
        else:
            path, found_arch = model_store.resolve(weights)
            name = path.name if Path(weights).expanduser().is_file() else str(weights)
        if found_arch == BUILTIN:
            if model not in (None, BUILTIN):
                raise CheckpointError(f"{BUILTIN} is the built-in route, not a {model} model")
            return path, BUILTIN, {}, BUILTIN
        _, kwargs = model_store.guess_arch(path) if path.suffix != ".onnx" else (None, {})
        if model is not None and found_arch is not None and found_arch != model:
            raise CheckpointError(f"{path}: holds a {found_arch} model but model {model!r} was requested")
        arch = found_arch or model
        if arch is None and path.suffix != ".onnx":
            arch = "p3m-r34"
        # p3m checkpoints carry their own arch/kwargs in the JSON sidecar; only guesses are passed on
        if path.with_suffix(".json").is_file():
            kwargs = {}
        return path, arch, kwargs, name

    def plan(self, height: int, width: int) -> dict[str, Any]:
        """The sizes the network sees for an image of this size (honest resolution policy)."""
        if self.route is not None:
            from p3m.infer.portrait import working_size

            return {
                "strategy": BUILTIN,
                "prior": list(self.route.net.input_size),
                "matting": list(working_size(height, width, self.route.settings.matting_side)),
            }
        return plan_passes(
            self.strategy,
            height,
            width,
            tile=self.tile,
            overlap=self.overlap,
            shorter_side_limit=self.shorter_side_limit,
        )

    def matte(self, image: Any, *, foreground: bool = False) -> MatteResult:
        """Alpha matte of one image (path, bytes, PIL image or array); foreground=True adds fg + RGBA cutout."""
        t0 = time.perf_counter()
        rgb = to_rgb_array(image)
        t1 = time.perf_counter()
        if self.route is not None:
            alpha = self.route(rgb)
        else:
            options: dict[str, Any] = {}
            if self.strategy == "highres":
                options = {"tile": self.tile, "overlap": self.overlap}
            alpha = predict(
                self.net,
                rgb,
                self.strategy,
                resize_mode=self.resize_mode,
                shorter_side_limit=self.shorter_side_limit,
                **options,
            )
        t2 = time.perf_counter()
        result = MatteResult(alpha=alpha, image=rgb)
        if foreground:
            result.foreground = estimate_foreground(rgb, alpha, self.foreground_method)
            result.cutout = cutout_rgba(result.foreground, alpha)
        t3 = time.perf_counter()
        result.info = {
            "model": self.model_name,
            "arch": self.arch,
            "strategy": BUILTIN if self.route is not None else self.strategy,
            "resize_mode": self.resize_mode,
            "plan": self.plan(*rgb.shape[:2]),
            "seconds": {"decode": t1 - t0, "network": t2 - t1, "foreground": t3 - t2},
        }
        if self.model_warning:
            result.info["warning"] = self.model_warning
        elif self.route is not None and not alpha.any():
            result.info["warning"] = "no person found: the matte is empty"
        return result

    def matte_batch(self, images: Iterable[Any], *, foreground: bool = False) -> Iterator[MatteResult]:
        """Matte each image of an iterable in order, lazily (one result at a time; memory stays flat)."""
        for image in images:
            yield self.matte(image, foreground=foreground)

    def __repr__(self) -> str:
        return (
            f"Matter(model_name={self.model_name!r}, arch={self.arch!r}, "
            f"weights={str(self.weights) if self.weights else None!r}, "
            f"device={self.device!r}, backend={self.backend!r}, precision={self.precision!r}, "
            f"strategy={self.strategy!r}, resize_mode={self.resize_mode!r})"
        )
