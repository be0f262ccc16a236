"""Matting metrics: pure functions of arrays.

Two protocols that must never be mixed in one table: the **P3M protocol** (`p3m.metrics.p3m`,
whole image, the official P3M / GFM evaluation code) and the **DIM protocol** (`p3m.metrics.dim`, unknown region,
the Deep Image Matting MATLAB code).
"""

from __future__ import annotations

from p3m.metrics.p3m import (
    conn,
    grad,
    mad,
    mad_privacy,
    mad_trimap,
    mse,
    mse_privacy,
    mse_trimap,
    p3m_metrics,
    sad,
    sad_bg,
    sad_fg,
    sad_privacy,
    sad_trimap,
)

__all__ = [
    "conn",
    "grad",
    "mad",
    "mad_privacy",
    "mad_trimap",
    "mse",
    "mse_privacy",
    "mse_trimap",
    "p3m_metrics",
    "sad",
    "sad_bg",
    "sad_fg",
    "sad_privacy",
    "sad_trimap",
]
