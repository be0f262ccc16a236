"""Sessions of the small converted networks (the MediaPipe ports): ONNX Runtime or torch behind one interface.

A `GraphSession` is one loaded network: ``session(x)`` takes a (B, C, H, W) float32 array (NCHW, the values the
network expects) and returns its outputs as float32 arrays, in the graph's order, like rembg's sessions. Two kinds:

- `OnnxGraphSession`: the network's ONNX graph (shipped beside its safetensors, ``NAME.onnx``; exported from the
  torch port by `tools/export_graph_onnx.py`) on ONNX Runtime's CPU provider, one intra-op thread (the networks are
  too small to gain from more, and the route runs them beside other work). Importing onnxruntime costs about
  0.3 s; importing torch about 1.8 s on the 2-core CPU dev machine, so the built-in route starts without torch.
- `TorchGraphSession`: the torch port (`p3m.models.tflite_graph.TFLiteGraph`) on any torch device.

`open_graph(weights, device=..., runtime=...)` is the one place that chooses: the runtime `graph_runtime` resolves
("auto": ONNX Runtime on the CPU where the ONNX graph is shipped, else torch; the environment variable
``P3M_GRAPH_RUNTIME=torch`` makes "auto" mean torch everywhere). Torch-free at import: torch loads only when a
torch session is made.

>>> session = open_graph(WEIGHTS_DIR / "selfie_segmentation.safetensors")
>>> (prob,) = session(np.zeros((1, 3, *session.input_size), np.float32))     # (1, 1, 256, 256)
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from p3m.errors import ConfigError, DeviceError

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "GRAPH_RUNTIMES",
    "GRAPH_THREADS",
    "RUNTIME_ENV",
    "GraphSession",
    "OnnxGraphSession",
    "TorchGraphSession",
    "graph_runtime",
    "onnx_path",
    "open_graph",
]

#: the runtimes a caller may ask for; "auto" resolves by `graph_runtime`
GRAPH_RUNTIMES = ("auto", "onnxruntime", "torch")
#: the environment variable that makes "auto" mean torch ("torch") or keeps the default ("auto", or unset)
RUNTIME_ENV = "P3M_GRAPH_RUNTIME"
#: ONNX Runtime intra-op threads per session
GRAPH_THREADS = 1


class GraphSession(Protocol):
    """One loaded small network. ``runtime``: "onnxruntime" or "torch"; ``input_size``: the (H, W) it takes;
    ``session(x)``: (B, C, H, W) float32 -> its outputs as float32 arrays, in the graph's order (thread-safe)."""

    @property
    def runtime(self) -> str: ...
    @property
    def input_size(self) -> tuple[int, int]: ...

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, ...]: ...


class OnnxGraphSession:
    """An ONNX graph on ONNX Runtime's CPU provider, `GRAPH_THREADS` intra-op threads (calls are thread-safe:
    ONNX Runtime's `run` is)."""

    runtime = "onnxruntime"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import onnxruntime as ort  # the route's runtime: ~0.3 s to import, paid only where a session is made

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = GRAPH_THREADS
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.path = Path(path)
        self._session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        (graph_input,) = self._session.get_inputs()
        self._input = graph_input.name
        self.input_size: tuple[int, int] = (int(graph_input.shape[2]), int(graph_input.shape[3]))
        self._outputs = [o.name for o in self._session.get_outputs()]

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        outputs = self._session.run(self._outputs, {self._input: np.ascontiguousarray(x, dtype=np.float32)})
        return tuple(np.asarray(o, dtype=np.float32) for o in outputs)


class TorchGraphSession:
    """A torch network (a `TFLiteGraph`, or any module with ``input_size`` returning a tensor or a tuple of them)
    on a torch device; calls are serialised by a lock."""

    runtime = "torch"

    def __init__(self, net: nn.Module, device: str = "cpu") -> None:
        self.net = net.eval().to(device)
        self.device = device
        size: Any = net.input_size
        self.input_size: tuple[int, int] = (int(size[0]), int(size[1]))
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        import torch  # loaded with the module this session wraps

        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        with self._lock, torch.inference_mode():
            out: Any = self.net(t)
            outputs = out if isinstance(out, (tuple, list)) else (out,)
            return tuple(o.float().cpu().numpy() for o in outputs)


def onnx_path(weights: str | os.PathLike[str]) -> Path:
    """The ONNX graph shipped beside a converted network's safetensors file: same name, suffix .onnx."""
    return Path(weights).with_suffix(".onnx")


def graph_runtime(device: str = "cpu", runtime: str = "auto", *, has_onnx: bool = True) -> str:
    """The runtime that runs a network: "onnxruntime" or "torch".

    runtime "auto": ONNX Runtime on the CPU when the network has an ONNX graph (``has_onnx``), else torch;
    ``P3M_GRAPH_RUNTIME=torch`` in the environment turns "auto" into "torch". "onnxruntime": ONNX Runtime whatever
    the environment says, on the CPU only (`DeviceError` otherwise), for the networks that have a graph (the others,
    e.g. the privacy tools' face mesh, run on torch). "torch" is always torch.
    """
    if runtime not in GRAPH_RUNTIMES:
        raise ConfigError(f"unknown network runtime {runtime!r}; use one of {', '.join(GRAPH_RUNTIMES)}")
    if runtime == "auto":
        wanted = os.environ.get(RUNTIME_ENV, "").strip().lower() or "auto"
        if wanted not in ("auto", "torch"):
            raise ConfigError(f"{RUNTIME_ENV}={wanted!r}: use auto or torch")
        return "onnxruntime" if wanted == "auto" and device == "cpu" and has_onnx else "torch"
    if runtime == "onnxruntime":
        if device != "cpu":
            raise DeviceError(f"the onnxruntime runtime of the built-in networks runs on the CPU only, not {device!r}")
        return runtime if has_onnx else "torch"
    return runtime


def open_graph(weights: str | os.PathLike[str], *, device: str = "cpu", runtime: str = "auto") -> GraphSession:
    """A session of the converted network stored at ``weights`` (a safetensors file of tools/convert_tflite.py),
    on the runtime `graph_runtime` picks: its ONNX graph (`onnx_path`) on ONNX Runtime, or its torch port."""
    graph = onnx_path(weights)
    if graph_runtime(device, runtime, has_onnx=graph.is_file()) == "onnxruntime":
        return OnnxGraphSession(graph)
    from p3m.models.tflite_graph import TFLiteGraph  # torch: only for a torch session

    return TorchGraphSession(TFLiteGraph.from_file(Path(weights)), device)
