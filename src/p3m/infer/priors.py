"""Rules that combine the built-in route's person priors: pure functions of arrays.

The route (`p3m.infer.portrait`) has a selfie-segmentation probability and, where it runs, BlazePose's landmarks
and person mask (`p3m.models.pose_landmark`) and MediaPipe's hand landmarks (`p3m.models.hand_landmark`). These
functions turn them into the route's decisions: where the zoomed pass looks along the person's edge
(`edge_tiles`) and which of its removals are believed (`thin_removals`), which of the prior's components are the
person (`hysteresis_mask`), where the pose mask is trusted
(`agreement`), where limbs leave gaps the selfie mask fills (`limb_gaps`), which part of each forearm is surely
person (`limb_cores`), where hands are (`hand_roi_from_pose`, `hand_seeds`), and whether a person is there at all
(`face_on_person`, `PersonEvidence`, `person_verdict`).

Conventions: masks are HxW bool, probabilities HxW float32 in [0, 1]; pose landmarks (33, 4) x, y in pixels of
the same grid, z, visibility in [0, 1] (MediaPipe's order, `p3m.models.pose_landmark.LANDMARKS`); hand landmarks
(21, 3) x, y in pixels, z (`p3m.models.hand_landmark.LANDMARKS`). "Left" and "right" are the person's own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from p3m.models.hand_landmark import LANDMARKS as HAND_LANDMARKS
from p3m.models.mediapipe_calculators import RotatedRect, normalize_radians, transform_rect
from p3m.models.pose_landmark import LANDMARKS as POSE_LANDMARKS

__all__ = [
    "PersonEvidence",
    "agreement",
    "blend_in",
    "edge_tiles",
    "face_on_person",
    "hand_roi_from_pose",
    "hand_seeds",
    "hysteresis_mask",
    "limb_cores",
    "limb_gaps",
    "person_verdict",
    "square_around",
    "thin_removals",
]


def _pose(name: str) -> int:
    return POSE_LANDMARKS.index(name)


def _hand(name: str) -> int:
    return HAND_LANDMARKS.index(name)


# the polygons between a limb and the body: shoulder, elbow, wrist, hip (one per side), and between the legs:
# hip, knee, ankle of one leg, then ankle, knee, hip of the other
_GAPS = (
    tuple(_pose(n) for n in ("left_shoulder", "left_elbow", "left_wrist", "left_hip")),
    tuple(_pose(n) for n in ("right_shoulder", "right_elbow", "right_wrist", "right_hip")),
    tuple(_pose(n) for n in ("left_hip", "left_knee", "left_ankle", "right_ankle", "right_knee", "right_hip")),
)
# the legs' polygon of a person cut off by the frame: hip, knee, ankle of each leg
_LEGS = (
    tuple(_pose(n) for n in ("left_hip", "left_knee", "left_ankle")),
    tuple(_pose(n) for n in ("right_hip", "right_knee", "right_ankle")),
)
# the bones `limb_cores` draws: elbow to wrist
_FOREARMS = (
    (_pose("left_elbow"), _pose("left_wrist")),
    (_pose("right_elbow"), _pose("right_wrist")),
)
_HAND_BONES = tuple(
    (_hand(a), _hand(b))
    for a, b in (
        ("wrist", "thumb_cmc"), ("thumb_cmc", "thumb_mcp"), ("thumb_mcp", "thumb_ip"), ("thumb_ip", "thumb_tip"),
        ("wrist", "index_finger_mcp"), ("index_finger_mcp", "index_finger_pip"),
        ("index_finger_pip", "index_finger_dip"), ("index_finger_dip", "index_finger_tip"),
        ("index_finger_mcp", "middle_finger_mcp"), ("middle_finger_mcp", "middle_finger_pip"),
        ("middle_finger_pip", "middle_finger_dip"), ("middle_finger_dip", "middle_finger_tip"),
        ("middle_finger_mcp", "ring_finger_mcp"), ("ring_finger_mcp", "ring_finger_pip"),
        ("ring_finger_pip", "ring_finger_dip"), ("ring_finger_dip", "ring_finger_tip"),
        ("ring_finger_mcp", "pinky_mcp"), ("wrist", "pinky_mcp"), ("pinky_mcp", "pinky_pip"),
        ("pinky_pip", "pinky_dip"), ("pinky_dip", "pinky_tip"),
    )
)  # fmt: skip
_PALM = tuple(
    _hand(n) for n in ("wrist", "thumb_cmc", "index_finger_mcp", "middle_finger_mcp", "ring_finger_mcp", "pinky_mcp")
)
# pose points of each hand: wrist, index knuckle, pinky knuckle
_POSE_HANDS = (
    tuple(_pose(n) for n in ("left_wrist", "left_index", "left_pinky")),
    tuple(_pose(n) for n in ("right_wrist", "right_index", "right_pinky")),
)


# `hysteresis_mask` counts the confident pixels of up to this many components by comparison (a few passes over the
# labels, each far cheaper than numpy's gather of the labels at every confident pixel); more go through bincount
_FEW_COMPONENTS = 8


def hysteresis_mask(prob: np.ndarray, low: float, high: float, min_share: float) -> np.ndarray:
    """HxW bool: ``prob >= low`` in the connected components (8-connected) that hold confident pixels.

    Parameters
    ----------
    prob : HxW float32 in [0, 1], a person probability
    low : float, the mask's threshold
    high : float, "confident": ``prob >= max(high, low)``
    min_share : float, a component is kept when its count of confident pixels is above 0 and at least this
        fraction of the largest such count

    Returns
    -------
    HxW bool. Most priors have two or three components, so the counts and the answer are taken by comparing the
    labels with each component's number (the component that holds the most confident pixels is not known in
    advance, so the first component's count is the total less the others'); the answer is the thresholded
    image itself when every component is kept.
    """
    binary = (prob >= low).astype(np.uint8)
    n, labels = cv2.connectedComponents(binary, connectivity=8)
    confident = prob >= max(high, low)
    if n <= _FEW_COMPONENTS:
        seeds = np.zeros(n, np.float64)
        for k in range(2, n):
            seeds[k] = np.count_nonzero(confident & (labels == k))
        if n > 1:
            seeds[1] = np.count_nonzero(confident) - seeds[2:].sum()
    else:
        seeds = np.bincount(labels[confident], minlength=n).astype(np.float64)
    seeds[0] = 0  # background label
    keep = (seeds > 0) & (seeds >= min_share * seeds.max())
    kept = np.flatnonzero(keep)
    if kept.size == n - 1:  # every component (or none at all)
        return binary.view(bool)
    if kept.size == 1:
        return labels == kept[0]
    return keep[labels]


def square_around(mask: np.ndarray, margin: float) -> RotatedRect | None:
    """The upright square round a mask's bounding box: centred on it, the box's long side times ``1 + 2 *
    margin`` (MediaPipe's pose crop is 1.25x the body: margin 0.125); None for an empty mask. Pixels of the
    mask's grid; the square may reach past the image (crops pad it)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    side = max(y1 - y0, x1 - x0) * (1.0 + 2.0 * margin)
    return RotatedRect((x0 + x1) / 2.0, (y0 + y1) / 2.0, float(side), float(side))


def edge_tiles(
    prob: np.ndarray,
    mask: np.ndarray,
    side: int,
    count: int,
    *,
    unsure: tuple[float, float] = (0.1, 0.9),
    min_share: float = 0.05,
    min_person: float = 0.15,
) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of up to `count` square tiles of `side` px along the edge of `mask` (HxW bool),
    where the prior `prob` (HxW float32, same grid) is unsure: strictly between ``unsure[0]`` and ``unsure[1]``.

    Greedy: each tile is centred on the edge pixel of the mask (a mask pixel with a background 8-neighbour) with
    the most unsure pixels not yet covered in the middle 70% of a tile round it, then kept inside the grid;
    it stops when the best tile would cover no more than `min_share` of all unsure pixels. A tile where less
    than `min_person` of the pixels are in the mask is dropped (its unsure pixels still count as covered): the
    selfie network, trained on people filling the frame, sees no person in a corner of background.
    """
    h, w = mask.shape
    side = int(min(side, h, w))
    mask = mask.astype(bool)
    if side < 1 or count < 1 or not mask.any():
        return []
    target = ((prob > unsure[0]) & (prob < unsure[1])).astype(np.float32)
    total = float(target.sum())
    edge = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8), borderValue=1).astype(bool)
    core = max(1, round(0.7 * side))
    tiles: list[tuple[int, int]] = []
    for _ in range(count):
        covered = cv2.boxFilter(target, -1, (core, core), normalize=False, borderType=cv2.BORDER_CONSTANT)
        score = np.where(edge, covered, -1.0)
        best = int(np.argmax(score))
        if total == 0 or score.flat[best] <= min_share * total:
            break
        cy, cx = divmod(best, w)
        top = min(max(cy - side // 2, 0), h - side)
        left = min(max(cx - side // 2, 0), w - side)
        target[top : top + side, left : left + side] = 0
        if mask[top : top + side, left : left + side].mean() >= min_person:
            tiles.append((top, left))
    return tiles


def thin_removals(
    coarse: np.ndarray, fine: np.ndarray, inside: np.ndarray, *, reach: float, attach: float
) -> np.ndarray:
    """HxW bool: the pixels a zoomed pass (`fine`, HxW bool) removes from the coarse mask (`coarse`) that are
    believed: connected parts (8-connected) of ``coarse & ~fine & inside`` that are thin and attached.

    Thin: every pixel within `reach` px of the coarse background (Euclidean; the arrays must reach `reach` px
    beyond `inside` for that distance to be exact). Attached: on the part's one-pixel border inside `inside`,
    pixels that both masks call person number at least `attach` times those of the coarse background. A
    spill strip along the edge touches the person on one side and the background on the other (about 1:1);
    a limb that the zoomed network lost as a whole touches mostly background (both sides of it) and is kept.
    """
    coarse, inside = coarse.astype(bool), inside.astype(bool)
    removed = coarse & ~fine.astype(bool) & inside
    n, labels = cv2.connectedComponents(removed.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(removed)
    depth = cv2.distanceTransform(coarse.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    deepest = np.zeros(n, np.float32)
    np.maximum.at(deepest, labels[removed], depth[removed])
    # each part's border: pixels next to it (3x3) outside every part, labelled by the part (max of the labels)
    around = cv2.dilate(labels.astype(np.float32), np.ones((3, 3), np.uint8)).astype(np.int64)
    border = (labels == 0) & (around > 0) & inside
    person = np.bincount(around[border & coarse & fine], minlength=n)
    background = np.bincount(around[border & ~coarse], minlength=n)
    keep = (deepest <= reach) & (person >= attach * background)
    keep[0] = False
    return keep[labels]


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two HxW bool masks (1.0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 1.0


def _points(landmarks: np.ndarray, ids: Sequence[int], min_visibility: float) -> np.ndarray | None:
    """(N, 2) int32 pixel positions of the listed landmarks, or None when one is less visible than asked."""
    if (landmarks[list(ids), 3] < min_visibility).any():
        return None
    return np.round(landmarks[list(ids), :2]).astype(np.int32)


def limb_gaps(
    landmarks: np.ndarray, shape: tuple[int, int], *, min_visibility: float = 0.5, legs_cut: bool = False
) -> np.ndarray:
    """HxW bool: where background can show between a limb and the body, from pose landmarks (33, 4).

    The polygons shoulder-elbow-wrist-hip on each side (between an arm and the torso) and hip-knee-ankle of
    both legs (between the legs), each only when all its points are at least `min_visibility` visible. The
    polygons cover the limbs' own inner halves too: a caller trusts another prior there, not "background".

    With `legs_cut`, the legs' polygon is drawn too where the frame cuts the legs off (`legs_out_of_frame`): the
    network still places the knees and ankles it does not see, with a low visibility, and between the thighs of
    a person photographed down to the knees the background shows as it does between whole legs.
    """
    out = np.zeros(shape, np.uint8)
    for ids in _GAPS:
        points = _points(landmarks, ids, min_visibility)
        if points is None and legs_cut and ids == _GAPS[2] and legs_out_of_frame(landmarks, shape, min_visibility):
            points = np.round(landmarks[list(ids), :2]).astype(np.int32)
        if points is not None:
            cv2.fillPoly(out, [points], 1)
    return out.astype(bool)


def legs_out_of_frame(landmarks: np.ndarray, shape: tuple[int, int], min_visibility: float = 0.5) -> bool:
    """Whether pose landmarks (33, 4) say the legs run out of the image (`shape` = (H, W)): both hips at least
    `min_visibility` visible, both ankles outside the image, and each knee between its hip and ankle (its
    projection on the hip-ankle line at 0.2-0.8 of the way: a leg the network extrapolated whole, not a guess
    folded back into the frame)."""
    h, w = shape
    for hip, knee, ankle in _LEGS:
        if landmarks[hip, 3] < min_visibility:
            return False
        hip_xy, knee_xy, ankle_xy = (landmarks[i, :2].astype(np.float64) for i in (hip, knee, ankle))
        if 0 <= ankle_xy[0] < w and 0 <= ankle_xy[1] < h:
            return False
        leg = ankle_xy - hip_xy
        along = float(np.dot(knee_xy - hip_xy, leg)) / max(float(np.dot(leg, leg)), 1e-9)
        if not 0.2 < along < 0.8:
            return False
    return True


def limb_cores(
    landmarks: np.ndarray, support: np.ndarray, *, fraction: float, min_visibility: float = 0.5
) -> np.ndarray:
    """HxW bool: the middle of each forearm, surely person, from pose landmarks (33, 4) and a person mask.

    Parameters
    ----------
    landmarks : (33, 4) pose landmarks (x, y in pixels of `support`'s grid, z, visibility)
    support : HxW bool, where the limb may be: the cores never leave it
    fraction : float, each core is a band along the bone elbow-wrist `fraction` times the limb's width: twice the
        median, over the bone's pixels inside the image, of their distance to the nearest pixel outside `support`
        (the limb's half-width where the bone runs down its middle; less where a misplaced landmark puts the bone
        near the limb's edge, and 0 where it lies outside `support`)
    min_visibility : float, a bone is drawn when both its landmarks are at least this visible

    Returns
    -------
    HxW bool, inside `support`. Where the limb is as wide as its median, a core of `fraction` < 1 stays (1 -
    `fraction`) of the half-width off the limb's edge; where it is narrower (towards the wrist), the core is
    clipped to `support`.
    """
    support = support.astype(bool)
    h, w = support.shape
    out = np.zeros((h, w), np.uint8)
    depth: np.ndarray | None = None
    for a, b in _FOREARMS:
        if min(landmarks[a, 3], landmarks[b, 3]) < min_visibility:
            continue
        start, end = landmarks[a, :2].astype(np.float64), landmarks[b, :2].astype(np.float64)
        steps = np.linspace(0.0, 1.0, max(2, math.ceil(math.hypot(*(end - start))) + 1))
        xy = np.round(start + steps[:, None] * (end - start)).astype(np.int64)
        xy = xy[(xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)]
        if xy.size == 0:
            continue
        if depth is None:
            depth = cv2.distanceTransform(support.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        width = 2.0 * fraction * float(np.median(depth[xy[:, 1], xy[:, 0]]))
        if width >= 1.0:
            _stroke(out, start, end, round(width))
    return out.astype(bool) & support


def _stroke(canvas: np.ndarray, start: np.ndarray, end: np.ndarray, width: int) -> None:
    """Draws the segment start-end (x, y pixels, rounded) as 1 into uint8 `canvas`: cv2's line of thickness `width`
    (round-capped, and 1-2 px wider than the thickness: cv2's rasterisation)."""
    a, b = (int(np.rint(start[0])), int(np.rint(start[1]))), (int(np.rint(end[0])), int(np.rint(end[1])))
    cv2.line(canvas, a, b, 1, max(1, width))


def blend_in(prob: np.ndarray, other: np.ndarray, zone: np.ndarray, feather: float) -> np.ndarray:
    """HxW float32: `other` inside the bool `zone`, `prob` outside, mixed over a Gaussian edge of `feather` px
    (standard deviation; 0 = a hard edge)."""
    weight = zone.astype(np.float32)
    if feather > 0:
        weight = cv2.GaussianBlur(weight, (0, 0), feather).astype(np.float32)
    return (prob + weight * (other - prob)).astype(np.float32)


def hand_roi_from_pose(
    landmarks: np.ndarray, shape: tuple[int, int], *, min_visibility: float = 0.5, scale: float = 2.7
) -> list[RotatedRect]:
    """Crops for the hand landmark network from pose landmarks: one per hand whose wrist, index and pinky
    knuckles are at least `min_visibility` visible and whose wrist is inside the image (`shape` = (H, W)).

    MediaPipe Holistic's HandDetectionsFromPoseToRectsCalculator: centre at the estimated middle knuckle
    (2 * index + pinky) / 3, side twice its distance from the wrist, turned so the wrist -> knuckle line
    points up; then shifted 0.1 of the side towards the fingers and scaled `scale`x (`transform_rect`).
    """
    h, w = shape
    rois = []
    for wrist, index, pinky in _POSE_HANDS:
        if min(landmarks[wrist, 3], landmarks[index, 3], landmarks[pinky, 3]) < min_visibility:
            continue
        wx, wy = (float(v) for v in landmarks[wrist, :2])
        if not (0 <= wx < w and 0 <= wy < h):
            continue
        mx = (2.0 * float(landmarks[index, 0]) + float(landmarks[pinky, 0])) / 3.0
        my = (2.0 * float(landmarks[index, 1]) + float(landmarks[pinky, 1])) / 3.0
        size = 2.0 * math.hypot(mx - wx, my - wy)
        if size < 1.0:
            continue
        rotation = normalize_radians(math.pi / 2 - math.atan2(-(my - wy), mx - wx))
        rois.append(transform_rect(RotatedRect(mx, my, size, size, rotation), scale, shift=(0.0, -0.1)))
    return rois


def hand_seeds(
    hands: Sequence[np.ndarray], shape: tuple[int, int], *, bone_width: float, zone_width: float
) -> tuple[np.ndarray, np.ndarray]:
    """(seeds, zone), HxW bool, from hand landmarks ((21, 3) each): seeds are the bones drawn `bone_width` x
    the hand's size wide plus the palm polygon (surely hand), the zone is the bones `zone_width` x the size
    wide on each side plus the palm (where the hand's edge can be). A hand's size is its wrist to middle
    knuckle distance."""
    seeds = np.zeros(shape, np.uint8)
    zone = np.zeros(shape, np.uint8)
    for points in hands:
        p = np.round(points[:, :2]).astype(np.int32)
        size = float(np.hypot(*(points[_hand("middle_finger_mcp"), :2] - points[_hand("wrist"), :2])))
        thin = max(1, round(bone_width * size))
        wide = max(1, round(2 * zone_width * size))
        for a, b in _HAND_BONES:
            _stroke(seeds, p[a], p[b], thin)
            _stroke(zone, p[a], p[b], wide)
        palm = p[list(_PALM)]
        cv2.fillPoly(seeds, [palm], 1)
        cv2.fillPoly(zone, [palm], 1)
    return seeds.astype(bool), zone.astype(bool)


def face_on_person(box: Sequence[float] | np.ndarray, mask: np.ndarray, *, inside: float, largest: float) -> bool:
    """Whether a face detector's box is the face of the person in `mask`, by where it lies and how large it is.

    A face detector reports faces on animals, drawings and textures (a cat's face, a logo's snake). A person's face
    lies on the person, so on the person's mask, and is a part of it: the mask holds the hair, ears, chin and neck
    round the face too (a head is about twice the area of its face box), and in a photo to be matted the shoulders.
    A cat's face that fills the frame is most of the animal's mask.

    Parameters
    ----------
    box : (x0, y0, x1, y1), pixels of the mask's grid; it may reach past the image's edge (a face cut by it).
    mask : HxW bool, the person's mask (the route's selfie mask).
    inside : float in [0, 1]. At least this share of the box's pixels inside the image must be in the mask.
    largest : float > 0. The box's area (all of it) must be at most this times the mask's pixel count.

    Returns
    -------
    bool. False for a box with no pixel inside the image, or an empty mask.
    """
    h, w = mask.shape
    x0, y0, x1, y1 = (float(v) for v in box)
    c0, r0 = max(0, math.floor(x0)), max(0, math.floor(y0))
    c1, r1 = min(w, math.ceil(x1)), min(h, math.ceil(y1))
    area = int(np.count_nonzero(mask))
    if c1 <= c0 or r1 <= r0 or area == 0:
        return False
    share = np.count_nonzero(mask[r0:r1, c0:c1]) / ((r1 - r0) * (c1 - c0))
    return bool(share >= inside and (x1 - x0) * (y1 - y0) <= largest * area)


@dataclass(frozen=True)
class PersonEvidence:
    """What the route saw of a person: ``face`` the best score of a face the detectors reported at their own
    thresholds on the person (`face_on_person`; 0 when none, or not looked for), ``agreement`` IoU of the pose
    network's person mask with the selfie mask (0 when not computed), ``confident`` share of the selfie mask where
    the selfie prior is confident (>= its seed threshold)."""

    face: float = 0.0
    agreement: float = 0.0
    confident: float = 0.0


def person_verdict(evidence: PersonEvidence, *, agree: float, confident: float) -> str:
    """Why the route believes a person is there ("face", "two priors agree"), or "" when it does not.

    A face was reported on the person (`face_on_person`); or the pose network's mask overlaps the selfie mask by at
    least `agree` (IoU) while at least `confident` of the selfie mask is confident. Objects the selfie network takes
    for a person (a cup, a cat, a fundus photo) have neither: no face on the mask (a face detector's false face on
    a cat fills most of the animal's mask), and the pose network sees another shape.
    """
    if evidence.face > 0:
        return "face"
    if evidence.agreement >= agree and evidence.confident >= confident:
        return "two priors agree"
    return ""
