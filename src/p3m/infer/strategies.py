"""Test strategies: how a whole image becomes network passes and one alpha matte (reference section 9).

- `resize`  — RESIZE (9.3): one pass at r = 1/2, the **fused** output resized back.
- `hybrid`  — HYBRID (9.4): semantic classes from the r = 1/2 pass, the **local** output of the r = 1
  pass wherever the upsampled trimap is not exactly 0 or 255. Both passes use the size rule (9.2):
  sides floored to multiples of 32 and capped at 1600 independently (so large images are squeezed).
- `highres` — hybrid without the 1600 cap: the global pass runs at r = 1/2 with its longer side
  limited to `global_max` (aspect kept), the local pass runs at full resolution, tiled with overlap
  and linear blending when it does not fit in one `single_pass_max` pass. Where hybrid needs no cap
  and the image fits one pass, highres *is* hybrid (same sizes, same arithmetic).

Every strategy talks to the network through a `NetFn`: a callable taking a normalised float32 batch
[B,3,H,W] (H, W multiples of 32) and returning `NetOutput` numpy arrays, so the torch model and the
ONNX Runtime session are interchangeable. `resize_mode="paper"` reproduces the published resize R
(scikit-image 0.14.5 defaults); `"fast"` uses OpenCV with a replicated border (no darkened frame).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import cv2
import numpy as np

from p3m.choices import STRATEGIES
from p3m.errors import ImageError
from p3m.infer.resize import RESIZE_MODES, resize

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_SIZE",
    "SHORTER_SIDE_LIMIT",
    "STRATEGIES",
    "NetFn",
    "NetOutput",
    "TorchNet",
    "blend_ramp",
    "highres_sizes",
    "iter_tiles",
    "normalize",
    "plan_passes",
    "predict",
    "predict_highres",
    "predict_hybrid",
    "predict_resize",
    "size_rule",
    "tile_starts",
]

MAX_SIZE = 1600  # MAX_SIZE_H = MAX_SIZE_W of the published code
SHORTER_SIDE_LIMIT = 1080  # SHORTER_PATH_LIMITATION of the SAMPLES mode (9.5)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class NetOutput(NamedTuple):
    """What the strategies need from one network pass (numpy, batch first).

    classes: [B,H,W] uint8 argmax of the semantic logits (0 background, 1 transition, 2 foreground).
    local:   [B,H,W] float32 local (matting-branch) alpha L.
    fused:   [B,H,W] float32 fused alpha F.
    A pass asked for one branch only (`need="global"`: classes; `need="local"`: local) leaves the others None.
    """

    classes: np.ndarray | None
    local: np.ndarray | None
    fused: np.ndarray | None


NetFn = Callable[[np.ndarray], NetOutput]


def _run(net: NetFn, x: np.ndarray, need: str) -> NetOutput:
    """One pass. Nets that can skip a branch (`selects_outputs`, e.g. TorchNet over a P3M-Net) compute only what
    `need` names ("global": the classes, "local": the local alpha); others compute everything."""
    if getattr(net, "selects_outputs", False):
        return net(x, need)  # type: ignore[call-arg]
    return net(x)


class TorchNet:
    """NetFn over a torch P3M-Net (anything returning P3MOutput-like `(G, L, F, ...)`).

    precision: "fp32", "bf16" or "fp16". nn.Modules run through `p3m.models.fast.InferenceRunner`
    (a private copy of the model cast to that dtype, channels_last; on CUDA one CUDA graph per input
    shape when cuda_graphs is on, the default there). A lock serialises calls, so one instance can be
    shared by threads.
    """

    def __init__(
        self,
        model: Any,
        device: str = "cpu",
        precision: str = "fp32",
        channels_last: bool = True,
        cuda_graphs: bool | None = None,
    ) -> None:
        import torch

        if precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be fp32, bf16 or fp16, not {precision!r}")
        self.device = torch.device(device)
        self.precision = precision
        if cuda_graphs is None:
            cuda_graphs = self.device.type == "cuda"
        self.selects_outputs = False
        if isinstance(model, torch.nn.Module):
            import inspect

            from p3m.models.fast import InferenceRunner

            self.runner: Callable[..., Any] = InferenceRunner(
                model, self.device, precision, cuda_graphs, channels_last=channels_last
            )
            # P3M-Nets can skip the branch a pass does not use (the semantic one's 1/2 pass, the matting one's
            # full pass in HYBRID); other models compute everything
            self.selects_outputs = "outputs" in inspect.signature(model.forward).parameters
        else:  # a plain callable (tests, wrappers): fp32 on the given device
            self.runner = model
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray, need: str = "all") -> NetOutput:
        import torch

        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        with self._lock, torch.inference_mode():
            out = self.runner(t, outputs=need) if need != "all" else self.runner(t)
            classes = None if out[0] is None else out[0].argmax(dim=1).to(torch.uint8).cpu().numpy()
            local = None if out[1] is None else out[1][:, 0].float().cpu().numpy()
            fused = None if out[2] is None else out[2][:, 0].float().cpu().numpy()
            return NetOutput(classes, local, fused)


def size_rule(h: int, w: int, ratio: float, max_size: int | None = MAX_SIZE) -> tuple[int, int]:
    """Network input size of reference 9.2: floor(side*r) floored to a multiple of 32, capped per side."""
    sides = []
    for n in (h, w):
        s = int(math.floor(n * ratio))
        s -= s % 32
        if max_size is not None:
            s = min(max_size, s)
        sides.append(s)
    if min(sides) < 32:
        raise ImageError(
            f"image of {w}x{h} px is too small: the network needs at least 32 px per side after scaling by {ratio:g}"
        )
    return sides[0], sides[1]


def normalize(image01: np.ndarray) -> np.ndarray:
    """R(I)*255 as float32, /255, ImageNet mean/std (reference 8.1 step 8): HxWx3 -> [1,3,H,W] float32."""
    x = (np.asarray(image01) * 255.0).astype(np.float32) / np.float32(255.0)
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def _to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ImageError(f"strategies take HxWx3 uint8 RGB images, got {a.dtype} {a.shape}")
    return a


def _check_mode(resize_mode: str) -> None:
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {resize_mode!r}; expected one of {RESIZE_MODES}")


def _trimap_exact(classes: np.ndarray, size: tuple[int, int], resize_mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Upsample the {0,128,255} class map; return (is exactly 255, is exactly 0) masks at `size`."""
    g = np.array([0, 128, 255], dtype=np.uint8)[classes]
    if resize_mode == "paper":
        tri = resize(g, size, "paper") * 255.0
        return tri == 255.0, tri == 0.0
    # OpenCV's uint8 bilinear uses integer weights summing to 2^11: constant runs stay exact
    tri = cv2.resize(g, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return tri == 255, tri == 0


def _combine(fg: np.ndarray, bg: np.ndarray, local: np.ndarray) -> np.ndarray:
    alpha = np.where(fg, 1.0, np.where(bg, 0.0, local))
    return np.clip(alpha, 0.0, 1.0).astype(np.float32)


def predict_resize(
    net: NetFn, image: np.ndarray, *, resize_mode: str = "paper", ratio: float = 0.5, max_size: int | None = MAX_SIZE
) -> np.ndarray:
    """RESIZE (9.3): alpha = R(F, (h, w)) of one pass at `ratio`. Returns HxW float32 in [0, 1]."""
    _check_mode(resize_mode)
    image = _to_rgb_uint8(image)
    h, w = image.shape[:2]
    size = size_rule(h, w, ratio, max_size)
    out = net(normalize(resize(image, size, resize_mode)))
    alpha = resize(out.fused[0], (h, w), resize_mode)
    return np.clip(alpha, 0.0, 1.0).astype(np.float32)


def predict_hybrid(
    net: NetFn, image: np.ndarray, *, resize_mode: str = "paper", max_size: int | None = MAX_SIZE
) -> np.ndarray:
    """HYBRID (9.4): trimap from the 1/2 pass, local alpha of the full pass where the trimap is not 0/255."""
    _check_mode(resize_mode)
    image = _to_rgb_uint8(image)
    h, w = image.shape[:2]
    out1 = _run(net, normalize(resize(image, size_rule(h, w, 0.5, max_size), resize_mode)), "global")
    fg, bg = _trimap_exact(out1.classes[0], (h, w), resize_mode)
    del out1
    out2 = _run(net, normalize(resize(image, size_rule(h, w, 1.0, max_size), resize_mode)), "local")
    local = resize(out2.local[0], (h, w), resize_mode)
    return _combine(fg, bg, local)


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Tile offsets covering [0, n) with overlaps of at least `overlap`, evenly spread, the last flush with the end.

    With n, tile and overlap multiples of 32 every offset is a multiple of 32, so each tile's max-pool
    windows fall exactly where they fall in the whole image.
    """
    if n <= tile:
        return [0]
    if overlap >= tile:
        raise ValueError(f"overlap {overlap} must be smaller than the tile {tile}")
    count = math.ceil((n - overlap) / (tile - overlap))
    # spread evenly (equal overlaps, each >= `overlap`), floored to multiples of 32
    starts = [((k * (n - tile)) // (count - 1)) // 32 * 32 for k in range(count)]
    starts[-1] = n - tile
    return starts


def blend_ramp(length: int, before: int, after: int) -> np.ndarray:
    """1-D blending weight of one tile: linear ramps over the overlaps with its neighbours, 1 elsewhere.

    Ramps of two neighbours over the same overlap sum to exactly 1: (i+0.5)/o and (o-i-0.5)/o.
    """
    i = np.arange(length, dtype=np.float64) + 0.5
    w = np.ones(length, dtype=np.float64)
    if before > 0:
        w = np.minimum(w, i / before)
    if after > 0:
        w = np.minimum(w, (length - i) / after)
    return w.astype(np.float32)


def _axis_tiles(n: int, tile: int, overlap: int, whole_max: int = 0) -> list[tuple[int, int, np.ndarray]]:
    """(start, size, weights) per tile along one axis; an axis of at most `whole_max` is not cut."""
    size = n if n <= max(tile, whole_max) else tile
    starts = tile_starts(n, size, overlap)
    out = []
    for k, s in enumerate(starts):
        before = (starts[k - 1] + size - s) if k > 0 else 0
        after = (s + size - starts[k + 1]) if k + 1 < len(starts) else 0
        out.append((s, size, blend_ramp(size, before, after)))
    return out


def highres_sizes(h: int, w: int, *, global_max: int = MAX_SIZE) -> tuple[tuple[int, int], tuple[int, int]]:
    """(global pass size, full-resolution local size) of the highres strategy, aspect kept."""
    gh, gw = math.floor(h * 0.5), math.floor(w * 0.5)
    if max(gh, gw) > global_max:
        scale = global_max / max(gh, gw)
        gh, gw = math.floor(gh * scale), math.floor(gw * scale)
    return size_rule(gh, gw, 1.0, None), size_rule(h, w, 1.0, None)


def predict_highres(
    net: NetFn,
    image: np.ndarray,
    *,
    resize_mode: str = "paper",
    global_max: int = MAX_SIZE,
    single_pass_max: int = MAX_SIZE,
    tile: int = 1024,
    overlap: int = 128,
) -> np.ndarray:
    """HYBRID without the 1600 cap, bounded memory: local pass tiled when a side exceeds `single_pass_max`."""
    _check_mode(resize_mode)
    image = _to_rgb_uint8(image)
    if tile % 32 or overlap % 32 or single_pass_max % 32:
        raise ValueError("tile, overlap and single_pass_max must be multiples of 32")
    h, w = image.shape[:2]
    gsize, lsize = highres_sizes(h, w, global_max=global_max)
    out1 = _run(net, normalize(resize(image, gsize, resize_mode)), "global")
    fg, bg = _trimap_exact(out1.classes[0], (h, w), resize_mode)
    del out1
    scaled = resize(image, lsize, resize_mode)
    if max(lsize) <= single_pass_max:
        local = _run(net, normalize(scaled), "local").local[0]
    else:
        local = _tiled_local(net, scaled, tile, overlap, single_pass_max)
    del scaled
    local = resize(local, (h, w), resize_mode)
    return _combine(fg, bg, local)


def _tiled_local(net: NetFn, scaled: np.ndarray, tile: int, overlap: int, whole_max: int = 0) -> np.ndarray:
    """Local alpha of the whole (already resized) image from overlapping tiles, linearly blended.

    A side of at most `whole_max` is kept whole (tiles of whole_max x tile at most), so a 1056 x 1920
    pass becomes 2 tiles, not 4.
    """
    lh, lw = scaled.shape[:2]
    acc = np.zeros((lh, lw), np.float32)
    weight = np.zeros((lh, lw), np.float32)
    for y, th, wy in _axis_tiles(lh, tile, overlap, whole_max):
        for x, tw, wx in _axis_tiles(lw, tile, overlap, whole_max):
            local = _run(net, normalize(scaled[y : y + th, x : x + tw]), "local").local[0]
            wt = wy[:, None] * wx[None, :]
            acc[y : y + th, x : x + tw] += local * wt
            weight[y : y + th, x : x + tw] += wt
    return acc / weight


def plan_passes(
    strategy: str,
    h: int,
    w: int,
    *,
    global_max: int = MAX_SIZE,
    single_pass_max: int = MAX_SIZE,
    tile: int = 1024,
    overlap: int = 128,
    shorter_side_limit: int | None = None,
) -> dict[str, Any]:
    """What the network sees for an h x w image: pass sizes (h, w) and tiles. The honest resolution policy."""
    plan: dict[str, Any] = {"strategy": strategy, "image": (h, w)}
    if shorter_side_limit is not None and min(h, w) > shorter_side_limit:
        h, w = _limited_size(h, w, shorter_side_limit)
        plan["prescaled_to"] = (h, w)
    if strategy == "resize":
        plan["passes"] = [("fused", size_rule(h, w, 0.5))]
    elif strategy == "hybrid":
        plan["passes"] = [("global", size_rule(h, w, 0.5)), ("local", size_rule(h, w, 1.0))]
    elif strategy == "highres":
        gsize, lsize = highres_sizes(h, w, global_max=global_max)
        passes = [("global", gsize)]
        if max(lsize) <= single_pass_max:
            passes.append(("local", lsize))
        else:
            for y, th, _ in _axis_tiles(lsize[0], tile, overlap, single_pass_max):
                for x, tw, _ in _axis_tiles(lsize[1], tile, overlap, single_pass_max):
                    passes.append(("local-tile", (th, tw), (y, x)))
        plan["passes"] = passes
        plan["local_size"] = lsize
    else:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    return plan


def _limited_size(h: int, w: int, limit: int) -> tuple[int, int]:
    # published SAMPLES mode: shorter side -> limit, the other side scaled and truncated
    if h >= w:
        return int(h * limit / w), limit
    return limit, int(w * limit / h)


_PREDICTORS: dict[str, Callable[..., np.ndarray]] = {
    "resize": predict_resize,
    "hybrid": predict_hybrid,
    "highres": predict_highres,
}


def predict(
    net: NetFn,
    image: np.ndarray,
    strategy: str = "hybrid",
    *,
    resize_mode: str = "paper",
    shorter_side_limit: int | None = None,
    **options: Any,
) -> np.ndarray:
    """Run `strategy` on an HxWx3 uint8 image; HxW float32 alpha in [0, 1].

    shorter_side_limit: the SAMPLES mode of 9.5 (1080 in the published code): a larger image is first
    `cv2.resize`d (INTER_LINEAR) to that shorter side, and alpha*255 resized back the same way.
    """
    try:
        fn = _PREDICTORS[strategy]
    except KeyError:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}") from None
    image = _to_rgb_uint8(image)
    h, w = image.shape[:2]
    if shorter_side_limit is not None and min(h, w) > shorter_side_limit:
        nh, nw = _limited_size(h, w, shorter_side_limit)
        small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        alpha = fn(net, small, resize_mode=resize_mode, **options)
        alpha = cv2.resize(alpha * np.float32(255.0), (w, h), interpolation=cv2.INTER_LINEAR) / np.float32(255.0)
        return np.clip(alpha, 0.0, 1.0).astype(np.float32)
    return fn(net, image, resize_mode=resize_mode, **options)


def iter_tiles(
    h: int, w: int, tile: int, overlap: int, whole_max: int = MAX_SIZE
) -> Iterator[tuple[int, int, int, int]]:
    """(y, x, th, tw) of every tile of an h x w local pass (for tools and docs)."""
    for y, th, _ in _axis_tiles(h, tile, overlap, whole_max):
        for x, tw, _ in _axis_tiles(w, tile, overlap, whole_max):
            yield y, x, th, tw
