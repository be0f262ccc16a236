"""Connection, header, body-rate, per-client and memory limits of `p3m serve`, against the CLI's own process.

The attacking sockets are bound to 127.0.0.2 (Linux routes all of 127/8 to loopback) while the honest client
connects from 127.0.0.1, so that the server's per-client accounting tells them apart as it would two machines.
Every loop is bounded by a deadline; the server runs with its default limits (`ServeSettings()`).
"""

from __future__ import annotations

import io
import select
import socket
import sys
import time
import types

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from PIL import Image  # noqa: E402
from serve_process import served_process, small_weights  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="binds sockets to 127.0.0.2 (Linux)")

ATTACKER = "127.0.0.2"
HONEST_WITHIN_S = 5.0  # the honest client's answers must come within this


# The defaults docs/server.md states (test_the_documented_limits_are_the_defaults checks them).
DOCUMENTED = {
    "header_timeout_s": 5.0,
    "upload_grace_s": 5.0,
    "max_client_connections": 16,
    "max_client_uploads": 4,
}
# Peak memory of one /v1/anonymize job at the default pixel limit, as docs/server.md states it.
ANONYMIZE_JOB_MB = 2000


@pytest.fixture(scope="module")
def defaults():
    return types.SimpleNamespace(**DOCUMENTED)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    weights = small_weights(tmp_path_factory.mktemp("ckpt"))
    options = ["--weights", str(weights), "--device", "cpu", "--strategy", "resize"]
    with served_process(tmp_path_factory.mktemp("served"), *options) as served:
        yield served


@pytest.fixture(scope="module")
def upload() -> bytes:
    from p3m.data.synth import render_portrait

    buf = io.BytesIO()
    Image.fromarray(render_portrait(np.random.default_rng(2), (96, 128)).image).save(buf, format="PNG")
    return buf.getvalue()


