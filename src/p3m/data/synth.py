"""Embedded synthetic P3M-10k: seeded portraits drawn with numpy/cv2, written in the 2024 release layout.

Every command of the toolkit can run end to end on this set without a download. A portrait is drawn layer by
layer (back hair, neck, clothes, head, face features, fringe, hair strands) on a canvas `supersample` times
larger than the output; the alpha matte is the exact area coverage of that canvas (INTER_AREA downsampling),
so hair strands thinner than a pixel get fractional alpha. The foreground colour is the coverage-weighted
mean of the canvas colours, and the image is the composite ``alpha * fg + (1 - alpha) * bg``.

Train and P3M-500-P images get the P3M face obfuscation (Li et al., ACM MM 2021; figure demo/face_obfuscation.jpg of
`JizhiziLi/P3M`): private area = facemask minus the transition band, then blur (`p3m.data.obfuscate`). P3M-500-NP keeps
faces. Test trimaps come from `trimap_from_alpha(mask, kernel_size_for_test_split(H, W))`."""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from p3m import __version__
from p3m.atomic import write_bytes_atomic
from p3m.data.obfuscate import obfuscate, private_area
from p3m.data.trimap import kernel_size_for_test_split, trimap_from_alpha
from p3m.errors import DatasetError
from p3m.io import write_image

__all__ = [
    "META_FILE",
    "SYNTH_VERSION",
    "Portrait",
    "SynthConfig",
    "SynthSample",
    "auto_supersample",
    "dataset_stems",
    "generate_dataset",
    "is_synth_output",
    "render_portrait",
    "render_sample",
]

SYNTH_VERSION = 1  # bump when the drawing changes, so old synth folders are recognisably different
META_FILE = "synth_meta.json"
_SPLIT_IDS = {"train": 0, "P3M-500-P": 1, "P3M-500-NP": 2}

# Skin tones from light to dark (RGB); a portrait interpolates between two neighbours and jitters.
_SKIN_TONES = np.array(
    [(255, 226, 204), (241, 198, 164), (224, 172, 128), (198, 140, 96), (160, 105, 70), (112, 72, 48), (80, 52, 36)],
    np.float32,
)
_HAIR_COLOURS = np.array(
    [
        (22, 18, 16),
        (45, 30, 22),
        (85, 56, 36),
        (130, 90, 55),
        (200, 160, 100),
        (230, 205, 150),
        (150, 60, 30),
        (170, 170, 170),
        (60, 60, 140),
        (190, 80, 140),
    ],
    np.float32,
)
_HAIR_WEIGHTS = np.array([6, 6, 5, 4, 3, 2, 2, 1, 0.5, 0.5], np.float64)
_IRIS_COLOURS = np.array([(70, 45, 25), (40, 30, 20), (60, 100, 150), (70, 110, 70), (110, 90, 50)], np.float32)


