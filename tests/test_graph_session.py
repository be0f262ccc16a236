"""The small networks' sessions (p3m.models.graph_session): the shipped ONNX graphs against the torch ports they
were exported from, the one place that picks the runtime, and the built-in route without torch.

The ONNX graphs against MediaPipe's own TFLite outputs, at the tolerances the torch ports are held to:
tests/test_selfie.py, tests/test_face_detector.py and tests/test_pose.py (their network tests run both runtimes).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading

import numpy as np
import onnxruntime as ort
import pytest

from p3m.errors import ConfigError, DeviceError
from p3m.infer.portrait import PortraitMatting
from p3m.io import read_image
from p3m.models.face_mesh import WEIGHTS as MESH_WEIGHTS
from p3m.models.graph_session import (
    GRAPH_THREADS,
    RUNTIME_ENV,
    OnnxGraphSession,
    TorchGraphSession,
    graph_runtime,
    onnx_path,
    open_graph,
)
from p3m.models.shipped_weights import WEIGHTS_DIR
from tests.alike import mattes_differ
from tests.paths import REAL_PHOTOS, REPO
from tools.export_graph_onnx import ROUTE_NETWORKS, TOLERANCE


def test_the_route_networks_and_only_they_ship_an_onnx_graph_in_step_with_their_weights():
    notice = (WEIGHTS_DIR / "NOTICE").read_text()
    assert sorted(p.stem for p in WEIGHTS_DIR.glob("*.onnx")) == sorted(ROUTE_NETWORKS)
    for name in ROUTE_NETWORKS:
        weights = WEIGHTS_DIR / f"{name}.safetensors"
        session = ort.InferenceSession(str(onnx_path(weights)), providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
        # re-export (tools/export_graph_onnx.py) whenever tools/convert_tflite.py rewrites a safetensors file
        assert (
            meta["source"] == weights.name and meta["source_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
        )
        assert meta["licence"] == "Apache-2.0" and f"{name}.onnx" in notice
        # weights kept in fp16 (cast in the graph): the package grows by about the safetensors' size, not twice it
        assert onnx_path(weights).stat().st_size < 2.5 * weights.stat().st_size


@pytest.mark.parametrize("name", ROUTE_NETWORKS)
def test_onnx_graph_computes_what_the_torch_port_computes(name):
    weights = WEIGHTS_DIR / f"{name}.safetensors"
    onnx, port = open_graph(weights, runtime="onnxruntime"), open_graph(weights, runtime="torch")
    assert isinstance(onnx, OnnxGraphSession) and isinstance(port, TorchGraphSession)
    assert onnx.input_size == port.input_size
    x = np.random.default_rng(0).random((2, 3, *onnx.input_size), dtype=np.float32)  # batch 2: the crop pass
    got, expected = onnx(x), port(x)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape and g.dtype == np.float32
        # relative to the output's largest value; measured <= 1.2e-6, and 6.3e-4 on the pose network's
        # segmentation logits (tools/export_graph_onnx.py)
        assert np.abs(g - e).max() <= TOLERANCE * max(1.0, float(np.abs(e).max()))


def test_the_runtime_is_chosen_in_one_place(monkeypatch):
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    assert graph_runtime("cpu") == "onnxruntime"
    assert graph_runtime("cpu", has_onnx=False) == "torch"  # e.g. the opt-in hand networks
    assert graph_runtime("cuda") == "torch" and graph_runtime("cuda:1", "torch") == "torch"
    assert graph_runtime("cpu", "torch") == "torch"
    assert graph_runtime("cpu", "onnxruntime", has_onnx=False) == "torch"
    with pytest.raises(DeviceError, match="CPU only"):
        graph_runtime("cuda", "onnxruntime")
    with pytest.raises(ConfigError, match="unknown network runtime 'tensorrt'"):
        graph_runtime("cpu", "tensorrt")
    monkeypatch.setenv(RUNTIME_ENV, "torch")
    assert graph_runtime("cpu") == "torch" and graph_runtime("cpu", "onnxruntime") == "onnxruntime"
    assert PortraitMatting().net.runtime == "torch"
    monkeypatch.setenv(RUNTIME_ENV, "tflite")
    with pytest.raises(ConfigError, match="P3M_GRAPH_RUNTIME='tflite': use auto or torch"):
        graph_runtime("cpu")
    monkeypatch.setenv(RUNTIME_ENV, "auto")
    assert PortraitMatting().net.runtime == "onnxruntime"
    assert open_graph(MESH_WEIGHTS).runtime == "torch"  # no graph shipped (the privacy tools' face mesh): the port


def test_onnx_sessions_run_on_one_thread_and_serve_several_threads_at_once():
    session = open_graph(WEIGHTS_DIR / "selfie_segmentation.safetensors")
    assert isinstance(session, OnnxGraphSession)
    options = session._session.get_session_options()
    assert GRAPH_THREADS == 1 and options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    inputs = [np.random.default_rng(i).random((1, 3, 256, 256), dtype=np.float32) for i in range(4)]
    alone = [session(x)[0] for x in inputs]
    together: dict[int, np.ndarray] = {}

    def run(i: int) -> None:
        for _ in range(3):
            together[i] = session(inputs[i])[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(together[i], alone[i]) for i in range(4))


@pytest.mark.slow
def test_the_route_mattes_the_shipped_photos_alike_on_both_runtimes():
    onnx, port = PortraitMatting(runtime="onnxruntime"), PortraitMatting(runtime="torch")
    for path in REAL_PHOTOS:
        rgb = read_image(path)
        a, b = onnx.run(rgb), port.run(rgb)
        # measured (benchmarks/bench_route_runtime.py, before the pull toward the priors): identical on these three,
        # and on 11 of the 12 shared portraits; 14 pixels apart (at most 0.037) on the twelfth, where a prior value
        # sat on a threshold; with the pull, within 1/255 but for a pixel at the snap of `clean` (`tests/alike.py`)
        assert not mattes_differ(a.alpha, b.alpha), (path.name, mattes_differ(a.alpha, b.alpha))
        assert (a.warning, a.info["person"], a.info["solver"]) == (b.warning, b.info["person"], b.info["solver"])


# a fresh interpreter, so that what the route imports is not hidden by what this test session imported
_ROUTE_WITHOUT_TORCH = """
import sys
import numpy as np
from PIL import Image
import p3m
from p3m.cli import main
from p3m.infer.portrait import PortraitMatting
from p3m.models.hand_landmark import HandLandmarker
photo, no_gap, out = sys.argv[1], sys.argv[2], sys.argv[3]
# the parts of scipy that only some steps use load where those steps run (each costs start-up time): the gaps'
# colour verdict (scipy.spatial) only where a trusted pose shows a gap, which this photo's does not
assert main(["matte", no_gap, "-o", out, "-q"]) == 0
assert "scipy.spatial" not in sys.modules, "scipy.spatial was imported"
matter = p3m.Matter()
assert (matter.model_name, matter.backend, matter.device) == ("portrait-cf", "onnxruntime", "cpu"), repr(matter)
result = matter.matte(photo)
assert 0.05 < result.alpha.mean() < 0.95 and result.info["route"]["person"], result.info
# every network of the default path: selfie, both face detectors, the pose network
route = PortraitMatting()
rgb = np.asarray(Image.open(photo).convert("RGB"))
prob = route.prior(rgb)
pose = route.pose(np.asarray(Image.fromarray(rgb).resize(prob.shape[::-1])), route.mask(prob))
assert pose is not None and pose.segmentation.shape == prob.shape
assert route.faces_on_person(np.zeros((64, 64, 3), np.uint8), np.ones((64, 64), bool)) == (0.0, 0.0)
assert len(route._faces) == 2
assert main(["matte", photo, "-o", out, "-q"]) == 0
# the opt-in hands too: their landmark network and the palm detector its wrapper holds
hands = HandLandmarker()
assert (hands.net.runtime, hands.detector.net.runtime) == ("onnxruntime", "onnxruntime")
hands.run(rgb)
assert main(["matte", photo, "-o", out, "-q", "--hands", "--overwrite"]) == 0
assert "torch" not in sys.modules, "torch was imported"
print("ok")
"""


@pytest.mark.subprocess
def test_the_route_runs_without_importing_torch(tmp_path):
    env = dict(os.environ, P3M_HOME=str(tmp_path / "home"))
    env.pop(RUNTIME_ENV, None)
    cmd = [sys.executable, "-c", _ROUTE_WITHOUT_TORCH, str(REAL_PHOTOS[0]), str(REAL_PHOTOS[1]), str(tmp_path / "out")]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stdout + run.stderr
    assert (tmp_path / "out" / f"{REAL_PHOTOS[0].stem}_alpha.png").is_file()
