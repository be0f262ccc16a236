"""The probe sweep (issue 19): every verb, the Python API and the server, fed hostile and odd inputs.

Inputs (tests/hostile.py): empty and zero-byte files, truncated PNG/JPEG, text named .png, a decompression bomb, 1x1
images and 1-pixel strips, 16-bit/CMYK/palette/LA/I;16/bilevel/float/int32 images, an animated PNG, a folder named
like an image, symlink loops and links to nowhere, an unreadable file, names with spaces, accents and an emoji, and
a name that is not UTF-8; configs that are binary, a folder, nested too deeply or a billion laughs; a read-only
output folder and a full disk (tmpfs mounts in a private mount namespace, where the system allows it).

Every probe asserts: exit code 0, 1 or 2 as documented; no "Traceback" and no "internal error" in the output; the
problem files each named on an error line; and nothing a user made replaced (the input folder is byte-for-byte
as before). The API raises only `P3MError`s; the server answers no 5xx.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from p3m.cli import main
from p3m.errors import P3MError
from tests.hostile import NON_UTF8, UNICODE, make_inputs, portrait, unreadable

# decodable images of odd sizes, modes and names: every verb that reads images takes them
GOOD = [
    "good.png",
    "one.png",
    "one.jpg",
    "two.png",
    "strip_wide.png",
    "strip_tall.png",
    "gray16.png",
    "rgb16.png",
    "cmyk.jpg",
    "palette.png",
    "palette_transparent.png",
    "la.png",
    "rgba_clear.png",
    "bilevel.png",
    "float.tif",
    "int32.tif",
    "animated.png",
    "mode_i16.png",
    UNICODE,
    NON_UTF8,
]
# files that are not (whole) images: each is one error line naming it
BROKEN = [
    "empty.png",
    "empty.jpg",
    "text.png",
    "truncated.png",
    "truncated.jpg",
    "header_only.jpg",
    "bomb.png",
    "zero_size.png",
    "unreadable.png",
]
# named explicitly, these are no files at all
NOT_FILES = ["folder.png", "loop_a.png", "dangling.png"]


@pytest.fixture
def odd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    files = make_inputs(tmp_path / "in")
    files["unreadable.png"] = tmp_path / "in" / "unreadable.png"
    files["unreadable.png"].write_bytes(files["good.png"].read_bytes())
    unreadable(files["unreadable.png"], monkeypatch)
    return files


def _snapshot(folder: Path) -> dict[str, object]:
    """What a user made in ``folder``: every entry with its link target or its bytes' hash and its mode."""
    state: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        key = os.fsencode(path.relative_to(folder)).hex()
        if path.is_symlink():
            state[key] = ("link", os.readlink(path))
        elif path.is_dir():
            state[key] = ("dir", path.stat().st_mode)
        else:
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except PermissionError:  # the unreadable file: its mode and size tell it is untouched
                digest = f"unreadable, {path.stat().st_size} bytes"
            state[key] = ("file", digest, path.stat().st_mode)
    return state


