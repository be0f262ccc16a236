"""The `p3m serve` web app: an HTTP API for matting and anonymisation, and a single static page.

Endpoints (all answers to bad input are JSON ``{"error": {"code": ..., "message": ...}}``):

- ``GET  /``              the web page (static files under ``/static``; nothing from other hosts)
- ``GET  /v1/health``     readiness, limits and job counts
- ``GET  /v1/models``     the loaded model and the models of the model folder
- ``POST /v1/matte``      multipart ``image`` -> PNG (alpha, straight RGBA cutout or composite)
- ``POST /v1/anonymize``  multipart ``image`` -> obfuscated image, or JSON with the face boxes and the image
- ``GET  /openapi.json``  the OpenAPI schema

Privacy: request bodies are read by this module with a size cap and parsed in memory; no upload is ever
written to disk (Starlette's form parser, which spools files over 1 MB to a temporary file, is not used)
or logged (options travel in form fields, never in the URL, and the access log drops query strings anyway).
Outputs are re-encoded from pixel arrays, so they carry no metadata.

Concurrency: one model instance serves every request. Jobs run in a pool of ``workers`` threads, off the
event loop; at most ``workers + queue`` jobs are admitted at a time. A request is counted as a job only once its
body has arrived, so slow uploads never hold a worker or queue slot; while every slot is taken, new requests get
503 with Retry-After at once, before their body is read. Uploads in progress are capped too (``upload_slots``,
``max(16, 4 x (workers + queue))``), so memory stays bounded by about ``(upload_slots + workers + queue) x max
upload``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import logging
import math
import socket
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from p3m.choices import COLOR_HELP, OBFUSCATION_METHODS
from p3m.choices import parse_color as parse_color_text
from p3m.errors import ApiError, CheckpointError, ImageError, P3MError
from p3m.serve.settings import STRATEGIES, ServeSettings

__all__ = [
    "ANONYMIZE_METHODS",
    "OUTPUTS",
    "AccessLogFilter",
    "Part",
    "bind_socket",
    "create_app",
    "make_server",
    "multipart_boundary",
    "parse_color",
    "parse_multipart",
    "serve",
]

logger = logging.getLogger("p3m.serve")

OUTPUTS = ("alpha", "rgba", "composite")
ANONYMIZE_METHODS = OBFUSCATION_METHODS
# The shared face detector runs at this floor; a request's threshold filters its faces (greedy NMS keeps the
# best-scoring box of each cluster, so filtering afterwards gives the same faces as detecting at that threshold).
MIN_FACE_THRESHOLD = 0.05
MAX_PARTS = 16
MAX_FIELD_BYTES = 1024
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
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error body every endpoint uses."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


# --------------------------------------------------------------------------------------------------- multipart


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

    ctype, params = parse_options_header(content_type or "")
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


def parse_multipart(body: bytes | bytearray, content_type: str) -> dict[str, Part]:
    """Parse a multipart/form-data body entirely in memory -> {field name: Part}.

    Raises ApiError 415 for another content type and 400 for a malformed body, a part without a name,
    duplicate fields or more than MAX_PARTS parts.
    """
    from python_multipart.multipart import MultipartParser, parse_options_header

    boundary = multipart_boundary(content_type)

    parts: list[dict[str, Any]] = []
    state: dict[str, Any] = {"field": b"", "value": b"", "ended": False}

    def on_part_begin() -> None:
        if len(parts) >= MAX_PARTS:
            raise ApiError(400, "bad_multipart", f"too many form fields (at most {MAX_PARTS})")
        parts.append({"headers": {}, "chunks": []})

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        parts[-1]["headers"][state["field"].decode("latin-1").lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1]["chunks"].append(bytes(data[start:end]))

    def on_end() -> None:
        state["ended"] = True

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_end": on_end,
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        parser.write(body)  # type: ignore[arg-type]  # a bytearray parses as bytes do, without a copy
        parser.finalize()
    except ApiError:
        raise
    except Exception as exc:  # the parser's errors are ValueErrors of various kinds
        raise ApiError(400, "bad_multipart", f"malformed multipart body ({exc})") from None
    if not state["ended"]:
        raise ApiError(400, "bad_multipart", "malformed multipart body (incomplete: no closing boundary)")

    fields: dict[str, Part] = {}
    for raw in parts:
        disposition = raw["headers"].get("content-disposition", b"")
        _, dparams = parse_options_header(disposition)
        name = dparams.get(b"name")
        if name is None:
            raise ApiError(400, "bad_multipart", "a multipart part has no name")
        key = name.decode("utf-8", "replace")
        if key in fields:
            raise ApiError(400, "bad_multipart", f"field {key!r} given more than once")
        filename = dparams.get(b"filename")
        ptype = raw["headers"].get("content-type")
        fields[key] = Part(
            key,
            filename.decode("utf-8", "replace") if filename is not None else None,
            ptype.decode("latin-1") if ptype else None,
            b"".join(raw["chunks"]),
        )
    return fields


# ------------------------------------------------------------------------------------------------------ options


def parse_color(text: str) -> tuple[int, int, int]:
    """'white' / '#RRGGBB' / '#RGB' / 'R,G,B' -> (r, g, b); ApiError 422 otherwise."""
    try:
        color = parse_color_text(text)
    except ValueError:
        color = None
    if color is None:
        raise ApiError(422, "invalid_option", f"background {text[:40]!r} is not a colour; use {COLOR_HELP}")
    return color


class _Form:
    """Text options of a multipart body, validated one by one."""

    def __init__(self, fields: dict[str, Part], allowed: set[str]) -> None:
        unknown = sorted(set(fields) - allowed - {"image"})
        if unknown:
            raise ApiError(
                422,
                "invalid_option",
                f"unknown field(s) {', '.join(unknown)}; allowed: image, {', '.join(sorted(allowed))}",
            )
        self.values: dict[str, str] = {}
        for key in allowed & set(fields):
            data = fields[key].data
            if len(data) > MAX_FIELD_BYTES:
                raise ApiError(422, "invalid_option", f"field {key!r} is too long")
            self.values[key] = data.decode("utf-8", "replace").strip()

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.values.get(key) or default
        value = value.lower()
        if value not in choices:
            raise ApiError(422, "invalid_option", f"{key} must be one of {', '.join(choices)}, got {value[:40]!r}")
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        text = self.values.get(key)
        if not text:
            return default
        try:
            value = float(text)
        except ValueError:
            raise ApiError(422, "invalid_option", f"{key} must be a number, got {text[:40]!r}") from None
        if not (low <= value <= high):  # also refuses NaN
            raise ApiError(422, "invalid_option", f"{key} must be in [{low}, {high}], got {text[:40]!r}")
        return value

    def flag(self, key: str) -> bool:
        text = (self.values.get(key) or "false").lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ApiError(422, "invalid_option", f"{key} must be true or false, got {text[:40]!r}")


def _image_error(exc: ImageError) -> ApiError:
    """Map the decoder's one-line errors to HTTP answers."""
    message = str(exc)
    if exc.reason == "too_large":
        return ApiError(413, "too_many_pixels", message)
    if exc.reason == "truncated":
        return ApiError(422, "truncated_image", message)
    return ApiError(422, "invalid_image", message)


