"""Where a network runs: the device a user named, resolved, loading torch only when it must."""

from __future__ import annotations

from p3m.choices import DEVICES_HELP
from p3m.errors import DeviceError

__all__ = ["resolve_device"]


def resolve_device(device: str = "auto", *, local_rank: int | None = None, fix: str = "--device cpu") -> str:
    """ "auto" -> "cuda" if available else "cpu"; an explicit CUDA request without CUDA raises DeviceError.

    local_rank: a distributed worker's GPU, used for "auto" and an index-less "cuda" (training under torchrun).
    fix: what the error message suggests instead (the option that chose the device). torch is imported only for
    "auto" and CUDA devices: "cpu" costs nothing.
    """
    if device == "cpu":
        return "cpu"
    import torch  # ~1.8 s on the 2-core CPU dev machine: not for "cpu"

    if device == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        return "cuda" if local_rank is None else f"cuda:{local_rank}"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise DeviceError(f"device {device!r} requested but CUDA is unavailable ({why}); use {fix}")
        index_text = device.split(":", 1)[1] if ":" in device else None
        if index_text is not None and not index_text.isdigit():
            raise DeviceError(f"unknown device {device!r}; use {DEVICES_HELP}")
        index = int(index_text) if index_text is not None else (local_rank or 0)
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        return device if index_text is not None or local_rank is None else f"cuda:{index}"
    raise DeviceError(f"unknown device {device!r}; use {DEVICES_HELP}")
