"""Errors the toolkit reports to users as one clear line (no traceback)."""


class P3MError(Exception):
    """Base class: the CLI prints `str(exc)` and exits non-zero."""


class ImageError(P3MError, ValueError):
    """An image file cannot be read or written; the message names the file.

    ``reason`` says why, for callers that map errors to codes (the HTTP API): ``"missing"``, ``"empty"``,
    ``"not_image"``, ``"truncated"``, ``"corrupt"``, ``"too_large"`` or ``"write"``.
    """

    def __init__(self, message: str, reason: str = "corrupt") -> None:
        super().__init__(message)
        self.reason = reason


class DatasetError(P3MError):
    """A dataset root is missing pieces or inconsistent; the message lists every problem."""


class CheckpointError(P3MError):
    """A checkpoint cannot be loaded; the message says why (missing/unexpected keys, unsafe pickle...)."""


class ConfigError(P3MError, ValueError):
    """A training configuration is invalid; the message lists every problem."""


class UnknownModelError(P3MError, ValueError):
    """The requested architecture name is not registered."""


class ModelArgumentError(P3MError, ValueError):
    """Construction arguments (`arch_kwargs`) the architecture does not take, of the wrong type or out of range."""


class ChoiceError(P3MError, ValueError):
    """A name the user typed (strategy, precision, backend, ...) is not one of its choices (`p3m.choices`)."""


class DeviceError(P3MError):
    """The requested device cannot be used (never silently replaced by another one)."""


class BenchmarkConfigError(P3MError, ValueError):
    """The benchmark configuration is invalid; the message lists every problem."""


class MethodError(P3MError, ValueError):
    """A method cannot run on an input (the message names the method)."""


class ApiError(Exception):
    """An answer other than 200: HTTP status, a stable machine-readable code and a one-line message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def os_error_message(exc: OSError) -> str:
    """An OSError as ``"<path>: <what happened>"`` in words, without Python's ``[Errno N]`` prefix.

    ``FileExistsError(17, "File exists", "out")`` -> ``"out: already exists and is not a folder"`` when the
    path is a file where a folder is needed, else ``"out: already exists"``.
    """
    import errno
    import os

    code = exc.errno
    words = exc.strerror or (str(exc.args[0]) if exc.args else "") or type(exc).__name__
    where = os.fsdecode(exc.filename) if exc.filename is not None else ""
    if code == errno.EEXIST:
        words = "already exists" + (" and is not a folder" if where and os.path.isfile(where) else "")
    elif code == errno.ENOTDIR:
        words = "not a folder (a file is in the way)"
    elif code == errno.EISDIR:
        words = "is a folder, not a file"
    elif code == errno.ENOENT:
        words = "no such file or folder"
    elif code == errno.ELOOP:
        words = "symlink loop"
    if exc.filename2 is not None:
        where = f"{where} -> {os.fsdecode(exc.filename2)}"
    return f"{where}: {words}" if where else words


def item_error_message(exc: BaseException, item: object = None) -> str:
    """The one-line message of a failed item in a batch report: `os_error_message` for an OSError, else the
    exception's text, line breaks folded into spaces; prefixed with ``item`` (e.g. the input's path) when given
    and the message does not name it already."""
    text = (os_error_message(exc) if isinstance(exc, OSError) else str(exc)).replace("\n", " ")
    return text if item is None or str(item) in text else f"{item}: {text}"
