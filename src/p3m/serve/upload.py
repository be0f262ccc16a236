"""Receiving a request's form: the body read with a size cap and a deadline that grows with the bytes received.

A body must keep up with ``upload_grace_s + received / min_upload_rate`` seconds and arrive within
``body_timeout_s`` in all: an upload that stalls is answered 408 within about ``upload_grace_s`` seconds,
while a slow but steady one goes on. The body is held in memory and parsed there (p3m.serve.multipart).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request

from p3m.errors import ApiError
from p3m.serve.multipart import Part, multipart_boundary, parse_multipart
from p3m.serve.settings import ServeSettings

__all__ = ["BodyDeadline", "receive_form"]


@dataclass(frozen=True)
class BodyDeadline:
    """Seconds a body may have taken when `received` bytes have arrived: grace + received / rate, capped."""

    grace_s: float
    rate_bytes_s: float
    total_s: float

    @classmethod
    def of(cls, settings: ServeSettings) -> BodyDeadline:
        return cls(settings.upload_grace_s, settings.min_upload_rate_kib_s * 1024, settings.body_timeout_s)

    def allowed(self, received: int) -> float:
        return min(self.total_s, self.grace_s + received / self.rate_bytes_s)

    def describe(self) -> str:
        return (
            f"at least {self.rate_bytes_s / 1024:g} KiB/s after the first {self.grace_s:g} s, "
            f"at most {self.total_s:g} s in all"
        )


async def receive_form(request: Request, settings: ServeSettings) -> dict[str, Part]:
    """The request's multipart form, with its ``image`` field; errors are ApiErrors (400, 408, 413, 415, 422)."""
    limit = settings.max_upload_bytes
    too_large = ApiError(413, "upload_too_large", f"upload is larger than the limit of {settings.max_upload_mb:g} MB")
    empty = ApiError(400, "empty_body", "empty request body: send the photo in the multipart field 'image'")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", "invalid Content-Length header") from None
        if size > limit:
            raise too_large
        if size == 0:
            raise empty
    content_type = request.headers.get("content-type", "")
    multipart_boundary(content_type)  # 415 / 400 before reading anything
    body = await _receive_body(request, limit, too_large, BodyDeadline.of(settings))
    if not body:
        raise empty
    fields = parse_multipart(body, content_type)
    del body
    if "image" not in fields:
        raise ApiError(422, "missing_image", "no field 'image' in the form; send the photo as image=@file")
    return fields


async def _receive_body(request: Request, limit: int, too_large: ApiError, deadline: BodyDeadline) -> bytearray:
    loop = asyncio.get_running_loop()
    start = loop.time()
    body = bytearray()
    chunks = request.stream().__aiter__()
    while True:
        left = deadline.allowed(len(body)) - (loop.time() - start)
        try:
            if left <= 0:
                raise asyncio.TimeoutError
            chunk = await asyncio.wait_for(chunks.__anext__(), left)
        except StopAsyncIteration:
            return body
        except asyncio.TimeoutError:
            seconds = loop.time() - start
            raise ApiError(
                408,
                "body_timeout",
                f"the upload arrived too slowly ({len(body)} bytes in {seconds:.0f} s; {deadline.describe()})",
                {"Connection": "close"},  # the client is stalled or slow: no reason to keep its connection
            ) from None
        except ClientDisconnect:  # nobody is left to read the answer; not a server error either
            raise ApiError(400, "client_disconnected", "the client closed the connection during the upload") from None
        body.extend(chunk)
        if len(body) > limit:
            raise too_large
