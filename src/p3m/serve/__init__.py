"""`p3m serve`: an HTTP API (FastAPI) and a single-page web app for matting and face anonymisation.

>>> from p3m.serve import ServeSettings, create_app
>>> app = create_app(ServeSettings(weights="demo-r34", workers=1, queue=4))   # any ASGI server can run it

See docs/server.md for the endpoints, the limits and the privacy guarantees.
"""

from __future__ import annotations

from p3m.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "serve"]


def __getattr__(name: str):
    # the app module imports FastAPI; keep `import p3m.serve` (and the CLI's --help) light
    if name in ("create_app", "serve"):
        from p3m.serve import app

        return getattr(app, name)
    raise AttributeError(f"module 'p3m.serve' has no attribute {name!r}")
