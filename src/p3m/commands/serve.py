"""`p3m serve`: the web page and HTTP API on this machine (127.0.0.1:8000 by default)."""

from __future__ import annotations

import argparse

from p3m.choices import DEVICES_HELP, FOREGROUND_METHODS, PRECISIONS, STRATEGIES
from p3m.commands._types import add_arch, add_hands, count, positive
from p3m.serve.settings import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_MB, ServeSettings

_DEFAULTS = ServeSettings()


def _megabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size in MB, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a size > 0 MB, got {text!r}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve",
        help="web page and HTTP API for matting and anonymisation",
        description=(
            "Serve the p3m web page at / and the HTTP API under /v1 (POST /v1/matte, POST /v1/anonymize, "
            "GET /v1/health, GET /v1/models, schema at /openapi.json). Uploads stay in memory: nothing is "
            "written to disk or logged. Without --weights it serves the default model: the published P3M-Net "
            "when it is in the model folder, else the built-in portrait-cf route. When --arch asks for an "
            "architecture without weights the server still starts: anonymisation works and /v1/matte answers "
            "503 no_weights saying how to get them."
        ),
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)",
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    _add_model_options(parser)
    _add_limits(parser)
    parser.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        default="info",
        help="server log level (default info; the access log never shows request data)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from p3m.serve.server import serve

    settings = ServeSettings(
        host=args.host,
        port=args.port,
        model=args.arch,
        weights=args.weights,
        device=args.device,
        precision=args.precision,
        strategy=args.strategy,
        foreground_method=args.foreground_method,
        hands=args.hands,
        workers=args.workers,
        queue=args.queue,
        max_upload_mb=args.max_upload_mb,
        max_pixels=args.max_pixels,
        max_client_connections=args.max_client_connections,
        max_client_uploads=args.max_client_uploads,
    )
    serve(settings, log_level=args.log_level, announce=lambda line: print(line, flush=True))
    return 0


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """What the server mattes with: the model, the device, the precision and the default strategy."""
    add_arch(parser)
    parser.add_argument(
        "--weights",
        default=None,
        metavar="PATH|NAME",
        help="checkpoint or .onnx file, or a name from `p3m models` (default: the published P3M-Net "
        "if it is in the model folder, else the built-in portrait-cf)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help=f"{DEVICES_HELP} (default auto); an unavailable cuda is an error, never a silent CPU fallback",
    )
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="torch precision (default auto)")
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="hybrid",
        help="default test strategy; requests may choose another (default hybrid)",
    )
    parser.add_argument(
        "--foreground-method",
        choices=FOREGROUND_METHODS,
        default="ml",
        help="foreground colour estimation for cutouts and composites (default ml)",
    )
    add_hands(parser)


def _add_limits(parser: argparse.ArgumentParser) -> None:
    """How much the server takes at once: workers, queue, upload and image size, connections per client."""
    parser.add_argument(
        "--workers", type=positive, default=1, metavar="N", help="inference jobs run at the same time (default 1)"
    )
    parser.add_argument(
        "--queue",
        type=count,
        default=4,
        help="jobs allowed to wait for a worker; more get 503 with Retry-After (default 4)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=_megabytes,
        default=DEFAULT_MAX_UPLOAD_MB,
        help=f"largest accepted upload in MB (MiB) (default {DEFAULT_MAX_UPLOAD_MB:g}; 413 beyond)",
    )
    parser.add_argument(
        "--max-pixels",
        type=positive,
        default=DEFAULT_MAX_PIXELS,
        help=f"largest accepted width x height (default {DEFAULT_MAX_PIXELS}; 413 beyond)",
    )
    parser.add_argument(
        "--max-client-connections",
        type=positive,
        default=_DEFAULTS.max_client_connections,
        help=f"open connections per client IP address (default {_DEFAULTS.max_client_connections}); raise it "
        "behind a reverse proxy, where every client has the proxy's address",
    )
    parser.add_argument(
        "--max-client-uploads",
        type=positive,
        default=_DEFAULTS.max_client_uploads,
        help=f"uploads received at once per client IP address (default {_DEFAULTS.max_client_uploads}; 503 beyond)",
    )
