"""Write the stored MediaPipe outputs that p3m's PyTorch ports of MediaPipe networks are tested against.

Run by a maintainer in a separate environment (MediaPipe needs numpy<2; p3m never depends on it):

    python -m venv /tmp/mp && /tmp/mp/bin/pip install --no-deps mediapipe==0.10.21
    /tmp/mp/bin/pip install "numpy<2" "protobuf<5" absl-py attrs flatbuffers matplotlib \\
        "opencv-contrib-python<4.11" tflite-runtime==2.14.0 scikit-image
    /tmp/mp/bin/python tools/mediapipe_reference_output.py selfie face pose hands --out tests/data
    # once, to make the stored inputs: --p3m names a folder with the P3M-10k demo photos p_818e689d.jpg,
    # p_bd6af989.jpg and p_07141906.jpg (github.com/JizhiziLi/P3M, MIT)
    /tmp/mp/bin/python tools/mediapipe_reference_output.py inputs --p3m P3M_DIR --out tests/data

Two kinds of reference, both from the model files of the mediapipe 0.10.21 wheel:

- **network**: the raw TFLite interpreter (tflite-runtime 2.14, XNNPACK) on a stored input image at the network's
  input size (`face_input_192.png`, `pose_input_256.png`, `hand_input_224.png`; smaller inputs are centre slices
  of them), its raw
  output tensors saved to `mediapipe_<family>.npz` under ``net/<model>/<output>`` (the big ones reduced: the
  rows of the 32 best-scoring anchors, every 4th heatmap pixel);
- **pipeline**: MediaPipe's own solutions (`mp.solutions.face_detection`, `face_mesh`, `pose`, `hands`, static-image
  mode) on whole photos: scikit-image's astronaut and the three P3M photos in tests/data (see its README), saved
  under ``<solution>/<image>/...`` in normalised coordinates as MediaPipe gives them, plus the pose
  segmentation masks as 16-bit PNGs (value / 65535).

`selfie` writes `selfie_<variant>_mediapipe.png` (the confidence mask of the ImageSegmenter task on
`selfie_<variant>_input.png`, 16-bit) as tests/test_selfie.py expects.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np
from skimage import data
from tflite_runtime.interpreter import Interpreter

MODULES = Path(mp.__file__).parent / "modules"
TOP_ANCHORS = 32


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def photos(folder: Path) -> dict[str, np.ndarray]:
    return {
        "astronaut": data.astronaut(),
        "profile": read_rgb(folder / "people_profile.jpg"),
        "walking": read_rgb(folder / "people_walking.jpg"),
        "cap": read_rgb(folder / "people_cap.jpg"),
    }


def digest(rgb: np.ndarray) -> np.ndarray:
    """sha256 of the decoded pixels, so a test can tell that it decodes the photo as this script did."""
    return np.frombuffer(hashlib.sha256(np.ascontiguousarray(rgb).tobytes()).digest(), dtype=np.uint8)


def centre(rgb: np.ndarray, size: int) -> np.ndarray:
    top, left = (rgb.shape[0] - size) // 2, (rgb.shape[1] - size) // 2
    return rgb[top : top + size, left : left + size]


def interpret(model: Path, rgb: np.ndarray, low: float) -> dict[str, np.ndarray]:
    """Raw outputs of the TFLite graph on uint8 RGB mapped to [low, 1]; names cut at the first ';'."""
    it = Interpreter(model_path=str(model))
    it.allocate_tensors()
    x = rgb.astype(np.float32) * np.float32((1.0 - low) / 255.0) + np.float32(low)
    it.set_tensor(it.get_input_details()[0]["index"], x[None])
    it.invoke()
    return {d["name"].split(";")[0]: it.get_tensor(d["index"])[0].copy() for d in it.get_output_details()}


def network_outputs(model: str, rgb: np.ndarray, low: float, names: dict[str, str]) -> dict[str, np.ndarray]:
    """The raw outputs of a landmark network, flattened, saved as net/<model>/<key> for each key: output name."""
    raw = interpret(MODULES / model, rgb, low)
    stem = Path(model).stem
    return {f"net/{stem}/{key}": raw[name].reshape(-1) for key, name in names.items()}


def detector_outputs(out: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """A detector's scores in full, and the box rows of its best anchors (with their indices)."""
    boxes, scores = sorted(out.values(), key=lambda a: a.shape[-1], reverse=True)
    top = np.argsort(-scores[:, 0])[:TOP_ANCHORS]
    return {f"{prefix}/scores": scores[:, 0], f"{prefix}/top": top, f"{prefix}/top_boxes": boxes[top]}