@dataclass
class SynthConfig:
    """What `generate_dataset` draws; the same config always gives byte-identical files."""

    n_train: int = 24
    n_test_p: int = 8
    n_test_np: int = 8
    size: tuple[int, int] = (320, 320)  # (H, W)
    seed: int = 0
    two_person_prob: float = 0.2
    back_view_prob: float = 0.1  # back-view portraits: no face, nothing to obfuscate (P3M-10k, Li et al., ACM MM 2021)
    supersample: int = 0  # canvas scale (alpha takes 1/supersample**2 steps); 0: auto, see `auto_supersample`
    jpeg_quality: int = 95
    obfuscation: str = "blur"
    obfuscation_strength: float = 1.0

    def __post_init__(self) -> None:
        self.size = (int(self.size[0]), int(self.size[1]))
        for name in ("n_train", "n_test_p", "n_test_np"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if sum(self.counts().values()) == 0:
            raise ValueError("the dataset needs at least one image (all counts are 0)")
        if min(self.size) < 32:
            raise ValueError(f"size must be at least 32x32, got {self.size[0]}x{self.size[1]}")
        if self.supersample < 0:
            raise ValueError(f"supersample must be >= 1 (or 0 for auto), got {self.supersample}")
        for name in ("two_person_prob", "back_view_prob"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")

    def counts(self) -> dict[str, int]:
        """Images per split."""
        return {"train": self.n_train, "P3M-500-P": self.n_test_p, "P3M-500-NP": self.n_test_np}


@dataclass
class Portrait:
    """One rendered portrait; `image` is the un-obfuscated composite alpha*fg + (1-alpha)*bg."""

    image: np.ndarray  # HxWx3 uint8
    alpha: np.ndarray  # HxW float32 in [0, 1]
    fg: np.ndarray  # HxWx3 uint8 foreground colour (defined everywhere)
    bg: np.ndarray  # HxWx3 uint8 background
    facemask: np.ndarray  # HxW bool: visible face ovals (jaw line up to the brows)
    face_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # (x0, y0, x1, y1), exclusive end
    hair: np.ndarray | None = None  # HxW bool: pixels touched by hair (mass or strands)


@dataclass
class SynthSample:
    """A dataset item as `generate_dataset` writes it, before encoding."""

    split: str
    stem: str
    portrait: Portrait
    image: np.ndarray  # obfuscated for train and P3M-500-P, the portrait's image for P3M-500-NP
    mask: np.ndarray  # HxW uint8 alpha
    private_area: np.ndarray  # HxW bool region that was obfuscated (all False for NP)
    trimap: np.ndarray  # HxW uint8 {0, 128, 255}, fixed test kernel
    fg: np.ndarray  # HxWx3 uint8; for obfuscated splits the private area holds the obfuscated pixels


# ---------------------------------------------------------------------------------------------------------------
# drawing helpers (canvas coordinates; cv2 takes integer points, so everything is rounded once here)


class _Canvas:
    """Supersampled painter: an RGB colour canvas plus coverage, facemask and hair masks (all uint8 0/1)."""

    def __init__(self, height: int, width: int, scale: int) -> None:
        self.h, self.w, self.s = height * scale, width * scale, scale
        self.colour = np.zeros((self.h, self.w, 3), np.float32)
        self.cover = np.zeros((self.h, self.w), np.uint8)
        self.face = np.zeros((self.h, self.w), np.uint8)
        self.hair = np.zeros((self.h, self.w), np.uint8)

    def blank(self) -> np.ndarray:
        return np.zeros((self.h, self.w), np.uint8)

    def paint(self, mask: np.ndarray, texture: np.ndarray, *, is_hair: bool = False) -> None:
        """Paint opaque `texture` where `mask`; later layers occlude earlier ones.

        `texture` is an RGB triple or an output-resolution HxWx3 image, upsampled here only over the mask's box.
        """
        box = _bbox(mask)
        if box is None:
            return
        m = mask[box]
        texture = np.asarray(texture, np.float32)
        patch = self._upsampled(texture, box) if texture.ndim == 3 else np.broadcast_to(texture, (*m.shape, 3))
        np.copyto(self.colour[box], patch, where=m[..., None].astype(bool))
        self.cover[box] |= m
        self.face[box] &= 1 - m  # anything drawn over a face hides it (callers restore their own fringe)
        if is_hair:
            self.hair[box] |= m

    def _upsampled(self, texture: np.ndarray, box: tuple[slice, slice]) -> np.ndarray:
        """The canvas-resolution crop `box` of an output-resolution texture (bilinear)."""
        s = self.s
        (ys, xs) = box
        oy0, ox0 = ys.start // s, xs.start // s
        oy1, ox1 = -(-ys.stop // s), -(-xs.stop // s)
        crop = texture[oy0:oy1, ox0:ox1]
        up = cv2.resize(crop, ((ox1 - ox0) * s, (oy1 - oy0) * s), interpolation=cv2.INTER_LINEAR)
        up = up.reshape((oy1 - oy0) * s, (ox1 - ox0) * s, 3)
        return up[ys.start - oy0 * s : ys.stop - oy0 * s, xs.start - ox0 * s : xs.stop - ox0 * s]

    def recolour(self, mask: np.ndarray, colour, limit: np.ndarray | None = None) -> None:
        """Set the colour where `mask` (and `limit`) without changing coverage: face features on the skin."""
        box = _bbox(mask)
        if box is None:
            return
        sel = mask[box].astype(bool)
        if limit is not None:
            sel &= limit[box].astype(bool)
        self.colour[box][sel] = colour


def _bbox(mask: np.ndarray) -> tuple[slice, slice] | None:
    """Slices of the bounding box of the nonzero pixels of a uint8 mask (None when empty)."""
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return None
    return slice(y, y + h), slice(x, x + w)


def _pt(x: float, y: float) -> tuple[int, int]:
    return round(float(x)), round(float(y))


def _ellipse(mask: np.ndarray, centre: tuple[float, float], axes: tuple[float, float], angle: float) -> np.ndarray:
    cv2.ellipse(mask, _pt(*centre), _pt(max(axes[0], 1), max(axes[1], 1)), angle, 0, 360, 1, -1)
    return mask


def _local(cx: float, cy: float, angle_deg: float) -> Callable[[float, float], tuple[float, float]]:
    """Map head-local offsets (dx, dy) to canvas points, rotated by the head tilt."""
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))

    def to_canvas(dx: float, dy: float) -> tuple[float, float]:
        return cx + dx * c - dy * s, cy + dx * s + dy * c

    return to_canvas


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int, channels: int = 1) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a random cells x cells grid upsampled bicubically."""
    grid = rng.uniform(-1, 1, (cells, cells, channels)).astype(np.float32)
    out = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    out = out.reshape(height, width, channels)
    return np.clip(out, -1, 1)


def _shaded(
    rng: np.random.Generator, base: np.ndarray, shape: tuple[int, int], amount: float, cells: int
) -> np.ndarray:
    """Base colour modulated by smooth luminance noise and a little fine grain, HxWx3 float32."""
    h, w = shape
    lum = 1.0 + amount * _smooth_noise(rng, h, w, cells)
    grain = rng.normal(0.0, 3.0, (h, w, 3)).astype(np.float32)
    return np.clip(base[None, None, :] * lum + grain, 0, 255).astype(np.float32)


def _bezier_strands(
    rng: np.random.Generator,
    starts: np.ndarray,
    directions: np.ndarray,
    lengths: np.ndarray,
    curl: float,
    gravity: float,
    points: int = 10,
) -> list[np.ndarray]:
    """Quadratic Bezier polylines (N x points x 2 int32) from `starts` along `directions`, bent by curl/gravity."""
    n = len(starts)
    normal = np.stack([-directions[:, 1], directions[:, 0]], axis=1)
    bend = rng.normal(0.0, curl, (n, 1)) * lengths[:, None]
    ctrl = starts + directions * (0.5 * lengths[:, None]) + normal * bend
    end = starts + directions * lengths[:, None] + np.array([0.0, gravity]) * lengths[:, None] + normal * bend * 0.5
    t = np.linspace(0.0, 1.0, points)[None, :, None]
    curve = (1 - t) ** 2 * starts[:, None] + 2 * (1 - t) * t * ctrl[:, None] + t**2 * end[:, None]
    return [np.round(c).astype(np.int32) for c in curve]


# ---------------------------------------------------------------------------------------------------------------
# one person


def _palette(
    rng: np.random.Generator, out_hw: tuple[int, int], head_radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One person's colours: (skin RGB, skin texture, hair texture, clothes texture), textures at output size."""
    H, W = out_hw
    skin_t = rng.uniform(0, len(_SKIN_TONES) - 1)
    i = int(skin_t)
    skin = _SKIN_TONES[i] * (1 - (skin_t - i)) + _SKIN_TONES[min(i + 1, len(_SKIN_TONES) - 1)] * (skin_t - i)
    skin = np.clip(skin + rng.normal(0, 6, 3), 0, 255).astype(np.float32)
    hair_colour = _HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=_HAIR_WEIGHTS / _HAIR_WEIGHTS.sum())]
    hair_colour = np.clip(hair_colour * rng.uniform(0.85, 1.15), 0, 255).astype(np.float32)
    cloth = cv2.cvtColor(
        np.array([[[rng.integers(0, 180), rng.integers(40, 255), rng.integers(40, 240)]]], np.uint8), cv2.COLOR_HSV2RGB
    )[0, 0].astype(np.float32)

    skin_tex = _shaded(rng, skin, (H, W), 0.08, 5)
    hair_tex = _shaded(rng, hair_colour, (H, W), 0.35, 24)
    cloth_small = _shaded(rng, cloth, (H, W), 0.25, 6)
    if rng.random() < 0.4:  # stripes on the clothes
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        period = rng.uniform(4, 14) * head_radius / 30
        theta = rng.uniform(0, np.pi)
        stripe = (np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / period) > 0)[..., None]
        other = np.clip(cloth * rng.uniform(0.4, 1.6, 3), 0, 255)
        cloth_small = np.where(stripe, cloth_small, cloth_small * (other / np.maximum(cloth, 1))[None, None, :])
    cloth_tex = np.clip(cloth_small, 0, 255).astype(np.float32)
    return skin, skin_tex, hair_tex, cloth_tex


