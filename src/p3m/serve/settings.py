"""Settings of the `p3m serve` web app: one typed dataclass; `validate()` lists every problem in one message."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from p3m.choices import FOREGROUND_METHODS, PRECISIONS, STRATEGIES
from p3m.errors import ConfigError

__all__ = ["DEFAULT_MAX_PIXELS", "DEFAULT_MAX_UPLOAD_MB", "ServeSettings"]

DEFAULT_MAX_UPLOAD_MB = 20.0
#: 16 megapixels: 12 MP phone photos (4032x3024) and 4K frames pass. The answer is always at the input's size,
#: so a job's memory grows with its pixels (docs/server.md gives the measured peak at this limit); raise it with
#: --max-pixels where the machine has the memory.
DEFAULT_MAX_PIXELS = 16_000_000


@dataclass(frozen=True)
class ServeSettings:
    """Everything `create_app` and `serve` need. Sizes in the units users type (MB, pixels, seconds).

    host/port: where `p3m serve` listens (loopback by default; port 0 picks a free one).
    model/weights/device/precision/strategy/foreground_method/hands: passed to `p3m.infer.Matter`; weights None =
        the model folder's default; hands: the built-in route's hand landmarks (opt-in).
        When no weights exist the server still starts: /v1/matte answers 503 ``no_weights`` (with how to get
        them) and /v1/anonymize works. An explicit ``weights`` that cannot be loaded is an error at start-up.
    workers: inference jobs run at the same time (threads); queue: jobs allowed to wait for a worker. A request
        beyond ``workers + queue`` gets 503 ``busy`` with Retry-After at once.
    max_upload_mb: cap on the request body, enforced while reading it (413 beyond).
    max_pixels: cap on width x height, checked from the image header before decoding (413 beyond).
    face_threshold: default CenterFace score threshold of /v1/anonymize.

    Connection limits (docs/server.md, "Connection limits"); a client is one IP address:
    max_connections: open connections in all (503 ``too_many_connections`` beyond, then closed).
    max_client_connections: open connections of one client (the same beyond).
    header_timeout_s: a request head (request line and headers) must arrive within this, counted from the
        connection or from the previous answer; an idle connection is closed, a partial head gets 408.
    upload_slots: bodies received at once, by all clients (None: ``max(16, 4 x (workers + queue))``); 503 ``busy``.
    max_client_uploads: bodies received at once from one client (503 ``busy`` beyond).
    upload_grace_s, min_upload_rate_kib_s: a body must keep up with ``upload_grace_s + received /
        min_upload_rate`` seconds (408 ``body_timeout`` otherwise), so a stalled upload ends within seconds.
    body_timeout_s: no body may take longer than this in all (408).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None
    weights: str | None = None
    device: str = "auto"
    precision: str = "auto"
    strategy: str = "hybrid"
    foreground_method: str = "ml"
    hands: bool = False
    workers: int = 1
    queue: int = 4
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    max_pixels: int = DEFAULT_MAX_PIXELS
    face_threshold: float = 0.2
    max_connections: int = 256
    max_client_connections: int = 16
    header_timeout_s: float = 5.0
    upload_slots: int | None = None
    max_client_uploads: int = 4
    upload_grace_s: float = 5.0
    min_upload_rate_kib_s: float = 16.0
    body_timeout_s: float = 60.0

    def validate(self) -> None:
        """Raise ConfigError listing every problem."""
        problems: list[str] = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port must be in 0..65535, got {self.port}")
        for name in ("workers", "max_pixels", "max_connections", "max_client_connections", "max_client_uploads"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.queue < 0:
            problems.append(f"queue must be >= 0, got {self.queue}")
        if self.upload_slots is not None and self.upload_slots < 1:
            problems.append(f"upload_slots must be >= 1 or None (automatic), got {self.upload_slots}")
        for name in ("max_upload_mb", "header_timeout_s", "upload_grace_s", "min_upload_rate_kib_s", "body_timeout_s"):
            if not getattr(self, name) > 0:  # also refuses NaN
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 < self.face_threshold < 1.0:
            problems.append(f"face_threshold must be in (0, 1), got {self.face_threshold}")
        for name, value, allowed in (
            ("strategy", self.strategy, STRATEGIES),
            ("foreground_method", self.foreground_method, FOREGROUND_METHODS),
            ("precision", self.precision, PRECISIONS),
        ):
            if value not in allowed:
                problems.append(f"unknown {name} {value!r}; use one of {', '.join(allowed)}")
        if problems:
            raise ConfigError("invalid server settings: " + "; ".join(problems))

    @property
    def max_upload_bytes(self) -> int:
        """The body cap in bytes; MB here means MiB (2^20 bytes), so a file any OS shows as 20 MB passes."""
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def capacity(self) -> int:
        """Requests admitted at once: running plus waiting."""
        return self.workers + self.queue

    @property
    def total_upload_slots(self) -> int:
        """Bodies received at once by all clients together."""
        return self.upload_slots if self.upload_slots is not None else max(16, 4 * self.capacity)

    @property
    def is_loopback(self) -> bool:
        """True when the host only accepts connections from this machine."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
