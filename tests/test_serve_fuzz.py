"""No request may produce a 500: property-based tests (hypothesis) of the multipart parser and of both POST
endpoints, with bounded example counts so that the file runs in seconds.

The endpoints are driven in-process through Starlette's TestClient (the app's own exception handlers answer,
as under uvicorn); the multipart bodies are built from pieces that real clients and attackers send: boundaries
from 1 to 1000 characters, missing or doubled CRLFs, odd dispositions, unknown and oversized fields, images
valid, truncated or not images at all.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image  # noqa: E402

from p3m.choices import OBFUSCATION_METHODS, OUTPUT_KINDS, STRATEGIES  # noqa: E402
from p3m.errors import ApiError  # noqa: E402
from p3m.serve.multipart import parse_multipart  # noqa: E402

ANSWERED = {200, 400, 413, 415, 422}  # every status a request may get from these endpoints (503 aside)


def _png(width: int = 24, height: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


PNG = _png()

boundaries = st.one_of(
    st.text(alphabet="abcXYZ019'()+_,-./:=?", min_size=1, max_size=80),
    st.integers(min_value=70, max_value=1000).map(lambda n: "b" * n),
)
images = st.one_of(st.just(PNG), st.just(PNG[: len(PNG) // 2]), st.binary(max_size=200), st.just(b""))
option_values = st.one_of(
    st.sampled_from([*OUTPUT_KINDS, *STRATEGIES, *OBFUSCATION_METHODS, "white", "#00ff00", "1,2,3", "0.5", "json"]),
    st.text(max_size=40),
    st.just("x" * 2000),
)
field_names = st.one_of(
    st.sampled_from(["output", "background", "strategy", "method", "strength", "threshold", "mask_scale", "format"]),
    st.sampled_from(["response", "image", "colour", ""]),
    st.text(max_size=12),
)
crlf = st.sampled_from(["\r\n", "\n", ""])


@st.composite
def multipart_bodies(draw) -> tuple[str, bytes]:
    """A (content type, body) pair, mostly well-formed, often subtly not."""
    boundary = draw(boundaries)
    parts = []
    for _ in range(draw(st.integers(min_value=0, max_value=5))):
        name = draw(field_names)
        disposition = draw(
            st.sampled_from(
                [f'form-data; name="{name}"', f'form-data; name="{name}"; filename="p.png"', "form-data", "attachment"]
            )
        )
        data = draw(images) if name == "image" else draw(option_values).encode("utf-8", "replace")
        parts.append(f"--{boundary}{draw(crlf)}Content-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n")
    ending = draw(st.sampled_from([f"--{boundary}--\r\n", f"--{boundary}--", "", f"--{boundary}"]))
    content_type = draw(
        st.sampled_from(
            [
                f"multipart/form-data; boundary={boundary}",
                f'multipart/form-data; boundary="{boundary}"',
                "multipart/form-data",
                "application/octet-stream",
                "",
            ]
        )
    )
    return content_type, b"".join(parts) + ending.encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(multipart_bodies())
def test_the_parser_answers_400_or_415_or_parses(case):
    content_type, body = case
    try:
        fields = parse_multipart(body, content_type)
    except ApiError as exc:
        assert exc.status in (400, 415), exc.message
        assert exc.message and "\n" not in exc.message
    else:
        assert all(part.name == name for name, part in fields.items())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.text(max_size=300))
def test_the_parser_survives_any_bytes(body, content_type):
    try:
        parse_multipart(body, content_type)
    except ApiError as exc:
        assert exc.status in (400, 415)


@pytest.fixture(scope="module")
def test_client(tmp_path_factory):
    import torch
    from serve_process import small_weights

    from p3m.serve import ServeSettings, create_app

    with warnings.catch_warnings():  # Starlette suggests another httpx package; this one works as it is
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    torch.set_num_threads(1)
    weights = small_weights(tmp_path_factory.mktemp("ckpt"))
    app = create_app(ServeSettings(weights=str(weights), device="cpu", precision="fp32", strategy="resize"))
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("endpoint", ["/v1/matte", "/v1/anonymize"])
def test_no_request_gets_a_500(test_client, endpoint):
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(multipart_bodies())
    def check(case):
        content_type, body = case
        resp = test_client.post(endpoint, content=body, headers={"content-type": content_type})
        assert resp.status_code in ANSWERED, (resp.status_code, resp.text[:300])
        if resp.status_code != 200:
            error = resp.json()["error"]
            assert error["code"] and error["message"] and "\n" not in error["message"]

    check()
