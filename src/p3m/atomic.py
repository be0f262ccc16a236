"""Atomic file writes: the one temporary-file + fsync + rename writer that every p3m module uses.

A reader (or a crash, or a power loss after the rename) sees either the old file or the whole new one, never a
torn file. The temporary file sits in the destination's folder (a rename is atomic only within one file system),
is named ``.<name>.<random>.tmp`` so that cleaners can recognise p3m's own leftovers, and gets the mode a plain
``open()`` would give (0666 minus the umask) instead of mkstemp's 0600.

No PIL, no torch: callers that produce files through a library (``torch.save``, ``safetensors.save_file``,
``matplotlib.savefig``) pass a function that writes to the temporary path (`write_with`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "TMP_SUFFIX",
    "PathLike",
    "commit",
    "copy_file_atomic",
    "fsync_dir",
    "is_temporary",
    "stage_bytes",
    "staged",
    "write_bytes_atomic",
    "write_with",
]

PathLike = str | os.PathLike[str]
TMP_SUFFIX = ".tmp"


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = _read_umask()


def is_temporary(path: PathLike) -> bool:
    """True for a name that `staged` gives its temporary files (``.<name>.<random>.tmp``)."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


def fsync_dir(folder: PathLike) -> None:
    """Flush a folder's entries (a rename inside it) to disk; a no-op where the system does not allow it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def staged(dest: PathLike) -> Iterator[str]:
    """A temporary file path beside ``dest`` (its folder is created); on leaving, the file is on disk.

    The body writes the file at the yielded path. On a normal exit the file is fsynced and given a plain mode; on
    an exception it is removed. The caller then moves it into place with `commit` (or removes it).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=TMP_SUFFIX, dir=dest.parent)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as fh:  # on disk before any rename: a crash never leaves a torn file in place
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def commit(tmp: PathLike, dest: PathLike, *, sync_dir: bool = False) -> Path:
    """Rename a staged file into place; a failure removes it and names ``dest`` (not the temporary file).

    ``sync_dir``: also flush the folder, so that the rename itself survives a power loss (training state).
    """
    dest = Path(dest)
    try:
        os.replace(tmp, dest)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(dest)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(dest.parent)
    return dest


def write_with(dest: PathLike, write: Callable[[str], object], *, sync_dir: bool = False) -> Path:
    """Atomically create ``dest`` with ``write(temporary_path)`` (e.g. ``lambda p: torch.save(obj, p)``)."""
    with staged(dest) as tmp:
        write(tmp)
    return commit(tmp, dest, sync_dir=sync_dir)


def stage_bytes(dest: PathLike, data: bytes) -> str:
    """Write ``data`` to a staged temporary file beside ``dest`` and return its path (for sets of files that
    are renamed into place together, see `p3m.io.write_image_set`)."""
    with staged(dest) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return tmp


def write_bytes_atomic(path: PathLike, data: bytes, *, sync_dir: bool = False) -> Path:
    """Write bytes to ``path`` atomically: temporary file in the same folder, fsync, then rename."""
    return commit(stage_bytes(path, data), path, sync_dir=sync_dir)


def copy_file_atomic(src: PathLike, dst: PathLike) -> Path:
    """Copy a file atomically (streamed, fsynced, renamed into place), e.g. a checkpoint into the model folder."""

    def copy(tmp: str) -> None:
        with open(src, "rb") as inp, open(tmp, "wb") as out:
            shutil.copyfileobj(inp, out, 1 << 20)

    return write_with(dst, copy)
