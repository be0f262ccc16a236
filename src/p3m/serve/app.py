"""The `p3m serve` web app: an HTTP API for matting and anonymisation, and a single static page.

Endpoints (all answers to bad input are JSON ``{"error": {"code": ..., "message": ...}}``):

- ``GET  /``              the web page (static files under ``/static``; nothing from other hosts)
- ``GET  /v1/health``     readiness, limits and job counts
- ``GET  /v1/models``     the loaded model and the models of the model folder
- ``POST /v1/matte``      multipart ``image`` -> PNG (alpha, straight RGBA cutout, foreground or composite)
- ``POST /v1/anonymize``  multipart ``image`` -> obfuscated image, or JSON with the face boxes and the image
- ``GET  /openapi.json``  the OpenAPI schema

Privacy: request bodies are read by p3m.serve.upload with a size cap and parsed in memory (p3m.serve.multipart);
no upload is ever written to disk or logged (options travel in form fields, never in the URL, and the access log
drops query strings anyway). Outputs are re-encoded from pixel arrays, so they carry no metadata.

Concurrency (p3m.serve.admission): one model instance serves every request. Jobs run in a pool of ``workers``
threads, off the event loop; at most ``workers + queue`` jobs are admitted at a time. A request is counted as a
job only once its body has arrived, so slow uploads never hold a worker or queue slot; while every slot is taken,
new requests get 503 with Retry-After at once, before their body is read. Uploads in progress are capped per
client and in all, so memory stays bounded by about ``(upload_slots + workers + queue) x max upload`` plus the
running jobs. Connections are capped and timed below the app (p3m.serve.connections).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from p3m.choices import COLOR_HELP, OBFUSCATION_METHODS, OUTPUT_KINDS, STRATEGIES
from p3m.errors import ApiError, CheckpointError, P3MError
from p3m.serve.admission import JobGate
from p3m.serve.form import FormOptions, parse_color
from p3m.serve.jobs import MIN_FACE_THRESHOLD, FaceDetectors, anonymize_job, matte_job
from p3m.serve.middleware import SecurityHeaders
from p3m.serve.multipart import Part
from p3m.serve.responses import error_response, header_text
from p3m.serve.schema import ERRORS, multipart_body
from p3m.serve.settings import ServeSettings
from p3m.serve.upload import BodyDeadline, receive_form

__all__ = ["Services", "create_app"]

logger = logging.getLogger("p3m.serve")

Work = Callable[[dict[str, Part]], Awaitable[Response]]


@dataclass
class Services:
    """What the routes share: the settings, the model (None without weights), the job gate, the detectors."""

    settings: ServeSettings
    matter: Any
    no_weights_reason: str
    gate: JobGate
    detectors: FaceDetectors

    async def admitted(self, request: Request, work: Work) -> Response:
        """Receive the form under the upload caps, then run `work` on it holding a job slot."""
        client = request.client.host if request.client else ""
        self.gate.check()  # every job slot taken: 503 now, before the body is read
        self.gate.begin_upload(client)
        try:
            fields = await receive_form(request, self.settings)
        finally:
            self.gate.end_upload(client)
        self.gate.admit()  # a job slot only once the body is here: slow uploads lock nobody out
        try:
            return await work(fields)
        finally:
            self.gate.release()


def _static_dir() -> Path:
    return Path(str(resources.files("p3m.serve") / "static"))


def _load_matter(settings: ServeSettings) -> tuple[Any | None, str]:
    """The shared Matter, or (None, why) when no weights exist and none were named."""
    from p3m.infer import Matter

    try:
        with warnings.catch_warnings():  # a model warning is announced and shown on the page instead
            warnings.simplefilter("ignore")
            matter = Matter(
                arch=settings.model,
                weights=settings.weights,
                device=settings.device,
                strategy=settings.strategy,
                precision=settings.precision,
                foreground_method=settings.foreground_method,
                hands=settings.hands,
            )
    except CheckpointError as exc:
        if settings.weights is not None:
            raise  # an explicit --weights that cannot be loaded is a configuration error
        return None, str(exc)
    return matter, ""


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """Build the app; loads the model once, or notes that there are no weights (then /v1/matte answers 503)."""
    from p3m import __version__

    settings = settings or ServeSettings()
    settings.validate()
    matter, no_weights_reason = _load_matter(settings)
    gate = JobGate(settings.workers, settings.queue, settings.total_upload_slots, settings.max_client_uploads)
    services = Services(settings, matter, no_weights_reason, gate, FaceDetectors())

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
    _add_error_handlers(app)
    _add_info_routes(app, services, __version__)
    _add_matte_route(app, services)
    _add_anonymize_route(app, services)
    return app


def _add_error_handlers(app: FastAPI) -> None:
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


def _limits(settings: ServeSettings) -> dict[str, Any]:
    """The limits /v1/health advertises (docs/server.md, "Concurrency and limits")."""
    body = BodyDeadline.of(settings)
    return {
        "max_upload_bytes": settings.max_upload_bytes,
        "max_pixels": settings.max_pixels,
        "max_connections": settings.max_connections,
        "max_client_connections": settings.max_client_connections,
        "header_timeout_s": settings.header_timeout_s,
        "upload_slots": settings.total_upload_slots,
        "max_client_uploads": settings.max_client_uploads,
        "upload_grace_s": body.grace_s,
        "min_upload_rate_bytes_s": body.rate_bytes_s,
        "body_timeout_s": body.total_s,
    }


def _add_info_routes(app: FastAPI, services: Services, version: str) -> None:
    gate, matter = services.gate, services.matter
    reason = services.no_weights_reason

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(_static_dir() / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=_static_dir()), name="static")

    @app.get("/v1/health", summary="Readiness, limits and job counts")
    async def health() -> dict[str, Any]:
        jobs = {"workers": gate.workers, "queue": gate.queue, "admitted": gate.admitted, "running": gate.running}
        jobs.update(completed=gate.completed, rejected=gate.rejected, uploading=gate.uploading)
        return {
            "status": "ok",
            "version": version,
            "matting": {"ready": matter is not None, "message": reason or "ready"},
            "anonymize": {"ready": True},
            "limits": _limits(services.settings),
            "jobs": jobs,
        }

    @app.get("/v1/models", summary="The loaded model and the model folder")
    async def models() -> dict[str, Any]:
        from p3m.models.store import list_weights

        try:  # listing reads checkpoint headers: off the event loop
            entries = await asyncio.to_thread(list_weights)
            available = [{"name": e.name, "arch": e.arch, "format": e.format, "origin": e.origin} for e in entries]
        except P3MError as exc:
            available, problem = [], str(exc)
        else:
            problem = ""
        return {
            "loaded": _loaded_model(matter, services.settings.hands),
            "message": reason or "ready",
            "available": available,
            "model_folder_problem": problem,
            "strategies": list(STRATEGIES),
            "outputs": list(OUTPUT_KINDS),
            "anonymize_methods": list(OBFUSCATION_METHODS),
        }


def _loaded_model(matter: Any, hands: bool) -> dict[str, Any] | None:
    if matter is None:
        return None
    return {
        "name": matter.model_name,
        "arch": matter.arch,
        "weights": Path(matter.weights).name if matter.weights else None,
        "device": matter.device,
        "backend": matter.backend,
        "precision": matter.precision,
        "strategy": matter.strategy,
        "route": not matter.session.uses_strategies,
        "hands": hands and not matter.session.uses_strategies,  # only the built-in route finds hands
        "warning": matter.model_warning,
    }


_OUTPUT_HELP = (
    "alpha: 8-bit matte; rgba: straight RGBA cutout with decontaminated colours; fg: the decontaminated "
    "foreground colours (RGB); composite: the cutout over `background`"
)


def _add_matte_route(app: FastAPI, services: Services) -> None:
    settings = services.settings
    options = {
        "output": {"type": "string", "enum": list(OUTPUT_KINDS), "default": "rgba", "description": _OUTPUT_HELP},
        "background": {"type": "string", "default": "white", "description": f"composite colour: {COLOR_HELP}"},
        "strategy": {"type": "string", "enum": list(STRATEGIES), "default": settings.strategy},
    }

    @app.post(
        "/v1/matte",
        summary="Alpha matte, cutout, foreground or composite of a portrait (PNG)",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}, "description": "the PNG (no metadata)"}, **ERRORS},
        openapi_extra=multipart_body(options),
    )
    async def matte(request: Request) -> Response:
        matter = services.matter
        if matter is None:
            raise ApiError(503, "no_weights", services.no_weights_reason)

        async def work(fields: dict[str, Part]) -> Response:
            form = FormOptions(fields, {"output", "background", "strategy"})
            output = form.choice("output", OUTPUT_KINDS, "rgba")
            background = parse_color(form.values.get("background") or "white")
            strategy = form.choice("strategy", STRATEGIES, settings.strategy)
            image = fields["image"].data
            png, info = await services.gate.run(
                matte_job, matter, image, output, background, strategy, settings.max_pixels
            )
            headers = {
                "Content-Disposition": f'inline; filename="{output}.png"',
                "X-P3M-Size": f"{info['width']}x{info['height']}",
                "X-P3M-Model": header_text(matter.model_name),
                "X-P3M-Strategy": info["strategy"],
                "X-P3M-Seconds": ", ".join(f"{k}={v:.3f}" for k, v in info["seconds"].items()),
            }
            if info["warning"]:  # the model's (weights trained on drawn portraits) or this image's (no person)
                headers["X-P3M-Warning"] = header_text(info["warning"])
            return Response(png, media_type="image/png", headers=headers)

        return await services.admitted(request, work)


_ANONYMIZE_OPTIONS: dict[str, Any] = {
    "method": {"type": "string", "enum": list(OBFUSCATION_METHODS), "default": "blur"},
    "strength": {"type": "number", "default": 1.0, "minimum": 0.1, "maximum": 10},
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


def _add_anonymize_route(app: FastAPI, services: Services) -> None:
    settings = services.settings
    threshold_schema = {
        "type": "number",
        "default": settings.face_threshold,
        "minimum": MIN_FACE_THRESHOLD,
        "maximum": 0.95,
        "description": "face detector score threshold",
    }
    responses = {
        200: {
            "content": {"image/png": {}, "image/jpeg": {}, "application/json": {}},
            "description": "the image (no metadata), or JSON when response=json",
        },
        **ERRORS,
    }

    @app.post(
        "/v1/anonymize",
        summary="Obfuscate the faces of a photo (image, or JSON with the face boxes)",
        response_class=Response,
        responses=responses,
        openapi_extra=multipart_body({**_ANONYMIZE_OPTIONS, "threshold": threshold_schema}),
    )
    async def anonymize(request: Request) -> Response:
        async def work(fields: dict[str, Part]) -> Response:
            form = FormOptions(fields, {"method", "strength", "threshold", "mask_scale", "format", "response"})
            method = form.choice("method", OBFUSCATION_METHODS, "blur")
            strength = form.number("strength", 1.0, 0.1, 10.0)
            threshold = form.number("threshold", settings.face_threshold, MIN_FACE_THRESHOLD, 0.95)
            mask_scale = form.number("mask_scale", 1.1, 0.5, 3.0)
            fmt = form.choice("format", ("png", "jpeg", "jpg"), "png").replace("jpeg", "jpg")
            answer = form.choice("response", ("image", "json"), "image")
            data, info = await services.gate.run(
                anonymize_job,
                services.detectors,
                fields["image"].data,
                method,
                strength,
                threshold,
                mask_scale,
                fmt,
                settings.max_pixels,
            )
            return _anonymized_answer(data, info, method, fmt, answer)

        return await services.admitted(request, work)


def _anonymized_answer(data: bytes, info: dict[str, Any], method: str, fmt: str, answer: str) -> Response:
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
    headers = {"Content-Disposition": f'inline; filename="anonymized.{fmt}"', "X-P3M-Faces": str(n_faces)}
    return Response(data, media_type=media_type, headers=headers)
