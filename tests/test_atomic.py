"""p3m.atomic: the one temporary-file + fsync + rename writer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from p3m import atomic


def _plain_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def test_copy_file_atomic(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 << 20))  # several copy chunks
    out = atomic.copy_file_atomic(src, tmp_path / "sub" / "dst.bin")
    assert out.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in out.parent.iterdir()) == ["dst.bin"]
    assert out.stat().st_mode & 0o777 == _plain_mode()


def test_write_with_a_library_writer_gets_plain_mode_and_replaces(tmp_path: Path) -> None:
    dest = tmp_path / "state.bin"
    dest.write_bytes(b"old")
    atomic.write_with(dest, lambda tmp: Path(tmp).write_bytes(b"new"), sync_dir=True)
    assert dest.read_bytes() == b"new"
    assert dest.stat().st_mode & 0o777 == _plain_mode()  # not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    dest = tmp_path / "state.bin"
    dest.write_bytes(b"old")

    def half_then_fail(tmp: str) -> None:
        Path(tmp).write_bytes(b"ha")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic.write_with(dest, half_then_fail)
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]


def test_a_failed_rename_names_the_destination_and_cleans_up(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("a folder with content is in the way")
    with pytest.raises(OSError) as err:
        atomic.write_bytes_atomic(tmp_path / "taken", b"data")
    assert err.value.filename == str(tmp_path / "taken")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_temporary_names_are_recognisable(tmp_path: Path) -> None:
    with atomic.staged(tmp_path / "a.png") as tmp:
        assert atomic.is_temporary(tmp)
        Path(tmp).write_bytes(b"x")
    assert not atomic.is_temporary(tmp_path / "a.png")
    assert not atomic.is_temporary(tmp_path / ".hidden.png")
    os.unlink(tmp)