@dataclass
class _Pose:
    """Where one person's head is on the canvas (canvas pixels) and how it is tilted."""

    cx: float
    cy: float
    r: float  # head radius
    tilt: float  # degrees
    head_axes: tuple[float, float]
    at: Callable[[float, float], tuple[float, float]] = field(init=False, repr=False)  # head frame -> canvas

    def __post_init__(self) -> None:
        self.at = _local(self.cx, self.cy, self.tilt)


def _draw_back_hair(rng: np.random.Generator, canvas: _Canvas, pose: _Pose, hair_tex: np.ndarray) -> None:
    """The back hair mass of long hair (behind the body) and the strands along its edges."""
    at, r, tilt = pose.at, pose.r, pose.tilt
    length = r * rng.uniform(1.6, 3.2)
    width = pose.head_axes[0] * rng.uniform(1.05, 1.35)
    poly = np.array(
        [at(-width, -0.2 * r), at(width, -0.2 * r), at(width * 1.1, length), at(-width * 1.1, length)], np.float64
    )
    back = cv2.fillPoly(canvas.blank(), [np.round(poly).astype(np.int32)], 1)
    _ellipse(back, at(0, -0.05 * r), (width, 1.1 * r), tilt)
    canvas.paint(back, hair_tex, is_hair=True)
    # Strands along the lower edge and the sides of the mass.
    n = int(rng.integers(60, 140))
    side = rng.choice([-1.0, 1.0], n)
    v = rng.uniform(0.0, 1.0, n)
    starts = np.array(
        [at(sd * width * (1.0 + 0.1 * t), -0.2 * r + t * (length + 0.2 * r)) for sd, t in zip(side, v, strict=True)]
    )
    dirs = np.stack([side * rng.uniform(0.2, 0.7, n), rng.uniform(0.6, 1.0, n)], 1)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    lengths = r * rng.uniform(0.15, 0.7, n)
    _strands(rng, canvas, hair_tex, starts, dirs, lengths)


