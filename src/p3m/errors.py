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
