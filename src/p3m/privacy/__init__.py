"""Privacy toolkit: face detection, P3M private area, obfuscation, dataset anonymisation and audit.

The obfuscation operators live in `p3m.data.obfuscate` (they define P3M-10k's obfuscated faces, which the
synthetic dataset and training also apply) and are re-exported here.
"""

from __future__ import annotations

from p3m.data.obfuscate import METHODS, obfuscate, private_area, transition_band
from p3m.privacy.detect import CenterFaceDetector, Face, FaceDetector, default_detector
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
