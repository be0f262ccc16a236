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
    if exc.filename2 is not None:
        where = f"{where} -> {os.fsdecode(exc.filename2)}"
    return f"{where}: {words}" if where else words
