"""The box round some pixels, grown and clipped: where a local computation gives the whole image's answer.

Several steps of the inference path read a whole-image operation (a distance transform, a blur, a component
labelling) only near a few pixels; computed on the bounding box of those pixels grown by the operation's reach,
the values there are the whole image's, for a fraction of the work. Boxes are 2-D slices ``(rows, cols)`` of an
HxW grid, clipped to it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["box_round", "box_round_points"]


def box_round_points(ys: np.ndarray, xs: np.ndarray, grow: int, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The box round the pixels (ys, xs) (int arrays of one length, at least one pixel) grown by `grow` px on each
    side and clipped to the grid of `shape` (its first two entries, H and W)."""
    h, w = shape[:2]
    y0, y1 = max(int(ys.min()) - grow, 0), min(int(ys.max()) + 1 + grow, h)
    x0, x1 = max(int(xs.min()) - grow, 0), min(int(xs.max()) + 1 + grow, w)
    return np.s_[y0:y1, x0:x1]


def box_round(mask: np.ndarray, grow: int) -> tuple[slice, slice] | None:
    """The box round the True pixels of `mask` (HxW bool) grown by `grow` px on each side, clipped to the image;
    None when no pixel is True."""
    rows = np.flatnonzero(mask.any(1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(0))
    return box_round_points(rows[[0, -1]], cols[[0, -1]], grow, mask.shape)
