"""Drawn test scenes shared by several test modules: images whose answer is known, and landmark sets.

`drawn_scene` (an opaque ellipse with a soft edge over noise, with its alpha), `small_problem` (a band problem for
the closed-form solver on such a scene), `standing` (BlazePose landmarks of a person with arms and legs apart) and
`given` (the portrait route with a given prior and pose in place of its networks').
"""

from __future__ import annotations

import numpy as np

from p3m.infer.portrait import PortraitMatting
from p3m.models.pose_landmark import LANDMARKS, Pose


def drawn_scene(h: int = 120, w: int = 160, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(HxWx3 uint8 image, HxW float alpha): a smooth-edged ellipse, flat orange, over blue-green noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.sqrt(((yy - h * 0.55) / (h * 0.32)) ** 2 + ((xx - w * 0.5) / (w * 0.22)) ** 2)
    alpha = np.clip((1.0 - r) * 12.0 + 0.5, 0.0, 1.0)  # a soft edge about 3 px wide
    fg = np.array([220.0, 120.0, 40.0])
    bg = np.stack([20 + 30 * rng.random((h, w)), 90 + 60 * rng.random((h, w)), 120 + 60 * rng.random((h, w))], -1)
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), alpha


def small_problem(seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image HxWx3 float64 in [0, 1], unknown HxW bool, known alpha HxW float64): a drawn scene whose unknown band
    touches the image border (windows there are left out, as pymatting does) and holds a known island."""
    image, alpha = drawn_scene(40, 50, seed=seed)
    unknown = np.zeros((40, 50), bool)
    unknown[8:32, 10:40] = True
    unknown[15:25, 20:30] = False
    unknown[0, :] = True
    known = (alpha > 0.5).astype(np.float64)
    return image / 255.0, unknown, known


def standing(width: float = 200.0) -> np.ndarray:
    """(33, 4) landmarks of a person standing with arms held out from the body and legs apart, all visible."""
    lm = np.zeros((33, 4), np.float32)
    lm[:, 3] = 1.0
    points = {
        "left_shoulder": (130, 60), "right_shoulder": (70, 60), "left_elbow": (160, 110), "right_elbow": (40, 110),
        "left_wrist": (170, 160), "right_wrist": (30, 160), "left_hip": (120, 150), "right_hip": (80, 150),
        "left_knee": (140, 210), "right_knee": (60, 210), "left_ankle": (150, 270), "right_ankle": (50, 270),
    }  # fmt: skip
    for name, (x, y) in points.items():
        lm[LANDMARKS.index(name), :2] = (x * width / 200, y * width / 200)
    return lm


def given(pm: PortraitMatting, prob: np.ndarray, landmarks: np.ndarray, segmentation: np.ndarray) -> PortraitMatting:
    """`pm` with a given prior and a given trusted pose in place of the networks'."""
    pm.prior = lambda rgb, image=None: prob

    def pose(image, mask):
        return Pose(landmarks, np.ones(33), np.zeros((33, 3)), segmentation.astype(np.float32), 1.0, None, None)

    pm.pose = pose
    return pm
