"""Checkpoint I/O for P3M-Net models: safe loading of published `.pth` files, p3m's safetensors+JSON.

Loading never runs pickled code: `.pth` files go through `torch.load(weights_only=True)` and files
that need arbitrary unpickling are refused. Published layouts accepted (reference 7.2):
`{'state_dict': ...}`, `{'state_dict_ema': ...}` (ViTAE ImageNet backbone), a bare state dict, and
keys with a `module.` (DataParallel) prefix.

p3m writes `<name>.safetensors` (each tensor once: safetensors refuses shared tensors, so the R34
`encoderN.*` aliases are dropped and restored on load) and `<name>.json` with
`{"arch", "arch_kwargs", "format_version", **metadata}`. `p3m.models.sidecar` owns that JSON sidecar
(`sidecar_path`, `read_sidecar`; torch-free, so the model folder is listed without torch).
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from p3m.atomic import write_bytes_atomic, write_with
from p3m.errors import CheckpointError, P3MError
from p3m.models.registry import check_arch_kwargs, create
from p3m.models.sidecar import (
    FORMAT_VERSION,
    error_reason,
    read_json,
    read_sidecar,
    sidecar_path,
    unpickler_reason,
)

__all__ = [
    "FORMAT_VERSION",
    "error_reason",
    "is_tensor_dict",
    "load_checkpoint",
    "load_model",
    "read_json",
    "read_sidecar",
    "read_state_dict",
    "save_checkpoint",
    "sidecar_path",
    "unpickler_reason",
]

_STATE_DICT_KEYS = ("state_dict", "state_dict_ema", "model_state_dict", "model")
# buffers that are deterministic functions of the construction size; they may be recomputed by the model
_RECOMPUTABLE_SUFFIXES = ("attn_mask", "relative_position_index")
_NAMES_SHOWN = 5


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:_NAMES_SHOWN])
    more = f", ... (+{len(keys) - _NAMES_SHOWN} more)" if len(keys) > _NAMES_SHOWN else ""
    return shown + more


def _safetensors_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p if p.suffix == ".safetensors" else p.with_name(p.name + ".safetensors")


def is_tensor_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def _read_pth(path: Path) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol chatter from the weights-only unpickler
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = unpickler_reason(str(exc))
        if "GLOBAL" in reason or "global" in reason:
            raise CheckpointError(
                f"{path}: refused to load: the file references Python objects other than tensors "
                f"({reason}), and unpickling them could run arbitrary code; p3m only loads weights "
                "(torch.load weights_only=True). If you trust its source, re-save it as a plain state dict."
            ) from None
        raise CheckpointError(
            f"{path}: not a loadable PyTorch checkpoint: the weights-only unpickler rejected it ({reason})"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError, AttributeError, KeyError, IndexError, TypeError) as exc:
        raise CheckpointError(f"{path}: corrupt, truncated or not a PyTorch checkpoint ({error_reason(exc)})") from None


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({error_reason(exc)})") from None


def read_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint file safely -> (state dict with `module.` prefixes removed, info).

    info: {"format": "safetensors"|"pth", "container": key the weights were under or None,
    "extra": other plain entries of a `.pth` dict (epoch, ...)}.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint file not found")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: checkpoint file is empty (0 bytes)")
    info: dict[str, Any] = {"format": None, "container": None, "extra": {}}
    if p.suffix == ".safetensors":
        info["format"] = "safetensors"
        state = _read_safetensors(p)
    else:
        info["format"] = "pth"
        obj = _read_pth(p)
        if is_tensor_dict(obj):
            state = dict(obj)
        elif isinstance(obj, Mapping):
            container = next((k for k in _STATE_DICT_KEYS if is_tensor_dict(obj.get(k))), None)
            if container is None:
                keys = ", ".join(map(str, list(obj)[:_NAMES_SHOWN]))
                raise CheckpointError(
                    f"{p}: no state dict found (looked for a dict of tensors or one of the keys "
                    f"{', '.join(_STATE_DICT_KEYS)}; top-level keys: {keys})"
                )
            state = dict(obj[container])
            info["container"] = container
            info["extra"] = {k: v for k, v in obj.items() if k != container and isinstance(v, (int, float, str, bool))}
        else:
            raise CheckpointError(f"{p}: expected a dict of tensors, found {type(obj).__name__}")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state, info


def _alias_groups(model: nn.Module) -> list[list[str]]:
    """Groups of state-dict keys that name the same tensor (the R34 `encoderN` aliases of `resnet.*`)."""
    by_id: dict[int, list[str]] = {}
    for key, value in model.state_dict(keep_vars=True).items():
        by_id.setdefault(id(value), []).append(key)
    return [keys for keys in by_id.values() if len(keys) > 1]


def _reconcile(model: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Restore aliases dropped at save time and handle recomputable buffers (reference 4.5, 5.4)."""
    state = dict(state)
    for group in _alias_groups(model):
        present = [k for k in group if k in state]
        if present:
            for k in group:
                state.setdefault(k, state[present[0]])
    target = model.state_dict()
    for key in list(state):
        if key.endswith(_RECOMPUTABLE_SUFFIXES):
            if key not in target:
                del state[key]  # the model recomputes it and does not store it
            elif tuple(state[key].shape) != tuple(target[key].shape):
                state[key] = target[key]  # deterministic buffer of another construction size
    return state


