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
ONNX Runtime session (`p3m.infer.runtime.TorchNet`, `OnnxNet`) are interchangeable. `resize_mode="paper"`
reproduces the published resize R (scikit-image 0.14.5 defaults); `"fast"` uses OpenCV with a replicated border
(no darkened frame). Each strategy is one entry of one table (`predict` and `plan_passes` look it up there).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import cv2
import numpy as np

from p3m.choices import RESIZE_MODES, STRATEGIES, check_choice
from p3m.errors import ImageError
from p3m.infer.preprocess import array_to_rgb, normalize
from p3m.infer.resize import resize

__all__ = [
    "MAX_SIZE",
    "SHORTER_SIDE_LIMIT",
    "NetFn",
    "NetOutput",
    "blend_ramp",
    "highres_sizes",
    "iter_tiles",
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


def _pass(net: NetFn, x: np.ndarray, output: str) -> np.ndarray:
    """One pass over a batch of one image -> its `output` ("classes", "local" or "fused") as an [H,W] array.

    Nets that can skip a branch (`selects_outputs`, e.g. TorchNet over a P3M-Net) are asked for the one branch the
    output needs ("global" for the classes, "local" for the local alpha; the fused alpha needs both); others compute
    everything.
    """
    if output != "fused" and getattr(net, "selects_outputs", False):
        need = "global" if output == "classes" else "local"
        out = net(x, need)  # type: ignore[call-arg]  # a NetFn that selects outputs takes the branch too
    else:
        out = net(x)
    value = getattr(out, output)
    if value is None:
        raise RuntimeError(f"the network pass returned no {output} output")
    return value[0]


def size_rule(h: int, w: int, ratio: float, max_size: int | None = MAX_SIZE) -> tuple[int, int]:
    """Network input size of reference 9.2: floor(side*r) floored to a multiple of 32, capped per side."""
    sides = []
    for n in (h, w):
        s = math.floor(n * ratio)
        s -= s % 32
        if max_size is not None:
            s = min(max_size, s)
        sides.append(s)
    if min(sides) < 32:
        raise ImageError(
            f"image of {w}x{h} px is too small: the network needs at least 32 px per side after scaling by {ratio:g}"
        )
    return sides[0], sides[1]


def _network_input(image: np.ndarray, size: tuple[int, int], resize_mode: str) -> np.ndarray:
    """[1,3,h,w] float32 network input of an HxWx3 uint8 image resized to `size`: R(I)*255, normalised (8.1)."""
    return normalize(resize(image, size, resize_mode) * 255.0)[None]


def _check_mode(resize_mode: str) -> None:
    check_choice("resize mode", resize_mode, RESIZE_MODES)


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
    image = array_to_rgb(image)
    h, w = image.shape[:2]
    size = size_rule(h, w, ratio, max_size)
    fused = _pass(net, _network_input(image, size, resize_mode), "fused")
    alpha = resize(fused, (h, w), resize_mode)
    return np.clip(alpha, 0.0, 1.0).astype(np.float32)


def predict_hybrid(
    net: NetFn, image: np.ndarray, *, resize_mode: str = "paper", max_size: int | None = MAX_SIZE
) -> np.ndarray:
    """HYBRID (9.4): trimap from the 1/2 pass, local alpha of the full pass where the trimap is not 0/255."""
    _check_mode(resize_mode)
    image = array_to_rgb(image)
    h, w = image.shape[:2]
    classes = _pass(net, _network_input(image, size_rule(h, w, 0.5, max_size), resize_mode), "classes")
    fg, bg = _trimap_exact(classes, (h, w), resize_mode)
    del classes
    local = _pass(net, _network_input(image, size_rule(h, w, 1.0, max_size), resize_mode), "local")
    local = resize(local, (h, w), resize_mode)
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
    image = array_to_rgb(image)
    if tile % 32 or overlap % 32 or single_pass_max % 32:
        raise ValueError("tile, overlap and single_pass_max must be multiples of 32")
    h, w = image.shape[:2]
    gsize, lsize = highres_sizes(h, w, global_max=global_max)
    classes = _pass(net, _network_input(image, gsize, resize_mode), "classes")
    fg, bg = _trimap_exact(classes, (h, w), resize_mode)
    del classes
    scaled = resize(image, lsize, resize_mode)
    if max(lsize) <= single_pass_max:
        local = _pass(net, normalize(scaled * 255.0)[None], "local")
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
            local = _pass(net, normalize(scaled[y : y + th, x : x + tw] * 255.0)[None], "local")
            wt = wy[:, None] * wx[None, :]
            acc[y : y + th, x : x + tw] += local * wt
            weight[y : y + th, x : x + tw] += wt
    return acc / weight


def _plan_resize(h: int, w: int, **_unused: Any) -> dict[str, Any]:
    return {"passes": [("fused", size_rule(h, w, 0.5))]}


def _plan_hybrid(h: int, w: int, **_unused: Any) -> dict[str, Any]:
    return {"passes": [("global", size_rule(h, w, 0.5)), ("local", size_rule(h, w, 1.0))]}


def _plan_highres(
    h: int, w: int, *, global_max: int, single_pass_max: int, tile: int, overlap: int, **_unused: Any
) -> dict[str, Any]:
    gsize, lsize = highres_sizes(h, w, global_max=global_max)
    passes: list[tuple[Any, ...]] = [("global", gsize)]
    if max(lsize) <= single_pass_max:
        passes.append(("local", lsize))
    else:
        for y, th, _ in _axis_tiles(lsize[0], tile, overlap, single_pass_max):
            for x, tw, _ in _axis_tiles(lsize[1], tile, overlap, single_pass_max):
                passes.append(("local-tile", (th, tw), (y, x)))
    return {"passes": passes, "local_size": lsize}


class _Strategy(NamedTuple):
    predict: Callable[..., np.ndarray]  # (net, HxWx3 uint8 image, *, resize_mode, **options) -> HxW alpha
    plan: Callable[..., dict[str, Any]]  # (h, w, **options) -> {"passes": [...], ...}


# the one dispatch on the strategy name; its keys are p3m.choices.STRATEGIES (tests/test_infer.py checks)
_STRATEGIES: dict[str, _Strategy] = {
    "hybrid": _Strategy(predict_hybrid, _plan_hybrid),
    "resize": _Strategy(predict_resize, _plan_resize),
    "highres": _Strategy(predict_highres, _plan_highres),
}


def _strategy(name: str) -> _Strategy:
    return _STRATEGIES[check_choice("strategy", name, STRATEGIES)]


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
    planner = _strategy(strategy).plan
    plan: dict[str, Any] = {"strategy": strategy, "image": (h, w)}
    if shorter_side_limit is not None and min(h, w) > shorter_side_limit:
        h, w = _limited_size(h, w, shorter_side_limit)
        plan["prescaled_to"] = (h, w)
    plan.update(planner(h, w, global_max=global_max, single_pass_max=single_pass_max, tile=tile, overlap=overlap))
    return plan


def _limited_size(h: int, w: int, limit: int) -> tuple[int, int]:
    # published SAMPLES mode: shorter side -> limit, the other side scaled and truncated
    if h >= w:
        return int(h * limit / w), limit
    return limit, int(w * limit / h)


def predict(
    net: NetFn,
    image: np.ndarray,
    strategy: str = "hybrid",
    *,
    resize_mode: str = "paper",
    shorter_side_limit: int | None = None,
    **options: Any,
) -> np.ndarray:
    """Run `strategy` on an image array (`p3m.infer.preprocess.array_to_rgb` ranges); HxW float32 alpha in [0, 1].

    shorter_side_limit: the SAMPLES mode of 9.5 (1080 in the published code): a larger image is first
    `cv2.resize`d (INTER_LINEAR) to that shorter side, and alpha*255 resized back the same way.
    """
    fn = _strategy(strategy).predict
    image = array_to_rgb(image)
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
