"""HTTP API of `p3m serve`, exercised with httpx against a real uvicorn server on a loopback port.

The server runs in a background thread of this process (so that the test can spy on `tempfile`), with a
width-16 P3M-Net R34 of random weights. Expected images are computed with the library (`Matter`,
`anonymize_image`) in the test process: the API must return exactly what the library computes.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import struct
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data as skimage_data  # noqa: E402

from p3m.errors import CheckpointError  # noqa: E402
from p3m.io import has_metadata, read_image  # noqa: E402
from tests.paths import PORTRAITS, TEST_DATA  # noqa: E402

torch.set_num_threads(1)

MAX_UPLOAD_MB = 3.0
MAX_PIXELS = 4_000_000


# ----------------------------------------------------------------------------------------------- helpers


class RunningServer:
    """uvicorn serving `app` in a daemon thread on a free loopback port."""

    def __init__(self, app) -> None:
        from p3m.serve.server import bind_socket, make_server

        self.app = app
        self.sock = bind_socket("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = make_server(app, log_level="warning")
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_with_metadata(array: np.ndarray) -> bytes:
    """A JPEG carrying EXIF (camera, GPS-like tag) and a comment, as phone photos do."""
    img = Image.fromarray(array)
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0131] = "private-software"
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92, exif=exif.tobytes(), comment=b"owner: someone")
    return buf.getvalue()


def huge_png_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's signature)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def assert_json_error(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "\n" not in body["error"]["message"]
    return body["error"]


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """One empty P3M_HOME for the whole module (it overrides conftest's per-test one): the server is started
    once and reads the model folder on requests."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("p3m_home")
        patch.setenv("P3M_HOME", str(path))
        yield path


@pytest.fixture(scope="module")
def weights(tmp_path_factory, home) -> Path:
    from p3m.models import create, save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(create("p3m-r34", width=16), tmp_path_factory.mktemp("ckpt") / "w.safetensors")


@pytest.fixture(scope="module")
def settings(weights):
    from p3m.serve import ServeSettings

    return ServeSettings(
        weights=str(weights),
        device="cpu",
        precision="fp32",
        strategy="resize",
        workers=1,
        queue=2,
        max_upload_mb=MAX_UPLOAD_MB,
        max_pixels=MAX_PIXELS,
    )


@pytest.fixture(scope="module")
def server(settings):
    from p3m.serve import create_app

    running = RunningServer(create_app(settings))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def reference_matter(weights):
    """The library's answer, computed independently of the server's instance."""
    from p3m.infer import Matter

    return Matter(weights=str(weights), device="cpu", precision="fp32", strategy="resize")


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    from p3m.data.synth import render_portrait

    return render_portrait(np.random.default_rng(3), (96, 128)).image


@pytest.fixture(scope="module")
def face_photo() -> np.ndarray:
    """A real portrait (640x360) with a face the detector finds: from the shared set where it is checked out, else
    the open face shipped in tests/data (480x480), letterboxed to the same size."""
    import cv2

    path = PORTRAITS / "image" / "p_09ba26b4.jpg"
    if path.is_file():
        return cv2.resize(read_image(path), (640, 360), interpolation=cv2.INTER_AREA)
    face = cv2.resize(read_image(TEST_DATA / "people_cap.jpg"), (360, 360), interpolation=cv2.INTER_AREA)
    return cv2.copyMakeBorder(face, 0, 0, 140, 140, cv2.BORDER_REPLICATE)


def healthy(client) -> bool:
    return client.get("/v1/health").status_code == 200


# ----------------------------------------------------------------------------------------------- settings


def test_settings_validate_and_default_to_loopback():
    from p3m.errors import ConfigError, P3MError
    from p3m.serve import ServeSettings, create_app

    s = ServeSettings()
    s.validate()
    assert s.host == "127.0.0.1" and s.is_loopback
    assert s.max_upload_bytes == 20 * 1024 * 1024 and s.capacity == 5
    assert not ServeSettings(host="0.0.0.0").is_loopback
    bad_values = (
        {"workers": 0},
        {"queue": -1},
        {"max_upload_mb": 0},
        {"strategy": "magic"},
        {"port": 70000},
        {"face_threshold": 1.5},
        {"max_client_connections": 0},
        {"header_timeout_s": float("nan")},
        {"precision": "fp8"},
    )
    for bad in bad_values:
        with pytest.raises(P3MError):
            ServeSettings(**bad).validate()
    # every problem in one message, and the app refuses to start with them
    every = {key: value for bad in bad_values for key, value in bad.items()}
    with pytest.raises(ConfigError) as exc:
        ServeSettings(**every).validate()
    message = str(exc.value)
    assert "\n" not in message
    for key in ("workers", "queue", "max_upload_mb", "strategy", "port", "face_threshold", "max_client_connections"):
        assert key in message, key
    with pytest.raises(ConfigError):
        create_app(ServeSettings(workers=0))


def test_explicit_weights_that_do_not_exist_refuse_to_start(home, tmp_path):
    from p3m.serve import ServeSettings, create_app

    with pytest.raises(CheckpointError, match="no such file"):
        create_app(ServeSettings(weights=str(tmp_path / "missing.safetensors")))


# ----------------------------------------------------------------------------------------------- info endpoints


def test_health_reports_readiness_limits_and_security_headers(client):
    resp = client.get("/v1/health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok"
    assert body["matting"]["ready"] is True
    assert body["anonymize"]["ready"] is True
    limits = body["limits"]
    assert limits["max_upload_bytes"] == int(MAX_UPLOAD_MB * 1024 * 1024) and limits["max_pixels"] == MAX_PIXELS
    assert limits["header_timeout_s"] == 5.0 and limits["max_client_connections"] == 16
    assert limits["max_client_uploads"] == 4 and limits["min_upload_rate_bytes_s"] == 16 * 1024
    assert body["jobs"]["workers"] == 1 and body["jobs"]["queue"] == 2
    assert resp.headers["cache-control"] == "no-store"
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in resp.headers["content-security-policy"]
    assert "server" not in resp.headers


def test_models_lists_the_loaded_model(client, weights):
    body = client.get("/v1/models").json()
    assert body["loaded"]["arch"] == "p3m-r34"
    assert body["loaded"]["weights"] == weights.name  # the file name only, no server paths
    assert body["loaded"]["strategy"] == "resize"
    assert body["strategies"] == ["hybrid", "resize", "highres"]
    assert body["outputs"] == ["alpha", "rgba", "fg", "composite"]
    assert isinstance(body["available"], list)


def test_openapi_schema_documents_the_endpoints(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert {"/v1/matte", "/v1/anonymize", "/v1/health", "/v1/models"} <= set(paths)
    body = paths["/v1/matte"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["image"]
    assert body["properties"]["output"]["enum"] == ["alpha", "rgba", "fg", "composite"]
    assert "413" in paths["/v1/matte"]["post"]["responses"]
    anon = paths["/v1/anonymize"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert anon["properties"]["method"]["enum"] == ["blur", "mosaic", "zero"]
    # Swagger UI would pull its JavaScript from a CDN: not served
    assert_json_error(client.get("/docs"), 404, "not_found")


def test_page_and_assets_are_served_locally(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"' in page.text and 'href="/static/app.css"' in page.text
    for asset, ctype in (("/static/app.js", "javascript"), ("/static/app.css", "text/css")):
        resp = client.get(asset)
        assert resp.status_code == 200 and ctype in resp.headers["content-type"]
    import re

    # every asset the page references is on this server (or inline data)
    links = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert links and all(link.startswith(("/", "data:")) and not link.startswith("//") for link in links), links
    script = client.get("/static/app.js").text
    urls = re.findall(r'(?:fetch|post|open|request)\(\s*"([^"]*)"', script)
    urls += re.findall(r'xhr\.open\("POST", (\w+)\)', script)
    assert {"/v1/health", "/v1/models", "/v1/matte", "/v1/anonymize"} <= set(urls), urls
    for text in (script, client.get("/static/app.css").text):
        assert "http://" not in text and "https://" not in text and "@import" not in text


def test_foreign_host_header_is_refused_on_loopback(client):
    """DNS rebinding: a page on another domain resolved to 127.0.0.1 must not reach the API."""
    assert_json_error(client.get("/v1/health", headers={"Host": "evil.example:80"}), 400, "invalid_host")
    assert client.get("/v1/health", headers={"Host": "localhost"}).status_code == 200


def test_posts_from_other_web_pages_are_refused(client, server, portrait):
    """A page on another site can make the browser post a form here (CSRF); the Origin header gives it away."""
    files = {"image": ("p.png", png_bytes(portrait))}
    for origin in ("http://evil.example", "null", "http://127.0.0.1:1"):
        resp = client.post("/v1/matte", files=files, data={"output": "alpha"}, headers={"Origin": origin})
        assert_json_error(resp, 403, "cross_origin")
    own = client.post("/v1/matte", files=files, data={"output": "alpha"}, headers={"Origin": server.url})
    assert own.status_code == 200  # the page itself (same origin), and clients that send no Origin (curl)


# ----------------------------------------------------------------------------------------------- matte


def _post_matte(client, data: bytes, **options):
    return client.post("/v1/matte", files={"image": ("photo.jpg", data, "image/jpeg")}, data=options)


def test_matte_alpha_equals_the_library(client, portrait, reference_matter):
    resp = _post_matte(client, png_bytes(portrait), output="alpha")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "image/png"
    assert resp.headers["x-p3m-strategy"] == "resize"
    assert resp.headers["cache-control"] == "no-store"
    out = Image.open(io.BytesIO(resp.content))
    assert out.format == "PNG" and out.mode == "L" and out.size == (128, 96)
    expected = reference_matter.matte(portrait).alpha_uint8()
    np.testing.assert_array_equal(np.asarray(out), expected)


@pytest.mark.slow
def test_the_decode_time_of_an_upload_is_reported(client):
    """X-P3M-Seconds times every step where it happens: a 1080p JPEG takes milliseconds to decode, not 0."""
    import cv2

    photo = cv2.resize(read_image(TEST_DATA / "people_profile.jpg"), (1920, 1080), interpolation=cv2.INTER_CUBIC)
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="JPEG", quality=90)
    resp = _post_matte(client, buf.getvalue(), output="alpha", strategy="resize")
    assert resp.status_code == 200, resp.text
    seconds = dict(item.split("=") for item in resp.headers["x-p3m-seconds"].split(", "))
    assert set(seconds) == {"decode", "network", "foreground", "encode"}
    # printed with 3 decimals: decoding 2 megapixels of JPEG takes more than a millisecond on any CPU
    assert float(seconds["decode"]) >= 0.001, seconds


def test_matte_rgba_fg_and_composite_equal_the_library(client, portrait, reference_matter):
    expected = reference_matter.matte(portrait, foreground=True)
    rgba = Image.open(io.BytesIO(_post_matte(client, png_bytes(portrait), output="rgba").content))
    assert rgba.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(rgba), expected.cutout)
    resp = _post_matte(client, png_bytes(portrait), output="composite", background="#00ff00")
    comp = Image.open(io.BytesIO(resp.content))
    assert comp.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(comp), expected.composite((0, 255, 0)))
    fg = Image.open(io.BytesIO(_post_matte(client, png_bytes(portrait), output="fg").content))
    assert fg.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(fg), expected.foreground)
    # default output is the cutout
    default = Image.open(io.BytesIO(_post_matte(client, png_bytes(portrait)).content))
    assert default.mode == "RGBA"


def test_matte_strategy_is_per_request(client, portrait, weights):
    from p3m.infer import Matter

    resp = _post_matte(client, png_bytes(portrait), output="alpha", strategy="hybrid")
    assert resp.status_code == 200 and resp.headers["x-p3m-strategy"] == "hybrid"
    hybrid = Matter(weights=str(weights), device="cpu", precision="fp32", strategy="hybrid")
    np.testing.assert_array_equal(
        np.asarray(Image.open(io.BytesIO(resp.content))), hybrid.matte(portrait).alpha_uint8()
    )
    # the shared model keeps its own default
    assert _post_matte(client, png_bytes(portrait), output="alpha").headers["x-p3m-strategy"] == "resize"


def test_outputs_carry_no_metadata(client, portrait, tmp_path):
    upload = jpeg_with_metadata(portrait)
    src = tmp_path / "src.jpg"
    src.write_bytes(upload)
    assert has_metadata(src)  # the upload does carry some
    for output in ("alpha", "rgba", "fg", "composite"):
        out = tmp_path / f"{output}.png"
        out.write_bytes(_post_matte(client, upload, output=output).content)
        assert has_metadata(out) == []
    anon = tmp_path / "anon.jpg"
    anon.write_bytes(client.post("/v1/anonymize", files={"image": ("a.jpg", upload)}, data={"format": "jpeg"}).content)
    assert Image.open(anon).format == "JPEG"
    assert has_metadata(anon) == []


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"output": "bogus"}, "output"),
        ({"background": "not-a-colour"}, "background"),
        ({"strategy": "magic"}, "strategy"),
        ({"colour": "red"}, "unknown field"),
    ],
)
def test_matte_bad_options(client, portrait, options, needle):
    err = assert_json_error(_post_matte(client, png_bytes(portrait), **options), 422, "invalid_option")
    assert needle in err["message"]


