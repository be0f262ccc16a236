"""A second, tight band for closed-form matting, placed from a first solve's alpha: pure functions of arrays.

The built-in route (`p3m.infer.portrait`) draws its unknown band round the edge of a mask upsampled from a 256 px
prior, so the band must be wide (1% of the long side on each side, more at hair) to hold the true edge, which on
most of the outline is a step only 1-3 px wide at the working size. Closed-form matting (Levin et al. 2008)
solved on that wide band leaves soft ramps and haze in the extra width where the colours are ambiguous (alpha
0.1-0.3 on the background, 0.7-0.9 on the person next to a low-contrast edge). The first solve's alpha tells
where the transition is: a second trimap makes its confident pixels known (person where alpha >= `high`,
background where alpha <= `low`), keeps unknown only the fractional pixels and a few pixels round them, and a
second solve on it draws the edge against boundary values right next to it. Where fine structure crosses the
band (hair, the pixels the caller passes as `keep`), the faint strands are themselves alpha 0.1-0.3: there the
first band stays unknown as it was.

A part of the second band that touches known pixels of only one side (a gap between an arm and the body that
the first solve left at alpha 0.6, with no known background round it) has nothing to draw an edge against: the
second solve would fill it with that side. `one_sided` finds such parts; the caller keeps the first alpha there.

Conventions: trimaps HxW uint8 {0 background, 128 unknown, 255 foreground}; alpha HxW float in [0, 1]; masks HxW
bool; `reach` in pixels of the trimap's grid.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["one_sided", "tight_trimap"]

_SQUARE = np.ones((3, 3), np.uint8)  # 8-neighbourhood: "touches"


def tight_trimap(
    trimap: np.ndarray,
    alpha: np.ndarray,
    *,
    low: float = 0.2,
    high: float = 0.8,
    reach: int = 2,
    keep: np.ndarray | None = None,
) -> np.ndarray:
    """The trimap of a second solve: the first trimap's unknown band narrowed to where `alpha` is fractional.

    Parameters
    ----------
    trimap : HxW uint8 {0, 128, 255}, the first solve's trimap.
    alpha : HxW float in [0, 1], the first solve's alpha.
    low, high : float, 0 <= low < high <= 1. In the first band, alpha <= low becomes known background, alpha >=
        high known foreground, and the pixels strictly between them stay unknown.
    reach : int >= 0, pixels. The unknown pixels are grown by a disc of this radius (Euclidean), within the first
        band only: the second solve needs the ramp's foot on each side, and its 3x3 windows a pixel beyond it.
    keep : HxW bool, optional. Pixels of the first band that stay unknown whatever alpha says (the route's hair).

    Returns
    -------
    HxW uint8 {0, 128, 255}. Known pixels of `trimap` are unchanged; every pixel of the first band is unknown when
    within `reach` of a fractional pixel or in `keep`, else background where alpha < 0.5 and foreground where >= 0.5
    (the pixels at least `high` or at most `low` away from any fractional one).
    """
    if trimap.shape != alpha.shape or (keep is not None and keep.shape != trimap.shape):
        raise ValueError(f"trimap, alpha and keep must have one shape, got {trimap.shape}, {alpha.shape}")
    if not 0.0 <= low < high <= 1.0 or reach < 0:
        raise ValueError(f"need 0 <= low < high <= 1 and reach >= 0, got low={low}, high={high}, reach={reach}")
    band = trimap == 128
    fractional = band & (alpha > low) & (alpha < high)
    if reach > 0 and fractional.any():
        y, x = np.ogrid[-reach : reach + 1, -reach : reach + 1]
        disc = (x * x + y * y <= reach * reach).astype(np.uint8)
        fractional = cv2.dilate(fractional.astype(np.uint8), disc).astype(bool)
    unknown = band & (fractional | keep) if keep is not None else band & fractional
    out = trimap.copy()
    out[band] = np.where(alpha[band] >= 0.5, 255, 0).astype(np.uint8)
    out[unknown] = 128
    return out


def one_sided(trimap: np.ndarray) -> np.ndarray:
    """HxW bool: the unknown pixels of `trimap` (HxW uint8 {0, 128, 255}) in connected parts (8-connected) that
    touch (8-neighbourhood) known foreground or known background but not both, or neither: parts in which closed-form
    matting has no edge to draw and returns the one side's value everywhere."""
    unknown = trimap == 128
    n, labels = cv2.connectedComponents(unknown.astype(np.uint8), connectivity=8)
    sides = []
    for value in (255, 0):
        near = cv2.dilate((trimap == value).astype(np.uint8), _SQUARE).astype(bool) & unknown
        touches = np.zeros(n, bool)
        touches[np.unique(labels[near])] = True
        sides.append(touches)
    lacking = ~(sides[0] & sides[1])
    lacking[0] = False  # the known pixels' label
    return lacking[labels]
