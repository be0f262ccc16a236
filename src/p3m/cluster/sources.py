"""Inputs a cluster job reads: local files, folders and globs (as every verb lists them, `p3m.io.find_inputs`),
and files on any file system pyarrow or fsspec knows (``s3://bucket/photos/``, ``gs://...``, ``file:///...``).

Remote folders are listed through pyarrow's file system interface (fsspec's where pyarrow has none); the bytes
are read by Ray Data (`p3m.cluster.runner`). A remote file is a `RemoteFile`: a pure POSIX path in that file
system (what Ray reports for it, e.g. ``bucket/photos/a.jpg``), so that the verbs plan its outputs (stems, clashes)
exactly as they plan local files'.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from p3m.errors import P3MError
from p3m.io import IMAGE_EXTENSIONS, find_inputs

__all__ = ["RemoteFile", "collect_inputs", "filesystem_of", "is_uri"]

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+://")


def is_uri(text: str) -> bool:
    """True for ``scheme://...`` (``s3://``, ``gs://``, ``file://``, ...)."""
    return bool(_SCHEME.match(text))


class RemoteFile(PurePosixPath):
    """A file on another file system: its path there (``bucket/dir/a.jpg``); ``uri`` names the file system."""

    uri: str = ""

    def resolve(self) -> RemoteFile:  # the planners compare resolved paths; a remote path is already absolute
        return self


def _filesystem(uri: str) -> tuple[Any, str]:
    """(pyarrow file system, path in it) for a URI: pyarrow's own, else fsspec's wrapped for pyarrow."""
    from pyarrow import fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (pafs.ArrowInvalid, ValueError):  # a scheme pyarrow does not know: fsspec's implementations
        import fsspec.core

        try:
            filesystem, path = fsspec.core.url_to_fs(uri)
        except (ImportError, ValueError) as exc:
            raise P3MError(f"{uri}: no file system for this address ({exc})") from None
        return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem)), path


def filesystem_of(sources: Sequence[Any]) -> Any:
    """The pyarrow file system the sources are on (None: local files); a job reads from one file system."""
    remote = [s for s in sources if isinstance(s, RemoteFile)]
    if not remote:
        return None
    if len(remote) != len(sources) or len({s.uri.split("://", 1)[0] for s in remote}) > 1:
        raise P3MError("--cluster reads the inputs of one job from one file system: local files or one URI scheme")
    return _filesystem(remote[0].uri)[0]


def _remote(uri: str, recursive: bool) -> tuple[list[RemoteFile], str | None]:
    from pyarrow import fs as pafs

    try:
        filesystem, base = _filesystem(uri)
        info = filesystem.get_file_info(base)
        if info.type == pafs.FileType.Directory:
            infos = filesystem.get_file_info(pafs.FileSelector(base, recursive=recursive))
            found = sorted(
                i.path
                for i in infos
                if i.type == pafs.FileType.File and PurePosixPath(i.path).suffix.lower() in IMAGE_EXTENSIONS
            )
            hint = "" if recursive else " (try --recursive)"
            problem = None if found else f"{uri}: folder contains no images{hint}"
        elif info.type == pafs.FileType.File:
            found, problem = [info.path], None
        else:
            found, problem = [], f"{uri}: no such file or folder"
    except OSError as exc:  # unreachable bucket, no credentials: the library's words
        return [], f"{uri}: cannot list ({exc})"
    files = []
    scheme = uri.split("://", 1)[0]
    for path in found:
        file = RemoteFile(path)
        file.uri = f"{scheme}://{path}"
        files.append(file)
    return files, problem


def collect_inputs(
    inputs: Iterable[str | Path], recursive: bool = False, *, verb: str
) -> tuple[list[Path], list[str], list[Path]]:
    """`p3m.io.find_inputs` for local inputs, plus URIs of other file systems (folders listed, globs not).

    Returns ``(paths, problems, left_out)`` like `find_inputs` (``left_out``: the verb's own outputs in local
    folders and globs); remote files come back as `RemoteFile` paths, which the planners use as they use local
    ones (stem, suffix, parent, resolve).
    """
    local: list[str | Path] = []
    paths: list[Any] = []
    problems: list[str] = []
    left_out: list[Path] = []
    for item in inputs:
        if is_uri(str(item)):
            files, problem = _remote(str(item), recursive)
            paths += files
            problems += [problem] if problem else []
        else:
            local.append(item)
    if local:
        found, issues, left_out = find_inputs(local, recursive, verb=verb)
        paths, problems = found + paths, issues + problems
    return paths, problems, left_out
