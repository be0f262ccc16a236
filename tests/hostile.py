"""Hostile and odd input files for the probe tests (tests/test_probe.py): every kind of file a careful user or an
attacker could hand a verb, made here from nothing (no downloads, no shared data).

`make_inputs(folder)` writes them and returns ``{name: path}``; `IMAGE_LIKE` are the ones that look like images to a
folder listing (an image extension). `unreadable(path, monkeypatch)` makes a file unreadable: ``chmod 000``, and
where the tests run as root (who reads it anyway) the same refusal simulated at ``open``.
"""

from __future__ import annotations

import builtins
import io as pyio
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

#: a name that is not valid UTF-8 (bytes 0xff 0xfe), as Python shows it (surrogate escapes)
NON_UTF8 = os.fsdecode(b"bad-\xff\xfe-name.png")
#: a name with spaces, accents and an emoji
UNICODE = "a photo \u00e9t\u00e9 \U0001f642.png"


def _chunk(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with a tiny data stream (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def portrait(h: int = 96, w: int = 72, seed: int = 0) -> np.ndarray:
    """A drawn portrait-like RGB image: a head and shoulders of one colour on a flat background."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.integers(0, 256, 3)
    yy, xx = np.mgrid[:h, :w]
    head = ((yy - 0.35 * h) / (0.16 * h)) ** 2 + ((xx - 0.5 * w) / (0.16 * w)) ** 2 < 1
    body = (yy > 0.52 * h) & (np.abs(xx - 0.5 * w) < 0.35 * w)
    img[head | body] = rng.integers(0, 256, 3)
    return img


def _encoded(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = pyio.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def make_inputs(folder: Path) -> dict[str, Path]:
    """Write every odd input into ``folder`` -> {name: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = portrait()
    good_png = _encoded(Image.fromarray(rgb), "PNG")
    good_jpg = _encoded(Image.fromarray(rgb), "JPEG", quality=90)
    files: dict[str, bytes] = {
        "good.png": good_png,
        "empty.png": b"",
        "empty.jpg": b"",
        "text.png": b"this is not an image\n",
        "truncated.png": good_png[: len(good_png) // 2],
        "truncated.jpg": good_jpg[: len(good_jpg) // 2],
        "header_only.jpg": good_jpg[:200],
        "bomb.png": png_header_only(100_000, 100_000),
        "zero_size.png": png_header_only(0, 0),
        "one.png": _encoded(Image.fromarray(rgb[:1, :1]), "PNG"),
        "one.jpg": _encoded(Image.fromarray(rgb[:1, :1]), "JPEG"),
        "two.png": _encoded(Image.fromarray(rgb[:2, :2]), "PNG"),
        "strip_wide.png": _encoded(Image.fromarray(np.full((1, 3000, 3), 90, np.uint8)), "PNG"),
        "strip_tall.png": _encoded(Image.fromarray(np.full((3000, 2, 3), 90, np.uint8)), "PNG"),
        "gray16.png": cv2.imencode(".png", (rgb[:, :, 0].astype(np.uint16) * 257))[1].tobytes(),
        "rgb16.png": cv2.imencode(".png", rgb[:, :, ::-1].astype(np.uint16) * 257)[1].tobytes(),
        "cmyk.jpg": _encoded(Image.fromarray(rgb).convert("CMYK"), "JPEG"),
        "palette.png": _encoded(Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8), "PNG"),
        "palette_transparent.png": _encoded(
            Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4), "PNG", transparency=0
        ),
        "la.png": _encoded(Image.fromarray(rgb).convert("LA"), "PNG"),
        "rgba_clear.png": _encoded(Image.fromarray(np.zeros((40, 30, 4), np.uint8)), "PNG"),
        "bilevel.png": _encoded(Image.fromarray(rgb).convert("1"), "PNG"),
        "float.tif": _encoded(Image.fromarray(rgb[:, :, 0].astype(np.float32) / 255.0), "TIFF"),
        "int32.tif": _encoded(Image.fromarray(rgb[:, :, 0].astype(np.int32) * 1000), "TIFF"),
        "animated.png": _encoded(
            Image.fromarray(rgb), "PNG", save_all=True, append_images=[Image.fromarray(255 - rgb)]
        ),
        UNICODE: good_png,
        NON_UTF8: good_png,
    }
    out: dict[str, Path] = {}
    for name, data in files.items():
        path = folder / name
        path.write_bytes(data)
        out[name] = path
    i16 = Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 200)  # mode I;16
    i16.save(folder / "mode_i16.png")
    out["mode_i16.png"] = folder / "mode_i16.png"
    (folder / "folder.png").mkdir()
    out["folder.png"] = folder / "folder.png"
    os.symlink("loop_b.png", folder / "loop_a.png")
    os.symlink("loop_a.png", folder / "loop_b.png")
    out["loop_a.png"] = folder / "loop_a.png"
    os.symlink("nowhere.png", folder / "dangling.png")
    out["dangling.png"] = folder / "dangling.png"
    return out


def unreadable(path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make ``path`` unreadable: chmod 000; as root (permissions do not bind) ``open`` refuses it as the system
    would for anyone else (PermissionError 13)."""
    path.chmod(0)
    if os.geteuid() == 0:
        target = os.path.abspath(path)
        real_open, real_os_open = builtins.open, os.open

        def refuse(file, *args, **kwargs):
            if isinstance(file, (str, bytes, os.PathLike)) and os.path.abspath(os.fsdecode(file)) == target:
                raise PermissionError(13, "Permission denied", os.fsdecode(file))
            return real_open(file, *args, **kwargs)

        def refuse_os(file, *args, **kwargs):
            if isinstance(file, (str, bytes, os.PathLike)) and os.path.abspath(os.fsdecode(file)) == target:
                raise PermissionError(13, "Permission denied", os.fsdecode(file))
            return real_os_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", refuse)
        monkeypatch.setattr(os, "open", refuse_os)
    return path
