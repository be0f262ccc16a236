"""Atomic file writes: the one temporary-file + fsync + rename writer that every p3m module uses.

A reader (or a crash, or a power loss after the rename) sees either the old file or the whole new one, never a
torn file. The temporary file sits in the destination's folder (a rename is atomic only within one file system),
is named ``.<name>.<random>.tmp`` so that cleaners can recognise p3m's own leftovers, and gets the mode a plain
``open()`` would give (0666 minus the umask) instead of mkstemp's 0600.

No PIL, no torch: callers that produce files through a library (``torch.save``, ``safetensors.save_file``,
``matplotlib.savefig``) pass a function that writes to the temporary path (`write_with`).

Sets of files (the outputs of one image) are put in place by `commit_set`, which brackets the renames with a
*pending mark* per file (``.<name>.p3m-pending``): a file whose mark exists may belong to a set that a kill or a
power loss interrupted, so `is_whole` does not take it as done. Temporary files and marks are held under an
advisory lock (``flock``) while their writer lives, so `remove_orphans` removes only what a dead process left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # no advisory locks (Windows): leftovers are then told by their age
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "TMP_SUFFIX",
    "PathLike",
    "commit",
    "commit_set",
    "copy_file_atomic",
    "discard",
    "fsync_dir",
    "is_pending_mark",
    "is_temporary",
    "is_whole",
    "pending_mark",
    "remove_orphans",
    "stage_bytes",
    "staged",
    "write_bytes_atomic",
    "write_with",
]

PathLike = str | os.PathLike[str]
TMP_SUFFIX = ".tmp"
PENDING_SUFFIX = ".p3m-pending"
#: Where no advisory locks exist, a leftover older than this is taken for a dead writer's.
ORPHAN_AGE_S = 3600.0


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


def pending_mark(dest: PathLike) -> Path:
    """The mark that `commit_set` keeps beside ``dest`` while the set ``dest`` belongs to is being put in place."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}{PENDING_SUFFIX}")


