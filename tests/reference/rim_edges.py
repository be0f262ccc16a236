"""`p3m.infer.rim_edges.past_rim_edges` computed on the whole image, as its docstring defines it.

Source: this repository's definition (the function before it worked on the box round the band's rim); every array
is the whole image's, the nearest known background pixel is cv2's labelled distance transform over the whole
trimap, the colours the whole image blurred. Do not speed it up: `tests/test_rim_edges.py` checks that the boxed
function gives this answer.
"""

from __future__ import annotations

import cv2
import numpy as np


def _disc(radius):
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def gradient_whole(image, sigma=1.0):
    f = cv2.GaussianBlur(image.astype(np.float32) / np.float32(255.0), (0, 0), sigma)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    return np.sqrt((gx * gx + gy * gy).sum(2))


def past_rim_edges_whole(image, trimap, *, reach, edge, texture, window, colour):
    person, unknown, background = trimap == 255, trimap == 128, trimap == 0
    out = np.zeros(trimap.shape, bool)
    if reach < 1 or not (person.any() and unknown.any() and background.any()):
        return out
    near_band = cv2.dilate(unknown.astype(np.uint8), _disc(reach)).astype(bool)
    strong = gradient_whole(image) > edge
    rim = person & cv2.dilate(unknown.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    at_edge = rim & cv2.dilate(strong.astype(np.uint8), _disc(reach)).astype(bool)
    near_edge = cv2.dilate(at_edge.astype(np.uint8), _disc(reach + 1)).astype(bool)
    behind = person & ~cv2.dilate(unknown.astype(np.uint8), _disc(2 * reach + 1)).astype(bool)
    side = max(3, window | 1)
    edges = cv2.boxFilter((strong & behind).astype(np.float32), -1, (side, side), normalize=False)
    count = cv2.boxFilter(behind.astype(np.float32), -1, (side, side), normalize=False)
    smooth = edges <= texture * np.maximum(count, 1.0)
    blur = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 2.0) / np.float32(255.0)
    _, labels = cv2.distanceTransformWithLabels(
        (~background).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    ys, xs = np.nonzero(background)  # label k is the k-th zero pixel in row-major order
    h, w = trimap.shape
    for y in range(h):
        for x in range(w):
            if person[y, x] and near_band[y, x] and near_edge[y, x] and smooth[y, x]:
                by, bx = ys[labels[y, x] - 1], xs[labels[y, x] - 1]
                if np.linalg.norm(blur[y, x] - blur[by, bx]) > colour:
                    out[y, x] = True
    return out
