"""The web page of `p3m serve` in a real browser: Debian's chromium driven by Playwright.

Upload a portrait, wait for the results, check that the images render and that the downloads are valid
PNGs (the alpha download must equal the cutout's alpha channel), run the anonymisation, check that a bad
file gives a readable error, and that the page loads nothing from other hosts. A screenshot is kept in
test-artifacts/. Skipped only when /usr/bin/chromium is missing outside CI (in CI it must run).
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.paths import ARTIFACTS, CHROMIUM, PORTRAITS, REAL_PHOTOS

pytestmark = pytest.mark.browser

PORTRAIT = PORTRAITS / "image" / "p_09ba26b4.jpg"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        pytest.fail(
            "CI is set but /usr/bin/chromium is missing: install it with `apt-get install -y chromium`", pytrace=False
        )
    pytest.skip(
        "/usr/bin/chromium is not installed (apt-get install -y chromium); the browser test needs it",
        allow_module_level=True,
    )

sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("fastapi")

from PIL import Image  # noqa: E402

from p3m.io import has_metadata  # noqa: E402


@contextlib.contextmanager
def running_server(home: Path, **settings):
    """A real uvicorn server of `p3m serve` on a free port, with `home` as the model folder; yields its URL."""
    from p3m.serve import ServeSettings, create_app
    from p3m.serve.server import bind_socket, make_server

    patch = pytest.MonkeyPatch()
    patch.setenv("P3M_HOME", str(home))
    app = create_app(ServeSettings(device="cpu", workers=1, queue=2, **settings))
    sock = bind_socket("127.0.0.1", 0)
    server = make_server(app, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        patch.undo()


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    import torch

    from p3m.models import create, save_checkpoint

    torch.set_num_threads(1)
    torch.manual_seed(0)
    weights = save_checkpoint(create("p3m-r34", width=16), tmp_path_factory.mktemp("ckpt") / "w.safetensors")
    with running_server(tmp_path_factory.mktemp("home"), weights=str(weights), strategy="resize") as url:
        yield url


@pytest.fixture(scope="module")
def portrait_file() -> Path:
    """A real photo: one of the shared set where it is checked out, else one shipped in tests/data."""
    return PORTRAIT if PORTRAIT.is_file() else REAL_PHOTOS[1]


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")  # new, empty user data dir
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            accept_downloads=True,
            viewport={"width": 1400, "height": 1000},
        )
        page = context.new_page()
        page.set_default_timeout(90_000)
        yield page
        context.close()


def natural_width(page, selector: str) -> int:
    return page.eval_on_selector(selector, "img => img.complete ? img.naturalWidth : 0")


def download_png(page, selector: str, tmp_path: Path) -> Image.Image:
    with page.expect_download() as info:
        page.click(selector)
    download = info.value
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert has_metadata(path) == [], (selector, has_metadata(path))
    img = Image.open(path)
    img.load()
    assert img.format == "PNG"
    return img


@pytest.mark.slow
def test_page_mattes_anonymises_and_downloads(base_url, browser_page, portrait_file, tmp_path):
    page = browser_page
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    page.goto(base_url + "/")
    page.wait_for_selector("#model-pill.pill-ok")
    assert "w.safetensors" in page.inner_text("#model-pill")  # the weights actually used
    assert "p3m-r34" in page.get_attribute("#model-pill", "title")
    assert page.is_enabled("#strategy")

    with Image.open(portrait_file) as src:
        size = src.size
    page.set_input_files("#file-input", str(portrait_file))  # choosing a photo starts the matting
    page.wait_for_selector("#dl-composite:not([hidden])")
    assert page.is_hidden("#error")
    assert page.inner_text("#status").startswith("Done in")
    for selector in ("#img-original", "#img-alpha", "#img-cutout", "#img-composite"):
        page.wait_for_function("s => document.querySelector(s).complete", arg=selector)
        assert natural_width(page, selector) == size[0], selector

    cutout = download_png(page, "#dl-cutout", tmp_path)
    assert cutout.mode == "RGBA" and cutout.size == size
    alpha = download_png(page, "#dl-alpha", tmp_path)
    assert alpha.size == size
    a = np.asarray(alpha.convert("RGBA"))
    np.testing.assert_array_equal(a[..., 0], np.asarray(cutout)[..., 3])  # the matte the server computed
    assert (a[..., 3] == 255).all()
    composite = download_png(page, "#dl-composite", tmp_path)
    assert composite.size == size

    # the foreground colours: asked for on demand, exactly the API's answer (a canvas would lose them at alpha 0)
    assert page.is_visible("#fg-card") and page.is_hidden("#dl-fg")
    page.click("#run-fg")
    page.wait_for_selector("#dl-fg:not([hidden])")
    page.wait_for_function("() => document.querySelector('#img-fg').complete")
    assert natural_width(page, "#img-fg") == size[0]
    fg = download_png(page, "#dl-fg", tmp_path)
    assert fg.mode == "RGB" and fg.size == size
    import httpx

    direct = httpx.post(
        base_url + "/v1/matte",
        files={"image": ("p", portrait_file.read_bytes())},
        data={"output": "fg", "strategy": "resize"},
        timeout=120,
    )
    np.testing.assert_array_equal(np.asarray(fg), np.asarray(Image.open(io.BytesIO(direct.content))))
    opaque = np.asarray(cutout)[..., 3] == 255  # where the cutout is opaque its colours are the foreground
    np.testing.assert_array_equal(np.asarray(fg)[opaque], np.asarray(cutout)[..., :3][opaque])

    # another background colour recomposites in the page
    page.click('.swatch[data-color="#22c55e"]')
    page.wait_for_selector('#dl-composite[data-background="#22c55e"]', state="attached")
    green = np.asarray(download_png(page, "#dl-composite", tmp_path).convert("RGB")).astype(int)
    transparent = np.asarray(cutout)[..., 3] == 0
    if transparent.any():
        assert np.abs(green[transparent] - [0x22, 0xC5, 0x5E]).max() <= 1

    page.click("#run-anon")
    page.wait_for_selector("#dl-anon:not([hidden])")
    page.wait_for_function("() => document.querySelector('#img-anon').complete")
    assert natural_width(page, "#img-anon") == size[0]
    summary = page.inner_text("#anon-summary")
    assert "obfuscated" in summary or "no face" in summary
    anonymized = download_png(page, "#dl-anon", tmp_path)
    assert anonymized.size == size

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve_page.png"), full_page=True)

    assert all(u.startswith((base_url, "blob:", "data:")) for u in requests), requests
    assert problems == []


def test_page_shows_a_clear_error_for_a_bad_file(base_url, browser_page, tmp_path):
    page = browser_page
    page.goto(base_url + "/")
    page.wait_for_selector("#model-pill.pill-ok")
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"this is not a photo" * 100)
    page.set_input_files("#file-input", str(bad))
    page.wait_for_selector("#error:not([hidden])")
    text = page.inner_text("#error")
    assert "holiday.jpg: not a recognised image file" in text and "invalid_image" in text
    assert page.inner_text("#status") == "Failed"
    assert page.is_enabled("#run-matte")  # the page stays usable
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve_page_error.png"))


def test_dropping_a_photo_on_the_page_mattes_it(base_url, browser_page):
    page = browser_page
    page.goto(base_url + "/")
    page.wait_for_selector("#model-pill.pill-ok")
    page.evaluate("""async () => {
        const canvas = document.createElement("canvas");
        canvas.width = 160; canvas.height = 120;
        const ctx = canvas.getContext("2d");
        ctx.fillStyle = "#c08060"; ctx.fillRect(0, 0, 160, 120);
        const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
        const transfer = new DataTransfer();
        transfer.items.add(new File([blob], "dropped.png", {type: "image/png"}));
        document.getElementById("drop-zone").dispatchEvent(
            new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }""")
    page.wait_for_selector("#dl-cutout:not([hidden])")
    assert page.inner_text("#file-name") == "dropped.png"
    assert page.is_hidden("#error")
    assert natural_width(page, "#img-cutout") == 160


def test_default_page_names_the_builtin_route(browser_page, tmp_path):
    """No weights named, none in the folder: the built-in portrait-cf route, named on the badge, no strategies."""
    page = browser_page
    with running_server(tmp_path / "home") as url:
        page.goto(url + "/")
        page.wait_for_selector("#model-pill.pill-ok")
        assert page.inner_text("#model-pill").startswith("portrait-cf")
        assert "closed-form" in page.get_attribute("#model-pill", "title")
        assert page.is_disabled("#strategy")


def test_page_warns_about_weights_trained_on_drawn_portraits(browser_page, tmp_path):
    import torch

    from p3m.models import create, save_checkpoint

    torch.manual_seed(0)
    weights = save_checkpoint(
        create("p3m-r34", width=16), tmp_path / "drawn.safetensors", metadata={"dataset_synthetic": True}
    )
    page = browser_page
    with running_server(tmp_path / "home", weights=str(weights), strategy="resize") as url:
        page.goto(url + "/")
        page.wait_for_selector("#model-pill.pill-warn")
        assert page.inner_text("#model-pill").startswith("drawn.safetensors")
        assert "synthetic" in page.inner_text("#notice")