# ---------------------------------------------------------------------------------------------------- job gate


class JobGate:
    """Bounded admission (running + waiting <= capacity) in front of a thread pool of `workers`.

    Counters are only touched from the event loop thread, so they need no lock.
    """

    def __init__(self, workers: int, queue: int, upload_slots: int | None = None) -> None:
        self.workers, self.queue = workers, queue
        self.capacity = workers + queue
        # bodies being received; they hold no job slot (a slow client must not lock the others out)
        self.upload_slots = upload_slots or max(16, 4 * self.capacity)
        self.uploading = 0
        self.admitted = 0
        self.running = 0
        self.completed = 0
        self.rejected = 0
        self.mean_seconds = 1.0  # running estimate of one job, for Retry-After
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="p3m-job")

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the jobs ahead, spread over the workers (1..120)."""
        rounds = math.ceil(max(1, self.admitted) / self.workers)
        return int(min(120, max(1, math.ceil(rounds * self.mean_seconds))))

    def _busy(self, what: str) -> ApiError:
        self.rejected += 1
        seconds = self.retry_after()
        return ApiError(
            503, "busy", f"the server is busy ({what}); retry in {seconds} s", {"Retry-After": str(seconds)}
        )

    def check(self) -> None:
        """503 at once when every job slot is taken (called before the body is read)."""
        if self.admitted >= self.capacity:
            raise self._busy(f"{self.workers} running, {self.queue} waiting")

    def begin_upload(self) -> None:
        if self.uploading >= self.upload_slots:
            raise self._busy(f"{self.uploading} uploads in progress")
        self.uploading += 1

    def end_upload(self) -> None:
        self.uploading -= 1

    def admit(self) -> None:
        """Take a job slot (called once the body has arrived)."""
        self.check()
        self.admitted += 1

    def release(self) -> None:
        self.admitted -= 1

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` in the pool, off the event loop."""
        loop = asyncio.get_running_loop()

        def timed() -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self.mean_seconds = 0.8 * self.mean_seconds + 0.2 * (time.perf_counter() - t0)

        self.running += 1
        try:
            return await loop.run_in_executor(self.executor, timed)
        finally:
            self.running -= 1
            self.completed += 1


