"""Settings of the `p3m serve` web app: one frozen dataclass, validated on creation."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from p3m.choices import FOREGROUND_METHODS, PRECISIONS, STRATEGIES
from p3m.errors import P3MError

__all__ = ["DEFAULT_MAX_PIXELS", "DEFAULT_MAX_UPLOAD_MB", "FOREGROUND_METHODS", "STRATEGIES", "ServeSettings"]

DEFAULT_MAX_UPLOAD_MB = 20.0
#: 50 megapixels covers 8K frames and 48 MP phone photos; decoding one takes ~150 MB.
DEFAULT_MAX_PIXELS = 50_000_000
# Copies of p3m.infer's tuples, so that settings can be validated without importing torch.


@dataclass(frozen=True)
class ServeSettings:
    """Everything `create_app` needs. Sizes in the units users type (MB, pixels, seconds).

    host/port: where `p3m serve` listens (loopback by default; port 0 picks a free one).
    model/weights/device/precision/strategy/foreground_method: passed to `p3m.infer.Matter`; weights None = the
        model folder's default. When no weights exist the server still starts: /v1/matte answers 503
        ``no_weights`` (with how to get them) and /v1/anonymize works. An explicit ``weights`` that cannot be
        loaded is an error at start-up.
    workers: inference jobs run at the same time (threads); queue: jobs allowed to wait for a worker. A request
        beyond ``workers + queue`` gets 503 ``busy`` with Retry-After at once.
    max_upload_mb: cap on the request body, enforced while reading it (413 beyond).
    max_pixels: cap on width x height, checked from the image header before decoding (413 beyond).
    body_timeout_s: a request body that takes longer to arrive is refused (408), so slow clients cannot hold a slot.
    face_threshold: default CenterFace score threshold of /v1/anonymize.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None
    weights: str | None = None
    device: str = "auto"
    precision: str = "auto"
    strategy: str = "hybrid"
    foreground_method: str = "ml"
    workers: int = 1
    queue: int = 4
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    max_pixels: int = DEFAULT_MAX_PIXELS
    body_timeout_s: float = 60.0
    face_threshold: float = 0.2

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port must be in 0..65535, got {self.port}")
        if self.workers < 1:
            problems.append(f"workers must be >= 1, got {self.workers}")
        if self.queue < 0:
            problems.append(f"queue must be >= 0, got {self.queue}")
        if not self.max_upload_mb > 0:
            problems.append(f"max upload size must be > 0 MB, got {self.max_upload_mb}")
        if self.max_pixels < 1:
            problems.append(f"max pixels must be >= 1, got {self.max_pixels}")
        if not self.body_timeout_s > 0:
            problems.append(f"body timeout must be > 0 s, got {self.body_timeout_s}")
        if not 0.0 < self.face_threshold < 1.0:
            problems.append(f"face threshold must be in (0, 1), got {self.face_threshold}")
        if self.strategy not in STRATEGIES:
            problems.append(f"unknown strategy {self.strategy!r}; use one of {', '.join(STRATEGIES)}")
        if self.foreground_method not in FOREGROUND_METHODS:
            problems.append(
                f"unknown foreground method {self.foreground_method!r}; use one of {', '.join(FOREGROUND_METHODS)}"
            )
        if self.precision not in PRECISIONS:
            problems.append(f"unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)}")
        if problems:
            raise P3MError("; ".join(problems))

    @property
    def max_upload_bytes(self) -> int:
        """The body cap in bytes; MB here means MiB (2^20 bytes), so a file any OS shows as 20 MB passes."""
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def capacity(self) -> int:
        """Requests admitted at once: running plus waiting."""
        return self.workers + self.queue

    @property
    def is_loopback(self) -> bool:
        """True when the host only accepts connections from this machine."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