def probe(argv: list[str]) -> tuple[int, str]:
    """Run `p3m ARGV` in this process -> (exit code, stdout + stderr), asserting the probe's rules."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    text = out.getvalue() + err.getvalue()
    assert code in (0, 1, 2), (argv, code, text)
    assert "Traceback" not in text and "internal error" not in text, (argv, text)
    return code, text


def _error_lines(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if name in line and "error" in line]


# ------------------------------------------------------------------------------------------------------- verbs


@pytest.mark.slow
def test_matte_takes_every_odd_image_and_names_every_broken_file_once(odd, tmp_path) -> None:
    before = _snapshot(tmp_path / "in")
    named = [str(odd[n]) for n in GOOD + BROKEN]
    code, text = probe(["matte", *named, "-o", str(tmp_path / "out"), "--save", "alpha,rgba,fg,composite", "-q"])
    assert code == 1
    for name in BROKEN:  # one error line about each (one.jpg's says it clashes with one.png, and so on)
        assert len([line for line in text.splitlines() if line.startswith(f"p3m matte: error: {odd[name]}:")]) == 1
    for name in GOOD:
        stem = Path(name).stem
        assert all((tmp_path / "out" / f"{stem}_{k}.png").is_file() for k in ("alpha", "rgba", "fg", "composite")), name
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    assert _snapshot(tmp_path / "in") == before
    # the folder itself: links to nowhere and loops are named, the folder named like an image is not an image
    code, text = probe(["matte", str(tmp_path / "in"), "-o", str(tmp_path / "out2"), "-q"])
    assert code == 1 and "dangling.png: broken symlink" in text and "loop_a.png: symlink loop" in text
    for name in NOT_FILES:  # named one by one: one line each, nothing to matte -> exit 2
        code, text = probe(["matte", str(odd[name]), "-o", str(tmp_path / "out3")])
        assert code == 2 and text.count("\n") == 1 and name in text
    assert _snapshot(tmp_path / "in") == before


@pytest.mark.slow
def test_anonymize_takes_every_odd_image_and_names_every_broken_file(odd, tmp_path) -> None:
    before = _snapshot(tmp_path / "in")
    named = [str(odd[n]) for n in GOOD + BROKEN]
    code, text = probe(["anonymize", *named, "-o", str(tmp_path / "out")])
    assert code == 1
    for name in BROKEN:
        assert _error_lines(text, name), (name, text)
    report = (tmp_path / "out" / "anonymize_report.csv").read_bytes()
    assert os.fsencode(NON_UTF8) in report  # a name that is not UTF-8 is written as the bytes it is
    assert _snapshot(tmp_path / "in") == before
    for name in NOT_FILES:
        code, text = probe(["anonymize", str(odd[name]), "-o", str(tmp_path / "out2")])
        assert code == 1 and name in text


def test_audit_evaluate_and_prepare_on_odd_folders(odd, tmp_path) -> None:
    folder = tmp_path / "in"
    before = _snapshot(folder)
    code, text = probe(["audit", str(folder), "-q", "--report", str(tmp_path / "audit.csv")])
    assert code == 1
    for name in BROKEN:
        assert _error_lines(text, name), (name, text)
    # a report path that holds a user's file is refused, the file kept
    code, text = probe(["audit", str(folder), "-q", "--report", str(odd["good.png"])])
    assert code == 2 and "not an earlier report" in text
    for target in (odd["good.png"], odd["loop_a.png"], tmp_path / "missing"):
        assert probe(["audit", str(target), "-q"])[0] == 2
    code, text = probe(["evaluate", "--pred", str(folder), "--gt", str(folder), "--workers", "1"])
    assert code == 2 and "problems" in text
    for gt in (odd["good.png"], odd["loop_a.png"], tmp_path / "missing"):
        assert probe(["evaluate", "--pred", str(folder), "--gt", str(gt), "--workers", "1"])[0] == 2
    for root in (folder, odd["good.png"], odd["loop_a.png"]):
        assert probe(["prepare", str(root), "-q"])[0] == 2
    assert _snapshot(folder) == before


@pytest.mark.slow
def test_configs_that_are_not_configs(odd, tmp_path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("train: " + "[" * 50_000 + "]" * 50_000 + "\n")
    laughs = tmp_path / "laughs.yaml"  # nine levels of nine aliases: a value whose full repr is gigabytes
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    laughs.write_text("\n".join([*lines, "train: {max_steps: *a8}"]) + "\n")
    binary = odd["good.png"]
    for verb, out in (("train", "--out"), ("benchmark", "-o")):
        for config in (binary, odd["folder.png"], odd["loop_a.png"], deep, laughs, tmp_path / "missing.yaml"):
            start = time.monotonic()
            code, text = probe([verb, str(config), out, str(tmp_path / verb), "-q"])
            assert code == 2 and text.count("\n") == 1, (config, text)
            assert time.monotonic() - start < 30, config
    for bad in (f"data.root={odd['good.png']}", f"data.root={tmp_path / 'in'}", "train.max_steps=-1", "x=1", "=1"):
        assert probe(["train", "demo", "--set", bad, "--out", str(tmp_path / "t"), "-q"])[0] == 2


@pytest.mark.slow  # keeps the fast loop under a minute (about 1 s of CPU); make test runs it
def test_synth_export_models_and_demo_help(odd, tmp_path, home) -> None:
    for target in (odd["good.png"], tmp_path / "in", odd["good.png"] / "sub"):
        assert probe(["synth", str(target), "-q"])[0] == 2
    for size in ("0", "1x1", "abc", "99999"):
        assert probe(["synth", str(tmp_path / "s"), "--size", size, "-q"])[0] == 2
    for name in ("empty.png", "folder.png", "loop_a.png", "dangling.png", "text.png", "unreadable.png"):
        code, text = probe(["export", "--weights", str(odd[name]), "-o", str(tmp_path / "x.onnx")])
        assert code == 2 and name in text and text.count("\n") == 1, text
    models = home / "models"
    models.mkdir(parents=True)
    for name in ("empty.png", "text.png", "bomb.png"):
        shutil.copy(odd[name], models / (Path(name).stem + ".pth"))
    os.symlink(models / "x.pth", models / "y.pth")
    os.symlink(models / "y.pth", models / "x.pth")
    code, text = probe(["models"])
    assert code == 0 and "5 unusable entries" in text
    code, text = probe(["demo", "--help"])
    assert code == 0 and "usage: p3m demo" in text


# ------------------------------------------------------------------------------------------------- the API


@pytest.mark.slow
def test_the_api_raises_only_p3m_errors(odd) -> None:
    import warnings

    from p3m.infer.matter import Matter

    matter = Matter()
    arrays = [
        np.full((20, 20, 3), np.nan),
        np.full((20, 20, 3), 200.0, np.float32),
        np.ones((20, 20), bool),
        np.full((20, 20, 3), -5, np.int32),
        np.zeros((0, 0, 3), np.uint8),
        np.zeros((5, 5, 5), np.uint8),
        np.zeros((1, 5, 5, 3), np.uint8),
        np.array([[object()]]),
        np.array(3),
        np.zeros((5, 5, 3), complex),
        None,
        [[1, 2, 3]],
    ]
    inputs: list[object] = [*arrays, b"", b"\x89PNG", "/nonexistent.png"]
    for name, path in odd.items():
        inputs.append(path)
        if name in BROKEN and name != "unreadable.png":  # the same bytes, and what PIL itself opens of them
            inputs.append(path.read_bytes())
            with contextlib.suppress(Exception):
                inputs.append(Image.open(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for item in inputs:
            try:
                matter.matte(item)
            except P3MError as exc:
                assert "\n" not in str(exc)
            # any other exception fails the test: an internal error reachable from the API
        result = matter.matte(odd["good.png"], foreground=True)
        for background in ((1, 2), "red", np.zeros((0, 0, 3), np.uint8), (300, 0, 0), np.zeros((4, 4), np.uint8)):
            with pytest.raises(P3MError):
                result.render("composite", background)  # type: ignore[arg-type]


def test_a_pil_bomb_is_refused_before_its_pixels_are_decoded(odd) -> None:
    from p3m.errors import ImageError
    from p3m.infer.matter import Matter

    with pytest.raises(ImageError, match="over the limit"):
        Matter().matte(Image.open(odd["bomb.png"]))


def test_a_pil_i16_image_mattes_like_its_file(odd) -> None:
    """Item 11's repro: a mode I;16 PIL image and the same file by path give one matte."""
    import warnings

    from p3m.infer.matter import Matter

    path = odd["mode_i16.png"]
    rgb = (portrait(160, 120).mean(axis=2) * 257).astype(np.uint16)
    Image.fromarray(rgb).save(path)
    image = Image.open(path)
    assert image.mode == "I;16"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_path, by_pil = Matter().matte(path), Matter().matte(image)
    np.testing.assert_array_equal(by_path.alpha, by_pil.alpha)
    with pytest.raises(P3MError, match=r"\[0, 1\]"):  # float 0..255 is an error, never a silent clip
        Matter().matte(np.asarray(Image.open(odd["good.png"])).astype(np.float32))