def _draw_body(
    rng: np.random.Generator, canvas: _Canvas, pose: _Pose, skin_tex: np.ndarray, cloth_tex: np.ndarray
) -> None:
    """Neck, shoulders and clothes down to the bottom edge, with an optional neckline."""
    at, r = pose.at, pose.r
    neck_w = pose.head_axes[0] * rng.uniform(0.5, 0.65)
    neck_top, neck_bottom = at(0, 0.5 * r), at(0, 1.55 * r)
    neck = canvas.blank()
    cv2.line(neck, _pt(*neck_top), _pt(*neck_bottom), 1, max(1, round(float(2 * neck_w))))
    canvas.paint(neck, skin_tex)
    shoulder_w = r * rng.uniform(2.0, 3.0)
    shoulder_y = pose.cy + r * rng.uniform(1.35, 1.6)
    shoulder_h = r * rng.uniform(1.1, 1.7)
    sx = pose.cx + r * rng.uniform(-0.3, 0.3)
    # Sloping shoulders: a tall ellipse over a slightly wider trapezoid (upper arms) down to the bottom edge.
    torso = _ellipse(canvas.blank(), (sx, shoulder_y + shoulder_h), (shoulder_w, shoulder_h), rng.uniform(-6, 6))
    flare = shoulder_w * rng.uniform(1.0, 1.15)
    arms = np.array(
        [
            (sx - shoulder_w * 0.97, shoulder_y + shoulder_h),
            (sx + shoulder_w * 0.97, shoulder_y + shoulder_h),
            (sx + flare, canvas.h),
            (sx - flare, canvas.h),
        ]
    )
    cv2.fillPoly(torso, [np.round(arms).astype(np.int32)], 1)
    canvas.paint(torso, cloth_tex)
    if rng.random() < 0.6:  # neckline: skin V or round collar over the clothes
        neck_open = canvas.blank()
        depth = r * rng.uniform(0.3, 0.8)
        pts = np.array([at(-neck_w * 1.3, 1.45 * r), at(neck_w * 1.3, 1.45 * r), at(0, 1.45 * r + depth)])
        cv2.fillPoly(neck_open, [np.round(pts).astype(np.int32)], 1)
        canvas.paint(neck_open & torso, skin_tex)


