"""What "the same matte up to the networks' float rounding" means for the built-in route.

The route's networks give outputs that differ by float rounding between runtimes (ONNX Runtime and torch, up to
1e-3) and between thread counts (up to 4e-4). The route reads the priors through thresholds and, where the colours
cannot decide, through their values (`PortraitSettings.prior_pull`), and its last step snaps alpha within `clean`
(0.05) of 0 or 1: a value that rounding puts on the other side of a threshold moves a pixel by up to the snap.
Alike: all but a 1e-4 share of the pixels within one 8-bit level, none beyond the snap (and a hair of rounding).
"""

from __future__ import annotations

import numpy as np

from p3m.infer.portrait import PortraitSettings

_LEVEL = 1 / 255
_SHARE = 1e-4


def mattes_differ(a: np.ndarray, b: np.ndarray) -> str:
    """'' when the two HxW float mattes in [0, 1] are alike (module doc), else what differs."""
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    snap = PortraitSettings().clean + 1e-6
    share = float((diff > _LEVEL).mean())
    if diff.max() > snap or share >= _SHARE:
        return f"max difference {diff.max():.6f} (bound {snap:.6f}), share beyond 1/255 {share:.2e} (bound {_SHARE})"
    return ""