def load_checkpoint(model: nn.Module, path: str | os.PathLike[str], *, strict: bool = True) -> dict[str, Any]:
    """Load weights from `path` into `model` (in place) and return a report.

    Report: {"path", "format", "container", "missing_keys", "unexpected_keys", "extra",
    "metadata" (the JSON sidecar of a p3m checkpoint, else {})}. With strict=True (the default)
    any missing, unexpected or mis-shaped key raises CheckpointError listing them; with strict=False
    the matching tensors are loaded and the rest reported.
    """
    p = Path(path)
    state, info = read_state_dict(p)
    state = _reconcile(model, state)
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    mismatched = [
        f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(target[k].shape)})"
        for k in state
        if k in target and tuple(state[k].shape) != tuple(target[k].shape)
    ]
    if strict and (missing or unexpected or mismatched):
        arch = getattr(model, "arch", type(model).__name__)
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_names(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {_names(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches: {_names(mismatched)}")
        raise CheckpointError(f"{p}: checkpoint does not match {arch} ({len(state)} keys): " + "; ".join(parts))
    loadable = {k: v for k, v in state.items() if k in target and tuple(v.shape) == tuple(target[k].shape)}
    model.load_state_dict(loadable, strict=False)
    metadata = read_sidecar(p) if info["format"] == "safetensors" else {}
    return {
        "path": str(p),
        "format": info["format"],
        "container": info["container"],
        "missing_keys": missing,
        "unexpected_keys": unexpected + [m.split(" ")[0] for m in mismatched],
        "extra": info["extra"],
        "metadata": metadata,
    }


def _json_default(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"metadata value of type {type(obj).__name__} is not JSON-serialisable")


def save_checkpoint(model: nn.Module, path: str | os.PathLike[str], *, metadata: dict[str, Any] | None = None) -> Path:
    """Save `model` as `<path>.safetensors` (or `path` if it ends so) plus `<same stem>.json`; returns the weights path.

    JSON: {"arch", "arch_kwargs", "format_version", **metadata}. Both writes are atomic.
    """
    out = _safetensors_path(path)
    state = model.state_dict()
    drop = {k for group in _alias_groups(model) for k in group[1:]}  # keep the first name of each alias
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items() if k not in drop}
    meta = {
        "arch": getattr(model, "arch", None),
        "arch_kwargs": dict(getattr(model, "arch_kwargs", {}) or {}),
        "format_version": FORMAT_VERSION,
        **(metadata or {}),
    }
    try:
        meta_text = json.dumps(meta, indent=2, sort_keys=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{out}: cannot store metadata: {exc}") from None
    header = {"format": "pt", "p3m_format_version": str(FORMAT_VERSION)}
    if meta["arch"]:
        header["arch"] = str(meta["arch"])
    write_with(out, lambda tmp: save_file(tensors, tmp, metadata=header))
    write_bytes_atomic(sidecar_path(out), (meta_text + "\n").encode("utf-8"))
    return out


def load_model(
    path: str | os.PathLike[str],
    *,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    strict: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """Build the architecture and load the weights -> (model in eval mode on `device`, metadata).

    For p3m checkpoints the architecture comes from the JSON sidecar; for published `.pth` files pass
    it: `load_model("p3mnet_pretrained_on_p3m10k.pth", arch="p3m-r34")`. An explicit `arch` must agree
    with the sidecar when both exist.
    """
    p = Path(path)
    if p.suffix not in (".safetensors", ".pth", ".pt", ".tar", ".ckpt", ".bin") and not p.exists():
        p = _safetensors_path(p)
    meta_file = sidecar_path(p)
    metadata = read_sidecar(p)
    stored_arch = metadata.get("arch")
    if arch is None:
        if not stored_arch:
            raise CheckpointError(
                f"{p}: architecture unknown (no {meta_file.name} with an 'arch' entry); pass arch=, "
                "e.g. load_model(path, arch='p3m-r34')"
            )
        arch = str(stored_arch)
    elif stored_arch and stored_arch != arch:
        raise CheckpointError(f"{p}: metadata says arch {stored_arch!r} but {arch!r} was requested")
    given = (metadata.get("arch_kwargs") or {}) if arch_kwargs is None else arch_kwargs
    source = f"arch_kwargs in {meta_file.name}" if arch_kwargs is None else "arch_kwargs"
    try:
        kwargs = check_arch_kwargs(arch, given)
    except P3MError as exc:
        raise CheckpointError(f"{p}: {source}: {exc}") from None
    try:
        model = create(arch, **kwargs)
    except (ValueError, TypeError) as exc:  # a value the builder itself refuses (e.g. an odd width)
        raise CheckpointError(f"{p}: {source}: {arch}: {error_reason(exc)}") from None
    report = load_checkpoint(model, p, strict=strict)
    model.eval().to(device)
    merged = dict(metadata)
    merged.setdefault("arch", arch)
    merged.setdefault("arch_kwargs", kwargs)
    if report["extra"]:
        merged.setdefault("checkpoint_extra", report["extra"])
    return model, merged
