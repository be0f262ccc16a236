"""`Matter`: the reusable Python API for matting portraits.

>>> from p3m import Matter
>>> matter = Matter()                                  # the default: published P3M-Net if present, else portrait-cf
>>> matter = Matter(weights="demo-r34")                # a name from `p3m models`, or a path
>>> result = matter.matte("portrait.jpg", foreground=True)
>>> result.alpha          # HxW float32 in [0, 1]
>>> result.cutout         # HxWx4 uint8 straight RGBA, decontaminated colours
>>> result.render("composite", background=(0, 255, 0))   # any of p3m.choices.OUTPUT_KINDS as pixels
>>> for r in matter.matte_batch(["a.jpg", "b.png"]): ...

Names: `weights` is the model (a file, or a NAME of `p3m models`) and `model_name` the name it is shown under;
`arch` is its architecture (a `p3m.models` registry name such as "p3m-r34"); `Matter.from_network` wraps a network
already in memory. One object loads the model once (a `p3m.infer.sessions.MattingSession`); `matte` may be called
from several threads (the network call is serialised by a lock, everything else is per-call state).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from p3m.choices import FOREGROUND_METHODS, check_choice
from p3m.infer.foreground import WHITE, alpha_to_uint8, cutout_rgba, estimate_foreground, render
from p3m.infer.preprocess import to_rgb
from p3m.infer.sessions import MattingSession, StrategyOptions, network_session, new_session

__all__ = ["MatteResult", "Matter"]


@dataclass
class MatteResult:
    """Result of one `Matter.matte` call.

    alpha: HxW float32 in [0, 1]. foreground: HxWx3 uint8 decontaminated colours (on request).
    cutout: HxWx4 uint8 straight RGBA = (foreground, alpha) (on request). image: the RGB input.
    info: strategy, network pass sizes, timings in seconds. foreground_method: how `render` estimates the
    foreground colours when they were not requested.
    """

    alpha: np.ndarray
    image: np.ndarray
    foreground: np.ndarray | None = None
    cutout: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    foreground_method: str = "ml"

    def add_foreground(self) -> MatteResult:
        """Estimate the foreground colours and the cutout (once: kept when present) -> this result."""
        if self.foreground is None:
            self.foreground = estimate_foreground(self.image, self.alpha, self.foreground_method)
        if self.cutout is None:
            self.cutout = cutout_rgba(self.foreground, self.alpha)
        return self

    def alpha_uint8(self, rounding: str = "round") -> np.ndarray:
        """Alpha as uint8 ("truncate" = the published dataset-mode cast)."""
        return alpha_to_uint8(self.alpha, rounding)

    def render(self, kind: str, background: np.ndarray | tuple[int, int, int] = WHITE) -> np.ndarray:
        """One of `p3m.choices.OUTPUT_KINDS` ("alpha", "rgba", "fg", "composite") as uint8 pixels; pure, so any
        thread may call it (`p3m.infer.foreground.render`; a background image of another size is fitted)."""
        return render(
            kind,
            self.image,
            self.alpha,
            foreground=self.foreground,
            background=background,
            method=self.foreground_method,
        )

    def composite(self, background: np.ndarray | tuple[int, int, int] = WHITE) -> np.ndarray:
        """The cutout over a colour or an image (foreground estimated if not yet): `render("composite", ...)`."""
        return self.render("composite", background)


class Matter:
    """Reusable portrait matting: model loaded once, any number of images.

    arch: architecture name (default: from the weights' metadata, else "p3m-r34").
    weights: path to a checkpoint / .onnx file or a name from `p3m models`; None = the default: the published
        R34 if dropped into the model folder, else the built-in "portrait-cf" route (MediaPipe selfie
        segmentation prior + closed-form matting, p3m.infer.portrait; no training, no download). An untrained
        network is never used silently; weights trained on synthetic (drawn) portraits give a one-line
        warning (`model_warning`, also a Python warning).
    device: "auto", "cpu", "cuda", "cuda:N" (explicit CUDA without CUDA -> DeviceError).
    strategy: "hybrid" (default), "resize" or "highres" (see p3m.infer.strategies).
    backend: "auto" (.onnx -> onnxruntime, else torch), "torch", "onnxruntime".
    precision: "auto" (bf16 where the hardware has it), "fp32", "bf16", "fp16" (torch backend).
    resize_mode: "fast" (default, OpenCV, replicated border) or "paper" (the published R, `JizhiziLi/P3M` core/util.py).
    shorter_side_limit: the published test code's SAMPLES mode (1080 in `JizhiziLi/P3M` core/test.py); None = off.
    hands: the built-in route also finds hands by their landmarks (MediaPipe's pose and hand networks) and keeps
        raised hands and fingers that its segmentation prior loses (`PortraitSettings.for_limbs`); up to about
        twice the time per image where a hand is found. Other models ignore it.

    After construction, `session` is the loaded model (`MattingSession`) and `model_name`, `arch`, `weights`,
    `backend`, `precision`, `model_warning` describe it.
    """

    def __init__(
        self,
        arch: str | None = None,
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
        hands: bool = False,
    ) -> None:
        options = StrategyOptions(strategy, resize_mode, tile, overlap, shorter_side_limit)
        self._setup(options, foreground_method)
        self.session: MattingSession = new_session(
            weights=weights,
            arch=arch,
            backend=backend,
            device=device,
            precision=precision,
            hands=hands,
        )
        if self.model_warning:
            warnings.warn(self.model_warning, stacklevel=2)

    def _setup(self, options: StrategyOptions, foreground_method: str) -> None:
        self.options = options
        self.foreground_method = check_choice("foreground method", foreground_method, FOREGROUND_METHODS)

    @classmethod
    def from_network(
        cls,
        network: Any,
        *,
        device: str = "auto",
        strategy: str = "hybrid",
        precision: str = "fp32",
        resize_mode: str = "fast",
        foreground_method: str = "ml",
        tile: int = 1024,
        overlap: int = 128,
        shorter_side_limit: int | None = None,
    ) -> Matter:
        """A Matter around a network already in memory: a torch P3M-Net (nn.Module), or any `NetFn`."""
        self = cls.__new__(cls)
        options = StrategyOptions(strategy, resize_mode, tile, overlap, shorter_side_limit)
        self._setup(options, foreground_method)
        self.session = network_session(network, device=device, precision=precision)
        return self

    @property
    def device(self) -> str:
        """Where the model runs, resolved ("cpu", "cuda", "cuda:N"; "auto" is the CPU for the built-in route)."""
        return self.session.device

    # -- what was loaded -------------------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        """The model in use as `p3m models` names it (or its file name)."""
        return self.session.name

    @property
    def arch(self) -> str | None:
        return self.session.arch

    @property
    def weights(self) -> Path | None:
        return self.session.weights

    @property
    def backend(self) -> str:
        return self.session.backend

    @property
    def precision(self) -> str:
        return self.session.precision

    @property
    def model_warning(self) -> str:
        return self.session.warning

    @property
    def strategy(self) -> str:
        """The test strategy of P3M-Net passes (the built-in route has none: its plan says "portrait-cf").

        Settable: a shallow copy of a Matter with another strategy shares the loaded model (the server's
        per-request strategy)."""
        return self.options.strategy

    @strategy.setter
    def strategy(self, name: str) -> None:
        self.options = replace(self.options, strategy=name)

    @property
    def resize_mode(self) -> str:
        return self.options.resize_mode

    def describe(self) -> str:
        """'NAME (ARCH) on DEVICE, METHOD': the model actually used, for run summaries."""
        arch = f" ({self.arch})" if self.arch and self.arch != self.model_name else ""
        return f"{self.model_name}{arch} on {self.device}, {self.session.method(self.options)}"

    # -- matting ---------------------------------------------------------------------------------------------

    def plan(self, height: int, width: int) -> dict[str, Any]:
        """The sizes the network sees for an image of this size (honest resolution policy)."""
        return self.session.plan(height, width, self.options)

    def matte(self, image: Any, *, foreground: bool = False) -> MatteResult:
        """Alpha matte of one image; foreground=True adds fg + RGBA cutout.

        image: a path, encoded bytes, a PIL image, or an array of a documented range (uint8 0-255, uint16, float
        0-1; `p3m.infer.preprocess.to_rgb`); anything else is an ImageError.
        """
        t0 = time.perf_counter()
        rgb = to_rgb(image)
        t1 = time.perf_counter()
        prediction = self.session.predict(rgb, self.options)
        alpha = prediction.alpha
        t2 = time.perf_counter()
        result = MatteResult(alpha=alpha, image=rgb, foreground_method=self.foreground_method)
        if foreground:
            result.add_foreground()
        t3 = time.perf_counter()
        plan = self.plan(*rgb.shape[:2])
        result.info = {
            "model": self.model_name,
            "arch": self.arch,
            "strategy": plan["strategy"],
            "resize_mode": self.resize_mode,
            "plan": plan,
            "seconds": {"decode": t1 - t0, "network": t2 - t1, "foreground": t3 - t2},
        }
        if prediction.info:
            result.info["route"] = prediction.info
        warning = self.model_warning or prediction.warning
        if warning:
            result.info["warning"] = warning
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
