"""The resume state of a training run (``resume.pt``): RNG states, and reading the file back with every field checked.

``resume.pt`` is a ``torch.save`` dict, read with the weights-only unpickler (never runs pickled code):

- ``model``: the network's state dict (tensors); ``optimizer``: its state dict (``state`` and ``param_groups``);
  ``scaler``: the GradScaler's state dict (empty when loss scaling is off);
- ``step``: optimizer steps done (a whole number >= 0); ``epoch``: ``step // steps_per_epoch``;
- ``best``: ``"<metric>_<split>" -> value`` of the best validation so far;
- ``rng``: the torch, NumPy and Python RNG states (`rng_state`), plus CUDA's when it was used;
- ``config``: the resolved training config, for reference.

`load_resume` checks every field and raises one line naming each problem (never a KeyError or a ValueError from
deep inside torch); what only the model can check (tensor shapes) is checked when the state is loaded into it.
"""

from __future__ import annotations

import pickle
import random
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from p3m.errors import P3MError
from p3m.models.checkpoint import error_reason, is_tensor_dict, unpickler_reason

__all__ = ["REQUIRED_KEYS", "RESUME_FILE", "load_resume", "resume_problems", "rng_state", "set_rng_state"]

RESUME_FILE = "resume.pt"
REQUIRED_KEYS = ("model", "optimizer", "scaler", "step", "rng")
_MT_WORDS = 624  # words of the Mersenne Twister state (NumPy and Python)


def rng_state() -> dict[str, Any]:
    """RNG states as tensors / plain lists, loadable with torch.load(weights_only=True)."""
    np_state = cast(tuple[Any, ...], np.random.get_state(legacy=True))
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the states `rng_state` returned (checked by `resume_problems`)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------- checks


def _is_whole(value: Any, low: int = 0, high: int | None = None) -> bool:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    return ok and (high is None or value <= high)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _byte_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1


def _optimizer_problems(opt: Any) -> list[str]:
    if not isinstance(opt, Mapping) or not isinstance(opt.get("state"), Mapping):
        return ["'optimizer' must be an optimizer state dict (with 'state' and 'param_groups')"]
    groups = opt.get("param_groups")
    if not isinstance(groups, list) or not groups:
        return ["'optimizer.param_groups' must be a non-empty list"]
    for i, group in enumerate(groups):
        if not isinstance(group, Mapping) or not isinstance(group.get("params"), list):
            return [f"'optimizer.param_groups[{i}]' must be a mapping with a 'params' list"]
    return []


def _rng_problems(rng: Any) -> list[str]:
    if not isinstance(rng, Mapping):
        return ["'rng' must be a mapping of RNG states"]
    problems = []
    if not _byte_tensor(rng.get("torch")):
        problems.append("'rng.torch' must be a 1-D uint8 tensor")
    n = rng.get("numpy")
    if not isinstance(n, Mapping):
        problems.append("'rng.numpy' must be a mapping")
    else:
        keys = n.get("keys")
        if not (isinstance(keys, torch.Tensor) and keys.dtype == torch.int64 and keys.shape == (_MT_WORDS,)):
            problems.append(f"'rng.numpy.keys' must be {_MT_WORDS} int64 values")
        elif int(keys.min()) < 0 or int(keys.max()) >= 2**32:
            problems.append("'rng.numpy.keys' must lie in [0, 2**32)")
        if not _is_whole(n.get("pos"), 0, _MT_WORDS):
            problems.append(f"'rng.numpy.pos' must be a whole number in [0, {_MT_WORDS}], got {n.get('pos')!r}")
        if n.get("has_gauss") not in (0, 1) or isinstance(n.get("has_gauss"), bool):
            problems.append(f"'rng.numpy.has_gauss' must be 0 or 1, got {n.get('has_gauss')!r}")
        if not _is_number(n.get("cached_gaussian")):
            problems.append(f"'rng.numpy.cached_gaussian' must be a number, got {n.get('cached_gaussian')!r}")
    p = rng.get("python")
    if not isinstance(p, Mapping):
        problems.append("'rng.python' must be a mapping")
    else:
        words = p.get("state")
        if not _is_whole(p.get("version"), 1):
            problems.append(f"'rng.python.version' must be a whole number >= 1, got {p.get('version')!r}")
        if not (isinstance(words, list) and len(words) == _MT_WORDS + 1 and all(_is_whole(w) for w in words)):
            problems.append(f"'rng.python.state' must be a list of {_MT_WORDS + 1} whole numbers >= 0")
        if p.get("gauss") is not None and not _is_number(p.get("gauss")):
            problems.append(f"'rng.python.gauss' must be a number or None, got {p.get('gauss')!r}")
    cuda = rng.get("cuda")
    if cuda is not None and not (isinstance(cuda, list) and all(_byte_tensor(t) for t in cuda)):
        problems.append("'rng.cuda' must be a list of 1-D uint8 tensors")
    return problems


def resume_problems(state: Mapping[str, Any]) -> list[str]:
    """Every problem of a resume state's fields, one phrase each (empty when it can be restored)."""
    problems = []
    if not is_tensor_dict(state["model"]):
        problems.append("'model' is not a dict of tensors")
    problems += _optimizer_problems(state["optimizer"])
    scaler = state["scaler"]
    if not (isinstance(scaler, Mapping) and all(_is_number(v) or isinstance(v, torch.Tensor) for v in scaler.values())):
        problems.append("'scaler' must be a GradScaler state dict (a mapping of numbers)")
    if not _is_whole(state["step"]):
        problems.append(f"'step' must be a whole number >= 0, got {state['step']!r}")
    if "epoch" in state and not _is_whole(state["epoch"]):
        problems.append(f"'epoch' must be a whole number >= 0, got {state['epoch']!r}")
    best = state.get("best")
    if best is not None and not (
        isinstance(best, Mapping) and all(isinstance(k, str) and _is_number(v) for k, v in best.items())
    ):
        problems.append("'best' must map '<metric>_<split>' names to numbers")
    problems += _rng_problems(state["rng"])
    if state.get("config") is not None and not isinstance(state["config"], Mapping):
        problems.append("'config' must be a mapping")
    return problems


def _read(path: Path) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = unpickler_reason(str(exc)).split(". Please use")[0].removeprefix("WeightsUnpickler error: ")
        if "global" in reason.lower():
            raise P3MError(
                f"{path}: refused to load: the file references Python objects other than tensors "
                f"({reason}); p3m reads resume states with the weights-only unpickler and never runs "
                "pickled code"
            ) from None
        raise P3MError(
            f"{path}: cannot load resume state: corrupt, truncated or not a PyTorch file ({reason})"
        ) from None
    except Exception as exc:
        raise P3MError(
            f"{path}: cannot load resume state: corrupt, truncated or not a PyTorch file ({error_reason(exc)})"
        ) from None


def load_resume(path: Path) -> dict[str, Any]:
    """``resume.pt`` read with the weights-only unpickler, every field checked; P3MError (one line) otherwise."""
    state = _read(path)
    if not isinstance(state, dict):
        raise P3MError(f"{path}: not a p3m resume state (a {type(state).__name__}, not a dict)")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        if is_tensor_dict(state) or is_tensor_dict(state.get("state_dict")):
            raise P3MError(
                f"{path}: not a p3m resume state but model weights only (no optimizer, step or RNG "
                "state); to start from these weights, use --set model.pretrained=PATH without --resume"
            )
        raise P3MError(f"{path}: not a p3m resume state: missing {', '.join(missing)}")
    problems = resume_problems(state)
    if problems:
        raise P3MError(f"{path}: invalid resume state: " + "; ".join(problems))
    return state
