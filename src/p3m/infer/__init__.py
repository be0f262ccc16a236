"""Inference: test strategies (resize, hybrid, highres), foreground estimation, the `Matter` API, ONNX export.

Submodules: `resize` (the published resize R and a fast equivalent), `strategies`, `foreground`,
`matter` (`Matter`, `MatteResult`), `export` (ONNX export, `OnnxNet`). Names below load lazily so
that `import p3m.infer` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Matter": "p3m.infer.matter",
    "MatteResult": "p3m.infer.matter",
    "DeviceError": "p3m.errors",
    "predict": "p3m.infer.strategies",
    "predict_resize": "p3m.infer.strategies",
    "predict_hybrid": "p3m.infer.strategies",
    "predict_highres": "p3m.infer.strategies",
    "plan_passes": "p3m.infer.strategies",
    "TorchNet": "p3m.infer.strategies",
    "NetOutput": "p3m.infer.strategies",
    "STRATEGIES": "p3m.infer.strategies",
    "resize_paper": "p3m.infer.resize",
    "resize_fast": "p3m.infer.resize",
    "estimate_foreground": "p3m.infer.foreground",
    "cutout_rgba": "p3m.infer.foreground",
    "composite": "p3m.infer.foreground",
    "export_onnx": "p3m.infer.export",
    "OnnxNet": "p3m.infer.export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'p3m.infer' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