# ----------------------------------------------------------------------------------------------- bad input


def _bad_inputs(portrait: np.ndarray) -> list[tuple[str, dict, int, str]]:
    jpeg = jpeg_with_metadata(render_big(portrait))
    boundary = "XyZ123"
    unterminated = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        f"Content-Type: image/png\r\n\r\n"
    ).encode() + png_bytes(portrait)
    return [
        (
            "empty body",
            {"content": b"", "headers": {"content-type": "multipart/form-data; boundary=x"}},
            400,
            "empty_body",
        ),
        ("empty file", {"files": {"image": ("a.jpg", b"")}}, 422, "invalid_image"),
        (
            "not an image",
            {"files": {"image": ("a.jpg", b"hello, this is text and not a photo" * 10)}},
            422,
            "invalid_image",
        ),
        ("truncated jpeg", {"files": {"image": ("a.jpg", jpeg[: len(jpeg) // 2])}}, 422, "truncated_image"),
        ("huge dimensions", {"files": {"image": ("bomb.png", huge_png_header())}}, 413, "too_many_pixels"),
        ("no image field", {"data": {"output": "alpha"}, "files": {"other": ("a.txt", b"x")}}, 422, "missing_image"),
        ("only options", {"data": {"output": "alpha"}}, 415, "unsupported_media_type"),
        ("json body", {"json": {"image": "base64..."}}, 415, "unsupported_media_type"),
        (
            "unterminated multipart",
            {"content": unterminated, "headers": {"content-type": f"multipart/form-data; boundary={boundary}"}},
            400,
            "bad_multipart",
        ),
    ]


def render_big(portrait: np.ndarray) -> np.ndarray:
    return np.tile(portrait, (3, 3, 1))


@pytest.mark.parametrize("endpoint", ["/v1/matte", "/v1/anonymize"])
def test_bad_inputs_give_json_errors_and_the_server_stays_up(client, portrait, endpoint):
    for label, kwargs, status, code in _bad_inputs(portrait):
        resp = client.post(endpoint, **kwargs)
        assert resp.status_code == status, (label, resp.text)
        assert_json_error(resp, status, code)
        assert healthy(client), label


def test_missing_image_field(client):
    resp = client.post("/v1/matte", files={"output": (None, "alpha")})
    err = assert_json_error(resp, 422, "missing_image")
    assert "image" in err["message"]


def test_oversized_upload_is_refused_while_reading(client):
    limit = int(MAX_UPLOAD_MB * 1024 * 1024)
    big = os.urandom(limit + 1000)
    # declared size over the limit: refused from the header
    resp = client.post("/v1/matte", files={"image": ("big.png", big)})
    err = assert_json_error(resp, 413, "upload_too_large")
    assert "3 MB" in err["message"]

    # no Content-Length (chunked): refused once the streamed body passes the limit
    def chunks():
        head = b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n\r\n'
        yield head
        for i in range(0, len(big), 256 * 1024):
            yield big[i : i + 256 * 1024]
        yield b"\r\n--b--\r\n"

    resp = client.post("/v1/matte", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert_json_error(resp, 413, "upload_too_large")
    assert healthy(client)


def test_unknown_path_and_method_are_json(client):
    assert_json_error(client.get("/v1/nothing"), 404, "not_found")
    assert_json_error(client.get("/v1/matte"), 405, "method_not_allowed")


# ----------------------------------------------------------------------------------------------- anonymize


def test_anonymize_image_and_json_equal_the_library(client, face_photo):
    from p3m.privacy.anonymize import AnonymizeOptions, anonymize_image
    from p3m.privacy.detect import CenterFaceDetector

    upload = png_bytes(face_photo)
    resp = client.post("/v1/anonymize", files={"image": ("p.png", upload)}, data={"method": "mosaic"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    faces = CenterFaceDetector(0.2).detect(face_photo)
    assert faces, "the test photo must contain a detectable face"
    assert int(resp.headers["x-p3m-faces"]) == len(faces)
    expected = anonymize_image(face_photo, faces=faces, options=AnonymizeOptions(method="mosaic")).image
    got = np.asarray(Image.open(io.BytesIO(resp.content)))
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, face_photo)

    body = client.post(
        "/v1/anonymize", files={"image": ("p.png", upload)}, data={"method": "mosaic", "response": "json"}
    ).json()
    assert body["width"] == 640 and body["height"] == 360 and body["warning"] == ""
    assert [f["box"] for f in body["faces"]] == [[round(v, 1) for v in f.box] for f in faces]
    assert body["image"]["content_type"] == "image/png"
    np.testing.assert_array_equal(
        np.asarray(Image.open(io.BytesIO(base64.b64decode(body["image"]["base64"])))), expected
    )


@pytest.mark.slow  # keeps the fast loop under a minute (about 1 s of CPU); make test runs it
def test_anonymize_threshold_filters_like_detecting_at_that_threshold(client, face_photo):
    """The server detects once at a low floor and filters; that must equal detecting at the threshold."""
    from p3m.privacy.detect import CenterFaceDetector

    upload = png_bytes(face_photo)
    for threshold in (0.05, 0.15, 0.5, 0.9):
        body = client.post(
            "/v1/anonymize", files={"image": ("p.png", upload)}, data={"threshold": str(threshold), "response": "json"}
        ).json()
        direct = CenterFaceDetector(threshold).detect(face_photo)
        assert [f["box"] for f in body["faces"]] == [[round(v, 1) for v in f.box] for f in direct], threshold


def test_anonymize_without_faces_returns_the_image_unchanged_with_a_warning(client):
    flat = np.full((64, 96, 3), 200, np.uint8)
    body = client.post("/v1/anonymize", files={"image": ("f.png", png_bytes(flat))}, data={"response": "json"}).json()
    assert body["faces"] == [] and "no face" in body["warning"]
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(body["image"]["base64"])))), flat)


@pytest.mark.parametrize(
    "options",
    [
        {"method": "smudge"},
        {"strength": "0"},
        {"threshold": "nan"},
        {"mask_scale": "x"},
        {"response": "xml"},
        {"format": "gif"},
    ],
)
def test_anonymize_bad_options(client, face_photo, options):
    resp = client.post("/v1/anonymize", files={"image": ("p.png", png_bytes(face_photo[:64, :64]))}, data=options)
    assert_json_error(resp, 422, "invalid_option")


# ----------------------------------------------------------------------------------------------- privacy


def test_uploads_never_touch_the_disk(client, portrait, face_photo, monkeypatch, tmp_path):
    """No file appears in the temp folder or the working directory, and no temporary file is even opened
    (Linux TemporaryFile is anonymous, so the `tempfile` module is spied on as well)."""
    created: list[str] = []
    real = {
        name: getattr(tempfile, name)
        for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp", "mkdtemp", "SpooledTemporaryFile")
    }

    def spy(name):
        def wrapper(*args, **kwargs):
            created.append(name)
            return real[name](*args, **kwargs)

        return wrapper

    for name in real:
        monkeypatch.setattr(tempfile, name, spy(name))
    # the spy sees what Starlette's form parser would do with a large upload
    with tempfile.SpooledTemporaryFile(max_size=10) as f:
        f.write(b"x" * 100)
    assert created, "the tempfile spy does not work"
    created.clear()

    # a temp folder of this test's own: the machine's /tmp also holds what other processes create meanwhile
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    before_tmp, before_cwd = set(os.listdir(tmpdir)), set(os.listdir(Path.cwd()))
    noise = np.random.default_rng(0).integers(0, 256, (620, 800, 3), dtype=np.uint8)
    big = png_bytes(noise)
    assert len(big) > 1_000_000
    uploads = [png_bytes(portrait), big, jpeg_with_metadata(portrait)]
    for data in uploads:
        assert _post_matte(client, data, output="alpha").status_code == 200
        assert client.post("/v1/anonymize", files={"image": ("x.png", data)}).status_code == 200
    assert _post_matte(client, b"not an image").status_code == 422
    assert created == []
    assert set(os.listdir(tmpdir)) - before_tmp == set()
    assert set(os.listdir(Path.cwd())) - before_cwd == set()


def test_access_log_never_shows_query_strings(server, client, portrait):
    from p3m.serve.middleware import AccessLogFilter

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "POST", "/v1/matte?name=secret", "1.1", 200),
        None,
    )
    assert AccessLogFilter().filter(record)
    assert "secret" not in record.getMessage() and "/v1/matte" in record.getMessage()

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, rec: logging.LogRecord) -> None:
            lines.append(rec.getMessage())

    access = logging.getLogger("uvicorn.access")
    handler, level = Collect(), access.level
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    server.server.config.access_log = True
    try:
        _post_matte(client, png_bytes(portrait), output="alpha")
        client.get("/v1/health?who=alice-secret")
        time.sleep(0.2)
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    assert any("/v1/health" in line for line in lines), lines
    assert not any("alice-secret" in line or "photo.jpg" in line for line in lines), lines