def inputs(folder: Path, p3m: Path | None) -> None:
    """The stored test inputs: two P3M photos (MIT, the authors' P3M-10k demo images) made smaller as JPEG, and
    the network-level inputs cut from the astronaut and from the singer's photo."""
    if p3m is None:
        raise SystemExit("inputs needs --p3m: the folder holding p_818e689d.jpg, p_bd6af989.jpg and p_07141906.jpg")
    sources = (
        ("profile", "p_818e689d", (640, 400)),
        ("walking", "p_bd6af989", (360, 518)),
        ("cap", "p_07141906", (480, 480)),
    )
    for name, source, size in sources:
        image = cv2.resize(cv2.imread(str(p3m / f"{source}.jpg")), size, interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"people_{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    face_crop = cv2.resize(data.astronaut()[58:202, 153:297], (192, 192), interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(str(folder / "face_input_192.png"), cv2.cvtColor(face_crop, cv2.COLOR_RGB2BGR))
    singer = cv2.imread(str(folder / "people_profile.jpg"))
    side = max(singer.shape[:2])
    square = np.zeros((side, side, 3), np.uint8)
    top = (side - singer.shape[0]) // 2
    square[top : top + singer.shape[0]] = singer
    cv2.imwrite(str(folder / "pose_input_256.png"), cv2.resize(square, (256, 256), interpolation=cv2.INTER_AREA))
    hand = cv2.resize(singer[214:304, 382:472], (224, 224), interpolation=cv2.INTER_LINEAR)  # his open left hand
    cv2.imwrite(str(folder / "hand_input_224.png"), hand)


def selfie(folder: Path) -> None:
    from mediapipe.tasks.python import BaseOptions, vision

    for variant, model in {"general": "selfie_segmentation", "landscape": "selfie_segmentation_landscape"}.items():
        rgb = read_rgb(folder / f"selfie_{variant}_input.png")
        options = vision.ImageSegmenterOptions(
            base_options=BaseOptions(model_asset_path=str(MODULES / "selfie_segmentation" / f"{model}.tflite")),
            output_confidence_masks=True,
            output_category_mask=False,
        )
        with vision.ImageSegmenter.create_from_options(options) as segmenter:
            result = segmenter.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb)))
        mask = result.confidence_masks[0].numpy_view()
        cv2.imwrite(
            str(folder / f"selfie_{variant}_mediapipe.png"), np.rint(np.clip(mask, 0, 1) * 65535).astype(np.uint16)
        )


def face(folder: Path) -> None:
    out: dict[str, np.ndarray] = {}
    crop = read_rgb(folder / "face_input_192.png")
    out.update(
        network_outputs(
            "face_landmark/face_landmark.tflite", crop, 0.0, {"landmarks": "conv2d_21", "presence": "conv2d_31"}
        )
    )
    for name, size in (("face_detection_short_range", 128), ("face_detection_full_range_sparse", 192)):
        raw = interpret(MODULES / "face_detection" / f"{name}.tflite", centre(crop, size), -1.0)
        out.update(detector_outputs(raw, f"net/{name}"))
    for image, rgb in photos(folder).items():
        out[f"digest/{image}"] = digest(rgb)
        for selection, variant in enumerate(("short", "full")):
            with mp.solutions.face_detection.FaceDetection(model_selection=selection) as detector:
                found = detector.process(rgb).detections or []
            boxes = [d.location_data.relative_bounding_box for d in found]
            out[f"face_detection/{variant}/{image}/boxes"] = np.array(
                [[b.xmin, b.ymin, b.xmin + b.width, b.ymin + b.height] for b in boxes], np.float32
            ).reshape(-1, 4)
            out[f"face_detection/{variant}/{image}/keypoints"] = np.array(
                [[[k.x, k.y] for k in d.location_data.relative_keypoints] for d in found], np.float32
            ).reshape(-1, 6, 2)
            out[f"face_detection/{variant}/{image}/scores"] = np.array([d.score[0] for d in found], np.float32)
        with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=4) as mesh:
            faces = mesh.process(rgb).multi_face_landmarks or []
        out[f"face_mesh/{image}/landmarks"] = np.array(
            [[[p.x, p.y, p.z] for p in f.landmark] for f in faces], np.float32
        ).reshape(-1, 468, 3)
    np.savez_compressed(folder / "mediapipe_face.npz", **out)


