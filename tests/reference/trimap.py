"""`gen_trimap_with_dilate` of the P3M training data pipeline (`JizhiziLi/P3M`, reference §8.1 step 1: dilate
[A != 0] and erode [A = 255] with a k x k `cv2.MORPH_ELLIPSE`), written out pixel by pixel with OpenCV's border rules.
"""

from __future__ import annotations

import cv2
import numpy as np


def literal_trimap(alpha: np.ndarray, k: int) -> np.ndarray:
    """Reference `gen_trimap_with_dilate` written out pixel by pixel.

    cv2 semantics: element pixel (i, j) with anchor (k//2, k//2) reads src(y + i - a, x + j - a); pixels outside
    the image are ignored (neither add foreground to the dilation nor erase the erosion).
    """
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    a = k // 2
    h, w = alpha.shape
    out = np.zeros((h, w), np.uint8)
    for y in range(h):
        for x in range(w):
            dilated, eroded = 0, 1
            for i in range(k):
                for j in range(k):
                    if not element[i, j]:
                        continue
                    yy, xx = y + i - a, x + j - a
                    if 0 <= yy < h and 0 <= xx < w:
                        if alpha[yy, xx] != 0:
                            dilated = 1
                        if alpha[yy, xx] != 255:
                            eroded = 0
            out[y, x] = 255 * eroded + 128 * (dilated - eroded)
    return out