def is_pending_mark(path: PathLike) -> bool:
    """True for a name that `pending_mark` gives."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(PENDING_SUFFIX) and len(name) > len(PENDING_SUFFIX) + 1


def is_whole(dest: PathLike) -> bool:
    """True when ``dest`` is a file that no interrupted `commit_set` left behind (it has no pending mark)."""
    return Path(dest).is_file() and not os.path.lexists(pending_mark(dest))


# fds that hold the advisory lock of a live temporary file or pending mark, by path: closed (the lock released)
# once the file is renamed into place or removed
_held: dict[str, int] = {}
_held_guard = threading.Lock()


def _hold(path: str, fd: int) -> bool:
    """Lock ``fd`` (the file at ``path``) for this process; False when the file was removed before we got it."""
    if fcntl is not None:
        # waits while a cleaner or another writer holds it; a file system without locks: written unlocked (then
        # cleaners never take it for a leftover)
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink == 0:  # a cleaner removed it before we locked it: the caller makes another
            os.close(fd)
            return False
    with _held_guard:
        _held[path] = fd
    return True


def _release(path: str) -> None:
    with _held_guard:
        fd = _held.pop(path, None)
    if fd is not None:
        os.close(fd)


def discard(tmp: PathLike) -> None:
    """Remove a staged temporary file that will not be committed (and release it)."""
    Path(tmp).unlink(missing_ok=True)
    _release(os.fspath(tmp))


def _new_temporary(dest: Path) -> str:
    while True:
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=TMP_SUFFIX, dir=dest.parent)
        except OSError as exc:  # read-only folder, disk full, ...: named by the file the user asked for
            raise OSError(exc.errno, exc.strerror, str(dest)) from None
        if _hold(tmp, fd):
            return tmp


def _take_mark(dest: Path) -> str:
    """Create (or take over, after an interrupted run) the pending mark of ``dest``, held under its lock."""
    mark = os.fspath(pending_mark(dest))
    while True:
        try:
            fd = os.open(mark, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(dest)) from None
        if _hold(mark, fd):
            return mark


def _unused(path: str, now: float) -> bool:
    """True when no live process holds ``path`` (then removed here, under its lock); False otherwise."""
    if fcntl is None:
        try:
            if now - os.stat(path).st_mtime < ORPHAN_AGE_S:
                return False
        except OSError:
            return False
        Path(path).unlink(missing_ok=True)
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # its writer is alive
        os.close(fd)
        return False
    try:
        Path(path).unlink(missing_ok=True)
    finally:
        os.close(fd)
    return True


def remove_orphans(folder: PathLike) -> list[Path]:
    """Remove what dead p3m writers left in ``folder`` (not its sub-folders) -> the files removed.

    That is: temporary files (`is_temporary`) that no running process is writing, and pending marks of files that
    do not exist (a mark beside an existing file is kept: it says that file's set is incomplete). A live writer's
    files are never touched: each holds an advisory lock on them (where the system has none, only leftovers older
    than `ORPHAN_AGE_S` go). A folder that does not exist or cannot be listed has nothing to remove.
    """
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
        except OSError:
            continue
        leftover = is_temporary(entry.name) or (
            is_pending_mark(entry.name)
            and not os.path.lexists(os.path.join(os.path.dirname(entry.path), entry.name[1 : -len(PENDING_SUFFIX)]))
        )
        if leftover and _unused(entry.path, now):
            removed.append(Path(entry.path))
    return removed


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
    tmp = _new_temporary(dest)
    try:
        yield tmp
        with open(tmp, "rb") as fh:  # on disk before any rename: a crash never leaves a torn file in place
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
    except OSError as exc:
        discard(tmp)
        if exc.filename in (None, tmp):  # disk full, I/O error: named by the file the user asked for
            raise OSError(exc.errno, exc.strerror, str(dest)) from None
        raise
    except BaseException:
        discard(tmp)
        raise


def commit(tmp: PathLike, dest: PathLike, *, sync_dir: bool = False) -> Path:
    """Rename a staged file into place; a failure removes it and names ``dest`` (not the temporary file).

    ``sync_dir``: also flush the folder, so that the rename itself survives a power loss (training state).
    """
    dest = Path(dest)
    try:
        os.replace(tmp, dest)
    except OSError as exc:
        discard(tmp)
        raise OSError(exc.errno, exc.strerror, str(dest)) from None
    except BaseException:
        discard(tmp)
        raise
    _release(os.fspath(tmp))
    if sync_dir:
        fsync_dir(dest.parent)
    return dest


def commit_set(files: Sequence[tuple[PathLike, PathLike]]) -> list[Path]:
    """Rename staged files ``(temporary, destination)`` into place as one set -> the destinations.

    Several renames are not one atomic step, so they are bracketed: a pending mark per destination is created and
    flushed to disk (with the temporary files' names) before the first rename, and removed only once every rename
    is flushed too. After a kill or a power loss at any moment, each file of the set is either the old one or the
    whole new one, and if the set may mix them (or lack some), at least one of its files has a pending mark or is
    missing: `is_whole` is False for it. On an error here, the temporary files and the destinations already
    renamed are removed (the set is left out, not half-written) and the error is raised.
    """
    pairs = [(os.fspath(tmp), Path(dest)) for tmp, dest in files]
    folders = list(dict.fromkeys(dest.parent for _, dest in pairs))
    marks: list[str] = []
    placed: list[Path] = []
    try:
        # sorted: two runs writing the same set take its marks in one order, so neither waits for the other forever
        for dest in sorted({dest for _, dest in pairs}):
            marks.append(_take_mark(dest))
        for folder in folders:  # the temporary files and the marks are on disk before any rename
            fsync_dir(folder)
        for tmp, dest in pairs:
            commit(tmp, dest)
            placed.append(dest)
        for folder in folders:  # every rename is on disk before any mark goes
            fsync_dir(folder)
    except BaseException:
        for tmp, _ in pairs:
            discard(tmp)
        for dest in placed:
            dest.unlink(missing_ok=True)
        for mark in marks:
            discard(mark)
        raise
    for mark in marks:
        discard(mark)
    return [dest for _, dest in pairs]


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
