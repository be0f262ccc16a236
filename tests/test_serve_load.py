"""Load test of `p3m serve` started through the CLI as its own process: bounded queue, no hang, bounded memory.

40 requests, 16 at a time, against workers=1 and queue=4: every request must end with 200 or 503 (with
Retry-After) well within its timeout, the event loop must keep answering /v1/health while the worker is
busy, the server's resident memory must stay bounded, and nothing may appear in its temp folder or
working directory.
"""

from __future__ import annotations

import contextlib
import io
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from PIL import Image  # noqa: E402
from serve_process import served_process, small_weights  # noqa: E402

N_REQUESTS = 40
CONCURRENCY = 16
WORKERS, QUEUE = 1, 4
REQUEST_TIMEOUT_S = 60
# Bound on the server's RSS growth over the whole load, after a warm-up of both endpoints. At most
# workers + queue = 5 requests are admitted at a time, each holding a ~0.3 MB upload and its arrays.
RSS_GROWTH_LIMIT_MB = 150


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`p3m serve --port 0 ...` in a subprocess with an empty TMPDIR and working directory."""
    root = tmp_path_factory.mktemp("served")
    weights = small_weights(tmp_path_factory.mktemp("ckpt"))
    options = ["--weights", str(weights), "--device", "cpu", "--strategy", "resize"]
    with served_process(root, *options, "--workers", str(WORKERS), "--queue", str(QUEUE)) as served:
        yield served


def test_many_concurrent_requests_end_with_200_or_503_and_memory_stays_bounded(served):
    from p3m.data.synth import render_portrait

    url, proc = served.url, served.proc
    buf = io.BytesIO()
    Image.fromarray(render_portrait(np.random.default_rng(1), (384, 512)).image).save(buf, format="PNG")
    upload = buf.getvalue()

    with contextlib.ExitStack() as stack:
        client = stack.enter_context(httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S))
        # warm-up: model, face detector, allocator pools
        for _ in range(2):
            assert client.post("/v1/matte", files={"image": ("p.png", upload)}).status_code == 200
            assert client.post("/v1/anonymize", files={"image": ("p.png", upload)}).status_code == 200
        rss_before = served.rss_mb()

        health_latency: list[float] = []
        stop = threading.Event()

        def poll_health() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                assert client.get("/v1/health").status_code == 200
                health_latency.append(time.perf_counter() - t0)
                time.sleep(0.05)

        # CONCURRENCY clients, each from its own address (Linux routes all of 127/8 to loopback), as the
        # server's per-client caps would otherwise rightly count them as one client
        clients = [
            stack.enter_context(
                httpx.Client(
                    base_url=url,
                    timeout=REQUEST_TIMEOUT_S,
                    transport=httpx.HTTPTransport(local_address=f"127.0.0.{10 + k}"),
                )
            )
            for k in range(CONCURRENCY)
        ]

        def one(i: int) -> tuple[str, int, dict, bytes, float]:
            endpoint = "/v1/anonymize" if i % 4 == 3 else "/v1/matte"
            t0 = time.perf_counter()
            resp = clients[i % CONCURRENCY].post(endpoint, files={"image": ("p.png", upload)}, data={})
            return endpoint, resp.status_code, dict(resp.headers), resp.content, time.perf_counter() - t0

        poller = threading.Thread(target=poll_health, daemon=True)
        poller.start()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            results = list(pool.map(one, range(N_REQUESTS)))
        wall = time.perf_counter() - t0
        stop.set()
        poller.join(5)
        rss_after = served.rss_mb()

        statuses = [r[1] for r in results]
        assert set(statuses) <= {200, 503}, statuses
        n_ok, n_busy = statuses.count(200), statuses.count(503)
        assert n_ok >= WORKERS + QUEUE and n_busy >= 1, statuses
        for _endpoint, status, headers, content, seconds in results:
            assert seconds < REQUEST_TIMEOUT_S
            if status == 503:
                assert int(headers["retry-after"]) >= 1
                assert b'"code":"busy"' in content
            else:
                img = Image.open(io.BytesIO(content))
                assert img.format == "PNG" and img.size == (512, 384)
        # the event loop never blocks on inference
        assert health_latency and max(health_latency) < 2.0, max(health_latency)

        health = client.get("/v1/health").json()
        assert health["jobs"]["admitted"] == 0 and health["jobs"]["running"] == 0
        assert health["jobs"]["rejected"] == n_busy
        # nothing written where a temp file or a stray output would go
        assert list(served.tmpdir.iterdir()) == []
        assert list(served.cwd.iterdir()) == []
        growth = rss_after - rss_before
        print(
            f"\n2-core CPU dev machine: {N_REQUESTS} requests ({CONCURRENCY} concurrent, workers={WORKERS}, "
            f"queue={QUEUE}) in {wall:.1f} s: {n_ok} x 200, {n_busy} x 503; max /v1/health latency "
            f"{max(health_latency) * 1000:.0f} ms; server RSS {rss_before:.0f} -> {rss_after:.0f} MB"
        )
        assert growth < RSS_GROWTH_LIMIT_MB, (rss_before, rss_after)

    # Ctrl+C stops it cleanly
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 0, "".join(served.lines)