# ----------------------------------------------------------------------------------------------- no weights


def test_without_weights_matte_is_503_and_anonymize_works(home, face_photo):
    from p3m.serve import ServeSettings, create_app

    assert not any(home.iterdir())  # the module's model folder is empty
    # an architecture asked for without weights (no name at all serves the built-in route, below)
    running = RunningServer(create_app(ServeSettings(model="p3m-swin-t", workers=1, queue=1)))
    try:
        with httpx.Client(base_url=running.url, timeout=60) as c:
            health = c.get("/v1/health").json()
            assert health["matting"]["ready"] is False
            assert "--weights" in health["matting"]["message"]
            err = assert_json_error(
                c.post("/v1/matte", files={"image": ("p.png", png_bytes(face_photo))}), 503, "no_weights"
            )
            assert "p3m demo" in err["message"] and "--weights" in err["message"]
            assert c.get("/v1/models").json()["loaded"] is None
            resp = c.post("/v1/anonymize", files={"image": ("p.png", png_bytes(face_photo))})
            assert resp.status_code == 200 and int(resp.headers["x-p3m-faces"]) >= 1
    finally:
        running.stop()


# ----------------------------------------------------------------------------------------------- multipart


def test_parse_multipart_returns_the_exact_bytes():
    """Parts built by an independent encoder (httpx) come back byte for byte, binary noise included."""
    from p3m.errors import ApiError
    from p3m.serve.multipart import parse_multipart

    payload = b"\r\n--boundary\r\n" + bytes(range(256)) * 300 + b"\r\n--"
    request = httpx.Request(
        "POST",
        "http://x/",
        files={"image": ("ph\u00f6to.png", payload, "image/png")},
        data={"output": "alpha", "background": "#00ff00"},
    )
    body = request.read()
    fields = parse_multipart(body, request.headers["content-type"])
    assert set(fields) == {"image", "output", "background"}
    assert fields["image"].data == payload
    assert fields["image"].filename == "ph\u00f6to.png" and fields["image"].content_type == "image/png"
    assert fields["output"].data == b"alpha" and fields["output"].filename is None
    with pytest.raises(ApiError) as exc:
        parse_multipart(body[:-10], request.headers["content-type"])
    assert exc.value.status == 400
    with pytest.raises(ApiError) as exc:
        parse_multipart(body, "application/json")
    assert exc.value.status == 415


