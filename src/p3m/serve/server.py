"""Running the app: the listening socket, the uvicorn server with the connection limits, `serve` itself."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from p3m.errors import P3MError
from p3m.serve.app import create_app
from p3m.serve.connections import guarded_protocol
from p3m.serve.middleware import AccessLogFilter
from p3m.serve.settings import ServeSettings

__all__ = ["GRACEFUL_SHUTDOWN_S", "bind_socket", "make_server", "serve"]

#: Ctrl+C waits this long for the requests in progress, then cancels them.
GRACEFUL_SHUTDOWN_S = 10


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
    """A uvicorn.Server for the app: access log without query strings, no Server header, and the connection
    limits of the app's settings (p3m.serve.connections), which take the place of uvicorn's limit_concurrency."""
    import uvicorn

    settings: ServeSettings = app.state.settings
    config = uvicorn.Config(
        app,
        http=guarded_protocol(settings),
        ws="none",  # no WebSocket routes; an upgrade would also hand the connection past its caps
        log_level=log_level,
        server_header=False,
        timeout_keep_alive=5,  # idle kept-alive connections; the header deadline closes them at the latest
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
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
