"""ASGI middleware and log filters of the server: security headers, loopback Host/Origin checks, quiet logs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from p3m.serve.responses import SECURITY_HEADERS, error_response

__all__ = ["LOOPBACK_HOSTS", "AccessLogFilter", "SecurityHeaders"]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class SecurityHeaders:
    """Pure ASGI middleware: security headers on every answer, no-store on API answers and, on loopback binds,
    a Host header check (DNS rebinding) and an Origin check on POST (other sites' pages posting via the browser)."""

    def __init__(self, app: Any, *, check_host: bool) -> None:
        self.app = app
        self.check_host = check_host

    def refusal(self, scope: dict) -> Any:
        """The error answer for a foreign Host or Origin, or None."""
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        origin = headers.get(b"origin")
        if hostname and hostname.lower() not in LOOPBACK_HOSTS:
            return error_response(
                400, "invalid_host", "this server only answers requests addressed to localhost / 127.0.0.1"
            )
        if scope["method"] == "POST" and origin is not None and urlsplit(origin.decode("latin-1")).netloc != host:
            # another web site's page posting through the visitor's browser (CSRF): not our page
            return error_response(403, "cross_origin", "requests from other web pages are not accepted")
        return None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope) if self.check_host else None
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
