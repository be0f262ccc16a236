"""Privacy toolkit: face detection, P3M private area, obfuscation, dataset anonymisation and audit.

`p3m.privacy.obfuscate` depends on nothing but NumPy/OpenCV and can be imported on its own.
"""

from __future__ import annotations

from p3m.privacy.detect import CenterFaceDetector, Face, FaceDetector, default_detector
from p3m.privacy.obfuscate import METHODS, obfuscate, private_area, transition_band
from p3m.privacy.region import face_region

__all__ = [
    "METHODS",
    "CenterFaceDetector",
    "Face",
    "FaceDetector",
    "default_detector",
    "face_region",
    "obfuscate",
    "private_area",
    "transition_band",
]
