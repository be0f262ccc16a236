"""Image I/O used by every p3m command.

Reading always returns RGB ``uint8`` (or ``uint8`` masks), with EXIF orientation applied, and refuses bad files with a
one-line :class:`p3m.errors.ImageError` that names the file. The pixel limit is checked from the header, before any
pixel is decoded, so decompression bombs never allocate.

Writing is atomic (temporary file in the destination folder, then ``os.replace``) and strips all metadata: images are
re-encoded from bare pixel arrays, so no EXIF, GPS, XMP, ICC profile, comment or text chunk survives.

Conventions:

* RGBA/LA/palette-with-transparency inputs are, by default, **composited over white** (``alpha="composite"``: what an
  image viewer shows); ``alpha="drop"`` keeps the colour channels as stored (what the published P3M code does with
  ``PIL.Image.convert("RGB")``).
* 16-bit images are scaled to 8 bits by rounding ``v / 257``; 32-bit float images are taken as [0, 1] when their
  maximum is at most 1, else clipped to [0, 255].
"""

from __future__ import annotations

import csv
import errno
import io as _io
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from p3m.atomic import PathLike, commit_set, discard, stage_bytes, write_bytes_atomic
from p3m.choices import OUTPUT_KINDS
from p3m.errors import ImageError, P3MError, os_error_message

#: Extensions treated as images when scanning folders.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})

#: Default pixel limit (64 megapixels); larger images are refused before decoding.
DEFAULT_MAX_PIXELS = 64_000_000

# We enforce our own limit from the header; PIL's bomb check would fire at a different threshold.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False

_WRITE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}


def _name(source: PathLike | bytes, name: str | None) -> str:
    if name is not None:
        return name
    return "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)


def _open(source: PathLike | bytes, name: str, max_pixels: int | None) -> Image.Image:
    """Open lazily (header only) and check the pixel limit before any decoding."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageError(f"{name}: empty data (0 bytes), not an image", "empty")
        fp: _io.BytesIO | Path = _io.BytesIO(data)
    else:
        fp = Path(source)
        if not fp.exists():
            raise ImageError(f"{name}: {missing_reason(fp)}", "missing")
        if fp.is_dir():
            raise ImageError(f"{name}: is a folder, not an image file", "missing")
        if fp.stat().st_size == 0:
            raise ImageError(f"{name}: empty file (0 bytes), not an image", "empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(fp)
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a recognised image file", "not_image") from None
    except (OSError, ValueError, SyntaxError) as exc:  # the system's words, not "[Errno 13] ...: 'path'"
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ImageError(f"{name}: cannot read image ({reason})") from None
    try:
        _check_size(img.size, name, max_pixels)
    except ImageError:
        img.close()
        raise
    return img


def _check_size(size: tuple[int, int], name: str, max_pixels: int | None) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: invalid image size {width}x{height}")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"{name}: image is {width}x{height} = {width * height / 1e6:.1f} megapixels, over the limit of "
            f"{max_pixels / 1e6:.1f} megapixels",
            "too_large",
        )


def _decode(img: Image.Image, name: str) -> Image.Image:
    """Decode pixels and apply EXIF orientation; truncated data is an error."""
    try:
        img.load()
        # exif_transpose also drops the orientation tag, so the result is upright with no rotation pending.
        img = ImageOps.exif_transpose(img) or img
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        msg = str(exc)
        if "truncated" in msg.lower():
            raise ImageError(f"{name}: image data is truncated (file incomplete or corrupt)", "truncated") from None
        raise ImageError(f"{name}: cannot decode image ({msg})") from None
    return img


def scale_16bit(values: np.ndarray) -> np.ndarray:
    """16-bit intensities (0..65535) -> uint8 by rounding v / 257 (65535 -> 255, exactly)."""
    return np.clip(np.rint(np.asarray(values).astype(np.float64) / 257.0), 0, 255).astype(np.uint8)


def _to_uint8_array(img: Image.Image) -> np.ndarray:
    """Any PIL image (modes I;16, I, F, 1, L, P, CMYK, ...) -> uint8 array, HxW or HxWxC."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img)
        # 'I' can hold 16-bit PNG data (values up to 65535); scale 16-bit ranges to 8 bits.
        if mode.startswith("I;16") or arr.max(initial=0) > 255:
            return scale_16bit(arr)
        return np.clip(arr, 0, 255).astype(np.uint8)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if arr.size and np.nanmax(arr) <= 1.0:
            arr = arr * 255.0
        return np.clip(np.rint(np.nan_to_num(arr)), 0, 255).astype(np.uint8)
    if mode == "1":
        return np.asarray(img.convert("L"), dtype=np.uint8)
    if mode in ("L", "RGB", "RGBA", "LA"):
        return np.asarray(img, dtype=np.uint8)
    if mode == "P":
        has_alpha = "transparency" in img.info or (img.palette is not None and img.palette.mode == "RGBA")
        return np.asarray(img.convert("RGBA" if has_alpha else "RGB"), dtype=np.uint8)
    if mode in ("RGBa", "La", "PA"):
        return np.asarray(img.convert("RGBA"), dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)  # CMYK, YCbCr, LAB, HSV


