"""The answers the server writes: the one JSON error shape, and header values that survive any text."""

from __future__ import annotations

import json
from urllib.parse import quote

from fastapi.responses import JSONResponse

__all__ = ["SECURITY_HEADERS", "error_response", "header_text", "raw_error"]

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
        b"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    ),
]


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error body every endpoint uses: ``{"error": {"code": ..., "message": ...}}``."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def raw_error(status: int, reason: str, code: str, message: str) -> bytes:
    """The same error as a whole HTTP/1.1 answer that closes the connection, for the connection layer, which
    answers before (or instead of) a request reaching the app."""
    body = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"cache-control", b"no-store"),
        *SECURITY_HEADERS,
    ]
    head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return f"HTTP/1.1 {status} {reason}\r\n".encode() + head + b"\r\n" + body


def header_text(text: str) -> str:
    """`text` as an HTTP header value: ASCII kept, anything else (a weights file named in Chinese, say)
    percent-encoded as UTF-8, since header values are Latin-1 on the wire and must not break the answer."""
    return text if text.isascii() and text.isprintable() else quote(text, safe=" !#$&'()*+,/:;=?@[]~<>{}|^`\"%")
