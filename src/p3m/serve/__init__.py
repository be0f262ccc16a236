"""`p3m serve`: an HTTP API (FastAPI) and a single-page web app for matting and face anonymisation.

>>> from p3m.serve import ServeSettings, create_app
>>> app = create_app(ServeSettings(weights="demo-r34", workers=1, queue=4))   # any ASGI server can run it

Modules: ``settings`` (ServeSettings), ``app`` (create_app: routes and wiring), ``server`` (bind_socket,
make_server, serve), ``connections`` (header deadline and connection caps under uvicorn), ``admission``
(upload and job slots, per client), ``upload`` (reading the body under its deadline), ``multipart`` (the
in-memory form parser), ``form`` (option values), ``jobs`` (the work of one request), ``middleware``,
``responses`` and ``schema``. See docs/server.md for the endpoints, the limits and the privacy guarantees.
"""

from __future__ import annotations

from p3m.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "serve"]


def __getattr__(name: str):
    # the app imports FastAPI; keep `import p3m.serve` (and the CLI's --help) light
    if name == "create_app":
        from p3m.serve.app import create_app

        return create_app
    if name == "serve":
        from p3m.serve.server import serve

        return serve
    raise AttributeError(f"module 'p3m.serve' has no attribute {name!r}")