def channels_to_rgb(arr: np.ndarray, alpha: str = "composite") -> np.ndarray:
    """uint8 HxW (grey), HxWx1, HxWx2 (grey + alpha), HxWx3 or HxWx4 (RGBA) -> HxWx3 RGB uint8.

    Grey is repeated; an alpha channel is composited over white (``alpha="composite"``) or dropped (``"drop"``).
    """
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    channels = arr.shape[2]
    if channels == 2:  # LA
        arr = np.concatenate([np.repeat(arr[:, :, :1], 3, axis=2), arr[:, :, 1:]], axis=2)
        channels = 4
    if channels == 4:
        if alpha == "drop":
            return np.ascontiguousarray(arr[:, :, :3])
        a = arr[:, :, 3:4].astype(np.float32) / 255.0
        out = arr[:, :, :3].astype(np.float32) * a + 255.0 * (1.0 - a)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr[:, :, :3])


def read_image(
    source: PathLike | bytes,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    alpha: str = "composite",
    name: str | None = None,
) -> np.ndarray:
    """Read an image file (or encoded bytes) as an HxWx3 RGB uint8 array, EXIF orientation applied.

    ``alpha``: ``"composite"`` (over white, default) or ``"drop"`` for images with transparency.
    Raises :class:`ImageError` naming the file for empty, non-image, truncated or over-limit inputs.
    """
    label = _name(source, name)
    img = _open(source, label, max_pixels)
    try:
        return pil_to_rgb(img, alpha=alpha, name=label, max_pixels=max_pixels)
    finally:
        img.close()


