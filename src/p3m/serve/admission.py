"""Who gets in: per-client counting, the upload slots and the job slots in front of the worker pool.

Everything here is touched from the event loop thread only (uvicorn's protocol callbacks and the request
handlers), so the counters need no lock. A client is one IP address: uvicorn's ``client`` host.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from p3m.errors import ApiError

__all__ = ["ClientCounter", "JobGate"]


class ClientCounter:
    """How many of something (connections, uploads) each client holds, capped per client and in all."""

    def __init__(self, per_client: int, total: int, what: str) -> None:
        self.per_client, self.total, self.what = per_client, total, what
        self.by_client: dict[str, int] = {}
        self.held = 0

    def acquire(self, client: str) -> str:
        """Take one for `client`: "" when taken, else the refusal in words (nothing is taken then)."""
        mine = self.by_client.get(client, 0)
        if mine >= self.per_client:
            return f"this client already has {mine} {self.what} (at most {self.per_client} each)"
        if self.held >= self.total:
            return f"{self.held} {self.what} in progress (at most {self.total})"
        self.by_client[client] = mine + 1
        self.held += 1
        return ""

    def release(self, client: str) -> None:
        mine = self.by_client.get(client, 0) - 1
        if mine > 0:
            self.by_client[client] = mine
        else:
            self.by_client.pop(client, None)
        self.held -= 1


class JobGate:
    """Bounded admission in front of a thread pool of `workers`: bodies being received (per client and in all),
    then jobs (running + waiting <= workers + queue). Refusals are 503 ``busy`` with Retry-After."""

    def __init__(self, workers: int, queue: int, upload_slots: int, client_uploads: int) -> None:
        self.workers, self.queue = workers, queue
        self.capacity = workers + queue
        # bodies being received; they hold no job slot (a slow client must not lock the others out)
        self.uploads = ClientCounter(client_uploads, upload_slots, "uploads")
        self.admitted = 0
        self.running = 0
        self.completed = 0
        self.rejected = 0
        self.mean_seconds = 1.0  # running estimate of one job, for Retry-After
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="p3m-job")

    @property
    def uploading(self) -> int:
        return self.uploads.held

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the jobs ahead, spread over the workers (1..120)."""
        rounds = math.ceil(max(1, self.admitted) / self.workers)
        return int(min(120, max(1, math.ceil(rounds * self.mean_seconds))))

    def _busy(self, what: str) -> ApiError:
        self.rejected += 1
        seconds = self.retry_after()
        return ApiError(
            503, "busy", f"the server is busy ({what}); retry in {seconds} s", {"Retry-After": str(seconds)}
        )

    def check(self) -> None:
        """503 at once when every job slot is taken (called before the body is read)."""
        if self.admitted >= self.capacity:
            raise self._busy(f"{self.workers} running, {self.queue} waiting")

    def begin_upload(self, client: str) -> None:
        refusal = self.uploads.acquire(client)
        if refusal:
            raise self._busy(refusal)

    def end_upload(self, client: str) -> None:
        self.uploads.release(client)

    def admit(self) -> None:
        """Take a job slot (called once the body has arrived)."""
        self.check()
        self.admitted += 1

    def release(self) -> None:
        self.admitted -= 1

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` in the pool, off the event loop."""
        loop = asyncio.get_running_loop()

        def timed() -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self.mean_seconds = 0.8 * self.mean_seconds + 0.2 * (time.perf_counter() - t0)

        self.running += 1
        try:
            return await loop.run_in_executor(self.executor, timed)
        finally:
            self.running -= 1
            self.completed += 1