def _draw_head(
    rng: np.random.Generator,
    canvas: _Canvas,
    pose: _Pose,
    textures: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    back_view: bool,
    bald: bool,
    face_boxes: list[tuple[int, int, int, int]],
) -> None:
    """Ears and head, then the back of the head (back view) or the face and the hair cap with its hairline."""
    at, r, tilt, axes, s = pose.at, pose.r, pose.tilt, pose.head_axes, canvas.s
    skin, skin_tex, hair_tex = textures
    head = canvas.blank()  # ears first so the head outline covers their inner half
    for side in (-1, 1):
        _ellipse(head, at(side * axes[0] * 0.98, 0.08 * r), (0.14 * r, 0.24 * r), tilt)
    _ellipse(head, (pose.cx, pose.cy), axes, tilt)
    canvas.paint(head, skin_tex)

    if back_view:
        cap = _ellipse(canvas.blank(), at(0, -0.03 * r), (axes[0] * 1.08, r * 1.08), tilt)
        canvas.paint(cap, hair_tex, is_hair=True)
        return
    face = _ellipse(canvas.blank(), at(0, 0.1 * r), (axes[0] * 0.86, r * 0.85), tilt)
    canvas.face[face.astype(bool)] = 1
    _draw_face(rng, canvas, at, r, tilt, skin, face)
    ys, xs = np.nonzero(face)
    if len(xs):
        face_boxes.append(
            (int(xs.min()) // s, int(ys.min()) // s, -(-int(xs.max() + 1) // s), -(-int(ys.max() + 1) // s))
        )
    if not bald:
        # Hair cap: an ellipse above the head minus a lowered face oval, which leaves a hairline.
        cap = _ellipse(canvas.blank(), at(0, -0.06 * r), (axes[0] * 1.07, r * 1.07), tilt)
        hairline = _ellipse(
            canvas.blank(),
            at(rng.uniform(-0.1, 0.1) * r, rng.uniform(0.25, 0.42) * r),
            (axes[0] * 0.8, r * 0.92),
            tilt,
        )
        cap &= 1 - hairline
        face_before = canvas.face.copy()
        canvas.paint(cap, hair_tex, is_hair=True)
        canvas.face |= face_before & cap  # the fringe is still inside the face region (jaw to brows)


def _draw_flyaways(rng: np.random.Generator, canvas: _Canvas, pose: _Pose, hair_tex: np.ndarray) -> None:
    """Flyaways and strands around the top of the head."""
    at, r = pose.at, pose.r
    n = int(rng.integers(120, 260))
    theta = rng.uniform(np.pi * 0.85, np.pi * 2.15, n)
    a, b = pose.head_axes[0] * 1.05, r * 1.05
    starts = np.array([at(a * math.cos(t) * 0.97, -0.06 * r + b * math.sin(t) * 0.97) for t in theta])
    rad = math.radians(pose.tilt)
    dirs = np.stack([np.cos(theta + rad), np.sin(theta + rad)], 1)
    dirs += np.array([0.0, 0.35])
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    lengths = r * rng.uniform(0.05, 0.35, n) * np.where(rng.random(n) < 0.15, 2.5, 1.0)
    face_before = canvas.face.copy()
    _strands(rng, canvas, hair_tex, starts, dirs, lengths)
    canvas.face |= face_before & canvas.hair  # strands over the forehead do not hide the face region


def _draw_person(
    rng: np.random.Generator,
    canvas: _Canvas,
    out_hw: tuple[int, int],
    head_radius: float,
    cx: float,
    cy: float,
    back_view: bool,
    face_boxes: list[tuple[int, int, int, int]],
) -> None:
    """Draw one person, back to front (all lengths in output pixels, converted to canvas pixels here)."""
    s = canvas.s
    r = head_radius * s
    tilt = float(rng.uniform(-14, 14))
    pose = _Pose(cx * s, cy * s, r, tilt, (r * rng.uniform(0.78, 0.86), r))
    skin, skin_tex, hair_tex, cloth_tex = _palette(rng, out_hw, head_radius)
    long_hair = rng.random() < 0.5 or back_view
    bald = not back_view and rng.random() < 0.05
    if long_hair and not bald:
        _draw_back_hair(rng, canvas, pose, hair_tex)
    _draw_body(rng, canvas, pose, skin_tex, cloth_tex)
    _draw_head(rng, canvas, pose, (skin, skin_tex, hair_tex), back_view=back_view, bald=bald, face_boxes=face_boxes)
    if not bald:
        _draw_flyaways(rng, canvas, pose, hair_tex)


def _strands(
    rng: np.random.Generator,
    canvas: _Canvas,
    hair_tex: np.ndarray,
    starts: np.ndarray,
    dirs: np.ndarray,
    lengths: np.ndarray,
) -> None:
    """Hair strands 1-2 canvas pixels wide (1/supersample of an output pixel): fractional alpha."""
    curves = _bezier_strands(rng, starts, dirs, lengths, curl=0.25, gravity=0.4)
    widths = rng.choice([1, 1, 1, 2], len(curves))
    mask = canvas.blank()
    for width in (1, 2):
        chosen = [c for c, w in zip(curves, widths, strict=True) if w == width]
        if chosen:
            cv2.polylines(mask, chosen, False, 1, int(width * max(1, canvas.s // 4)), cv2.LINE_8)
    canvas.paint(mask, hair_tex, is_hair=True)


def _draw_face(
    rng: np.random.Generator, canvas: _Canvas, at, r: float, tilt: float, skin: np.ndarray, face: np.ndarray
) -> None:
    """Eyes (sclera, iris, pupil, highlight), brows, nose shading and a mouth inside the face oval."""
    dark = np.clip(skin * 0.72, 0, 255)
    brow_colour = np.clip(skin * 0.3, 0, 255)
    iris = _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))]
    lip = np.clip(np.array([175, 85, 85], np.float32) * rng.uniform(0.75, 1.1) + skin * 0.15, 0, 255)
    eye_dx, eye_dy = r * rng.uniform(0.3, 0.36), r * rng.uniform(-0.12, -0.02)
    gaze = rng.uniform(-0.03, 0.03, 2) * r

    def paint_face(mask: np.ndarray, colour) -> None:
        canvas.recolour(mask, colour, limit=face)

    # Cheek/side shading: a darker ring inside the face oval gives the detector a 3-D cue.
    inner = _ellipse(canvas.blank(), at(0, 0.05 * r), (r * 0.55, r * 0.7), tilt)
    box = _bbox(face)
    if box is not None:
        ring = face[box].astype(bool) & ~inner[box].astype(bool)
        canvas.colour[box][ring] *= 0.9
    for side in (-1, 1):
        ex, ey = at(side * eye_dx, eye_dy)
        paint_face(_ellipse(canvas.blank(), at(side * eye_dx, eye_dy - 0.03 * r), (0.2 * r, 0.12 * r), tilt), dark)
        paint_face(_ellipse(canvas.blank(), (ex, ey), (0.15 * r, 0.075 * r), tilt), (245, 245, 240))
        paint_face(_ellipse(canvas.blank(), (ex + gaze[0], ey + gaze[1]), (0.07 * r, 0.07 * r), 0), iris)
        paint_face(_ellipse(canvas.blank(), (ex + gaze[0], ey + gaze[1]), (0.035 * r, 0.035 * r), 0), (10, 10, 10))
        paint_face(
            _ellipse(canvas.blank(), (ex + gaze[0] + 0.02 * r, ey + gaze[1] - 0.02 * r), (0.015 * r, 0.015 * r), 0),
            (255, 255, 255),
        )
        brow = canvas.blank()
        lift = rng.uniform(-0.04, 0.04) * r
        p = [
            at(side * eye_dx * 0.45, eye_dy - 0.2 * r),
            at(side * eye_dx * 1.0, eye_dy - 0.26 * r + lift),
            at(side * eye_dx * 1.5, eye_dy - 0.2 * r + lift),
        ]
        cv2.polylines(brow, [np.round(np.array(p)).astype(np.int32)], False, 1, max(1, round(float(0.06 * r))))
        paint_face(brow, brow_colour)
    # Nose: a shaded ridge and the nostrils.
    nose = canvas.blank()
    cv2.line(
        nose, _pt(*at(0.04 * r, eye_dy + 0.05 * r)), _pt(*at(0.07 * r, 0.3 * r)), 1, max(1, round(float(0.05 * r)))
    )
    paint_face(nose, np.clip(skin * 0.82, 0, 255))
    for side in (-1, 1):
        paint_face(_ellipse(canvas.blank(), at(side * 0.07 * r, 0.35 * r), (0.04 * r, 0.025 * r), tilt), dark * 0.6)
    # Mouth: lips and the darker line between them.
    mouth_y = r * rng.uniform(0.52, 0.6)
    width = r * rng.uniform(0.18, 0.26)
    paint_face(_ellipse(canvas.blank(), at(0, mouth_y), (width, 0.08 * r), tilt), lip)
    line = canvas.blank()
    cv2.ellipse(
        line, _pt(*at(0, mouth_y - 0.05 * r)), _pt(width, 0.06 * r), tilt, 20, 160, 1, max(1, round(float(0.02 * r)))
    )
    paint_face(line, lip * 0.5)


# ---------------------------------------------------------------------------------------------------------------
# backgrounds and portraits


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Textured background: linear gradient, low-frequency colour noise, random shapes, grain, slight blur."""
    grey0, grey1 = rng.uniform(30, 230, 2)
    mix = rng.uniform(0.3, 0.8)  # pull the random colours towards grey: scenes, not test cards
    c0 = mix * grey0 + (1 - mix) * rng.uniform(0, 255, 3)
    c1 = mix * grey1 + (1 - mix) * rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (xx * np.cos(angle) + yy * np.sin(angle)) / max(height, width)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    bg = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    bg += 40.0 * _smooth_noise(rng, height, width, int(rng.integers(3, 9)), 3)
    bg = np.clip(bg, 0, 255).astype(np.uint8)
    unit = min(height, width)
    for _ in range(int(rng.integers(4, 16))):
        colour = tuple(int(v) for v in 0.5 * rng.integers(0, 256, 3) + 0.5 * rng.uniform(30, 230))
        kind = rng.integers(3)
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if kind == 0:
            cv2.circle(bg, (x, y), int(rng.uniform(0.02, 0.2) * unit), colour, -1, cv2.LINE_AA)
        elif kind == 1:
            x2, y2 = x + int(rng.uniform(-0.3, 0.3) * unit), y + int(rng.uniform(-0.3, 0.3) * unit)
            cv2.rectangle(bg, (x, y), (x2, y2), colour, -1)
        else:
            x2, y2 = int(rng.integers(0, width)), int(rng.integers(0, height))
            cv2.line(bg, (x, y), (x2, y2), colour, int(rng.integers(1, max(2, unit // 40))), cv2.LINE_AA)
    bg = bg.astype(np.float32) + rng.normal(0.0, 4.0, bg.shape).astype(np.float32)
    sigma = float(rng.uniform(0.0, 2.5))
    if sigma > 0.3:
        bg = cv2.GaussianBlur(bg, (0, 0), sigma)
    return np.clip(np.rint(bg), 0, 255).astype(np.uint8)


MAX_CANVAS_PIXELS = 8_000_000  # ~100 MB of float32 colour canvas


def auto_supersample(height: int, width: int) -> int:
    """Largest canvas scale in 4..1 whose canvas stays under `MAX_CANVAS_PIXELS` (320x320 -> 4, 1080x1620 -> 2)."""
    for scale in (4, 3, 2):
        if height * width * scale * scale <= MAX_CANVAS_PIXELS:
            return scale
    return 1


def render_portrait(
    rng: np.random.Generator,
    size: tuple[int, int],
    *,
    two_person_prob: float = 0.2,
    back_view_prob: float = 0.1,
    supersample: int = 0,
) -> Portrait:
    """Draw one portrait of `size` (H, W) from `rng`: one or two people over a textured background.

    `supersample` is the canvas scale (0: `auto_supersample`); strands are one canvas pixel wide.
    """
    height, width = int(size[0]), int(size[1])
    if min(height, width) < 32:
        raise ValueError(f"size must be at least 32x32, got {height}x{width}")
    unit = min(height, width)
    canvas = _Canvas(height, width, int(supersample) or auto_supersample(height, width))
    bg = _background(rng, height, width)
    face_boxes: list[tuple[int, int, int, int]] = []
    n_people = 2 if rng.random() < two_person_prob else 1
    if n_people == 1:
        r = unit * rng.uniform(0.13, 0.2)
        people = [(r, width * rng.uniform(0.35, 0.65), height * rng.uniform(0.28, 0.45))]
    else:
        order = rng.permutation([-1.0, 1.0])
        people = []
        for side in order:  # the first one drawn is behind the second
            r = unit * rng.uniform(0.1, 0.15)
            people.append((r, width * (0.5 + side * rng.uniform(0.16, 0.24)), height * rng.uniform(0.3, 0.5)))
    for r, cx, cy in people:
        _draw_person(rng, canvas, (height, width), r, cx, cy, rng.random() < back_view_prob, face_boxes)

    # Area coverage at output resolution; premultiplied colour gives the coverage-weighted foreground colour.
    area = cv2.INTER_AREA
    cover = canvas.cover.astype(np.float32)
    alpha = cv2.resize(cover, (width, height), interpolation=area)
    premult = cv2.resize(canvas.colour * cover[..., None], (width, height), interpolation=area)
    alpha = np.clip(alpha, 0.0, 1.0).astype(np.float32)
    fg = _fill_foreground(premult, alpha)
    composite = alpha[..., None] * fg.astype(np.float32) + (1.0 - alpha[..., None]) * bg.astype(np.float32)
    image = np.clip(np.rint(composite), 0, 255).astype(np.uint8)
    facemask = cv2.resize(canvas.face.astype(np.float32), (width, height), interpolation=area) > 0.5
    facemask &= alpha > 0.99  # a face region is opaque skin; coverage rounding must not leak it into edges
    hair = cv2.resize(canvas.hair.astype(np.float32), (width, height), interpolation=area) > 0
    # Boxes of faces that stayed visible (a second person may hide the first face entirely).
    visible = []
    for x0, y0, x1, y1 in face_boxes:
        if facemask[max(y0, 0) : y1, max(x0, 0) : x1].sum() > 0.2 * max(1, (x1 - x0) * (y1 - y0)):
            visible.append((max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)))
    return Portrait(image=image, alpha=alpha, fg=fg, bg=bg, facemask=facemask, face_boxes=visible, hair=hair)


def _fill_foreground(premult: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """fg = premult / alpha where alpha > 0; elsewhere a smooth extension (normalised convolution) of it."""
    height, width = alpha.shape
    fg = np.zeros((height, width, 3), np.float32)
    inside = alpha > 0
    fg[inside] = premult[inside] / alpha[inside][:, None]
    if not inside.all():
        weight = alpha.copy()
        num = premult.copy()
        filled = np.zeros_like(fg)
        done = inside.copy()
        for sigma in (2.0, 8.0, 32.0):
            w = cv2.GaussianBlur(weight, (0, 0), sigma)
            n = cv2.GaussianBlur(num, (0, 0), sigma)
            ok = (w > 1e-3) & ~done
            filled[ok] = n[ok] / w[ok][:, None]
            done |= ok
        mean = premult.sum(axis=(0, 1)) / max(float(alpha.sum()), 1e-6) if inside.any() else np.full(3, 128.0)
        filled[~done] = mean
        fg[~inside] = filled[~inside]
    return np.clip(np.rint(fg), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# dataset


def dataset_stems(config: SynthConfig) -> dict[str, list[str]]:
    """Unique `p_` + 8 lowercase hex stems per split, drawn from the seed alone, in item-index order.

    Item i of a split keeps its stem when the counts grow (the dataset lists items sorted by stem instead).
    """
    seen: set[str] = set()
    stems: dict[str, list[str]] = {}
    for split, count in config.counts().items():
        rng = np.random.default_rng([int(config.seed), 0x57E5, _SPLIT_IDS[split]])
        chosen: list[str] = []
        while len(chosen) < count:
            stem = f"p_{int(rng.integers(0, 2**32)):08x}"
            if stem not in seen:  # a clash with another split (p = count / 2**32) draws again
                seen.add(stem)
                chosen.append(stem)
        stems[split] = chosen
    return stems


def render_sample(config: SynthConfig, split: str, index: int, stem: str | None = None) -> SynthSample:
    """Render item `index` of `split` exactly as `generate_dataset` writes it (its random stream is
    seeded by (seed, split, index), so it does not depend on the other counts)."""
    if split not in _SPLIT_IDS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(_SPLIT_IDS)}")
    if stem is None:
        stem = dataset_stems(config)[split][index]
    rng = np.random.default_rng([int(config.seed), _SPLIT_IDS[split], int(index)])
    portrait = render_portrait(
        rng,
        config.size,
        two_person_prob=config.two_person_prob,
        back_view_prob=config.back_view_prob,
        supersample=config.supersample,
    )
    mask = np.clip(np.rint(portrait.alpha * 255.0), 0, 255).astype(np.uint8)
    trimap = trimap_from_alpha(mask, kernel_size_for_test_split(*config.size))
    if split == "P3M-500-NP":
        private = np.zeros(mask.shape, bool)
        image, fg = portrait.image, portrait.fg
    else:
        private = private_area(portrait.facemask, alpha=mask, trimap=trimap)
        image = obfuscate(portrait.image, private, config.obfuscation, strength=config.obfuscation_strength)
        # The released fg is the foreground *of the blurred image*: keep image = alpha*fg + (1-alpha)*bg true
        # (alpha is 1 inside the private area) and keep the face out of the training foreground.
        fg = portrait.fg.copy()
        fg[private] = image[private]
    return SynthSample(
        split=split, stem=stem, portrait=portrait, image=image, mask=mask, private_area=private, trimap=trimap, fg=fg
    )


def is_synth_output(root: str | os.PathLike) -> bool:
    """True when `root` holds a `synth_meta.json` written by `generate_dataset`."""
    meta = Path(root) / META_FILE
    try:
        return json.loads(meta.read_text()).get("generator") == "p3m.data.synth"
    except (OSError, ValueError, AttributeError):
        return False


def _split_folders(split: str) -> dict[str, str]:
    """Item kind -> folder (relative to the root) for one split."""
    if split == "train":
        return {
            "image": "train/blurred_image",
            "mask": "train/mask",
            "fg": "train/fg",
            "bg": "train/bg",
            "facemask": "train/facemask",
        }
    image_folder = "blurred_image" if split == "P3M-500-P" else "original_image"
    base = f"validation/{split}"
    return {
        "image": f"{base}/{image_folder}",
        "mask": f"{base}/mask",
        "trimap": f"{base}/trimap",
        "facemask": f"{base}/facemask",
    }


def _write_sample(root: Path, config: SynthConfig, split: str, index: int, stem: str) -> None:
    """Render one item and write its files (atomic, no metadata)."""
    sample = render_sample(config, split, index, stem)
    folders = _split_folders(split)
    write_image(root / folders["image"] / f"{stem}.jpg", sample.image, quality=config.jpeg_quality)
    write_image(root / folders["mask"] / f"{stem}.png", sample.mask)
    write_image(root / folders["facemask"] / f"{stem}.png", sample.portrait.facemask.astype(np.uint8) * 255)
    if split == "train":
        write_image(root / folders["fg"] / f"{stem}.png", sample.fg)
        write_image(root / folders["bg"] / f"{stem}.png", sample.portrait.bg)
    else:
        write_image(root / folders["trimap"] / f"{stem}.png", sample.trimap)


def generate_dataset(
    root: str | os.PathLike,
    config: SynthConfig | None = None,
    *,
    progress: bool = False,
    overwrite: bool = False,
    workers: int = 1,
) -> Path:
    """Write the synthetic dataset in the P3M-10k 2024 layout (with `validation/`) under `root`.

    `root` must be missing, empty, or an earlier synth output (its `train/`, `validation/` and meta file are
    replaced); any other non-empty folder needs `overwrite=True` (then `train/` and `validation/` are removed
    first, other files are left alone). `workers` > 1 renders in that many processes (same files). Returns the root.
    """
    config = config or SynthConfig()
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root}: exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        if not (overwrite or is_synth_output(root)):
            raise DatasetError(
                f"{root}: folder is not empty and is not an earlier synthetic dataset; "
                "choose an empty folder or pass --overwrite (overwrite=True)"
            )
        for name in ("train", "validation"):
            if (root / name).is_dir():
                shutil.rmtree(root / name)
        (root / META_FILE).unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    meta = {
        "generator": "p3m.data.synth",
        "synth_version": SYNTH_VERSION,
        "p3m_version": __version__,
        "config": asdict(config),
        "counts": config.counts(),
        "trimap_kernel_size": kernel_size_for_test_split(*config.size),
        "notes": "facemask/ in P3M-500-NP is an extra of the synthetic set (the real release has none there).",
    }

    def write_meta(complete: bool) -> None:
        text = json.dumps({**meta, "complete": complete}, indent=2, sort_keys=True) + "\n"
        write_bytes_atomic(root / META_FILE, text.encode())

    write_meta(False)  # marks the folder as ours first: an interrupted run can be re-run into it
    stems = dataset_stems(config)
    jobs = [(split, i, stem) for split, names in stems.items() for i, stem in enumerate(names)]
    bar = None
    if progress:
        bar = tqdm(total=len(jobs), desc="p3m synth", unit="img")
    workers = max(1, int(workers))
    if workers == 1 or len(jobs) < 2:
        for split, index, stem in jobs:
            _write_sample(root, config, split, index, stem)
            if bar is not None:
                bar.update()
    else:
        # Items are independent (each has its own random stream), so the files do not depend on `workers`.
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            futures = [pool.submit(_write_sample, root, config, *job) for job in jobs]
            for future in futures:
                future.result()
                if bar is not None:
                    bar.update()
    if bar is not None:
        bar.close()
    for split, names in stems.items():  # folders of a split exist with its images, also for companions
        for folder in _split_folders(split).values():
            if names:
                (root / folder).mkdir(parents=True, exist_ok=True)

    write_meta(True)
    return root