# ---------------------------------------------------------------------------------------------- the server


@pytest.mark.slow
def test_the_server_answers_every_odd_upload_without_a_5xx(odd) -> None:
    pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    from p3m.serve import ServeSettings, create_app
    from p3m.serve.server import bind_socket, make_server

    sock = bind_socket("127.0.0.1", 0)
    server = make_server(create_app(ServeSettings(workers=1, queue=4)), log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=120) as client:
            for name in GOOD + BROKEN:
                if name == "unreadable.png":
                    continue
                data = odd[name].read_bytes()
                upload = os.fsencode(name).decode("latin-1")
                for endpoint, form in (("/v1/matte", {"output": "composite"}), ("/v1/anonymize", {})):
                    answer = client.post(endpoint, files={"image": (upload, data)}, data=form)
                    assert answer.status_code < 500, (endpoint, name, answer.text)
                    assert (answer.status_code == 200) == (name in GOOD), (endpoint, name, answer.text)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


# ------------------------------------------------------------------------------------- real processes and mounts


_PRINTS = "import sys; from p3m.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.slow
@pytest.mark.subprocess
def test_names_that_are_not_utf8_print_on_a_strict_terminal(tmp_path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    name = NON_UTF8
    Image.fromarray(portrait()).save(folder / name, format="PNG")
    env = dict(os.environ, PYTHONIOENCODING="utf-8")  # strict stdout, as under a UTF-8 locale
    for argv in (
        ["anonymize", str(folder), "-o", str(tmp_path / "a")],
        ["audit", str(folder), "--report", str(tmp_path / "r.csv")],
    ):
        run = subprocess.run([sys.executable, "-c", _PRINTS, *argv], capture_output=True, env=env, timeout=300)
        text = (run.stdout + run.stderr).decode("utf-8", "replace")
        assert run.returncode in (0, 1), text
        assert "Traceback" not in text and "internal error" not in text, text


_MOUNTED = textwrap.dedent(
    """
    import contextlib, io, json, subprocess, sys
    from pathlib import Path
    from p3m.cli import main
    base = Path(sys.argv[1])
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(base / "ro")], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(base / "full")], check=True)
    with contextlib.suppress(OSError), open(base / "full" / "filler", "wb", buffering=0) as fh:
        while True:  # every byte taken: each write then meets a full disk
            fh.write(bytes(4096))
    results = []
    for target in ("ro", "full"):
        t = base / target
        for argv in (
            ["matte", str(base / "in"), "-o", str(t / "m"), "--save", "alpha,rgba,fg,composite", "-q"],
            ["anonymize", str(base / "in"), "-o", str(t / "a")],
            ["audit", str(base / "in"), "-q", "--report", str(t / "audit.csv")],
            ["synth", str(t / "s"), "--train", "2", "--test", "1", "--size", "64", "-q"],
        ):
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                code = main(argv)
            files = sorted(str(p.relative_to(t)) for p in t.rglob("*") if p.is_file() and p.name != "filler")
            results.append({"target": target, "verb": argv[0], "code": code, "text": out.getvalue(), "files": files})
    print(json.dumps(results))
    """
)


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_read_only_folder_and_a_full_disk_are_one_line_each_and_leave_nothing_half_written(tmp_path) -> None:
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("no private mount namespace here (unshare -m): cannot mount a read-only or a tiny file system")
    for sub in ("in", "ro", "full"):
        (tmp_path / sub).mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):  # noisy, so that each set needs more room than the full disk has left
        noisy = np.clip(portrait(256, 192, seed=i).astype(int) + rng.integers(-40, 40, (256, 192, 3)), 0, 255)
        Image.fromarray(noisy.astype(np.uint8)).save(tmp_path / "in" / f"p{i}.png")
    run = subprocess.run(
        ["unshare", "-m", sys.executable, "-c", _MOUNTED, str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    if run.returncode and "mount" in run.stderr and "permission" in run.stderr.lower():
        pytest.skip("mounting is not permitted here")
    assert run.returncode == 0, run.stderr[-3000:]
    import json

    for r in json.loads(run.stdout.splitlines()[-1]):
        assert r["code"] in (1, 2), r
        assert "Traceback" not in r["text"] and "internal error" not in r["text"], r
        assert ("Read-only file system" if r["target"] == "ro" else "No space left on device") in r["text"], r
        assert not [f for f in r["files"] if Path(f).name.startswith(".")], r  # no temporary file left
        if r["verb"] == "matte":  # whole sets only
            stems = {Path(f).name.rsplit("_", 1)[0] for f in r["files"]}
            assert len(r["files"]) == 4 * len(stems), r
