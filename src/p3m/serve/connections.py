"""The connection layer under the app: uvicorn's h11 protocol plus what uvicorn lacks (its issue #157).

uvicorn closes a keep-alive connection after ``timeout_keep_alive`` of silence, but only after a first answer,
and any byte resets that timer; ``limit_concurrency`` answers 503 to everyone once that many connections are
open. So 64 connections that send nothing, or a head sent a byte at a time, locked every client out. Here:

- a request head must be complete within ``header_timeout_s``, counted from the connection (or from the
  previous answer on a kept-alive one); an idle connection is then closed, a partial head gets 408
  ``header_timeout``;
- open connections are capped per client (one IP address) and in all; the connection beyond a cap gets 503
  ``too_many_connections`` at once and is closed.

The body has its own deadline, in the app (p3m.serve.upload), where the bytes received are known.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from p3m.serve.admission import ClientCounter
from p3m.serve.responses import raw_error
from p3m.serve.settings import ServeSettings

__all__ = ["ConnectionLimits", "GuardedH11Protocol", "guarded_protocol"]

logger = logging.getLogger("p3m.serve")


class ConnectionLimits:
    """The open connections of one server, per client and in all, and the header deadline."""

    def __init__(self, settings: ServeSettings) -> None:
        self.connections = ClientCounter(settings.max_client_connections, settings.max_connections, "connections")
        self.header_timeout_s = settings.header_timeout_s


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and connection caps (`limits`, set by `guarded_protocol`)."""

    limits: ClassVar[ConnectionLimits]
    _client_key = ""
    _counted = False
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._client_key = self.client[0] if self.client else ""
        refusal = self.limits.connections.acquire(self._client_key)
        if refusal:
            logger.debug("refused a connection from %s: %s", self._client_key, refusal)
            transport.write(raw_error(503, "Service Unavailable", "too_many_connections", f"refused: {refusal}"))
            transport.close()
            return
        self._counted = True
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        if self._counted:
            self._counted = False
            self.limits.connections.release(self._client_key)
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a whole request head arrived: the app has it now
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():  # the next request's head is due within the deadline too
            self._arm_head_deadline()
        super().on_response_complete()  # may start a pipelined request, which disarms it again

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)

    def _disarm_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:  # part of a head, never finished
            seconds = f"{self.limits.header_timeout_s:g}"
            message = f"the request head did not arrive within {seconds} s"
            self.transport.write(raw_error(408, "Request Timeout", "header_timeout", message))
        self.transport.close()


def guarded_protocol(settings: ServeSettings) -> type[GuardedH11Protocol]:
    """A protocol class for uvicorn's ``http=`` whose connections share one set of `ConnectionLimits`."""
    attributes: dict[str, Any] = {"limits": ConnectionLimits(settings)}
    return type("GuardedH11Protocol", (GuardedH11Protocol,), attributes)
