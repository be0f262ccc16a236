"""p3m.io: every bad input gives a one-line error naming the file; writes are atomic and metadata-free."""

from __future__ import annotations

import io as pyio
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from p3m import io
from p3m.errors import ImageError
from tests.paths import PORTRAITS


def _gradient(h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) % 256], axis=2).astype(np.uint8)


def _exif_with_gps(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"  # Make
    exif[0x0131] = "SecretSoftware"
    if orientation is not None:
        exif[0x0112] = orientation
    gps = {1: "N", 2: (51.0, 30.0, 0.0), 3: "W", 4: (0.0, 7.0, 0.0)}
    exif[0x8825] = gps
    return exif


# ---------------------------------------------------------------- reading: formats and modes


@pytest.mark.parametrize("ext,fmt", [(".png", "PNG"), (".bmp", "BMP"), (".tif", "TIFF"), (".webp", "WEBP")])
def test_lossless_formats_round_trip(tmp_path: Path, ext: str, fmt: str) -> None:
    arr = _gradient()
    path = tmp_path / f"img{ext}"
    save_kwargs = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(arr).save(path, format=fmt, **save_kwargs)
    out = io.read_image(path)
    assert out.dtype == np.uint8 and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


def test_jpeg_reads_close_to_source(tmp_path: Path) -> None:
    arr = _gradient()
    path = tmp_path / "img.jpg"
    Image.fromarray(arr).save(path, quality=98)
    out = io.read_image(path)
    assert out.shape == arr.shape and np.abs(out.astype(int) - arr).mean() < 3


def test_grayscale_becomes_rgb(tmp_path: Path) -> None:
    gray = _gradient()[:, :, 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    out = io.read_image(tmp_path / "g.png")
    assert out.shape == (*gray.shape, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_rgba_composite_over_white_and_drop(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red-ish colour
    rgba[..., 3] = 0
    rgba[0, 0, 3] = 255
    rgba[1, 1, 3] = 128
    Image.fromarray(rgba).save(tmp_path / "a.png")
    comp = io.read_image(tmp_path / "a.png")
    assert tuple(comp[0, 0]) == (200, 0, 0)  # opaque pixel keeps its colour
    assert tuple(comp[2, 2]) == (255, 255, 255)  # transparent becomes white
    np.testing.assert_allclose(comp[1, 1], [round(200 * 128 / 255 + 255 * 127 / 255), 127, 127], atol=1)
    dropped = io.read_image(tmp_path / "a.png", alpha="drop")
    assert tuple(dropped[2, 2]) == (200, 0, 0)


def test_16bit_grayscale_scaled(tmp_path: Path) -> None:
    arr16 = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    Image.fromarray(arr16).save(tmp_path / "d.png")
    out = io.read_image(tmp_path / "d.png")
    assert out[0, :, 0].tolist() == [0, 1, 255, 128]
    assert io.read_mask(tmp_path / "d.png")[0].tolist() == [0, 1, 255, 128]


def test_palette_image(tmp_path: Path) -> None:
    arr = _gradient()
    Image.fromarray(arr).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(tmp_path / "p.png")
    out = io.read_image(tmp_path / "p.png")
    assert out.shape == arr.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - arr).mean() < 20  # 16-colour quantisation


def test_read_mask_takes_first_channel(tmp_path: Path) -> None:
    rgb = np.zeros((3, 5, 3), np.uint8)
    rgb[..., 0] = 77
    rgb[..., 1] = 200
    Image.fromarray(rgb).save(tmp_path / "m.png")
    m = io.read_mask(tmp_path / "m.png")
    assert m.shape == (3, 5) and (m == 77).all()


def test_exif_orientation_applied(tmp_path: Path) -> None:
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white (landscape as stored)
    path = tmp_path / "rot.jpg"
    Image.fromarray(arr).save(path, exif=_exif_with_gps(orientation=6), quality=100)
    out = io.read_image(path)
    # Orientation 6 = rotate 90 degrees clockwise to display: portrait, white half on top.
    assert out.shape == (40, 20, 3)
    assert out[:15].mean() > 200 and out[25:].mean() < 50
    assert io.image_size(path) == (40, 20)


def test_real_portraits_load() -> None:
    if not PORTRAITS.exists():
        pytest.skip(f"shared test data not found at {PORTRAITS}")
    images = sorted((PORTRAITS / "image").glob("*.jpg"))
    assert len(images) == 12
    for path in images:
        img = io.read_image(path)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert min(img.shape[:2]) == 1080
        alpha = io.read_mask(PORTRAITS / "reference_alpha" / f"{path.stem}.png")
        assert alpha.shape == img.shape[:2]


# ---------------------------------------------------------------- reading: bad input


def _assert_one_line_error(excinfo: pytest.ExceptionInfo, path: Path, words: str) -> None:
    msg = str(excinfo.value)
    assert str(path) in msg, msg
    assert "\n" not in msg
    assert words in msg.lower(), msg


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError) as exc:
        io.read_image(path)
    _assert_one_line_error(exc, path, "empty")
    assert exc.value.reason == "empty"


def test_non_image_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n" * 10)
    with pytest.raises(ImageError) as exc:
        io.read_image(path)
    _assert_one_line_error(exc, path, "not a recognised image")


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as exc:
        io.read_image(tmp_path / "nope.jpg")
    _assert_one_line_error(exc, tmp_path / "nope.jpg", "no such file")
    with pytest.raises(ImageError) as exc:
        io.read_image(tmp_path)
    _assert_one_line_error(exc, tmp_path, "folder")


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_truncated_file(tmp_path: Path, ext: str) -> None:
    full = tmp_path / f"full{ext}"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(full)
    data = full.read_bytes()
    path = tmp_path / f"cut{ext}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as exc:
        io.read_image(path)
    msg = str(exc.value)
    assert str(path) in msg and "\n" not in msg
    assert "truncated" in msg.lower() or "cannot" in msg.lower()
    assert exc.value.reason in ("truncated", "corrupt")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size, with a tiny (invalid) data stream: a decompression bomb."""

    def chunk(tag: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def test_pixel_limit_refuses_before_allocating(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(100_000, 100_000))  # 10 gigapixels: decoding would need 10 GB
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageError) as exc:
        io.read_image(path)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _assert_one_line_error(exc, path, "over the limit")
    assert exc.value.reason == "too_large"
    assert after - before < 200_000  # KiB: nothing like the 10 GB the header asks for


def test_pixel_limit_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    Image.fromarray(_gradient(48, 64)).save(path)
    with pytest.raises(ImageError):
        io.read_image(path, max_pixels=1000)
    assert io.read_image(path, max_pixels=48 * 64).shape == (48, 64, 3)
    assert io.read_image(path, max_pixels=None).shape == (48, 64, 3)


def test_bytes_input_and_errors() -> None:
    buf = pyio.BytesIO()
    Image.fromarray(_gradient()).save(buf, format="PNG")
    assert io.read_image(buf.getvalue()).shape == (48, 64, 3)
    with pytest.raises(ImageError, match=r"upload\.png: empty"):
        io.read_image(b"", name="upload.png")
    with pytest.raises(ImageError, match="not a recognised image"):
        io.read_image(b"GIF89a-garbage-not-really", name="x")


# ---------------------------------------------------------------- writing


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".tif"])
def test_write_strips_metadata(tmp_path: Path, ext: str) -> None:
    src = tmp_path / f"src{ext}"
    kwargs = {"exif": _exif_with_gps(orientation=1).tobytes()}
    Image.fromarray(_gradient()).save(src, **kwargs)
    assert "exif" in io.has_metadata(src)  # the source really carries EXIF + GPS
    img = io.read_image(src)
    out = io.write_image(tmp_path / f"out{ext}", img)
    assert io.has_metadata(out) == []
    with Image.open(out) as back:
        exif = back.getexif()
        assert not {0x8825, 0x010F, 0x0131, 0x0112} & set(exif)  # GPS, Make, Software, Orientation
    assert b"SecretSoftware" not in out.read_bytes() and b"CameraMaker" not in out.read_bytes()


def test_write_png_text_chunks_not_copied(tmp_path: Path) -> None:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", "secret")
    src = tmp_path / "src.png"
    Image.fromarray(_gradient()).save(src, pnginfo=info)
    assert io.has_metadata(src) == ["png-text:Comment"]
    out = io.write_image(tmp_path / "out.png", io.read_image(src))
    assert io.has_metadata(out) == []


def test_write_modes_round_trip(tmp_path: Path) -> None:
    gray = _gradient()[:, :, 0]
    rgba = np.dstack([_gradient(), np.full(gray.shape, 100, np.uint8)])
    np.testing.assert_array_equal(io.read_mask(io.write_image(tmp_path / "g.png", gray)), gray)
    with Image.open(io.write_image(tmp_path / "a.png", rgba)) as back:
        assert back.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(back), rgba)  # straight alpha kept as given


def test_write_rejects_bad_arrays_and_formats(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="unsupported output extension"):
        io.write_image(tmp_path / "x.gifx", _gradient())
    with pytest.raises(ImageError, match="uint8"):
        io.write_image(tmp_path / "x.png", _gradient().astype(np.float32))
    with pytest.raises(ImageError, match="alpha"):
        io.write_image(tmp_path / "x.jpg", np.zeros((4, 4, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary left


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "out.png"
    io.write_image(dest, _gradient())
    original = dest.read_bytes()

    def failing_replace(src, dst):  # simulate a crash between writing the temporary and the rename
        raise OSError("disk went away")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        io.write_image(dest, np.zeros((8, 8, 3), np.uint8))
    assert dest.read_bytes() == original  # destination untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # temporary cleaned up


def test_written_files_get_normal_permissions(tmp_path: Path) -> None:
    out = io.write_image(tmp_path / "perm.png", _gradient())
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_creates_parent_folders(tmp_path: Path) -> None:
    out = io.write_image(tmp_path / "a" / "b" / "c.png", _gradient())
    assert out.exists()


# ---------------------------------------------------------------- listing


def test_collect_images(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("b.jpg", "a.png", "notes.txt", "sub/c.webp"):
        (tmp_path / name).write_bytes(b"x")
    paths, problems = io.collect_images([tmp_path])
    assert [p.name for p in paths] == ["a.png", "b.jpg"] and problems == []
    paths, _ = io.collect_images([tmp_path], recursive=True)
    assert [p.name for p in paths] == ["a.png", "b.jpg", "c.webp"]
    paths, _ = io.collect_images([str(tmp_path / "*.jpg"), tmp_path / "b.jpg"])
    assert [p.name for p in paths] == ["b.jpg"]  # duplicates removed
    paths, problems = io.collect_images([tmp_path / "missing.jpg", str(tmp_path / "*.tif"), tmp_path / "a.png"])
    assert [p.name for p in paths] == ["a.png"]
    assert len(problems) == 2 and "missing.jpg" in problems[0] and "*.tif" in problems[1]


def test_write_image_set_is_all_or_nothing(tmp_path):
    from p3m.io import write_image_set

    gray = np.full((8, 8), 7, np.uint8)
    rgba = np.zeros((8, 8, 4), np.uint8)
    # an output that cannot be encoded (RGBA as JPEG): nothing of the set is written
    with pytest.raises(ImageError, match="JPEG cannot store an alpha channel"):
        write_image_set([(tmp_path / "a_alpha.png", gray), (tmp_path / "a_rgba.jpg", rgba)])
    assert list(tmp_path.iterdir()) == []
    # an output that cannot be put in place (a folder in the way): the ones already placed are removed
    (tmp_path / "b_rgba.png").mkdir()
    with pytest.raises(OSError) as info:
        write_image_set([(tmp_path / "b_alpha.png", gray), (tmp_path / "b_rgba.png", rgba)])
    assert info.value.filename == str(tmp_path / "b_rgba.png")  # the destination, not the temporary file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b_rgba.png"]  # the folder only, no temp files
    written = write_image_set([(tmp_path / "c" / "x.png", gray), (tmp_path / "c" / "y.png", rgba)])
    assert [p.name for p in written] == ["x.png", "y.png"]
    np.testing.assert_array_equal(io.read_mask(tmp_path / "c" / "x.png"), gray)