def attacker_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((ATTACKER, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    return sock


def read_until_closed(socks: list[socket.socket], seconds: float) -> dict[socket.socket, bytes | None]:
    """What each socket received until the server closed it; None for those still open after `seconds`."""
    got: dict[socket.socket, bytearray] = {s: bytearray() for s in socks}
    open_ = set(socks)
    deadline = time.monotonic() + seconds
    while open_ and time.monotonic() < deadline:
        readable, _, _ = select.select(list(open_), [], [], max(0.0, min(0.5, deadline - time.monotonic())))
        for sock in readable:
            try:
                data = sock.recv(65536)
            except OSError:  # reset by the server: closed as well
                data = b""
            if data:
                got[sock] += data
            else:
                open_.discard(sock)
    return {s: (None if s in open_ else bytes(got[s])) for s in socks}


def status_of(answer: bytes | None) -> int | None:
    """The status code of a raw HTTP answer; 0 for a connection closed without one, None while still open."""
    if answer is None:
        return None
    if not answer.startswith(b"HTTP/1.1 "):
        return 0
    return int(answer[9:12])


def honest_requests(url: str, upload: bytes) -> float:
    """/v1/health, the page and /v1/matte from 127.0.0.1, each on a new connection; the slowest answer in s."""
    slowest = 0.0
    for method, path, kwargs in (
        ("GET", "/v1/health", {}),
        ("GET", "/", {}),
        ("POST", "/v1/matte", {"files": {"image": ("p.png", upload)}, "data": {"output": "alpha"}}),
    ):
        with httpx.Client(base_url=url, timeout=HONEST_WITHIN_S) as client:
            t0 = time.monotonic()
            resp = client.request(method, path, **kwargs)
            seconds = time.monotonic() - t0
        assert resp.status_code == 200, (path, resp.status_code, resp.text[:200])
        slowest = max(slowest, seconds)
    assert slowest < HONEST_WITHIN_S
    return slowest


def closed_sockets(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


def test_the_documented_limits_are_the_defaults():
    from p3m.serve.settings import ServeSettings

    settings = ServeSettings()
    assert {key: getattr(settings, key, None) for key in DOCUMENTED} == DOCUMENTED


# ----------------------------------------------------------------------------------------------- item 1


def test_idle_connections_are_closed_and_lock_nobody_out(served, upload, defaults):
    """64 connections that send nothing: the honest client is still served within seconds, the attacker keeps
    at most its per-client share, and every idle connection is closed after the header timeout."""
    idle = [attacker_socket(served.port) for _ in range(64)]
    try:
        time.sleep(0.5)  # let the server accept all of them
        slowest = honest_requests(served.url, upload)
        answers = read_until_closed(idle, defaults.header_timeout_s + 5)
        still_open = [s for s, a in answers.items() if a is None]
        assert not still_open, f"{len(still_open)} idle connections outlived the header timeout"
        refused = [a for a in answers.values() if status_of(a) == 503]
        assert len(refused) >= 64 - defaults.max_client_connections  # beyond its share: refused at once
        assert all(b'"code":"too_many_connections"' in a for a in refused)
        # the ones within the share were closed silently: they never started a request
        assert sum(1 for a in answers.values() if a == b"") <= defaults.max_client_connections
    finally:
        closed_sockets(idle)
    print(
        f"\n64 idle connections from {ATTACKER}: honest answers within {slowest * 1000:.0f} ms; "
        f"{len(refused)} refused at once, the rest closed within {defaults.header_timeout_s + 5:g} s"
    )


def test_slow_request_heads_are_cut_off(served, defaults):
    """A request head sent one line a second (slowloris) gets 408 once the header timeout has passed."""
    sock = attacker_socket(served.port)
    try:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        t0 = time.monotonic()
        answer = None
        for i in range(int(defaults.header_timeout_s * 3) + 10):  # bounded: far past the timeout
            readable, _, _ = select.select([sock], [], [], 1.0)
            if readable:
                answer = read_until_closed([sock], 5)[sock]
                break
            try:
                sock.sendall(f"X-Slow-{i}: 1\r\n".encode())
            except OSError:
                answer = b""
                break
        elapsed = time.monotonic() - t0
    finally:
        sock.close()
    print(f"\nslow request head: answered after {elapsed:.1f} s")
    assert status_of(answer) == 408, answer
    assert b'"code":"header_timeout"' in answer
    assert defaults.header_timeout_s - 0.5 <= elapsed <= defaults.header_timeout_s + 2.5, elapsed


# ----------------------------------------------------------------------------------------------- item 2


def test_stalled_uploads_lock_nobody_out(served, upload, defaults):
    """20 uploads that send their head and 100 bytes, then nothing: each is answered (503 beyond the client's
    share of uploads, 408 once its minimum-rate deadline passes), and another client is served meanwhile."""
    head = (
        f"POST /v1/matte HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n"
        "Content-Type: multipart/form-data; boundary=stall\r\nContent-Length: 200000\r\n\r\n"
    ).encode()
    body = b'--stall\r\nContent-Disposition: form-data; name="image"; filename="p.png"\r\n\r\n'
    stalled = []
    t_start = time.monotonic()
    try:
        for _ in range(20):
            sock = attacker_socket(served.port)
            sock.sendall(head + (body + upload)[:100])
            stalled.append(sock)
        # wait until the server has taken each of them in: receiving its body, or already answered
        with httpx.Client(base_url=served.url, timeout=HONEST_WITHIN_S) as client:
            deadline = time.monotonic() + 10
            while True:
                uploading = client.get("/v1/health").json()["jobs"]["uploading"]
                answered = len(select.select(stalled, [], [], 0)[0])
                if uploading + answered >= len(stalled):
                    break
                assert time.monotonic() < deadline, (uploading, answered)
                time.sleep(0.05)
        slowest = honest_requests(served.url, upload)
        assert uploading <= defaults.max_client_uploads
        answers = read_until_closed(stalled, defaults.upload_grace_s + 10)
        took = time.monotonic() - t_start
    finally:
        closed_sockets(stalled)
    statuses = [status_of(a) for a in answers.values()]
    assert None not in statuses, statuses  # nothing left hanging
    assert set(statuses) <= {408, 503}, statuses
    assert statuses.count(408) == uploading >= 1
    assert all(b'"code":"body_timeout"' in a for a in answers.values() if status_of(a) == 408)
    assert took < defaults.upload_grace_s + 10
    print(
        f"\n20 stalled uploads from {ATTACKER}: honest answers within {slowest * 1000:.0f} ms, "
        f"all answered in {took:.1f} s ({statuses.count(503)} x 503, {statuses.count(408)} x 408)"
    )


# ----------------------------------------------------------------------------------------------- item 3


def test_a_long_multipart_boundary_is_a_400(served, upload):
    """RFC 2046 allows 70 characters; python-multipart raises on longer ones, which must not become a 500."""
    boundary = "b" * 1000
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="p.png"\r\n\r\n'.encode()
        + upload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for endpoint in ("/v1/matte", "/v1/anonymize"):
            resp = client.post(endpoint, content=body, headers=headers)
            assert resp.status_code == 400, resp.text
            assert resp.json()["error"]["code"] == "bad_multipart"
        assert client.get("/v1/health").status_code == 200


# ----------------------------------------------------------------------------------------------- item 4


def flat_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 180, 160)).save(buf, format="PNG")
    return buf.getvalue()


def test_memory_per_request_is_bounded_and_returned(served):
    """A 49-megapixel flat PNG (tens of KB) is refused from its header; the largest image the server accepts
    costs at most the advertised job memory, and that memory is returned to the system afterwards."""
    with httpx.Client(base_url=served.url, timeout=120) as client:
        limits = client.get("/v1/health").json()["limits"]
        bomb = flat_png(7000, 7000)
        assert len(bomb) < 200_000
        rss_before = served.rss_mb()
        resp = client.post("/v1/anonymize", files={"image": ("flat.png", bomb)})
        assert resp.status_code == 413 and resp.json()["error"]["code"] == "too_many_pixels"
        assert served.rss_mb() - rss_before < 50  # refused from the header: nothing decoded

        side = int(limits["max_pixels"] ** 0.5)
        largest = flat_png(side, side)
        client.post("/v1/anonymize", files={"image": ("small.png", flat_png(64, 64))})  # detector loaded
        rss_before = served.rss_mb()
        peak_before = served.status_kb("VmHWM") / 1024
        t0 = time.monotonic()
        resp = client.post("/v1/anonymize", files={"image": ("flat.png", largest)})
        seconds = time.monotonic() - t0
        assert resp.status_code == 200, resp.text
        rss_after = served.rss_mb()
        peak = served.status_kb("VmHWM") / 1024
    growth = max(0.0, peak - max(peak_before, rss_before))
    print(
        f"\n{side}x{side} flat PNG to /v1/anonymize in {seconds:.1f} s: RSS {rss_before:.0f} MB -> peak "
        f"{max(peak, rss_before):.0f} MB -> {rss_after:.0f} MB after"
    )
    assert growth <= ANONYMIZE_JOB_MB
    assert rss_after - rss_before < 100, (rss_before, rss_after)  # returned, not kept by the allocator
