"""The published inference path, transcribed: `inference_once` and the RESIZE / HYBRID test strategies of
`JizhiziLi/P3M:core/test.py` (identical in `ViTAE-Transformer/P3M-Net:core/infer.py`), with the image resize R of
scikit-image 0.14.5 (the version those repositories pin) spelled out. Reference §9.

CPU, batch 1, eval mode, no gradients. `p3m.infer.strategies` and `p3m.infer.resize` are tested against this.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.transform import resize as sk_resize

# ImageNet statistics as the published code writes them
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def sk_R(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The published R with scikit-image 0.14.5 defaults spelled out (reference 9.1)."""
    return sk_resize(img, size, order=1, mode="constant", cval=0, clip=True, preserve_range=False, anti_aliasing=False)


def ref_inference_once(model: torch.nn.Module, scale_img: np.ndarray):
    """`inference_once` of the published core/test.py, transcribed (CPU, batch 1, eval, no grad)."""
    tensor_img = torch.from_numpy(scale_img.astype(np.float32)[:, :, :]).permute(2, 0, 1)
    input_t = tensor_img / 255.0
    mean = torch.tensor(MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(STD, dtype=torch.float32)[:, None, None]
    input_t = ((input_t - mean) / std)[None]
    with torch.no_grad():
        out = model(input_t)
    g = out[0].argmax(1)[0].numpy()
    trimap = np.zeros(g.shape, np.uint8)
    trimap[g == 1] = 128
    trimap[g == 2] = 255
    return trimap, out[1][0, 0].numpy(), out[2][0, 0].numpy()


def ref_sizes(h: int, w: int, ratio: float) -> tuple[int, int]:
    rh, rw = int(h * ratio), int(w * ratio)
    return min(1600, rh - rh % 32), min(1600, rw - rw % 32)


def ref_resize_strategy(model, img):
    h, w = img.shape[:2]
    scale_img = sk_R(img, ref_sizes(h, w, 0.5)) * 255.0
    _, _, fusion = ref_inference_once(model, scale_img)
    return sk_R(fusion, (h, w))


def ref_hybrid_strategy(model, img):
    h, w = img.shape[:2]
    trimap, _, _ = ref_inference_once(model, sk_R(img, ref_sizes(h, w, 0.5)) * 255.0)
    global_res = sk_R(trimap, (h, w)) * 255.0
    _, local, _ = ref_inference_once(model, sk_R(img, ref_sizes(h, w, 1.0)) * 255.0)
    local_res = sk_R(local, (h, w))
    weighted = np.ones(global_res.shape)
    weighted[global_res == 255] = 0
    weighted[global_res == 0] = 0
    return global_res * (1.0 - weighted) / 255 + local_res * weighted, global_res
