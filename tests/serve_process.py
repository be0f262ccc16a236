"""`p3m serve` as its own process, started through the CLI, for the tests that need the real thing.

`served_process(root, *options)` starts ``python -m p3m.cli serve --port 0 ...`` with an empty model folder,
temp folder and working directory under `root`, waits until /v1/health answers and yields a `ServedProcess`;
the process is killed afterwards if it still runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

START_TIMEOUT_S = 90


@dataclass
class ServedProcess:
    url: str
    proc: subprocess.Popen
    tmpdir: Path
    cwd: Path
    lines: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def status_kb(self, key: str) -> int:
        """A field of /proc/PID/status in kB: "VmRSS" (resident now) or "VmHWM" (the peak so far)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def rss_mb(self) -> float:
        return self.status_kb("VmRSS") / 1024


def small_weights(folder: Path) -> Path:
    """A width-16 P3M-Net R34 of seeded random weights: fast, and enough to exercise every endpoint."""
    import torch

    from p3m.models import create, save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(create("p3m-r34", width=16), folder / "w.safetensors")


@contextlib.contextmanager
def served_process(root: Path, *options: str) -> Iterator[ServedProcess]:
    home, tmpdir, workdir = (root / name for name in ("home", "tmp", "cwd"))
    for folder in (home, tmpdir, workdir):
        folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, P3M_HOME=str(home), TMPDIR=str(tmpdir), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "p3m.cli", "serve", "--port", "0", "--log-level", "warning", *options]
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    url: list[str] = []
    ready = threading.Event()

    def reader() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            if m and not url:
                url.append(m.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=reader, daemon=True).start()
    try:
        if not ready.wait(START_TIMEOUT_S) or not url:
            raise RuntimeError("p3m serve did not start:\n" + "".join(lines))
        # the URL is printed just before uvicorn starts accepting; wait until it answers
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url[0] + "/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("p3m serve does not answer:\n" + "".join(lines))
            time.sleep(0.1)
        yield ServedProcess(url[0], proc, tmpdir, workdir, lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
