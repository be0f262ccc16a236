"""Moved to `p3m.models.store` (`list_models` is now `list_weights`). This module only keeps `p3m.serve` working
until the merge switches its one call over; remove it then."""

from __future__ import annotations

from p3m.models.store import list_weights as list_models

__all__ = ["list_models"]