# ----------------------------------------------------------------------------------------------- CLI


def test_cli_errors_are_one_line(home, weights, tmp_path, capsys):
    import socket

    from p3m.cli import main

    assert main(["serve", "--weights", str(tmp_path / "missing.safetensors"), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("p3m serve: error:") and "no such file" in err and "\n" not in err

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        assert main(["serve", "--weights", str(weights), "--port", str(port), "--device", "cpu"]) == 2
    finally:
        taken.close()
    err = capsys.readouterr().err.strip()
    assert f"cannot listen on 127.0.0.1:{port}" in err and "\n" not in err

    with pytest.raises(SystemExit) as exc:
        main(["serve", "--workers", "0"])
    assert exc.value.code == 2
    assert "--workers" in capsys.readouterr().err


@pytest.mark.slow
def test_default_serves_the_builtin_route_and_names_it(home, portrait):
    from p3m.serve import ServeSettings, create_app

    assert not any(home.iterdir())
    running = RunningServer(create_app(ServeSettings(workers=1, queue=1)))
    try:
        with httpx.Client(base_url=running.url, timeout=120) as c:
            loaded = c.get("/v1/models").json()["loaded"]
            assert loaded["name"] == "portrait-cf" and loaded["route"] is True and loaded["warning"] == ""
            assert loaded["hands"] is False
            resp = c.post("/v1/matte", data={"output": "alpha"}, files={"image": ("p.png", png_bytes(portrait))})
            assert resp.status_code == 200
            assert resp.headers["x-p3m-model"] == "portrait-cf" and resp.headers["x-p3m-strategy"] == "portrait-cf"
            assert "x-p3m-warning" not in resp.headers
            blank = np.full((120, 160, 3), 128, np.uint8)  # nobody in it: the answer says so
            resp = c.post("/v1/matte", data={"output": "alpha"}, files={"image": ("b.png", png_bytes(blank))})
            assert resp.status_code == 200 and resp.headers["x-p3m-warning"] == "no person found: the matte is empty"
            cup = skimage_data.coffee()  # a matte, but nobody recognised in it: the answer says so
            resp = c.post("/v1/matte", data={"output": "alpha"}, files={"image": ("c.png", png_bytes(cup))})
            assert resp.status_code == 200 and resp.headers["x-p3m-warning"].startswith("no person recognised")
    finally:
        running.stop()


def test_slow_uploads_do_not_lock_other_clients_out(server, client, portrait):
    """Six clients that start an upload and stall must not hold the job slots (workers 1 + queue 2 here): a
    request whose body has arrived is still served at once. Each stalled client has its own address
    (127.0.0.2-7: Linux routes all of 127/8 to loopback), as six machines would."""
    import socket

    port = int(server.url.rsplit(":", 1)[1])
    head = (
        f"POST /v1/matte HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: multipart/form-data; boundary=slow\r\nContent-Length: 200000\r\n\r\n"
        '--slow\r\nContent-Disposition: form-data; name="image"; filename="p.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode() + png_bytes(portrait)[:1000]
    stalled = []
    try:
        for i in range(6):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(f"127.0.0.{2 + i}", 0))
            sock.sendall(head)  # ... and nothing more
            stalled.append(sock)
        deadline = time.monotonic() + 10
        while client.get("/v1/health").json()["jobs"]["uploading"] < 6:
            assert time.monotonic() < deadline, "the stalled uploads never reached the app"
            time.sleep(0.05)
        jobs = client.get("/v1/health").json()["jobs"]
        assert jobs["admitted"] == 0  # receiving a body holds no job slot
        t0 = time.monotonic()
        resp = client.post("/v1/matte", files={"image": ("p.png", png_bytes(portrait))}, data={"output": "alpha"})
        assert resp.status_code == 200, resp.text
        assert time.monotonic() - t0 < 30  # served now, not after the stalled bodies time out
        resp = client.post("/v1/anonymize", files={"image": ("p.png", png_bytes(portrait))})
        assert resp.status_code == 200, resp.text
    finally:
        for sock in stalled:
            sock.close()
    deadline = time.monotonic() + 10
    while client.get("/v1/health").json()["jobs"]["uploading"]:
        assert time.monotonic() < deadline, "closed uploads were never released"
        time.sleep(0.05)


def test_header_values_survive_names_outside_latin1():
    from urllib.parse import unquote

    from p3m.serve.responses import header_text

    assert header_text("portrait-cf") == "portrait-cf"
    name = "模型 (v2).safetensors"
    encoded = header_text(name)
    encoded.encode("latin-1")  # what the server must be able to send
    assert encoded.isascii() and unquote(encoded) == name
    assert header_text("a\r\nX-Injected: 1").isascii() and "\n" not in header_text("a\r\nX-Injected: 1")


def test_weights_named_outside_latin1_still_answer(home, tmp_path, portrait):
    from urllib.parse import unquote

    from p3m.models import create, save_checkpoint
    from p3m.serve import ServeSettings, create_app

    torch.manual_seed(0)
    weights = save_checkpoint(create("p3m-r34", width=16), tmp_path / "模型.safetensors")
    running = RunningServer(
        create_app(ServeSettings(weights=str(weights), strategy="resize", precision="fp32", workers=1, queue=1))
    )
    try:
        with httpx.Client(base_url=running.url, timeout=60) as c:
            resp = c.post("/v1/matte", data={"output": "alpha"}, files={"image": ("p.png", png_bytes(portrait))})
            assert resp.status_code == 200
            assert unquote(resp.headers["x-p3m-model"]) == "模型.safetensors"
    finally:
        running.stop()


def test_serve_hands_reaches_the_builtin_route(home, monkeypatch):
    """`p3m serve --hands` turns the route's hand landmarks on for every request, and /v1/models says so; a
    P3M-Net ignores it (it has no hand step)."""
    from p3m.cli import build_parser
    from p3m.commands import serve as serve_command
    from p3m.serve import ServeSettings, create_app

    seen = {}
    monkeypatch.setattr("p3m.serve.server.serve", lambda settings, **_: seen.setdefault("settings", settings))
    assert serve_command.run(build_parser().parse_args(["serve", "--hands", "--port", "0"])) == 0
    assert seen["settings"].hands is True
    assert build_parser().parse_args(["serve"]).hands is False

    app = create_app(ServeSettings(workers=1, queue=1, hands=True))
    running = RunningServer(app)
    try:
        loaded = httpx.get(f"{running.url}/v1/models", timeout=60).json()["loaded"]
    finally:
        running.stop()
    assert loaded["name"] == "portrait-cf" and loaded["hands"] is True
    assert app.state.matter.session.route.settings.hands is True
