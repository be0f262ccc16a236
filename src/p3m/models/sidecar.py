"""The JSON sidecar of a weights file (`<name>.json` beside `<name>.safetensors`) and the one-line reasons of
unreadable weights files: the torch-free part of `p3m.models.checkpoint`, so the model folder (`p3m.models.store`,
`p3m models`) is listed without importing torch. This module is the sole owner of the sidecar: `sidecar_path` says
where it is, `read_sidecar` reads and validates it; nothing else opens it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from p3m.errors import CheckpointError

__all__ = ["FORMAT_VERSION", "error_reason", "read_json", "read_sidecar", "sidecar_path", "unpickler_reason"]

FORMAT_VERSION = 1


def error_reason(exc: BaseException) -> str:
    """First sentence of an exception message, for one-line errors."""
    text = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else ""
    text = text.split(". ")[0].rstrip(".")
    if not text or isinstance(exc, KeyError):
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text


def read_json(path: Path, what: str, fix: str = "") -> Any:
    """The JSON document in ``path``; CheckpointError ``"<path>: unreadable <what> (<reason>)<fix>"`` in one line when
    it cannot be read, decoded or parsed (or is nested too deeply to parse)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        if isinstance(exc, RecursionError):
            reason = "nested too deeply"
        raise CheckpointError(f"{path}: unreadable {what} ({reason}){fix}") from None


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of a weights file: same folder and stem, suffix `.json`."""
    return Path(path).with_suffix(".json")


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON sidecar of the weights file `path`, validated -> a dict; {} when there is none.

    Raises CheckpointError (one line, naming the sidecar) when it is unreadable, not a JSON object (or nested too
    deeply to read), written by a newer p3m (`format_version` above `FORMAT_VERSION`), or names its architecture
    with anything but a string. `arch_kwargs` is checked against the architecture when a model is built.
    """
    meta = sidecar_path(path)
    if not meta.is_file():
        return {}
    data = read_json(meta, "checkpoint metadata")
    if not isinstance(data, dict):
        raise CheckpointError(f"{meta}: checkpoint metadata must be a JSON object")
    version = data.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or not 0 < version <= FORMAT_VERSION:
        raise CheckpointError(
            f"{meta}: format_version {version!r} is not one this p3m reads (1..{FORMAT_VERSION}); "
            "a newer p3m wrote it, or it was edited"
        )
    arch = data.get("arch")
    if arch is not None and not isinstance(arch, str):
        raise CheckpointError(f"{meta}: 'arch' must be an architecture name (a string), got {json.dumps(arch)[:60]}")
    return data


def unpickler_reason(text: str) -> str:
    """The specific line of torch's weights-only error (the rest is boilerplate)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if "GLOBAL" in ln or ln.startswith(("Unsupported", "Trying to load")):
            return ln
    return lines[0] if lines else "unreadable pickle"