# ------------------------------------------------------------------------------------------------- middleware


class SecurityHeaders:
    """Pure ASGI middleware: security headers on every answer, no-store on API answers and, on loopback binds,
    a Host header check (DNS rebinding) and an Origin check on POST (other sites' pages posting via the browser)."""

    def __init__(self, app: Any, *, check_host: bool) -> None:
        self.app = app
        self.check_host = check_host

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.check_host:
            headers = dict(scope.get("headers") or [])
            host = headers.get(b"host", b"").decode("latin-1")
            hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            origin = headers.get(b"origin")
            refusal = None
            if hostname and hostname.lower() not in LOOPBACK_HOSTS:
                refusal = error_response(
                    400, "invalid_host", "this server only answers requests addressed to localhost / 127.0.0.1"
                )
            elif scope["method"] == "POST" and origin is not None and urlsplit(origin.decode("latin-1")).netloc != host:
                # another web site's page posting through the visitor's browser (CSRF): not our page
                refusal = error_response(403, "cross_origin", "requests from other web pages are not accepted")
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        api = scope["path"].startswith("/v1/")

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(SECURITY_HEADERS)
                if api:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class AccessLogFilter(logging.Filter):
    """Drops the query string from uvicorn access-log lines (no request data reaches the log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


# ------------------------------------------------------------------------------------------------------- app


def _static_dir() -> Path:
    return Path(str(resources.files("p3m.serve") / "static"))


def header_text(text: str) -> str:
    """`text` as an HTTP header value: ASCII kept, anything else (a weights file named in Chinese, say)
    percent-encoded as UTF-8, since header values are Latin-1 on the wire and must not break the answer."""
    from urllib.parse import quote

    return text if text.isascii() and text.isprintable() else quote(text, safe=" !#$&'()*+,/:;=?@[]~<>{}|^`\"%")


def _load_matter(settings: ServeSettings) -> tuple[Any | None, str]:
    """The shared Matter, or (None, why) when no weights exist and none were named."""
    from p3m.infer import Matter

    try:
        with warnings.catch_warnings():  # a model warning is announced and shown on the page instead
            warnings.simplefilter("ignore")
            matter = Matter(
                model=settings.model,
                weights=settings.weights,
                device=settings.device,
                strategy=settings.strategy,
                precision=settings.precision,
                foreground_method=settings.foreground_method,
            )
    except CheckpointError as exc:
        if settings.weights is not None:
            raise  # an explicit --weights that cannot be loaded is a configuration error
        return None, str(exc)
    return matter, ""


_IMAGE_FORM_SCHEMA = {
    "image": {"type": "string", "format": "binary", "description": "the photo (JPEG, PNG, WebP, BMP, TIFF)"},
}


def _multipart_body(properties: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "required": ["image"], "properties": {**_IMAGE_FORM_SCHEMA, **properties}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


_ERROR_SCHEMA = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    "required": ["code", "message"],
                }
            },
        }
    }
}
_ERRORS = {
    400: {"description": "empty body or malformed multipart (`empty_body`, `bad_multipart`)", "content": _ERROR_SCHEMA},
    408: {"description": "the body did not arrive in time (`body_timeout`)", "content": _ERROR_SCHEMA},
    413: {
        "description": "upload or pixel count over the limit (`upload_too_large`, `too_many_pixels`)",
        "content": _ERROR_SCHEMA,
    },
    415: {"description": "not multipart/form-data (`unsupported_media_type`)", "content": _ERROR_SCHEMA},
    422: {
        "description": "not an image, truncated, bad option (`invalid_image`, `truncated_image`, "
        "`missing_image`, `invalid_option`)",
        "content": _ERROR_SCHEMA,
    },
    503: {"description": "busy (`busy`, with Retry-After) or no weights (`no_weights`)", "content": _ERROR_SCHEMA},
}


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """Build the app; loads the model once, or notes that there are no weights (then /v1/matte answers 503)."""
    from p3m import __version__
    from p3m.io import encode_image, read_image
    from p3m.privacy.detect import CenterFaceDetector

    settings = settings or ServeSettings()
    matter, no_weights_reason = _load_matter(settings)
    gate = JobGate(settings.workers, settings.queue)
    # one detector for all requests (its network loads on first use; calls are serialised by its lock)
    detector = CenterFaceDetector(MIN_FACE_THRESHOLD)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        gate.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="p3m",
        version=__version__,
        description="Privacy-preserving portrait matting: alpha mattes, cutouts and face anonymisation. "
        "Uploads are processed in memory only and never stored or logged.",
        docs_url=None,  # Swagger UI would load its assets from a CDN
        redoc_url=None,
        lifespan=lifespan,
    )
    app.add_middleware(SecurityHeaders, check_host=settings.is_loopback)
    app.state.settings = settings
    app.state.matter = matter
    app.state.no_weights_reason = no_weights_reason
    app.state.gate = gate

    # ------------------------------------------------------------------ errors
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        message = {
            404: f"no such page: {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}",
        }.get(exc.status_code, str(exc.detail))
        return error_response(
            exc.status_code, codes.get(exc.status_code, "http_error"), message, dict(exc.headers or {})
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", "invalid request")

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.error("internal error on %s: %s", request.url.path, type(exc).__name__, exc_info=exc)
        return error_response(500, "internal_error", f"internal error ({type(exc).__name__}); see the server log")

    # ------------------------------------------------------------------ body
    async def read_fields(request: Request) -> dict[str, Part]:
        """The request body, capped while it is read, parsed in memory."""
        limit = settings.max_upload_bytes
        too_large = ApiError(
            413, "upload_too_large", f"upload is larger than the limit of {settings.max_upload_mb:g} MB"
        )
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
        body = bytearray()

        async def collect() -> None:
            async for chunk in request.stream():
                body.extend(chunk)
                if len(body) > limit:
                    raise too_large

        try:
            await asyncio.wait_for(collect(), timeout=settings.body_timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(
                408, "body_timeout", f"the upload did not arrive within {settings.body_timeout_s:g} s"
            ) from None
        except ClientDisconnect:  # nobody is left to read the answer; not a server error either
            raise ApiError(400, "client_disconnected", "the client closed the connection during the upload") from None
        if not body:
            raise empty
        fields = parse_multipart(body, content_type)
        del body
        if "image" not in fields:
            raise ApiError(422, "missing_image", "no field 'image' in the form; send the photo as image=@file")
        return fields

    def decode(data: bytes) -> Any:
        try:
            return read_image(data, max_pixels=settings.max_pixels, name="image")
        except ImageError as exc:
            raise _image_error(exc) from None

    # ------------------------------------------------------------------ jobs (worker threads)
    def matte_job(data: bytes, output: str, background: tuple[int, int, int], strategy: str) -> tuple[bytes, dict]:
        rgb = decode(data)
        job = copy.copy(matter)  # shares the network (its lock serialises passes); strategy is per request
        job.strategy = strategy
        result = job.matte(rgb, foreground=output != "alpha")
        if output == "alpha":
            pixels = result.alpha_uint8()
        elif output == "rgba":
            pixels = result.cutout
        else:
            pixels = result.composite(background)
        t0 = time.perf_counter()
        png = encode_image(pixels, "png")
        seconds = dict(result.info["seconds"], encode=time.perf_counter() - t0)
        return png, {
            "width": rgb.shape[1],
            "height": rgb.shape[0],
            "seconds": seconds,
            "strategy": result.info["strategy"],
            "warning": result.info.get("warning", ""),
        }

    def anonymize_job(
        data: bytes, method: str, strength: float, threshold: float, mask_scale: float, fmt: str
    ) -> tuple[bytes, dict]:
        from p3m.privacy.anonymize import AnonymizeOptions, anonymize_image

        rgb = decode(data)
        faces = [f for f in detector.detect(rgb) if f.score >= threshold]
        options = AnonymizeOptions(method=method, strength=strength, mask_scale=mask_scale)
        result = anonymize_image(rgb, options=options, faces=faces)
        encoded = encode_image(result.image, fmt, quality=95)
        info = {
            "width": rgb.shape[1],
            "height": rgb.shape[0],
            "faces": [{"box": [round(v, 1) for v in f.box], "score": round(f.score, 4)} for f in faces],
            "private_pixels": int(result.private.sum()),
        }
        return encoded, info

    async def admitted(request: Request, work: Callable[[dict[str, Part]], Awaitable[Response]]) -> Response:
        gate.check()  # every job slot taken: 503 now, before the body is read
        gate.begin_upload()
        try:
            fields = await read_fields(request)
        finally:
            gate.end_upload()
        gate.admit()  # a job slot only once the body is here: slow uploads lock nobody out
        try:
            return await work(fields)
        finally:
            gate.release()

    # ------------------------------------------------------------------ routes
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(_static_dir() / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=_static_dir()), name="static")

    @app.get("/v1/health", summary="Readiness, limits and job counts")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "matting": {"ready": matter is not None, "message": no_weights_reason or "ready"},
            "anonymize": {"ready": True},
            "limits": {"max_upload_bytes": settings.max_upload_bytes, "max_pixels": settings.max_pixels},
            "jobs": {
                "workers": gate.workers,
                "queue": gate.queue,
                "admitted": gate.admitted,
                "running": gate.running,
                "completed": gate.completed,
                "rejected": gate.rejected,
                "uploading": gate.uploading,
            },
        }

    @app.get("/v1/models", summary="The loaded model and the model folder")
    async def models() -> dict[str, Any]:
        from p3m import model_store

        try:  # listing reads checkpoint headers: off the event loop
            entries = await asyncio.to_thread(model_store.list_models)
            available = [{"name": e.name, "arch": e.arch, "format": e.format, "origin": e.origin} for e in entries]
        except P3MError as exc:
            available, problem = [], str(exc)
        else:
            problem = ""
        loaded = None
        if matter is not None:
            loaded = {
                "name": matter.model_name,
                "arch": matter.arch,
                "weights": Path(matter.weights).name if matter.weights else None,
                "device": matter.device,
                "backend": matter.backend,
                "precision": matter.precision,
                "strategy": matter.strategy,
                "route": matter.route is not None,
                "warning": matter.model_warning,
            }
        return {
            "loaded": loaded,
            "message": no_weights_reason or "ready",
            "available": available,
            "model_folder_problem": problem,
            "strategies": list(STRATEGIES),
            "outputs": list(OUTPUTS),
            "anonymize_methods": list(ANONYMIZE_METHODS),
        }

    @app.post(
        "/v1/matte",
        summary="Alpha matte, cutout or composite of a portrait (PNG)",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}, "description": "the PNG (no metadata)"}, **_ERRORS},
        openapi_extra=_multipart_body(
            {
                "output": {
                    "type": "string",
                    "enum": list(OUTPUTS),
                    "default": "rgba",
                    "description": "alpha: 8-bit matte; rgba: straight RGBA cutout with decontaminated "
                    "colours; composite: the cutout over `background`",
                },
                "background": {
                    "type": "string",
                    "default": "white",
                    "description": "composite colour: a name, #RRGGBB or R,G,B",
                },
                "strategy": {"type": "string", "enum": list(STRATEGIES), "default": settings.strategy},
            }
        ),
    )
    async def matte(request: Request) -> Response:
        if matter is None:
            raise ApiError(503, "no_weights", no_weights_reason)

        async def work(fields: dict[str, Part]) -> Response:
            form = _Form(fields, {"output", "background", "strategy"})
            output = form.choice("output", OUTPUTS, "rgba")
            background = parse_color(form.values.get("background") or "white")
            strategy = form.choice("strategy", STRATEGIES, settings.strategy)
            png, info = await gate.run(matte_job, fields["image"].data, output, background, strategy)
            timing = ", ".join(f"{k}={v:.3f}" for k, v in info["seconds"].items())
            headers = {
                "Content-Disposition": f'inline; filename="{output}.png"',
                "X-P3M-Size": f"{info['width']}x{info['height']}",
                "X-P3M-Model": header_text(matter.model_name),
                "X-P3M-Strategy": info["strategy"],
                "X-P3M-Seconds": timing,
            }
            if info["warning"]:  # the model's (weights trained on drawn portraits) or this image's (no person)
                headers["X-P3M-Warning"] = header_text(info["warning"])
            return Response(png, media_type="image/png", headers=headers)

        return await admitted(request, work)

    @app.post(
        "/v1/anonymize",
        summary="Obfuscate the faces of a photo (image, or JSON with the face boxes)",
        response_class=Response,
        responses={
            200: {
                "content": {"image/png": {}, "image/jpeg": {}, "application/json": {}},
                "description": "the image (no metadata), or JSON when response=json",
            },
            **_ERRORS,
        },
        openapi_extra=_multipart_body(
            {
                "method": {"type": "string", "enum": list(ANONYMIZE_METHODS), "default": "blur"},
                "strength": {"type": "number", "default": 1.0, "minimum": 0.1, "maximum": 10},
                "threshold": {
                    "type": "number",
                    "default": settings.face_threshold,
                    "minimum": MIN_FACE_THRESHOLD,
                    "maximum": 0.95,
                    "description": "face detector score threshold",
                },
                "mask_scale": {
                    "type": "number",
                    "default": 1.1,
                    "minimum": 0.5,
                    "maximum": 3,
                    "description": "face ellipse size relative to the detected box",
                },
                "format": {"type": "string", "enum": ["png", "jpeg"], "default": "png"},
                "response": {
                    "type": "string",
                    "enum": ["image", "json"],
                    "default": "image",
                    "description": "json: {faces: [{box, score}], width, height, image: {content_type, base64}}",
                },
            }
        ),
    )
    async def anonymize(request: Request) -> Response:
        async def work(fields: dict[str, Part]) -> Response:
            form = _Form(fields, {"method", "strength", "threshold", "mask_scale", "format", "response"})
            method = form.choice("method", ANONYMIZE_METHODS, "blur")
            strength = form.number("strength", 1.0, 0.1, 10.0)
            threshold = form.number("threshold", settings.face_threshold, MIN_FACE_THRESHOLD, 0.95)
            mask_scale = form.number("mask_scale", 1.1, 0.5, 3.0)
            fmt = form.choice("format", ("png", "jpeg", "jpg"), "png").replace("jpeg", "jpg")
            answer = form.choice("response", ("image", "json"), "image")
            data, info = await gate.run(
                anonymize_job, fields["image"].data, method, strength, threshold, mask_scale, fmt
            )
            media_type = "image/png" if fmt == "png" else "image/jpeg"
            n_faces = len(info["faces"])
            if answer == "json":
                body = {
                    **info,
                    "method": method,
                    "warning": "" if n_faces else "no face found: the image is unchanged; check it by hand",
                    "image": {"content_type": media_type, "base64": base64.b64encode(data).decode("ascii")},
                }
                return JSONResponse(body)
            return Response(
                data,
                media_type=media_type,
                headers={
                    "Content-Disposition": f'inline; filename="anonymized.{fmt}"',
                    "X-P3M-Faces": str(n_faces),
                },
            )

        return await admitted(request, work)

    return app


# ------------------------------------------------------------------------------------------------------ serve


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 = a free port), so that the real address is known before serving."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise P3MError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise P3MError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.listen(128)
    return sock


def make_server(app: FastAPI, *, log_level: str = "info") -> Any:
    """A uvicorn.Server for the app: access log without query strings, no Server header, bounded connections."""
    import uvicorn

    capacity = app.state.settings.capacity
    # connections beyond this get uvicorn's own 503; far above what the job gate admits, so pages still load
    config = uvicorn.Config(
        app, log_level=log_level, limit_concurrency=max(64, 8 * capacity), server_header=False, timeout_keep_alive=5
    )
    access = logging.getLogger("uvicorn.access")  # configured by uvicorn.Config above
    if not any(isinstance(f, AccessLogFilter) for f in access.filters):
        access.addFilter(AccessLogFilter())
    return uvicorn.Server(config)


def serve(settings: ServeSettings, *, log_level: str = "info", announce: Callable[[str], None] = print) -> None:
    """Load the model, bind, announce the URL and serve until interrupted (Ctrl+C)."""
    app = create_app(settings)
    server = make_server(app, log_level=log_level)
    sock = bind_socket(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    matter = app.state.matter
    if matter is None:
        announce(f"p3m serve: warning: {app.state.no_weights_reason}")
        model = "none (/v1/matte answers 503 no_weights; anonymisation works)"
    else:
        arch = f", {matter.arch}" if matter.arch != matter.model_name else ""
        model = f"{matter.model_name} ({matter.device}{arch})"
        if matter.model_warning:
            announce(f"p3m serve: warning: {matter.model_warning}")
    if not settings.is_loopback:
        announce("p3m serve: warning: listening beyond this machine; anyone who can reach it can use it")
    announce(
        f"p3m serve: http://{shown}:{port}/  model: {model}; workers {settings.workers}, "
        f"queue {settings.queue}, max upload {settings.max_upload_mb:g} MB"
    )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl+C it handled; stopping is the expected way out
        announce("p3m serve: stopped")
    finally:
        sock.close()