def pose(folder: Path) -> None:
    out: dict[str, np.ndarray] = {}
    crop = read_rgb(folder / "pose_input_256.png")
    names = {"landmarks": "Identity", "presence": "Identity_1", "world": "Identity_4"}
    out.update(network_outputs("pose_landmark/pose_landmark_full.tflite", crop, 0.0, names))
    net = interpret(MODULES / "pose_landmark" / "pose_landmark_full.tflite", crop, 0.0)
    out["net/pose_landmark_full/heatmap"] = net["Identity_3"][::4, ::4].astype(np.float32)
    segmentation = net["Identity_2"][..., 0]
    probability = 1 / (1 + np.exp(-np.clip(segmentation, -80, 80)))
    cv2.imwrite(str(folder / "mediapipe_pose_net_mask.png"), np.rint(probability * 65535).astype(np.uint16))
    raw = interpret(MODULES / "pose_detection" / "pose_detection.tflite", centre(crop, 224), -1.0)
    out.update(detector_outputs(raw, "net/pose_detection"))
    for image, rgb in photos(folder).items():
        out[f"digest/{image}"] = digest(rgb)
        with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True) as model:
            result = model.process(rgb)
        if result.pose_landmarks is None:
            continue
        points = result.pose_landmarks.landmark
        # x, y, z, visibility (the solution leaves each landmark's presence unset: checked at network level only)
        out[f"pose/{image}/landmarks"] = np.array([[p.x, p.y, p.z, p.visibility] for p in points], np.float32)
        world = result.pose_world_landmarks.landmark
        out[f"pose/{image}/world"] = np.array([[p.x, p.y, p.z] for p in world], np.float32)
        mask = np.rint(np.clip(result.segmentation_mask, 0, 1) * 65535).astype(np.uint16)
        cv2.imwrite(str(folder / f"mediapipe_pose_{image}_mask.png"), mask)
    np.savez_compressed(folder / "mediapipe_pose.npz", **out)


def hands(folder: Path) -> None:
    out: dict[str, np.ndarray] = {}
    crop = read_rgb(folder / "hand_input_224.png")
    names = {"landmarks": "Identity", "presence": "Identity_1", "handedness": "Identity_2", "world": "Identity_3"}
    out.update(network_outputs("hand_landmark/hand_landmark_full.tflite", crop, 0.0, names))
    raw = interpret(MODULES / "palm_detection" / "palm_detection_full.tflite", centre(crop, 192), 0.0)
    out.update(detector_outputs(raw, "net/palm_detection_full"))
    for image, rgb in photos(folder).items():
        out[f"digest/{image}"] = digest(rgb)
        with mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=2, model_complexity=1) as model:
            result = model.process(rgb)
        found = result.multi_hand_landmarks or []
        out[f"hands/{image}/landmarks"] = np.array(
            [[[p.x, p.y, p.z] for p in h.landmark] for h in found], np.float32
        ).reshape(-1, 21, 3)
        out[f"hands/{image}/world"] = np.array(
            [[[p.x, p.y, p.z] for p in h.landmark] for h in result.multi_hand_world_landmarks or []], np.float32
        ).reshape(-1, 21, 3)
        # the score of MediaPipe's label "Left" (for a mirrored selfie; the person's right hand in a plain photo)
        out[f"hands/{image}/left_label_score"] = np.array(
            [c.classification[0].score if c.classification[0].label == "Left" else 1 - c.classification[0].score
             for c in result.multi_handedness or []], np.float32
        )  # fmt: skip
    np.savez_compressed(folder / "mediapipe_hands.npz", **out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="+", choices=["inputs", "selfie", "face", "pose", "hands"])
    parser.add_argument("--out", type=Path, required=True, help="the tests/data folder")
    parser.add_argument("--p3m", type=Path, help="for inputs: the folder of the P3M demo photos")
    args = parser.parse_args()
    for what in args.what:
        if what == "inputs":
            inputs(args.out, args.p3m)
        else:
            {"selfie": selfie, "face": face, "pose": pose, "hands": hands}[what](args.out)


if __name__ == "__main__":
    main()
