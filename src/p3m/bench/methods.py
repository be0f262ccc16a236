"""Every benchmarked method behind one interface: `method.predict(image, trimap=None) -> alpha`.

- `NetworkMethod`: a trimap-free network returning a `P3MOutput` (P3M-Net R34 / ViTAE-S / Swin-T,
  BASIC, MODNet), run through a test strategy of `p3m.infer.strategies` (RESIZE 1/2 by default, the
  strategy of the MM21 test script, JizhiziLi/P3M core/test.py). The trimap argument is ignored.
- `ClassicalMethod`: a trimap-based solver of `pymatting` (closed-form, KNN or large-kernel matting),
  given the test trimap (scored with the -T metrics, as the MM21 benchmark scores trimap-based methods).

`image`: HxWx3 uint8 RGB. `trimap`: HxW uint8 {0, 128, 255}. The alpha returned is HxW float32 in [0, 1]
at the image's size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from p3m.choices import STRATEGIES
from p3m.errors import MethodError
from p3m.infer.runtime import TorchNet
from p3m.infer.strategies import predict
from p3m.models import basic, load_model, modnet
from p3m.models.counting import count_parameters
from p3m.pymatting_import import import_pymatting

__all__ = [
    "METHOD_TYPES",
    "TRIMAP_BASED",
    "TRIMAP_FREE",
    "ClassicalMethod",
    "Method",
    "NetworkMethod",
]

#: trimap-free network types (registry names of `p3m.models`)
TRIMAP_FREE = ("p3m-r34", "p3m-vitae-s", "p3m-swin-t", "basic-r34", "modnet-mbv2")
#: trimap-based classical solvers (pymatting function names)
TRIMAP_BASED = {"closed-form": "estimate_alpha_cf", "knn": "estimate_alpha_knn", "lkm": "estimate_alpha_lkm"}
METHOD_TYPES = TRIMAP_FREE + tuple(TRIMAP_BASED)


# the builders of BASIC and MODNet register "basic-r34" and "modnet-mbv2" with `p3m.models.create` on import
_REGISTERED = (basic, modnet)


@dataclass
class Method:
    """Common fields: `name` (display), `type` (registry or solver name), `kind` (trimap-free/-based)."""

    name: str
    type: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "trimap-based" if self.type in TRIMAP_BASED else "trimap-free"

    @property
    def needs_trimap(self) -> bool:
        return self.kind == "trimap-based"

    def predict(self, image: np.ndarray, trimap: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError


class NetworkMethod(Method):
    """A P3MOutput network behind a test strategy: predict(image) -> fused (RESIZE) or hybrid alpha."""

    def __init__(
        self,
        name: str,
        model: Any,
        *,
        strategy: str = "resize",
        ratio: float = 0.5,
        resize_mode: str = "paper",
        max_size: int | None = 1600,
        device: str = "cpu",
        precision: str = "fp32",
    ) -> None:
        if strategy not in STRATEGIES:
            raise MethodError(f"{name}: unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
        super().__init__(name=name, type=getattr(model, "arch", type(model).__name__))
        self.model = model
        self.strategy = strategy
        self.options: dict[str, Any] = {"max_size": max_size}
        if strategy == "resize":
            self.options["ratio"] = ratio
        if strategy == "highres":
            self.options = {}
        self.resize_mode = resize_mode
        self.net = TorchNet(model, device=device, precision=precision, channels_last=True)
        self.info = {
            "params": count_parameters(model),
            "strategy": strategy,
            "ratio": ratio,
            "arch_kwargs": dict(getattr(model, "arch_kwargs", {})),
        }

    @classmethod
    def from_checkpoint(
        cls,
        name: str,
        path: str | os.PathLike,
        *,
        arch: str | None = None,
        arch_kwargs: dict | None = None,
        **options: Any,
    ) -> NetworkMethod:
        """Load weights saved by the trainer (arch from the sidecar) or a published checkpoint (pass `arch`)."""
        model, _ = load_model(path, arch=arch, arch_kwargs=arch_kwargs)
        return cls(name, model, **options)

    def predict(self, image: np.ndarray, trimap: np.ndarray | None = None) -> np.ndarray:
        return predict(self.net, image, self.strategy, resize_mode=self.resize_mode, **self.options)


class ClassicalMethod(Method):
    """pymatting solver given the trimap; large images are solved at `max_side` and upsampled.

    Upsampling: the solved alpha is resized bilinearly to the image size, then the known regions of the
    full-resolution trimap are re-imposed (0 on background, 1 on foreground), so only the unknown band
    carries the approximation. `max_side=None` solves at full resolution (minutes per 1080p image).
    """

    def __init__(self, name: str, solver: str = "closed-form", *, max_side: int | None = 512) -> None:
        if solver not in TRIMAP_BASED:
            raise MethodError(f"{name}: unknown classical solver {solver!r}; expected one of {', '.join(TRIMAP_BASED)}")
        super().__init__(name=name, type=solver)
        self.max_side = max_side
        self.info = {"params": 0, "solver": f"pymatting.{TRIMAP_BASED[solver]}", "max_side": max_side}

    def _solve(self, image01: np.ndarray, trimap01: np.ndarray) -> np.ndarray:
        fn = getattr(import_pymatting(), TRIMAP_BASED[self.type])
        return np.asarray(fn(image01, trimap01), dtype=np.float64)

    def predict(self, image: np.ndarray, trimap: np.ndarray | None = None) -> np.ndarray:
        if trimap is None:
            raise MethodError(f"{self.name}: a trimap-based method needs the test trimap")
        image = np.asarray(image)
        trimap = np.asarray(trimap)
        if image.ndim != 3 or image.shape[2] != 3 or trimap.shape != image.shape[:2]:
            raise MethodError(f"{self.name}: image {image.shape} and trimap {trimap.shape} do not match")
        fg, bg = trimap >= 255, trimap == 0
        unknown = ~(fg | bg)
        if not unknown.any():
            return fg.astype(np.float32)
        if not fg.any() or not bg.any():
            # the solvers need both constraints; with one side only, the unknown band takes that side's value
            return np.where(bg, 0.0, 1.0).astype(np.float32) if fg.any() else np.zeros(trimap.shape, np.float32)
        h, w = trimap.shape
        scale = 1.0 if self.max_side is None else min(1.0, self.max_side / max(h, w))
        img, tri = image, trimap
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            img = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            # nearest keeps the trimap ternary; a band thinner than one small pixel would vanish, so widen it
            tri = cv2.resize(trimap, size, interpolation=cv2.INTER_NEAREST)
            band = cv2.resize(unknown.astype(np.uint8), size, interpolation=cv2.INTER_AREA) > 0
            tri = np.where(band, 128, tri).astype(np.uint8)
            if not (tri == 255).any() or not (tri == 0).any():
                img, tri, scale = image, trimap, 1.0
        try:
            alpha = self._solve(img.astype(np.float64) / 255.0, tri.astype(np.float64) / 255.0)
        except (ValueError, RuntimeError, np.linalg.LinAlgError) as exc:
            raise MethodError(f"{self.name}: solver failed ({exc.__class__.__name__}: {exc})") from None
        if scale < 1.0:
            alpha = cv2.resize(alpha.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        alpha = np.where(fg, 1.0, np.where(bg, 0.0, alpha))
        return np.clip(alpha, 0.0, 1.0).astype(np.float32)
