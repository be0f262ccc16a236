"""The PyTorch port of MediaPipe's face detection (BlazeFace) against MediaPipe 0.10.21's own outputs.

Network level: the TFLite interpreter's raw outputs on stored inputs. Pipeline level: `FaceDetector.detect`
against `mp.solutions.face_detection` on whole photos (tests/mediapipe_reference.py). The anchor, decoding and
non-maximum suppression steps alone: tests/test_mediapipe_calculators.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from p3m.models.face_detector import KEYPOINTS, FaceDetector
from p3m.models.graph_session import open_graph
from p3m.models.shipped_weights import WEIGHTS_DIR
from tests.mediapipe_reference import DATA, PHOTOS, centre, photo, read_rgb, reference

NETS = {"short": ("face_detection_short_range", 128), "full": ("face_detection_full_range_sparse", 192)}


@pytest.fixture(scope="module", params=[(v, r) for v in ("short", "full") for r in ("onnxruntime", "torch")])
def detector(request) -> FaceDetector:
    variant, runtime = request.param
    return FaceDetector(variant, runtime=runtime)


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
@pytest.mark.parametrize("variant", ["short", "full"])
def test_network_matches_the_tflite_interpreter(variant, runtime):
    name, size = NETS[variant]
    ref = reference("face")
    rgb = centre(read_rgb(DATA / "face_input_192.png"), size)
    net = open_graph(WEIGHTS_DIR / f"{name}.safetensors", runtime=runtime)  # the port, or its ONNX graph
    assert net.runtime == runtime
    boxes, logits = net(rgb.transpose(2, 0, 1)[None].astype(np.float32) * np.float32(2 / 255) - 1)
    top = ref[f"net/{name}/top"]
    # measured on the 2-core dev machine: 4.6e-5 (scores), 3.4e-5 (boxes, in input pixels); ONNX Runtime within
    # 1.2e-6 (relative) of the port
    np.testing.assert_allclose(logits[0, :, 0], ref[f"net/{name}/scores"], atol=5e-4)
    np.testing.assert_allclose(boxes[0][top], ref[f"net/{name}/top_boxes"], atol=5e-4)
    assert ref[f"net/{name}/scores"].max() > 0.5  # a face is in the input (p > 0.6): not a comparison of noise


@pytest.mark.parametrize("image", PHOTOS)
def test_detections_match_mediapipe(detector, image):
    variant = "short" if detector.spec.input_size == 128 else "full"
    rgb = photo(image, "face")
    ref = reference("face")
    key = f"face_detection/{variant}/{image}"
    faces = detector.detect(rgb)
    assert len(faces) == len(ref[f"{key}/scores"])
    scale = np.array([rgb.shape[1], rgb.shape[0]])
    for face, box, points, score in zip(
        faces, ref[f"{key}/boxes"], ref[f"{key}/keypoints"], ref[f"{key}/scores"], strict=True
    ):
        # measured: <= 1e-4 px and equal scores (crops bit-identical to MediaPipe's, network within 5e-5)
        np.testing.assert_allclose(face.box, box * np.tile(scale, 2), atol=0.05)
        np.testing.assert_allclose(face.keypoints, points * scale, atol=0.05)
        assert abs(face.score - score) < 1e-3
        assert face.keypoints.shape == (len(KEYPOINTS), 2)


def test_keypoints_name_the_subjects_eyes():
    (face,) = FaceDetector().detect(photo("astronaut", "face"))
    right_eye, left_eye, nose = (face.keypoints[KEYPOINTS.index(k)] for k in ("right_eye", "left_eye", "nose_tip"))
    assert right_eye[0] < nose[0] < left_eye[0]  # a face seen from the front: its right eye on the image left
    x0, y0, x1, y1 = face.box
    assert x0 < nose[0] < x1 and y0 < nose[1] < y1


def test_no_face_no_detection_and_bad_input_refused():
    assert FaceDetector().detect(np.full((200, 300, 3), 127, np.uint8)) == []
    with pytest.raises(ValueError, match="uint8 RGB"):
        FaceDetector().detect(np.zeros((64, 64), np.float32))
    with pytest.raises(ValueError, match="unknown variant"):
        FaceDetector("back")
