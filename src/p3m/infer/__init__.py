"""Inference: input preparation, the runtime, test strategies, matting sessions, foreground estimation, `Matter`,
ONNX export.

Submodules, each importing only those listed before it: `preprocess` (any input -> RGB uint8 -> network input),
`resize` (the published resize R and a fast equivalent), `strategies` (resize, hybrid, highres over a `NetFn`),
`runtime` (device, precision, the torch and ONNX Runtime engines), `closed_form`, `band_sampling`, `spill`,
`step_edges` and `portrait` (the built-in route), `sessions` (every model behind one interface; `new_session`),
`foreground` (colour estimation and `render` of every output kind), `matter` (`Matter`, `MatteResult`), `export`
(ONNX export). Names below load lazily so that `import p3m.infer` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Matter": "p3m.infer.matter",
    "MatteResult": "p3m.infer.matter",
    "MattingSession": "p3m.infer.sessions",
    "new_session": "p3m.infer.sessions",
    "predict": "p3m.infer.strategies",
    "predict_resize": "p3m.infer.strategies",
    "predict_hybrid": "p3m.infer.strategies",
    "predict_highres": "p3m.infer.strategies",
    "plan_passes": "p3m.infer.strategies",
    "NetOutput": "p3m.infer.strategies",
    "TorchNet": "p3m.infer.runtime",
    "OnnxNet": "p3m.infer.runtime",
    "resolve_device": "p3m.infer.devices",
    "resolve_precision": "p3m.infer.runtime",
    "to_rgb": "p3m.infer.preprocess",
    "normalize": "p3m.infer.preprocess",
    "resize_paper": "p3m.infer.resize",
    "resize_fast": "p3m.infer.resize",
    "estimate_foreground": "p3m.infer.foreground",
    "cutout_rgba": "p3m.infer.foreground",
    "composite": "p3m.infer.foreground",
    "render": "p3m.infer.foreground",
    "export_onnx": "p3m.infer.export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # lazy: `from p3m.infer import Matter` loads torch, `import p3m.infer.preprocess` should not
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'p3m.infer' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
