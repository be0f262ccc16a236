"""The in-memory multipart/form-data parser of the server: a body never touches the disk.

Starlette's form parser spools files over 1 MB to a temporary file; this one keeps every part in memory, with
caps on the number of parts and on the size of the text fields. Built on python-multipart's streaming parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from p3m.errors import ApiError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = ["MAX_FIELD_BYTES", "MAX_PARTS", "Part", "multipart_boundary", "parse_multipart"]

MAX_PARTS = 16
#: Longest text field (an option); the image field has no cap of its own beyond the body's.
MAX_FIELD_BYTES = 1024


@dataclass
class Part:
    """One multipart/form-data part, held in memory."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def multipart_boundary(content_type: str) -> bytes:
    """The boundary of a multipart/form-data Content-Type; ApiError 415 for any other type, 400 without one."""
    from python_multipart.multipart import parse_options_header

    try:
        ctype, params = parse_options_header(content_type or "")
    except ValueError:  # characters beyond Latin-1 (only a direct caller can pass them: HTTP headers are bytes)
        ctype, params = b"", {}
    if ctype != b"multipart/form-data":
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the image as multipart/form-data with the file in the field 'image' (e.g. curl -F image=@photo.jpg)",
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "bad_multipart", "multipart/form-data without a boundary parameter")
    return boundary


@dataclass
class _RawPart:
    headers: dict[str, bytes] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)


class _Collector:
    """python-multipart's callbacks, collecting raw parts."""

    def __init__(self) -> None:
        self.parts: list[_RawPart] = []
        self.field, self.value = b"", b""
        self.ended = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_part_data": self.on_part_data,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise ApiError(400, "bad_multipart", f"too many form fields (at most {MAX_PARTS})")
        self.parts.append(_RawPart())

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def on_header_end(self) -> None:
        self.parts[-1].headers[self.field.decode("latin-1").lower()] = self.value
        self.field, self.value = b"", b""

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self.parts[-1].chunks.append(bytes(data[start:end]))

    def on_end(self) -> None:
        self.ended = True


def _field(raw: _RawPart) -> Part:
    from python_multipart.multipart import parse_options_header

    _, params = parse_options_header(raw.headers.get("content-disposition", b""))
    name = params.get(b"name")
    if name is None:
        raise ApiError(400, "bad_multipart", "a multipart part has no name")
    filename = params.get(b"filename")
    ptype = raw.headers.get("content-type")
    return Part(
        name.decode("utf-8", "replace"),
        filename.decode("utf-8", "replace") if filename is not None else None,
        ptype.decode("latin-1") if ptype else None,
        b"".join(raw.chunks),
    )


def parse_multipart(body: bytes | bytearray, content_type: str) -> dict[str, Part]:
    """Parse a multipart/form-data body entirely in memory -> {field name: Part}.

    Raises ApiError 415 for another content type and 400 for a malformed body (a boundary the parser refuses,
    such as one over 256 characters, included), a part without a name, duplicate fields or more than MAX_PARTS
    parts.
    """
    from python_multipart.multipart import MultipartParser

    boundary = multipart_boundary(content_type)
    collector = _Collector()
    try:  # the parser's errors are ValueErrors of various kinds, from its constructor too
        parser = MultipartParser(boundary, collector.callbacks())
        parser.write(body)  # type: ignore[arg-type]  # a bytearray parses as bytes do, without a copy
        parser.finalize()
    except ApiError:
        raise
    except Exception as exc:
        raise ApiError(400, "bad_multipart", f"malformed multipart body ({_one_line(exc)})") from None
    if not collector.ended:
        raise ApiError(400, "bad_multipart", "malformed multipart body (incomplete: no closing boundary)")
    fields: dict[str, Part] = {}
    for raw in collector.parts:
        part = _field(raw)
        if part.name in fields:
            raise ApiError(400, "bad_multipart", f"field {part.name!r} given more than once")
        fields[part.name] = part
    return fields


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
