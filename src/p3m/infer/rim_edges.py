"""The band's person-side rim opened past a colour edge that lies on it: pure functions of arrays.

The built-in route (`p3m.infer.portrait`) draws its unknown band a fixed half-width on each side of the edge of a
mask upsampled from a 256 px prior. Where the prior spilled onto the background by about that half-width, the
person's true edge (almost always a colour edge) lies on the band's inner rim, and the known person starts on the
edge's own inner slope: closed-form matting (Levin et al. 2008), whose 3x3 windows couple each unknown pixel to the
known ones beside it, then has no room to draw the step and carries the person's label across it into the
background beyond (a dark shade under a forearm, foliage between wind-blown strands). `past_rim_edges` opens the
known person a few pixels past such an edge, so that the solve draws the whole step; it leaves the rim known
where the edge is the person's own texture (a print, a pattern: strong edges all round, and a print's light
parts on a light wall would be read as background) and where the person's colour is the background's beside it
(nothing there tells the solve which side a pixel is on: the known label is the only evidence).

Conventions: image HxWx3 uint8 RGB; trimaps HxW uint8 {0 background, 128 unknown, 255 foreground}; masks HxW
bool; lengths in pixels of the trimap's grid; colours in [0, 1] per channel.
"""

from __future__ import annotations

import cv2
import numpy as np

from p3m.infer.boxes import box_round, box_round_points

__all__ = ["colour_gradient", "past_rim_edges"]

_SQUARE = np.ones((3, 3), np.uint8)  # 8-neighbourhood: "touches"
# the colour compared with the background's is blurred by this std. dev. (px): a pixel's noise and JPEG blocks
# are not its colour
_COLOUR_SIGMA = 2.0
# px beyond a pixel that its blurred colour (cv2's kernel for _COLOUR_SIGMA: 8 px each side) or its gradient (1 px
# blur, 4 px, and the 3x3 derivative, 1 px) reads
_SUPPORT = 9


def _disc(radius: int) -> np.ndarray:
    """uint8 elliptic structuring element of the given radius (px): a disc (2 radius + 1) wide."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def colour_gradient(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """HxW float32: the colour gradient's magnitude per pixel of an RGB image.

    Parameters
    ----------
    image : HxWx3 uint8 RGB
    sigma : float, std. dev. (px) of the Gaussian blur before differentiating (noise and JPEG blocks are not edges)

    Returns
    -------
    HxW float32 >= 0: sqrt of the sum over the three channels (each in [0, 1]) of the squared x and y derivatives
    (3x3 Sobel divided by 8: change per pixel), so a step of 1 in one channel, blurred over a few pixels, peaks
    near 1 / (sigma sqrt(2 pi)) for a wide blur and a grey step of d in all three channels at sqrt(3) times that.
    """
    f = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)
    squares = cv2.add(cv2.multiply(gx, gx), cv2.multiply(gy, gy))
    # the channels' sum (cv2's per-pixel matrix product: numpy's sum over the last axis is several times slower)
    total = cv2.transform(squares, np.ones((1, 3), np.float32))
    return cv2.sqrt(total) * np.float32(1.0 / (8.0 * 255.0))


def past_rim_edges(
    image: np.ndarray,
    trimap: np.ndarray,
    *,
    reach: int,
    edge: float,
    texture: float,
    window: int,
    colour: float,
    gradient: np.ndarray | None = None,
) -> np.ndarray:
    """HxW bool: known person of `trimap` to make unknown, past a strong colour edge on the band's person-side rim.

    Parameters
    ----------
    image : HxWx3 uint8 RGB, the trimap's grid
    trimap : HxW uint8 {0, 128, 255}
    reach : int, px: the pixels opened lie within `reach` of the unknown band, and within `reach` + 1 of a rim
        pixel (known person touching the band) that has a strong edge within `reach` (0: nothing is opened)
    edge : float, "strong": `colour_gradient` (1 px blur) above this
    texture : float, the person is textured where more than this share of the known person pixels behind the rim
        (farther than 2 `reach` + 1 from the band: the strip along the rim holds the edge itself) in a `window`
        square round a pixel are strong edges: nothing is opened there (the edges are the person's own pattern)
    window : int, px, the side of that square (made odd)
    colour : float, a pixel is opened only where its colour (blurred, std. dev. 2 px) is farther than this (L2,
        RGB in [0, 1]) from the nearest known background pixel's: where person and background have one colour
        nothing tells the solve which is which, and the known label stays
    gradient : HxW float32, `colour_gradient(image)` when the caller has it (else computed here)

    Returns
    -------
    HxW bool, a subset of the known person (``trimap == 255``) within `reach` of the unknown pixels; all False
    when the trimap has no unknown, known person or known background pixel, or `reach` < 1.
    """
    person, unknown, background = trimap == 255, trimap == 128, trimap == 0
    none = np.zeros(trimap.shape, bool)
    if reach < 1 or not (person.any() and unknown.any() and background.any()):
        return none
    unknown8 = unknown.astype(np.uint8)
    within = person & cv2.dilate(unknown8, _disc(reach)).astype(bool)
    # every test below reads pixels within this margin of `within` (the texture's square, the strip behind the rim,
    # the blur's and the derivative's support): on the box round `within` grown by it the answer is the whole
    # image's, for a fraction of the work (the person's outline is 0.3-0.5% of a portrait's pixels)
    side = max(3, window | 1)
    margin = side // 2 + 2 * reach + 2 + _SUPPORT
    box = box_round(within, margin)
    if box is None:
        return none
    y0, x0 = box[0].start, box[1].start
    person, unknown8, within = person[box], unknown8[box], within[box]
    strong = (colour_gradient(image[box]) if gradient is None else gradient[box]) > edge
    rim = person & cv2.dilate(unknown8, _SQUARE).astype(bool)
    at_edge = rim & cv2.dilate(strong.astype(np.uint8), _disc(reach)).astype(bool)
    if not at_edge.any():
        return none
    opened = within & cv2.dilate(at_edge.astype(np.uint8), _disc(reach + 1)).astype(bool)
    # the person's own texture: the share of strong edges among the known person round each pixel, behind the strip
    # along the rim that holds the edge itself
    behind = person & ~cv2.dilate(unknown8, _disc(2 * reach + 1)).astype(bool)
    edges = cv2.boxFilter((strong & behind).astype(np.float32), -1, (side, side), normalize=False)
    count = cv2.boxFilter(behind.astype(np.float32), -1, (side, side), normalize=False)
    opened &= edges <= texture * np.maximum(count, 1.0)
    if not opened.any():
        return none
    # the colour of each opened pixel against the nearest known background pixel's (anywhere in the image)
    _, labels = cv2.distanceTransformWithLabels(
        (~background).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    oy, ox = np.nonzero(opened)
    oy, ox = oy + y0, ox + x0
    # DIST_LABEL_PIXEL numbers the zero pixels from 1 in row-major order
    nearest = np.flatnonzero(background)[labels[oy, ox] - 1]
    by, bx = np.divmod(nearest, trimap.shape[1])
    ys, xs = np.concatenate([oy, by]), np.concatenate([ox, bx])
    # the blur on the box round both (its support inside): the same values as the whole image's blur
    near = box_round_points(ys, xs, _SUPPORT, trimap.shape)
    blur = cv2.GaussianBlur(image[near].astype(np.float32), (0, 0), _COLOUR_SIGMA) / np.float32(255.0)
    n = oy.size
    colours = blur[ys - near[0].start, xs - near[1].start]
    far = np.linalg.norm(colours[:n] - colours[n:], axis=1) > colour
    none[oy[far], ox[far]] = True
    return none