def pil_to_rgb(
    img: Image.Image,
    *,
    alpha: str = "composite",
    name: str = "<PIL image>",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """A PIL image of any mode -> HxWx3 RGB uint8 by the rules of `read_image` (EXIF orientation, 16-bit / 257,
    alpha composited over white or dropped, the pixel limit checked before its pixels are decoded). Undecodable
    pixels raise ImageError naming `name`."""
    if alpha not in ("composite", "drop"):
        raise ValueError(f"alpha must be 'composite' or 'drop', not {alpha!r}")
    _check_size(img.size, name, max_pixels)
    return channels_to_rgb(_to_uint8_array(_decode(img, name)), alpha)


def read_mask(
    source: PathLike | bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str | None = None
) -> np.ndarray:
    """Read a matte, trimap or face mask as HxW uint8: channel 0 of multi-channel files, 16-bit scaled to 8."""
    label = _name(source, name)
    img = _open(source, label, max_pixels)
    try:
        decoded = _decode(img, label)
        if decoded.mode == "P":  # palette indices are not intensities
            decoded = decoded.convert("RGB")
        arr = _to_uint8_array(decoded)
    finally:
        img.close()
    return np.ascontiguousarray(arr[:, :, 0]) if arr.ndim == 3 else arr


def image_size(source: PathLike, *, max_pixels: int | None = None) -> tuple[int, int]:
    """(height, width) from the header alone, without decoding; EXIF rotation by 90/270 degrees swaps them."""
    label = str(source)
    img = _open(source, label, max_pixels)
    try:
        w, h = img.size
        try:
            orientation = img.getexif().get(0x0112, 1)
        except Exception:  # malformed EXIF: the pixels still decode upright-as-stored
            orientation = 1
    finally:
        img.close()
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def _pixels(array: np.ndarray) -> np.ndarray:
    """The uint8 pixels of an image to write: HxW, HxWx3 or HxWx4, C-contiguous (bool -> 0/255; HxWx1 -> HxW)."""
    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        raise ValueError(f"write_image expects uint8 pixels, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4)):
        return np.ascontiguousarray(arr)
    raise ValueError(f"write_image expects HxW, HxWx3 or HxWx4 arrays, got shape {arr.shape}")


def _encode_png(pixels: np.ndarray) -> bytes:
    """PNG of HxW / HxWx3 / HxWx4 uint8 pixels (no metadata chunks) by libpng through OpenCV, zlib level 1 with the
    Up filter on every row: on the 2-core CPU dev machine a 1080x1920 RGBA cutout takes 0.08 s instead of PIL's
    0.47 s at level 6 (adaptive filters); cutouts come out 2-3 % larger, mattes about a third
    (benchmarks/RESULTS.md). OpenCV also lets other threads run while it encodes."""
    import cv2  # loaded by the verbs that write images, not by every import of p3m.io

    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR if pixels.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    ok, data = cv2.imencode(".png", pixels, params)
    if not ok:
        raise ValueError(f"PNG encoding failed for an array of shape {pixels.shape}")
    return data.tobytes()


def encode_image(array: np.ndarray, fmt: str = "png", *, quality: int = 95) -> bytes:
    """Encode pixels (HxW gray, HxWx3 RGB, HxWx4 straight RGBA; uint8) to bytes with no metadata."""
    ext = fmt.lower() if fmt.startswith(".") else "." + fmt.lower()
    if ext not in _WRITE_FORMATS:
        raise ValueError(f"unsupported output format {fmt!r}; use one of {sorted(_WRITE_FORMATS)}")
    pil_format = _WRITE_FORMATS[ext]
    pixels = _pixels(array)
    if pil_format == "JPEG" and pixels.ndim == 3 and pixels.shape[2] == 4:
        raise ValueError("JPEG cannot store an alpha channel; write RGBA images as PNG or WebP")
    if pil_format == "PNG":
        return _encode_png(pixels)
    buf = _io.BytesIO()
    kwargs: dict = {}
    if pil_format == "JPEG":
        kwargs = {"quality": quality, "subsampling": 0 if quality >= 90 else 2}
    elif pil_format == "WEBP":
        kwargs = {"quality": quality}
    Image.fromarray(pixels).save(buf, format=pil_format, **kwargs)
    return buf.getvalue()


def write_csv(path: PathLike, fieldnames: Sequence[str], rows: Iterable[dict]) -> Path:
    """Write dict rows as CSV (header first, "\n" line ends), atomically.

    A report is rewritten on every run, but only over an earlier report with the same columns: any other file at
    ``path`` (an image, a CSV of something else) is refused with a P3MError and left as it is.
    """
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    header = buf.getvalue()
    writer.writerows(rows)
    dest = Path(path)
    if dest.is_file():
        try:
            with open(dest, "rb") as fh:
                first = fh.read(len(header.encode("utf-8")) + 1)
        except OSError:
            first = b""
        if not first.startswith(header.encode("utf-8")):
            raise P3MError(
                f"{dest}: exists and is not an earlier report with these columns; refusing to replace it "
                "(choose another path, or remove it)"
            )
    # file names that are not valid UTF-8 (surrogate escapes in Python) are written as the bytes they are
    return write_bytes_atomic(dest, buf.getvalue().encode("utf-8", "surrogateescape"))


def write_image(path: PathLike, array: np.ndarray, *, quality: int = 95) -> Path:
    """Write pixels atomically with no metadata; the format follows the extension (.png, .jpg, .webp, .bmp, .tif)."""
    dest = Path(path)
    return write_bytes_atomic(dest, _encode_for(dest, array, quality))


def _encode_for(dest: Path, array: np.ndarray, quality: int) -> bytes:
    ext = dest.suffix.lower()
    if ext not in _WRITE_FORMATS:
        raise ImageError(f"{dest}: unsupported output extension {ext!r}; use one of {sorted(_WRITE_FORMATS)}", "write")
    try:
        return encode_image(array, ext, quality=quality)
    except ValueError as exc:
        raise ImageError(f"{dest}: {exc}", "write") from None


def write_image_set(items: Iterable[tuple[PathLike, np.ndarray]], *, quality: int = 95) -> list[Path]:
    """Write several images as one set: all of them or none.

    Every image is encoded first (a bad array or extension writes nothing), then each goes to a temporary file
    next to its destination (flushed to disk), and only then are they renamed into place by
    `p3m.atomic.commit_set`. On any failure the temporary files and the files of the set already renamed are
    removed, so a failed set leaves none of its outputs behind (with no metadata, like :func:`write_image`); after
    a kill or a power loss mid-set, `p3m.atomic.is_whole` is False for at least one of its files.
    """
    encoded: list[tuple[Path, bytes]] = []
    for path, array in items:
        dest = Path(path)
        encoded.append((dest, _encode_for(dest, array, quality)))
    temps: list[tuple[str, Path]] = []
    try:
        for dest, data in encoded:
            temps.append((stage_bytes(dest, data), dest))
    except BaseException:
        for tmp, _ in temps:
            discard(tmp)
        raise
    return commit_set(temps)


# TIFF stores its pixel layout as tags; these describe the raster, not the photo or its author.
_TIFF_STRUCTURE_TAGS = frozenset(
    {
        254,
        255,
        256,
        257,
        258,
        259,
        262,
        266,
        273,
        274,
        277,
        278,
        279,
        282,
        283,
        284,
        296,
        317,
        322,
        323,
        324,
        325,
        338,
        339,
    }
)


def has_metadata(path: PathLike) -> list[str]:
    """Names of the metadata blocks a file carries (EXIF, XMP, ICC, comments, text chunks); empty when clean."""
    found: list[str] = []
    with Image.open(path) as img:
        info = dict(img.info)
        if set(img.getexif()) - _TIFF_STRUCTURE_TAGS:
            found.append("exif")
        for key in ("exif", "xmp", "XML:com.adobe.xmp", "icc_profile", "comment", "photoshop", "iptc"):
            if key in info and info[key] and key not in found:
                found.append(key)
        if img.format == "PNG":
            text = getattr(img, "text", {}) or {}
            found.extend(f"png-text:{k}" for k in text)
        applist = getattr(img, "applist", [])
        found.extend(f"jpeg-{marker}" for marker, _ in applist if marker not in ("APP0",))
    return sorted(set(found))


def matte_output_name(stem: str, kind: str, composite_ext: str = ".png") -> str:
    """The file name `p3m matte` gives the output ``kind`` of an input named ``stem``: ``<stem>_<kind>.png``
    (the composite may be ``.jpg``)."""
    return f"{stem}_{kind}{composite_ext if kind == 'composite' else '.png'}"


#: The report `p3m anonymize` writes into its output folder: a folder holding one is an anonymize output folder.
ANONYMIZE_REPORT = "anonymize_report.csv"
# the sub-folders `p3m anonymize` writes into its output folder: masks, and the images of --dataset
_ANONYMIZE_MASKS = ("facemask", "mask", "trimap")
_ANONYMIZE_IMAGES = "blurred_image"


def is_matte_output(path: PathLike) -> bool:
    """True for a file named like an output of `p3m matte` (`matte_output_name`: ``<stem>_alpha.png``, ...)."""
    p = Path(path)
    stem, _, kind = p.stem.rpartition("_")
    return bool(stem) and kind in OUTPUT_KINDS and p.name == matte_output_name(stem, kind, p.suffix)


def _anonymize_subfolder(path: Path) -> str | None:
    """The name of the anonymize output sub-folder ``path`` is in ("" for the output folder itself), or None."""
    folder = path.parent
    if (folder / ANONYMIZE_REPORT).is_file():
        return ""
    if folder.name in (*_ANONYMIZE_MASKS, _ANONYMIZE_IMAGES) and (folder.parent / ANONYMIZE_REPORT).is_file():
        return folder.name
    return None


def is_own_output(path: PathLike, verb: str) -> bool:
    """True when ``p3m <verb>`` must not take ``path``, found in a folder or glob, as an input: its own outputs.

    ``"matte"``: the outputs of `p3m matte`, and the masks of `p3m anonymize` (its ``facemask/``, ``mask/`` and
    ``trimap/`` beside an ``anonymize_report.csv``; anonymised photos are inputs: matting them is the point of
    P3M). ``"anonymize"``: everything in an output folder of `p3m anonymize` (the outputs of `p3m matte` are photos
    with faces, so they are anonymised like any other).
    """
    p = Path(path)
    if verb == "matte":
        return is_matte_output(p) or _anonymize_subfolder(p) in _ANONYMIZE_MASKS
    if verb == "anonymize":
        return _anonymize_subfolder(p) is not None
    raise ValueError(f"verb must be 'matte' or 'anonymize', not {verb!r}")


def missing_reason(path: PathLike) -> str:
    """Why ``path`` is not a file, in words: "no such file or folder", "symlink loop", "broken symlink (to ...)",
    "permission denied", "is a folder, not a file", ..."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT and os.path.islink(path):
            return f"broken symlink (to {os.readlink(path)}, which does not exist)"
        return os_error_message(OSError(exc.errno, exc.strerror))
    return "is a folder, not a file" if os.path.isdir(path) else "not a regular file"


def _glob(text: str, recursive: bool) -> list[Path]:
    """The files a glob pattern matches. ``**`` (with ``recursive``) does not descend into symlinked folders, so
    a symlink loop cannot make the listing endless."""
    parts = Path(text).parts
    fixed = next((i for i, part in enumerate(parts) if _is_glob(part)), len(parts))
    anchor = Path(*parts[:fixed]) if fixed else Path()
    pattern = "/".join(parts[fixed:])
    if not recursive:
        pattern = pattern.replace("**", "*")
    hidden_too = parts[-1].startswith(".")  # as in a shell: `*` does not match names that start with a dot
    try:
        return sorted(q for q in anchor.glob(pattern) if q.is_file() and (hidden_too or not q.name.startswith(".")))
    except (OSError, ValueError):  # an unreadable folder on the way, an invalid pattern
        return []


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def collect_images(
    inputs: Iterable[PathLike], recursive: bool = False, *, recursive_hint: str | None = "--recursive"
) -> tuple[list[Path], list[str]]:
    """Expand files, folders and glob patterns to image files.

    Returns ``(paths, problems)``: ``problems`` lists inputs that matched nothing (and links in folders that lead
    nowhere), one message each. Files named explicitly are kept whatever their extension (decoding decides);
    folders and globs keep image extensions only. Order: inputs in the given order, each folder's files sorted;
    duplicates removed. ``recursive_hint``: the caller's option that descends into sub-folders, suggested for a
    folder without images (None: no such option). See `find_inputs` for verbs that write beside their inputs.
    """
    paths, problems, _ = _collect(inputs, recursive, recursive_hint, verb=None)
    return paths, problems


def find_inputs(
    inputs: Iterable[PathLike], recursive: bool = False, *, verb: str, recursive_hint: str | None = "--recursive"
) -> tuple[list[Path], list[str], list[Path]]:
    """`collect_images` for a verb that writes images (``"matte"``, ``"anonymize"``): ``(paths, problems, left_out)``.

    Folders and globs leave out the verb's own outputs (`is_own_output`), so that a rerun into the input folder
    does not take them for inputs; ``left_out`` lists them, for the caller to say so. A file named explicitly is
    an input whatever its name.
    """
    return _collect(inputs, recursive, recursive_hint, verb=verb)


def _collect(
    inputs: Iterable[PathLike], recursive: bool, recursive_hint: str | None, *, verb: str | None
) -> tuple[list[Path], list[str], list[Path]]:
    seen: set[Path] = set()
    paths: list[Path] = []
    problems: list[str] = []
    left_out: list[Path] = []

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            paths.append(p)

    def add_found(found: list[Path]) -> None:
        for q in found:
            if verb is not None and is_own_output(q, verb):
                left_out.append(q)
            else:
                add(q)

    for item in inputs:
        text = os.fsdecode(item)
        p = Path(text)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            try:
                listed = sorted(q for q in p.glob(pattern) if q.suffix.lower() in IMAGE_EXTENSIONS)
            except OSError as exc:
                problems.append(f"{text}: cannot list the folder ({missing_reason(exc.filename or text)})")
                continue
            found = [q for q in listed if q.is_file()]
            problems += [f"{q}: {missing_reason(q)}" for q in listed if q.is_symlink() and not q.exists()]
            if not found:
                hint = f" (try {recursive_hint})" if recursive_hint and not recursive else ""
                problems.append(f"{text}: folder contains no images{hint}")
            add_found(found)
        elif p.is_file():
            add(p)
        elif _is_glob(text):
            found = [q for q in _glob(text, recursive) if q.suffix.lower() in IMAGE_EXTENSIONS]
            if not found:
                problems.append(f"{text}: pattern matches no images")
            add_found(found)
        else:
            problems.append(f"{text}: {missing_reason(p)}")
    return paths, problems, left_out
