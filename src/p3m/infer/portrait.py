"""The built-in portrait route: person priors refined by closed-form matting.

No trained P3M-Net checkpoint is needed. For an RGB image (HxWx3 uint8), at a working resolution of at most
`matting_side` px on the long side (every step but the segmentation's input crops and the final upsampling):

1. **Selfie prior**: MediaPipe's selfie segmentation (`p3m.models.selfie`, Apache-2.0, 256x256) on the whole
   image letterboxed to a square, then a second pass on a square crop around the person found by the first
   (averaged with its mirror image, blended into the first over a feathered edge). The network was trained on
   people filling the frame: the crop gives it 2-4x more pixels on the person, and it stops it from taking
   nearby person-like objects (statues, bushes) for the subject. When the person does not fit a square inside
   the image, the crop is the largest square that does, centred on the confident core of the person. Then a
   third, zoomed pass (`zoom_tiles`, 1): the network on up to that many square tiles `zoom_side` (half) of the
   crop's side, mirror-averaged, placed along the mask's edge where the prior is most unsure
   (`p3m.infer.priors.edge_tiles`). On a full-body photo the 256 px crop blurs the edge over 25-40 px and
   spills onto the background next to the person; the tile sees it 2x larger. The tiles only remove, and only
   what is believed (`p3m.infer.priors.thin_removals`): parts the tile calls background that lie within
   `zoom_reach` of the background and touch the person at least `zoom_attach` times as much as the background
   (a strip of spill). The network, trained on people filling the frame, often loses a whole limb on a tile:
   such a part touches mostly background, or lies deeper, and is kept; a removal that would cut part of the
   person off its confident pixels (step 2 would drop that part) is taken back. Where the coarse prior is unsure
   (below `zoom_unsure`) the tile's removals reach farther (`zoom_unsure_reach`, thin and attached as above),
   but only the parts of which most pixels (`shade_share`) have the chromaticity of shaded background
   (`p3m.infer.spill.background_by_chromaticity`: normalised rgb nearer to the nearest background sample's than
   to the nearest deep person sample's by `shade_ratio` and `shade_margin`, and darker than that background
   sample). The person's shadow on a wall beside the legs keeps the wall's chromaticity at a third of its light;
   the 256 px prior calls it person (0.8-0.85) 25-50 px wide, beyond the plain rule's reach, and RGB or Lab
   colour tests call it person-coloured. A limb the tile lost has the person's chromaticity; where the person's
   and the background's are one (a grey photo, black clothes on a grey wall) nothing is decided and nothing
   removed. One tile is what the time budget allows (about 0.03 s of CPU per photo, the shade test 0.018 s more);
   2 and 3 tiles gain more (benchmarks/RESULTS.md).
2. **Mask**: prior >= `threshold`, keeping the connected components that hold confident (>= `seed_threshold`)
   pixels, at least `min_component` of the most confident component's count (hysteresis: grey blobs with no
   confident pixel, the network's usual false positives, are dropped). Before that, where the prior is unsure
   (`threshold` up to `spill_unsure`), pixels whose colour is far closer to the local background's than to the
   local foreground's (`p3m.infer.spill.background_by_colour`) are dropped: the 256 px prior's edge spills a
   few of its pixels onto the background, beyond the reach of the band of step 5. No component left while the
   prior reaches `rescue_floor` somewhere (it sees something but is sure of nothing: the selfie network,
   trained on colour, does that to some black-and-white photos): MediaPipe's pose detector looks for a person
   (`find_person`: on the image, then on its mirror image), and the person mask of the pose it finds, at
   MediaPipe's presence bar, becomes the prior (`pose_rescue`; the person check's verdict is then "pose
   detector"). Still nothing: an image without a person, which gets an all-zero matte.
3. **Pose prior** (`pose`): BlazePose GHUM (`p3m.models.pose_landmark`, Apache-2.0) on the mask's square box
   (no person detector: the selfie mask has found the person), at `pose_side` px: 33 landmarks and a
   full-body person mask. Trusted only where its mask agrees with the selfie mask (IoU >= `pose_agree`; on
   head-and-shoulders crops the network is lost). On a greyscale photo (`p3m.infer.preprocess.is_greyscale`)
   it runs on every image (`grey_pose`), and where trusted the prior is the lower of the selfie prior and the
   pose mask: on grey photos the selfie network spills onto the background more. With `limb_gaps` (off: it
   changed nothing on the 12 P3M-10k test photos and made a mirrored copy of one worse), the pose mask
   replaces the selfie prior in the polygons between each arm and the torso and between the legs
   (`p3m.infer.priors.limb_gaps`). With `gap_colour` (on: it runs the pose network on every image, about as
   costly as the selfie prior; the person check of step 7 then asks the pose first, in place of its face
   detectors), the background the selfie prior keeps
   inside those polygons, often confidently and with no confident background next to it, leaves the mask
   where its colour is far nearer to the background round the person than to the person outside the gaps
   (`p3m.infer.spill.background_in_gaps`, nearest samples, the verdict smoothed into regions). With `legs_cut`
   (on) the polygon between the legs is drawn also where the frame cuts the legs off (both hips visible, both
   ankles outside the image, each knee between its hip and ankle: the network's own extrapolation of the points
   it does not see), and with `gap_known` (on) each pixel the colour marks (before the smoothing) where the
   pose mask says background too is known background in the trimap of step 5: a strip narrower than the band
   holds no known background, and matting, with person on both sides, would fill it again.
4. **Hands** (`hands`, needs a trusted pose): MediaPipe's hand landmarks on a crop from the pose's wrist and
   knuckles (no palm detector), for each hand in the image whose wrist is visible and where the selfie prior
   is weak round it; their bones become known foreground and a zone round them unknown, so closed-form
   matting draws the fingers' edges instead of the 256 px prior losing them. With `hand_zone_keep` (on) the
   zone does not reopen the trimap's known background where the pixel's colour is the background's round the
   person and the pose mask says background too (`p3m.infer.spill.background_in_hand_zone`): the zone, wide
   enough for lost fingers, otherwise covers sand beside a hanging hand, which matting leaves as haze.
5. **Trimap**: unknown within `band` (fraction of the long side) of the mask's edge, widened where fine
   high-contrast structure (hair) continues beyond that band: outward up to `hair_out`, and inward up to
   `hair_in` next to such hair; "fine structure" is local high-pass energy above `hair_contrast` times the
   background's median (and above a noise floor), so textured backgrounds raise their own bar. With a trusted
   pose, the middle of each forearm whose elbow and wrist are visible is known person (`forearm_core`, 0.5 of
   the limb's width: `p3m.infer.priors.limb_cores`, inside the pose mask less the gaps' dropped background and
   where the selfie prior is not sure of background): a forearm against a background of its own colour is
   otherwise lost by the solve, which has only the clothes as known person next to it.
   With `rim_reach` (on: 0.3% of the long side, 3 px at 1024) the band's person-side rim is opened past a colour
   edge that lies on it (`p3m.infer.rim_edges.past_rim_edges`): where the prior spilled by about the band's
   half-width, the person's true edge lies on the band's inner rim and the known person starts on the edge's own
   slope, so the solve carries the person's label across it (the dark shade under a forearm on a wall, foliage
   between wind-blown strands). Known person within `rim_reach` of the band and of a rim pixel with a strong colour
   edge (gradient above `rim_edge`) becomes unknown, but not where the person behind the rim is textured (more
   than `rim_texture` of it such edges: a print, whose light parts on a light wall the solve would read as
   background), not where its colour is within `rim_colour` of the nearest known background's (nothing there
   tells the solve which side a pixel is on: the known label is the only evidence), and not on a greyscale photo
   (where person and background share a grey value the grey copies lost person).
   With `hair_gaps` (on; it needs the pose's landmarks, which the route has on every image) the trimap opens the
   hair too: the 256 px prior covers the whole outline of loose strands and curls, and the background showing
   between them lies deeper than the band, where no solve reaches. On the head's side of the line through the
   shoulders (`p3m.infer.priors.above_shoulders`: where hair can be; the torso and arms hang on the other side),
   known person up to `hair_gap_depth` deep whose colour is `hair_gap_ratio` times closer to the local
   background's mean than to the person's deeper in, and more than `hair_gap_spread` standard deviations from the
   latter (`p3m.infer.spill.background_through_hair`: not a highlight or a pattern the person has nearby),
   becomes unknown with a 0.2% margin, in parts that touch the band; step 6 keeps it unknown in both solves (it
   joins the hair zone), so the solve draws the strands and the gaps between them.
6. **Refinement**: closed-form matting (Levin et al. 2008) on the unknown pixels only
   (`p3m.infer.closed_form.solve_band`, which falls back to stronger regularisation, another preconditioner,
   then the mask itself rather than fail), started from the mask, with epsilon `cf_eps` 1e-6 (10x Levin's and
   pymatting's 1e-7: a little less freedom per 3x3 window, which on hair over dark or busy backgrounds follows
   the background's texture less), and a data term of strength `band_data` from the image's own colours
   (`p3m.infer.band_sampling`, Robust Matting's sampling: each unknown pixel explained by the known foreground
   and background colours its rays meet; only where that says pure background, between flying strands over
   foliage, or pure foreground, dark strands on a dark background). With `tight_band` the solve is two: the
   band must be wide to hold the true edge wherever the 256 px prior puts the mask's, but the true edge is
   mostly a step 1-3 px wide, and in the extra width one solve leaves soft ramps and haze where the colours are
   ambiguous. So the first solve (to the looser `coarse_rtol`) places the transition, and a second one
   (`p3m.infer.tight_band.tight_trimap`) draws it on the band narrowed to where the first alpha is fractional
   (in (`tight_low`, `tight_high`), grown by `tight_reach`), known person and background elsewhere, started
   from the first alpha, with the same data term and at the first solve's fallback (`solve_band`'s `first_try`:
   the narrow band's system is a part of the first's, so it does not fail again where the first did); near the
   hair widening of step 5 the band stays as it was (faint strands are fractional too), and a narrowed part with
   known pixels of one side only (a gap enclosed by the person) keeps the first alpha (`one_sided`). Where the
   person's and the background's colours round a pixel cannot decide its alpha (`prior_pull`, 0.03: pale fingers
   on a pale wall, a denim cuff on a blue wall, where the first solve draws the edge inward), the second solve's
   data term also raises alpha toward the priors (the selfie prior, or the higher of it and the trusted pose
   network's mask), weighted by the colours' ambiguity (`p3m.infer.step_edges.colour_ambiguity`: the local mean
   colours of the first trimap's known person and background closer than `pull_separated`), only where the
   prior says more person than the first alpha by `pull_margin`, and never on the hair or the head's side of the
   shoulders (strands over a dark background are colour-ambiguous too, and there the prior's blur is wrong;
   without the pose's landmarks, no pull): `p3m.infer.prior_pull`. Then a
   contrast stretch about 0.5 by up to `step_contrast` (`p3m.infer.step_edges.sharpen_steps`) where the
   transition is a step the solve blurred:
   where the person's and the background's colours round a pixel are close (the solve's fractional values
   there are a guess: soft ramps and haze on low-contrast edges) and the alpha is smooth (strands make it
   textured); values within `clean` of 0 or 1 snapped to them (the solver's ripple in flat regions); bilinear
   upsampling to the image's size.
7. **Person check**: a person is believed to be there when a face is found on the person (MediaPipe's face
   detector, short then full range, at their own thresholds; at least `face_inside` of the face's box on the
   selfie mask and the box at most `face_largest` of the mask's area, `p3m.infer.priors.face_on_person`: the
   detectors also find faces on animals and drawings, a cat's filling most of its mask) or when the pose
   network's mask agrees with the selfie mask (IoU >= `person_agree`, the agreement step 3 measured before the
   pose changed the prior) and most of the selfie mask is confident (>= `person_confident`); where step 3
   ran the pose network, its agreement is asked first and the face detectors only when it does not settle
   the question, else the face detectors first and the pose network only when they find no face on the person;
   otherwise the matte is kept and the result carries a warning (`RouteResult.warning`). It runs in a second thread
   beside step 6, which it does not depend on (its networks and the solver release the GIL).

Measured on the 12 real test portraits: benchmarks/bench_portrait.py and benchmarks/RESULTS.md; the person
check: benchmarks/bench_person.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from p3m.infer.boxes import box_round
from p3m.infer.preprocess import array_to_rgb, is_greyscale
from p3m.infer.prior_pull import add_data_terms, raise_toward_prior
from p3m.infer.priors import (
    PersonEvidence,
    above_shoulders,
    agreement,
    blend_in,
    edge_tiles,
    face_on_person,
    hand_roi_from_pose,
    hand_seeds,
    hysteresis_mask,
    limb_cores,
    limb_gaps,
    person_verdict,
    square_around,
    thin_removals,
)
from p3m.infer.resize import shrunk, working_size
from p3m.infer.rim_edges import past_rim_edges
from p3m.infer.spill import (
    GAP_SMOOTH,
    background_by_chromaticity,
    background_by_colour,
    background_colour_in_gaps,
    background_in_hand_zone,
    background_through_hair,
    parts_mostly,
    verdict_regions,
)
from p3m.infer.step_edges import colour_ambiguity, high_pass_energy, sharpen_steps
from p3m.infer.tight_band import one_sided, tight_trimap
from p3m.models.face_detector import FaceDetector
from p3m.models.graph_session import GraphSession, open_graph
from p3m.models.hand_landmark import HandLandmarker
from p3m.models.mediapipe_calculators import Detection, RotatedRect
from p3m.models.pose_detector import pose_roi
from p3m.models.pose_landmark import Pose, PoseLandmarker
from p3m.models.shipped_weights import selfie_weights_path

if TYPE_CHECKING:  # the solver module loads numba: imported where the route solves
    from p3m.infer.closed_form import BandSolution

__all__ = [
    "MASK_ONLY",
    "NOT_SURE",
    "NO_PERSON",
    "STEPS",
    "PortraitMatting",
    "PortraitSettings",
    "RouteResult",
    "working_size",
]

NO_PERSON = "no person found: the matte is empty"
NOT_SURE = "no person recognised (no face, and the pose network does not see one): the matte may be of something else"
MASK_ONLY = "closed-form matting failed on this image: the matte is the segmentation mask"

# the steps of `PortraitMatting.run`, as `RouteResult.timings` names them
STEPS = ("prior", "pose", "hands", "trimap", "refine", "person", "upsample")

# high-pass energy below this (about one grey level) is noise: the bar for "fine structure" on a flat background
_NOISE_FLOOR = 0.005
# the forearms' cores stay off pixels where the selfie prior is this sure of background (the pose network's mask,
# blurrier, reaches further)
_SURE_BACKGROUND = 0.05
# the zoomed pass: its tiles are at least this many image px (below it the network sees texture, not a person),
# and only their middle counts: this fraction of the side at each edge inside the image is the crop's margin
_MIN_TILE = 64
_TILE_MARGIN = 0.1
_TILE_GRID = 4  # ... placed on a grid this many times coarser than the working size
# the background seen through hair is made unknown with this margin (fraction of the long side, at least 1 px):
# the strands' edges round it are fractional too
_GAP_MARGIN = 0.002
# the band's rim opened past a colour edge (`rim_reach`): the person counts as textured round a pixel within a square
# this fraction of the long side (about two bands wide)
_RIM_WINDOW = 0.02


@dataclass(frozen=True)
class PortraitSettings:
    """Knobs of the route; the defaults are the measured ones (benchmarks/bench_portrait.py).

    Lengths are fractions of the image's long side, so they mean the same at every resolution.
    """

    matting_side: int = 1024  # working resolution (long side) of the mask, trimap and closed-form solve
    crop_pass: bool = True  # second segmentation pass on a square crop around the person
    crop_margin: float = 0.1  # margin around the person's box, fraction of the box's long side
    crop_flip: bool = True  # average the crop pass with its mirror image
    feather: float = 0.05  # crop blended into the first pass over this fraction of the crop's side
    zoom_tiles: int = 1  # third pass: at most this many tiles along the person's edge where the prior is unsure
    zoom_side: float = 0.5  # ... each a square this fraction of the crop pass's side (2x its pixels per person px)
    zoom_reach: float = 0.03  # ... its removals believed only within this (of the long side) of the background
    zoom_attach: float = 0.3  # ... and touching the person at least this many times as much as the background
    zoom_unsure: float = 0.99  # ... and where the coarse prior is below this, also farther (0: off) ...
    zoom_unsure_reach: float = 0.05  # ... within this of the background, where the chromaticity says background:
    shade_ratio: float = 2.0  # ... its distance to the nearest deep person's > this x the nearest background's ...
    shade_margin: float = 0.05  # ... + this (L1 of normalised rgb: equal chromaticities decide nothing) ...
    shade_dark: float = 0.08  # ... on pixels at least this bright (darker: chromaticity is noise) ...
    shade_share: float = 0.5  # ... for more than this share of a removed part's pixels
    threshold: float = 0.5  # person where the prior is >= this ...
    seed_threshold: float = 0.9  # ... in components holding pixels >= this (hysteresis)
    min_component: float = 0.1  # ... at least this fraction of the largest such count
    spill_unsure: float = 0.8  # prior in [threshold, this) dropped where its colour says background (threshold: off)
    spill_ratio: float = 4.0  # ... background: colour this many times closer to the local background's mean
    spill_sigma: float = 0.015  # ... "local": Gaussian-weighted means, std. dev. this fraction of the long side
    band: float = 0.01  # trimap half-width on each side of the mask's edge
    hair_out: float = 0.03  # outward widening where fine structure continues (0 = off)
    hair_in: float = 0.02  # inward widening next to such structure (0 = off)
    hair_contrast: float = 5.0  # fine structure: high-pass energy > this x the background's median
    hair_gaps: bool = True  # unknown inside the mask where the background shows through hair (runs the pose network)
    hair_gap_depth: float = 0.04  # ... known person up to this deep, on the head's side of the shoulders, judged
    hair_gap_ratio: float = 3.0  # ... background: colour this many times closer to the local background's mean
    hair_gap_spread: float = 2.0  # ... and this many std. dev. from the local person colours' mean
    hair_gap_sigma: float = 0.03  # ... "local": Gaussian-weighted means, std. dev. this fraction of the long side
    rim_reach: float = 0.003  # known person opened this far past a colour edge on the band's person-side rim (0: off)
    rim_edge: float = 0.08  # ... "colour edge": `p3m.infer.rim_edges.colour_gradient` above this
    rim_texture: float = 0.1  # ... not where more than this share of the person behind it is such edges (a print)
    rim_colour: float = 0.2  # ... nor where its colour is within this of the nearest known background's (L2, RGB)
    pose: bool = True  # second prior: BlazePose landmarks and person mask on the person's box
    grey_pose: bool = True  # greyscale input: the pose network runs; where trusted, the prior is min(selfie, pose)
    pose_rescue: bool = True  # selfie prior confident nowhere: MediaPipe's pose detector looks, its mask the prior
    rescue_floor: float = 0.25  # ... where the selfie prior is at least this somewhere (it sees something)
    pose_side: int = 512  # long side of the image the pose network's crop is cut from
    pose_margin: float = 0.125  # the box grown by this on each side (MediaPipe's pose crop: 1.25x the body)
    pose_agree: float = 0.9  # the pose prior is used where its mask agrees this well (IoU) with the selfie's
    limb_visibility: float = 0.5  # landmarks used when at least this visible
    limb_gaps: bool = False  # pose mask in the gaps between limbs (off: +2.8 SAD on a mirrored test photo)
    gap_colour: bool = True  # background by nearest colour in the gaps between limbs (runs the pose network)
    gap_feather: float = 0.005  # pose mask blended into the limb gaps over this (std. dev., of the long side)
    legs_cut: bool = True  # the legs' gap polygon also where the frame cuts the legs off (knees, ankles not seen)
    gap_known: bool = True  # gaps' colour test: its pixels where the pose mask says background too, known background
    forearm_core: float = 0.5  # known person along elbow-wrist, this fraction of the forearm's width (0: off)
    hands: bool = False  # hand landmarks where the pose sees a wrist and the selfie prior is weak (a second network)
    hand_weak: float = 0.95  # "weak": mean selfie prior over the hand's crop below this
    hand_bone: float = 0.05  # hand seeds: bones this wide (fraction of the hand's size) and the palm
    hand_zone: float = 0.2  # unknown round the bones: this far on each side (fraction of the hand's size)
    hand_zone_keep: bool = True  # the zone leaves known background where colour and the pose's mask say background
    person_check: bool = True  # say when no person is recognised (RouteResult.warning)
    person_agree: float = 0.4  # person check: pose mask vs selfie mask IoU ...
    person_confident: float = 0.7  # ... with at least this share of the selfie mask >= seed_threshold
    face_inside: float = 0.5  # a face counts when at least this share of its box is on the selfie mask ...
    face_largest: float = 0.5  # ... and its box is at most this share of the mask's area (a cat's face: 0.6)
    cf_eps: float = 1e-6  # closed-form regulariser (10x pymatting's: smoother hair on busy backgrounds)
    band_data: float = 0.03  # strength of the band solve's data term from sampled colours (0: off)
    rtol: float = 1e-4  # conjugate-gradient tolerance (relative residual)
    tight_band: bool = True  # second solve on the band narrowed to the first alpha's transition (off: one solve)
    tight_low: float = 0.2  # ... known background where the first alpha <= this
    tight_high: float = 0.8  # ... known foreground where the first alpha >= this
    tight_reach: float = 0.002  # ... unknown within this of the fractional pixels (at least 1 px)
    coarse_rtol: float = 1e-3  # the first solve's tolerance when a second follows (`rtol` is the second's)
    prior_pull: float = 0.03  # second solve: alpha raised toward the priors where colour cannot decide (0: off)
    pull_separated: tuple[float, float] = (0.3, 0.7)  # ... full weight below this colour separation, none above
    pull_margin: float = 0.1  # ... only where the prior exceeds the first solve's alpha by more than this
    step_contrast: float = 1.4  # stretch about 0.5 by up to this where a transition is a blurred step (1: off)
    clean: float = 0.05  # alpha within this of 0 or 1 is set to 0 or 1 (the solver's ripple)

    @classmethod
    def for_limbs(cls, limbs: bool) -> PortraitSettings:
        """The settings of `p3m matte [--hands]`, `Matter(hands=...)` and `p3m serve [--hands]`: the defaults (the
        background between the limbs told by colour, `gap_colour`, included), or with `limbs` the hand landmarks
        too (`hands`: a second network where the pose sees a wrist and the selfie prior is weak round it)."""
        return cls(hands=limbs)


def _pose_agreement(pose: Pose | None, mask: np.ndarray) -> float:
    """IoU of the pose network's person mask (at 0.5) with the selfie `mask` (HxW bool); 0 without a pose. The route
    measures it once, on the selfie mask before the pose changes the prior (on a grey photo the prior becomes the
    lower of the two: the pose would then agree with itself), to trust the pose prior and for the person check."""
    return agreement(pose.segmentation >= 0.5, mask) if pose is not None else 0.0


def _working_image(rgb: np.ndarray, work_hw: tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8 `rgb` at the working size `work_hw` (area-averaged; `rgb` itself when it is that size)."""
    return rgb if rgb.shape[:2] == tuple(work_hw) else cv2.resize(rgb, work_hw[::-1], interpolation=cv2.INTER_AREA)


def _distance_to(mask: np.ndarray, reach: float | None = None) -> np.ndarray:
    """HxW float32: Euclidean distance of every pixel to the nearest True pixel of `mask` (inf if none).

    With `reach` (>= 0) it is computed on the box round the True pixels grown by more than `reach`: exact there
    (every True pixel is inside it) and inf outside, where every pixel is farther than `reach` from them; for a
    person that fills part of the frame, a fraction of the whole image's distance transform."""
    if not mask.any():
        return np.full(mask.shape, np.inf, np.float32)
    if reach is None:
        return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    box = box_round(mask, int(np.ceil(reach)) + 1)
    distance = np.full(mask.shape, np.inf, np.float32)
    distance[box] = _distance_to(mask[box])
    return distance


def _depth(mask: np.ndarray) -> np.ndarray:
    """HxW float32: Euclidean distance of every pixel to the nearest False pixel of `mask` (0 on those; inf if none):
    ``_distance_to(~mask)``, computed on the box round the True pixels grown by one. The same answer: the ring round
    their box is False, and for a pixel inside the box it holds a False pixel as near as any beyond it."""
    box = box_round(mask, 1)
    depth = np.zeros(mask.shape, np.float32)
    if box is not None:
        depth[box] = _distance_to(~mask[box])
    return depth


def _near(mask: np.ndarray, radius: float) -> np.ndarray:
    """HxW bool: the pixels within Euclidean distance `radius` of a True pixel of `mask` (``_distance_to(mask) <=
    radius``), computed on the box round the True pixels grown by the radius (`_distance_to`'s ``reach``): the same
    answer, and for a few scattered pixels a fraction of the whole image's distance transform."""
    if not radius >= 0:
        return np.zeros(mask.shape, bool)
    return _distance_to(mask, radius) <= radius


def _crop_box(
    core: np.ndarray, mask: np.ndarray, scale: tuple[float, float], image_hw: tuple[int, int], margin: float
) -> tuple[int, int, int]:
    """(top, left, side) in image pixels of the crop pass: the person's box with a margin, made square.

    When that square does not fit inside the image it becomes the largest square that does, centred on the
    confident core (the mean position of `core`, or of `mask` when the core is empty) and kept inside.
    """
    h, w = image_hw
    sy, sx = scale
    ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    y0, y1 = ys[0] / sy, (ys[-1] + 1) / sy
    x0, x1 = xs[0] / sx, (xs[-1] + 1) / sx
    grow = margin * max(y1 - y0, x1 - x0)
    y0, y1, x0, x1 = max(0.0, y0 - grow), min(h, y1 + grow), max(0.0, x0 - grow), min(w, x1 + grow)
    side = max(y1 - y0, x1 - x0, max(h, w) / 8)  # zoom at most 8x on the first pass: tiny blobs are noise
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    if side > min(h, w):
        side = min(h, w)
        py, px = np.nonzero(core if core.any() else mask)
        cy, cx = (py.mean() + 0.5) / sy, (px.mean() + 0.5) / sx
    side = max(1, round(side))
    top = round(min(max(cy - side / 2, 0), max(h - side, 0)))
    left = round(min(max(cx - side / 2, 0), max(w - side, 0)))
    return top, left, side


def _feather(
    top: int, left: int, side: int, image_hw: tuple[int, int], work_hw: tuple[int, int], width: float
) -> np.ndarray:
    """work-size float32 weight of the crop: 1 inside, ramping to 0 over `width` px at edges inside the image."""
    h, w = image_hw
    hw, ww = work_hw

    def ramp(n_work: int, n_image: int, start: int) -> np.ndarray:
        pos = (np.arange(n_work) + 0.5) * (n_image / n_work)  # work pixel centres, image coordinates
        end = start + side
        wgt = ((pos >= start) & (pos < end)).astype(np.float32)
        if width > 0:
            if start > 0:
                wgt = np.minimum(wgt, np.clip((pos - start) / width, 0, 1))
            if end < n_image:
                wgt = np.minimum(wgt, np.clip((end - pos) / width, 0, 1))
        return wgt.astype(np.float32)

    return np.minimum(ramp(hw, h, top)[:, None], ramp(ww, w, left)[None, :])


def _fine_structure(image: np.ndarray) -> np.ndarray:
    """HxW float32 local high-pass energy of the grey image (HxWx3 uint8): strands, edges, texture."""
    return high_pass_energy(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0)


def _pose_on_grid(pose: Pose, k: tuple[float, float], work_hw: tuple[int, int], roi: RotatedRect) -> Pose:
    """`pose`, found on a copy of the working image scaled by `k` (x, y), with its landmarks and segmentation on
    the working grid (`work_hw`) and `roi` as its crop (no detection: the route uses none)."""
    landmarks = pose.landmarks.copy()
    landmarks[:, 0] /= k[0]
    landmarks[:, 1] /= k[1]
    segmentation = pose.segmentation
    if segmentation.shape != work_hw:
        segmentation = cv2.resize(segmentation, work_hw[::-1], interpolation=cv2.INTER_LINEAR)
    return Pose(landmarks, pose.presence, pose.world, segmentation, pose.score, roi, None)


def _touching(extra: np.ndarray, base: np.ndarray) -> np.ndarray:
    """The pixels of `extra` in connected components (8-connected) of `extra | base` that contain `base`.

    Computed on the box round `extra`'s pixels grown by one: a path from one of them to `base` leaves their box
    through a pixel of `base` next to it, so the answer is the whole image's."""
    box = box_round(extra, 1)
    touching = np.zeros(extra.shape, bool)
    if box is None:
        return touching
    n, labels = cv2.connectedComponents((extra[box] | base[box]).astype(np.uint8), connectivity=8)
    keep = np.zeros(n, dtype=bool)
    keep[np.unique(labels[base[box]])] = True
    keep[0] = False
    touching[box] = extra[box] & keep[labels]
    return touching


@dataclass(frozen=True)
class _PoseStage:
    """What `PortraitMatting._pose_stage` hands on: the pose (None when none ran or none was found), its agreement
    with the selfie mask (as measured before the pose changed the prior) and whether its mask is trusted, the prior
    (HxW float32) and mask (HxW bool) after the pose's changes, what the gaps' colour test dropped from the mask and,
    of it, what the trimap takes as known background (HxW bool each)."""

    pose: Pose | None
    agree: float
    trusted: bool
    prob: np.ndarray
    mask: np.ndarray
    dropped: np.ndarray
    known_background: np.ndarray
    greyscale: bool = False  # the photo is black-and-white (`is_greyscale`), where it was asked


@dataclass(frozen=True)
class RouteResult:
    """One image through the route: ``alpha`` HxW float32 in [0, 1]; ``warning`` one line ("" when there is
    nothing to say: no person found, no person recognised, the solver fell back to the mask); ``info`` what
    the route did (person verdict, pose prior, hands, solver method) and ``timings`` per step in seconds."""

    alpha: np.ndarray
    warning: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


class PortraitMatting:
    """Callable: HxWx3 uint8 RGB -> HxW float32 alpha in [0, 1] (thread-safe: the network calls are locked);
    `run(rgb)` -> `RouteResult` (alpha, warning, info, step timings).

    Steps are public for tests and tools; all but `prior`'s input work at the working resolution
    (`working_size(h, w, settings.matting_side)`): `prior(rgb)` -> prob, `mask(prob)` -> bool,
    `unspill(prob, image)` -> prob, `pose(image, mask)` -> Pose or None, `hands(image, pose, prob)` -> landmarks,
    `trimap(mask, image, head)` -> {0, 128, 255} (head: `p3m.infer.priors.above_shoulders` of the pose, or None),
    `refine(image, trimap, guess)` -> alpha (`solve`: with the solver's method).
    """

    def __init__(self, settings: PortraitSettings | None = None, *, device: str = "cpu", runtime: str = "auto") -> None:
        self.settings = settings or PortraitSettings()
        self.device, self.runtime = device, runtime
        # every network of the route is a `GraphSession` on the runtime `open_graph` picks (tests swap in others)
        self.net: GraphSession = open_graph(selfie_weights_path(), device=device, runtime=runtime)
        self._lock = threading.Lock()
        self._pose: PoseLandmarker | None = None  # loaded on first use, like the others below
        self._hands: HandLandmarker | None = None
        self._faces: tuple[FaceDetector, FaceDetector] | None = None

    # -- 1. prior ---------------------------------------------------------------------------------------

    def _segment(
        self, rgb: np.ndarray, top: int, left: int, side: int, work_hw: tuple[int, int], flip: bool
    ) -> np.ndarray:
        """Person probability of the square box (top, left, side) of rgb (zeros outside the image), sampled
        at the work-size grid of the whole image (values outside the box are the box's edge values)."""
        h, w = rgb.shape[:2]
        nh, nw = self.net.input_size
        y0, y1, x0, x1 = max(top, 0), min(top + side, h), max(left, 0), min(left + side, w)
        # the image part of the box, resized into its place on a zero canvas of the network's size
        cy0, cy1 = round((y0 - top) * nh / side), round((y1 - top) * nh / side)
        cx0, cx1 = round((x0 - left) * nw / side), round((x1 - left) * nw / side)
        cy1, cx1 = min(max(cy1, cy0 + 1), nh), min(max(cx1, cx0 + 1), nw)
        cy0, cx0 = min(cy0, cy1 - 1), min(cx0, cx1 - 1)
        canvas = np.zeros((nh, nw, 3), np.uint8)
        canvas[cy0:cy1, cx0:cx1] = cv2.resize(rgb[y0:y1, x0:x1], (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_AREA)
        x = canvas.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0)
        if flip:
            x = np.concatenate([x, x[..., ::-1]])
        with self._lock:
            (y,) = self.net(x)
        prob = (y[0, 0] + y[1, 0, :, ::-1]) / 2 if flip else y[0, 0]
        # work pixel centre -> image coordinate -> canvas coordinate, per axis with the placement used above
        hw, ww = work_hw
        ky, kx = (cy1 - cy0) / (y1 - y0), (cx1 - cx0) / (x1 - x0)
        ay, ax = ky * h / hw, kx * w / ww
        m = np.array([[ax, 0, 0.5 * ax - x0 * kx + cx0 - 0.5], [0, ay, 0.5 * ay - y0 * ky + cy0 - 0.5]])
        return cv2.warpAffine(
            prob, m, (ww, hw), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
        )

    def prior(self, rgb: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
        """Working-size float32 person probability of an HxWx3 uint8 image (two passes, see the module doc);
        `image`: the caller's copy of `rgb` at the working size (`_working_image`), made here when the zoomed
        pass's shade test needs it and none is given."""
        s = self.settings
        rgb = array_to_rgb(rgb)
        h, w = rgb.shape[:2]
        work_hw = working_size(h, w, s.matting_side)
        side = max(h, w)
        prob = self._segment(rgb, (h - side) // 2, (w - side) // 2, side, work_hw, flip=False)
        if s.crop_pass:
            mask = self.mask(prob)
            if mask.any():
                scale = (work_hw[0] / h, work_hw[1] / w)
                top, left, side = _crop_box(prob >= s.seed_threshold, mask, scale, (h, w), s.crop_margin)
                crop = self._segment(rgb, top, left, side, work_hw, flip=s.crop_flip)
                weight = _feather(top, left, side, (h, w), work_hw, s.feather * side)
                prob = weight * crop + (1 - weight) * prob
        prob = np.clip(prob, 0.0, 1.0).astype(np.float32)
        if s.zoom_tiles > 0:
            prob = self._zoom(rgb, prob, side, image)
        return prob

    def _zoom(self, rgb: np.ndarray, prob: np.ndarray, crop_side: int, image: np.ndarray | None = None) -> np.ndarray:
        """The zoomed pass: `prob` (working size) with the believed removals of the selfie network run on tiles
        along the mask's edge (`p3m.infer.priors.edge_tiles`, `thin_removals`) set to the tiles' values; the
        tiles are `zoom_side` of `crop_side` (the crop pass's side, or the image's long side without it); `image`
        is `rgb` at the working size, or None (made when the shade test first needs it)."""
        s = self.settings
        mask = self.mask(prob)
        if not mask.any():
            return prob
        h, w = rgb.shape[:2]
        work_hw = prob.shape
        tile = min(max(_MIN_TILE, round(s.zoom_side * crop_side)), h, w)
        reach = s.zoom_reach * max(work_hw)
        farther = s.zoom_unsure_reach * max(work_hw) if s.zoom_unsure > 0 else 0.0
        pad = int(np.ceil(max(reach, farther))) + 1  # the distance to the background is exact within reach of a tile
        # the tiles are placed on a grid a quarter of the working size: where they go needs no finer look
        grid_hw = (max(1, work_hw[0] // _TILE_GRID), max(1, work_hw[1] // _TILE_GRID))
        gy_scale, gx_scale = grid_hw[0] / h, grid_hw[1] / w
        grid_prob = cv2.resize(prob, grid_hw[::-1], interpolation=cv2.INTER_AREA)
        grid_mask = cv2.resize(mask.astype(np.float32), grid_hw[::-1], interpolation=cv2.INTER_AREA) >= 0.5
        tiles = edge_tiles(grid_prob, grid_mask, max(1, round(tile * min(gy_scale, gx_scale))), s.zoom_tiles)
        out = prob.copy()
        removed_all = np.zeros_like(mask)
        # each person pixel's distance to the background: made when the shade test first runs
        depth: np.ndarray | None = None
        for gy, gx in tiles:
            top, left = min(round(gy / gy_scale), h - tile), min(round(gx / gx_scale), w - tile)
            fine = self._segment(rgb, top, left, tile, work_hw, flip=s.crop_flip)
            inside = _feather(top, left, tile, (h, w), work_hw, _TILE_MARGIN * tile) > 0.99
            rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
            if rows.size == 0 or cols.size == 0:
                continue
            y0, y1 = max(rows[0] - pad, 0), min(rows[-1] + 1 + pad, work_hw[0])
            x0, x1 = max(cols[0] - pad, 0), min(cols[-1] + 1 + pad, work_hw[1])
            window = np.s_[y0:y1, x0:x1]
            removed = thin_removals(
                mask[window], fine[window] >= s.threshold, inside[window], reach=reach, attach=s.zoom_attach
            )
            if s.zoom_unsure > 0:
                # farther where the coarse prior is unsure: thin and attached within `zoom_unsure_reach`, as above
                tile_person = (fine[window] >= s.threshold) | (prob[window] >= s.zoom_unsure)
                further = thin_removals(mask[window], tile_person, inside[window], reach=farther, attach=s.zoom_attach)
                further &= ~removed
                if further.any():
                    if image is None:
                        image = _working_image(rgb, work_hw)
                    if depth is None:
                        depth = _depth(mask)
                    deep = depth[window] > reach
                    removed |= self._shaded(image[window], prob[window], mask[window], further, deep, reach)
            out[window][removed] = fine[window][removed]
            removed_all[window] |= removed
        if not removed_all.any():
            return out
        # a removal that cuts a part of the person off its confident pixels would make the mask's hysteresis drop
        # that part too (a hand on a wall behind a strip of spill): such removals are taken back
        detached = mask & ~removed_all & ~self.mask(out)
        if detached.any():
            back = _touching(removed_all, detached)
            out[back] = prob[back]
            if (mask & ~removed_all & ~back & ~self.mask(out)).any():
                return prob
        return out

    def _shaded(
        self, image: np.ndarray, prob: np.ndarray, mask: np.ndarray, parts: np.ndarray, deep: np.ndarray, reach: float
    ) -> np.ndarray:
        """The connected parts of `parts` (the tile's further removals; all arrays one window of the working grid)
        of which more than `shade_share` of the pixels have the chromaticity of shaded background
        (`p3m.infer.spill.background_by_chromaticity`): the background's samples outside the coarse `mask`, the
        person's confident (>= `seed_threshold`) pixels in `deep` (farther than `zoom_reach` from the background)
        and as far from the parts."""
        s = self.settings
        # the person's samples away from the parts judged too: the prior's confident spill often lines them
        person = mask & (prob >= s.seed_threshold) & deep & (_distance_to(parts) > reach)
        votes = background_by_chromaticity(
            image, person, ~mask, ratio=s.shade_ratio, margin=s.shade_margin, dark=s.shade_dark, judged=parts
        )
        return parts_mostly(parts, votes, s.shade_share)

    # -- 2. mask ----------------------------------------------------------------------------------------

    def mask(self, prob: np.ndarray) -> np.ndarray:
        """HxW bool: prior >= threshold, in components with enough confident (>= seed_threshold) pixels."""
        s = self.settings
        return hysteresis_mask(prob, s.threshold, s.seed_threshold, s.min_component)

    def unspill(self, prob: np.ndarray, image: np.ndarray) -> np.ndarray:
        """`prob` (HxW float32) lowered just below `threshold` where it is unsure (in [threshold, spill_unsure)) and
        the colour of `image` (HxWx3 uint8, same grid) says background (`p3m.infer.spill.background_by_colour`)."""
        s = self.settings
        unsure = (prob >= s.threshold) & (prob < s.spill_unsure)
        if not unsure.any():
            return prob
        background = background_by_colour(image, prob, sigma=s.spill_sigma, ratio=s.spill_ratio)
        return self._drop(prob, unsure & background)

    def _drop(self, prob: np.ndarray, where: np.ndarray) -> np.ndarray:
        """`prob` lowered just below `threshold` where the bool `where` is True: out of the mask, still graded."""
        below = np.nextafter(np.float32(self.settings.threshold), np.float32(0))
        return np.where(where, below, prob).astype(np.float32)

    # -- 3. pose prior ------------------------------------------------------------------------------------

    def _loaded(self, name: str, make: Any) -> Any:
        """The network stored as attribute `name`, made by `make()` on first use: a route that finds nobody never
        loads the pose network, one that sees no hand never loads the hand network."""
        with self._lock:
            if getattr(self, name) is None:
                setattr(self, name, make())
            return getattr(self, name)

    def pose(self, image: np.ndarray, mask: np.ndarray) -> Pose | None:
        """BlazePose on the square round `mask` (HxW bool) of the working-size `image` (HxWx3 uint8), cut from
        a copy at most `pose_side` px long: landmarks and segmentation on the working grid; None without mask."""
        s = self.settings
        roi = square_around(mask, s.pose_margin)
        if roi is None:
            return None
        small, k = self._pose_copy(image)
        box = roi.scaled(*k)
        landmarker = self._loaded("_pose", lambda: PoseLandmarker(device=self.device, runtime=self.runtime))
        with self._lock:
            pose = landmarker.landmarks(small, box)
        return _pose_on_grid(pose, k, image.shape[:2], roi)

    def find_person(self, image: np.ndarray) -> Pose | None:
        """MediaPipe's Pose solution on the working-size `image` (HxWx3 uint8), from a copy at most `pose_side` px
        long: its person detector (on the image, then on its mirror image where it finds nobody: like the selfie
        network, it can see a person in one view and not in the other), then the landmark network on the
        detected crop of the image itself, kept at a pose-presence score >= 0.5 (MediaPipe's bar); landmarks and
        segmentation on the working grid, or None when nobody is found. It needs no selfie mask: the route asks
        it where the selfie prior is confident nowhere (see `run`)."""
        small, k = self._pose_copy(image)
        landmarker = self._loaded("_pose", lambda: PoseLandmarker(device=self.device, runtime=self.runtime))
        with self._lock:
            found = landmarker.detector.detect(small)
            if not found:
                found = [d.mirrored(small.shape[1]) for d in landmarker.detector.detect(small[:, ::-1])]
            pose = landmarker.landmarks(small, pose_roi(found[0])) if found else None
        if pose is None or pose.score < landmarker.min_score:
            return None
        return _pose_on_grid(pose, k, image.shape[:2], pose.roi.scaled(1 / k[0], 1 / k[1]))

    def _pose_copy(self, image: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        """The working-size `image` at most `pose_side` px long (the pose network's input is cut from it) and the
        (x, y) scale from the working grid to it."""
        small = shrunk(image, self.settings.pose_side)
        return small, (small.shape[1] / image.shape[1], small.shape[0] / image.shape[0])

    # -- 4. hands -----------------------------------------------------------------------------------------

    def hands(self, image: np.ndarray, pose: Pose, prob: np.ndarray) -> list[np.ndarray]:
        """(21, 3) landmarks in working pixels of each hand the pose sees in `image` where the selfie prior
        `prob` is weak over the hand's crop (mean < `hand_weak`), kept at MediaPipe's presence >= 0.5."""
        s = self.settings
        rois = []
        for roi in hand_roi_from_pose(pose.landmarks, prob.shape, min_visibility=s.limb_visibility):
            inside = np.zeros(prob.shape, np.uint8)
            cv2.fillPoly(inside, [np.round(roi.corners()).astype(np.int32)], 1)
            if inside.any() and float(prob[inside.astype(bool)].mean()) < s.hand_weak:
                rois.append(roi)
        if not rois:
            return []
        landmarker = self._loaded("_hands", lambda: HandLandmarker(device=self.device, runtime=self.runtime))
        with self._lock:
            found = landmarker.landmarks(image, rois)
        return [hand.landmarks for hand in found if hand.score >= landmarker.min_score]

    # -- 5. trimap --------------------------------------------------------------------------------------

    def trimap(self, mask: np.ndarray, image: np.ndarray | None = None, head: np.ndarray | None = None) -> np.ndarray:
        """HxW uint8 {0, 128, 255}: band around the mask's edge, widened at hair when `image` (HxWx3) is given,
        and opened where the background shows through hair when `head` (HxW bool, `above_shoulders`) is too."""
        return self.band(mask, image, head)[0]

    def band(
        self, mask: np.ndarray, image: np.ndarray | None = None, head: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(`trimap`, hair): the trimap, and HxW bool its unknown pixels within the plain band's half-width of the
        pixels its widening at hair added, and those it opened where the background shows through hair (the
        second, tight solve leaves them unknown: `solve`'s ``keep``)."""
        s = self.settings
        side = max(mask.shape)
        mask = mask.astype(bool)
        r = max(1.0, s.band * side)
        # background pixels: distance to the person, read up to the hair's outward widening (`_hair`'s r_out)
        d_out = _distance_to(mask, max(r, s.hair_out * side))
        d_in = _depth(mask)  # person pixels: distance to the background
        unknown = np.where(mask, d_in <= r, d_out <= r)
        hair = np.zeros_like(mask)
        rgb = None if image is None else array_to_rgb(image)
        if rgb is not None and mask.any() and (s.hair_out > 0 or s.hair_in > 0):
            widened = self._hair(mask, d_out, d_in, r, _fine_structure(rgb), unknown) & ~unknown
            unknown |= widened
            if widened.any():
                hair = unknown & _near(widened, r)
        tri = np.where(mask, 255, 0).astype(np.uint8)
        tri[unknown] = 128
        if rgb is not None and head is not None and s.hair_gaps and head.any():
            opened = self._hair_gaps(rgb, tri, head)
            tri[opened] = 128
            hair |= opened
        return tri, hair

    def rim(self, image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
        """HxW bool: known person of `trimap` (HxW uint8 {0, 128, 255}) opened past a colour edge on the band's
        person-side rim (`p3m.infer.rim_edges.past_rim_edges`, with `rim_reach`, `rim_edge`, `rim_texture`,
        `rim_colour` and `_RIM_WINDOW` of the long side); `image` HxWx3 uint8 on the same grid."""
        s = self.settings
        side = max(trimap.shape)
        return past_rim_edges(
            image,
            trimap,
            reach=round(s.rim_reach * side),
            edge=s.rim_edge,
            texture=s.rim_texture,
            window=round(_RIM_WINDOW * side),
            colour=s.rim_colour,
        )

    def _hair_gaps(self, image: np.ndarray, trimap: np.ndarray, head: np.ndarray) -> np.ndarray:
        """HxW bool: known person of `trimap` to make unknown where the background shows through hair: pixels up to
        `hair_gap_depth` deep in the known person on the head's side of the shoulders (`head`) whose colour is the
        local background's (`p3m.infer.spill.background_through_hair`), grown by `_GAP_MARGIN`, in parts that
        touch the band (a gap between strands is open to the band through other gaps and fractional strands;
        an isolated background-coloured patch deep inside is a pattern of the person's)."""
        s = self.settings
        side = max(trimap.shape)
        person = trimap == 255
        depth = s.hair_gap_depth * side
        zone = person & head
        # the depth on the box round the judged pixels grown by it: every pixel within that depth of one is inside
        box = box_round(zone, int(np.ceil(depth)) + 1)
        if box is None:
            return zone
        zone[box] &= _distance_to(~person[box]) <= depth
        seen = background_through_hair(
            image, trimap, zone, sigma=s.hair_gap_sigma, ratio=s.hair_gap_ratio, spread=s.hair_gap_spread
        )
        if not seen.any():
            return seen
        margin = max(1, round(_GAP_MARGIN * side))
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
        grown = cv2.dilate(seen.astype(np.uint8), disc).astype(bool) & person
        return _touching(grown, trimap == 128)

    def _hair(
        self, mask: np.ndarray, d_out: np.ndarray, d_in: np.ndarray, r: float, energy: np.ndarray, band: np.ndarray
    ) -> np.ndarray:
        """HxW bool: the extra unknown pixels where fine structure (hair) crosses the band (see the module doc)."""
        s = self.settings
        side = max(mask.shape)
        r_out, r_in = max(r, s.hair_out * side), max(1.0, s.hair_in * side)
        background = ~mask & (d_out > r_out)
        if not background.any():
            return np.zeros_like(mask)
        # the bar: a multiple of the background's typical texture, so busy backgrounds do not widen
        bar = max(s.hair_contrast * float(np.median(energy[background], overwrite_input=True)), _NOISE_FLOOR)
        fine = energy > bar
        outward = ~mask & (d_out <= r_out) & fine
        # inward only next to structure seen beyond the band (strands leaving the head), never at bare
        # clothing edges whose own texture fills the band
        beyond = outward & (d_out > r)
        inward = mask & (d_in <= r_in) & fine & _near(beyond, 2 * r_in)
        return _touching(outward | inward, band)

    # -- 6. refinement ----------------------------------------------------------------------------------

    def refine(
        self, image: np.ndarray, trimap: np.ndarray, guess: np.ndarray | None = None, keep: np.ndarray | None = None
    ) -> np.ndarray:
        """HxW float32 alpha: closed-form matting of the trimap's unknown pixels (image HxWx3 uint8; keep: `solve`)."""
        return self.solve(image, trimap, guess, keep).alpha

    def solve(
        self,
        image: np.ndarray,
        trimap: np.ndarray,
        guess: np.ndarray | None = None,
        keep: np.ndarray | None = None,
        prior: np.ndarray | None = None,
        away: np.ndarray | None = None,
    ) -> BandSolution:
        """`refine` with the solver's method (`p3m.infer.closed_form.BandSolution`: which fallback answered).

        With `tight_band`, two solves: the first (to `coarse_rtol`) on `trimap`, the second on the band narrowed to
        where the first is fractional (`p3m.infer.tight_band.tight_trimap`; HxW bool `keep`: pixels that stay
        unknown, the route's hair), started from the first; parts of the narrowed band with known pixels on one
        side only keep the first alpha (`one_sided`). With `prior` (HxW float in [0, 1], the person priors) and
        `prior_pull` > 0, the second solve's data term also raises alpha toward the prior where the colours
        cannot decide (`_pull`), except on `away` (HxW bool, the hair). The method is the further fallback of the
        two (in the order of `closed_form.METHODS`), the iterations both solves'."""
        # numba (the solver's and the sampler's compiler) loads only when the route solves: the network routes never
        # pay for it
        from p3m.infer.band_sampling import data_term
        from p3m.infer.closed_form import METHODS, BandSolution, solve_band

        s = self.settings
        if guess is None:
            guess = (trimap == 255).astype(np.float32)
        image = array_to_rgb(image)
        data = data_term(image, trimap, strength=s.band_data) if s.band_data > 0 else None
        if not s.tight_band:
            return solve_band(image, trimap, guess, eps=s.cf_eps, rtol=s.rtol, data=data)
        first = solve_band(image, trimap, guess, eps=s.cf_eps, rtol=s.coarse_rtol, data=data)
        if first.method in ("none", "guess"):
            return first
        reach = max(1, round(s.tight_reach * max(trimap.shape)))
        narrow = tight_trimap(trimap, first.alpha, low=s.tight_low, high=s.tight_high, reach=reach, keep=keep)
        # the first band's data term holds on the narrow one: its samples are known pixels of the first trimap,
        # which stay known; on pixels the narrowing made known it is never read
        if prior is not None and s.prior_pull > 0:
            data = add_data_terms(data, self._pull(image, trimap, narrow, first.alpha, prior, away))
        # the narrow band's system is the first one's, fewer rows: it starts at the fallback that answered there
        second = solve_band(image, narrow, first.alpha, eps=s.cf_eps, rtol=s.rtol, data=data, first_try=first.method)
        if second.method == "guess":  # no solve answered on the narrow band: the first stands
            return first
        alpha = second.alpha  # "none" (nothing fractional): the first alpha rounded, as everywhere off the transition
        undecided = one_sided(narrow)
        alpha[undecided] = first.alpha[undecided]
        # the answer is both solves': it says the further fallback either needed
        method = max(first.method, second.method, key=METHODS.index)
        return BandSolution(alpha, method, first.iterations + second.iterations)

    def _pull(
        self,
        image: np.ndarray,
        trimap: np.ndarray,
        narrow: np.ndarray,
        first: np.ndarray,
        prior: np.ndarray,
        away: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The second solve's data term toward `prior` (`p3m.infer.prior_pull.raise_toward_prior`) on the unknown
        pixels of `narrow`, weighted by how little the colours round them separate the first trimap's known person
        from its known background (`p3m.infer.step_edges.colour_ambiguity`, bounds `pull_separated`)."""
        s = self.settings
        ys, xs = np.nonzero(narrow == 128)
        ambiguity = np.zeros(narrow.shape, np.float32)
        if ys.size:
            known = trimap.astype(np.float32) / np.float32(255.0)  # its known regions: 1 person, 0 background
            ambiguity[ys, xs] = colour_ambiguity(image, known, ys, xs, separated=s.pull_separated)
        return raise_toward_prior(prior, first, ambiguity, strength=s.prior_pull, margin=s.pull_margin, away=away)

    # -- 7. person check ----------------------------------------------------------------------------------

    def faces(self, image: np.ndarray) -> Iterator[list[Detection]]:
        """The faces MediaPipe's detectors report in `image` (HxWx3 uint8), at their own thresholds, in its pixels:
        the short-range detector's, then (when asked for more) the full-range one's, each a list, best first."""
        detectors = self._loaded(
            "_faces",
            lambda: tuple(FaceDetector(v, device=self.device, runtime=self.runtime) for v in ("short", "full")),
        )
        for detector in detectors:
            with self._lock:
                found = detector.detect(image)
            yield found

    def faces_on_person(self, image: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
        """(best score of a face on the person, best score of a face off it): the faces of `faces` (short range,
        then full range when the short one finds none on the person) judged by `p3m.infer.priors.face_on_person`
        against the selfie `mask` (HxW bool, `image`'s grid); 0 when none."""
        s = self.settings
        off = 0.0
        for found in self.faces(image):
            on = [f.score for f in found if face_on_person(f.box, mask, inside=s.face_inside, largest=s.face_largest)]
            if on:
                return max(on), off
            off = max([off, *(f.score for f in found)])
        return 0.0, off

    def _person(
        self, image: np.ndarray, mask: np.ndarray, prob: np.ndarray, pose: Pose | None, agree: float, info: dict
    ) -> str:
        """The person verdict (`p3m.infer.priors.person_verdict`); its evidence goes into `info`.

        When the route has run the pose network already (`gap_colour`, `forearm_core`, `hands`, `limb_gaps`, a
        greyscale photo's prior), its agreement `agree` with the selfie mask (`_pose_agreement`, as the route
        measured it before the pose changed the prior) is asked first: it costs nothing more, and when it settles
        the question the face detectors (5-17 ms) do not run. Otherwise the face detectors first (a few ms), a face
        counting only on the person (`face_on_person`); the pose network (as costly as the selfie prior) only when
        they find no face on the person (back views, small or turned heads)."""
        s = self.settings
        confident = np.count_nonzero(mask & (prob >= s.seed_threshold)) / max(1, int(np.count_nonzero(mask)))
        info["confident"] = round(confident, 4)
        if pose is not None:
            verdict = person_verdict(
                PersonEvidence(0.0, agree, confident), agree=s.person_agree, confident=s.person_confident
            )
            if verdict:
                return verdict
        face, off = self.faces_on_person(image, mask)
        evidence = PersonEvidence(face, agree, confident)
        info["face"] = round(face, 4)
        if off > 0:
            info["face_off_person"] = round(off, 4)
        verdict = person_verdict(evidence, agree=s.person_agree, confident=s.person_confident)
        if not verdict and s.pose and pose is None:
            agree = _pose_agreement(self.pose(image, mask), mask)
            info["pose_agreement"] = round(agree, 4)
            evidence = PersonEvidence(evidence.face, agree, confident)
            verdict = person_verdict(evidence, agree=s.person_agree, confident=s.person_confident)
        return verdict

    # -- the whole route --------------------------------------------------------------------------------
    # `run` is the sequence of the stages below, each named after the `STEPS` timing it is measured by (the hands'
    # stage is `hands` itself; the person check runs beside the refine stage, then the upsampling)

    def _prior_stage(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, Pose | None]:
        """Steps 1-2: (image, prob, mask, found) for an RGB image (HxWx3 uint8): the image at the working size,
        the person prior there (float32 in [0, 1], the selfie prior unspilled, or the rescuing pose's mask), its
        mask (bool; all False when no person is found), and the pose `find_person` found when it rescued the
        prior (else None)."""
        s = self.settings
        h, w = rgb.shape[:2]
        image = _working_image(rgb, working_size(h, w, s.matting_side))
        prob = self.prior(rgb, image)
        if s.spill_unsure > s.threshold:
            prob = self.unspill(prob, image)
        mask = self.mask(prob)
        # the selfie prior sees something but is confident nowhere (a greyscale photo can do that to it): MediaPipe's
        # person detector looks, and the person mask of the pose it finds becomes the prior
        rescue = s.pose and s.pose_rescue and not mask.any() and prob.max() >= s.rescue_floor
        found = self.find_person(image) if rescue else None
        if found is not None:
            prob = found.segmentation.astype(np.float32)
            mask = self.mask(prob)
        return image, prob, mask, found

    def _pose_stage(
        self, image: np.ndarray, prob: np.ndarray, mask: np.ndarray, found: Pose | None, info: dict[str, Any]
    ) -> _PoseStage:
        """Step 3 on the prior stage's output: the pose (`found`, else the pose network's when a step needs it),
        its agreement with the selfie mask and trust, the prior and mask it changes (a greyscale photo's lower
        of the two priors, the limb gaps, the gaps' colour test), and what that test dropped and took as known
        background. The prior's kind and the pose's agreement go into `info`."""
        s = self.settings
        # the pose network runs here for the steps that use its landmarks or mask (hands, limb gaps, the gaps' colour
        # test, the forearms' cores and the hair's gaps, on by default; a greyscale photo's prior); without them the
        # person check asks for it later, and only when no face settles that question
        # asked once, for the pose prior on grey photos and for the trimap's rim (colour edges need colour)
        colourless = is_greyscale(image) if (s.pose and s.grey_pose and found is None) or s.rim_reach > 0 else False
        grey = s.pose and s.grey_pose and found is None and colourless
        limbs = s.hands or s.limb_gaps or s.gap_colour or s.forearm_core > 0 or s.hair_gaps
        pose = found or (self.pose(image, mask) if s.pose and (limbs or grey) else None)
        agree = _pose_agreement(pose, mask)
        trusted = pose is not None and agree >= s.pose_agree
        if grey and trusted and pose is not None:
            # the selfie network, trained on colour, spills onto a grey photo's background where the pose
            # network's mask, agreeing with it elsewhere, does not: the lower of the two
            prob = np.minimum(prob, pose.segmentation).astype(np.float32)
            mask = self.mask(prob)
            info["prior"] = "selfie and pose (greyscale)"
        if pose is not None:
            info["pose_agreement"], info["pose_prior"] = round(agree, 4), trusted
        dropped = np.zeros_like(mask)  # what the gaps' colour test took out of the mask
        known_background = np.zeros_like(mask)  # ... and of it, what the trimap takes as known background
        if pose is not None and trusted and (s.limb_gaps or s.gap_colour):
            long_side = max(mask.shape)
            gaps = limb_gaps(pose.landmarks, mask.shape, min_visibility=s.limb_visibility, legs_cut=s.legs_cut)
            if gaps.any() and s.limb_gaps:
                prob = blend_in(prob, pose.segmentation, gaps, s.gap_feather * long_side)
                mask = self.mask(prob)
            if gaps.any() and s.gap_colour:
                marked = background_colour_in_gaps(image, prob, mask, gaps)
                dropped = verdict_regions(marked, mask & gaps, round(GAP_SMOOTH * long_side))
                prob = self._drop(prob, dropped)
                mask = self.mask(prob)
                if s.gap_known:
                    # a background strip between the limbs narrower than the band holds no known background, and
                    # matting, with person on both sides, fills it again: where the pose network's mask says
                    # background too, each pixel the colour marks is known (the smoothing's disc would drop a strip
                    # narrower than itself)
                    known_background = marked & (pose.segmentation < 0.5)
        return _PoseStage(pose, agree, trusted, prob, mask, dropped, known_background, colourless)

    def _trimap_stage(
        self, image: np.ndarray, stage: _PoseStage, hands: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Steps 4-5 on the pose stage's output: (trimap, hair, mask, head): the band's trimap ({0, 128, 255}) with
        the gaps' known background, the hands' zones and bones and the forearms' cores; `band`'s hair (bool, unknown
        in both solves); the mask with the hands' bones added; the head's side of the shoulders (bool,
        `above_shoulders`; None without a pose, or when neither the hair gaps nor the prior pull asks for it)."""
        s = self.settings
        pose, prob, mask = stage.pose, stage.prob, stage.mask
        # the head's side of the shoulders, where the trimap looks for background seen through hair: the pose's
        # landmarks need no trust in its mask (on a close-up the mask is poor, the shoulders and nose are not)
        head = None
        if pose is not None and (s.hair_gaps or s.prior_pull > 0):
            head = above_shoulders(pose.landmarks, mask.shape, min_visibility=s.limb_visibility)
        tri, hair = self.band(mask, image, head if s.hair_gaps else None)
        tri[stage.known_background] = 0
        if s.rim_reach > 0 and not stage.greyscale:
            # where the prior spilled by about the band's half-width the person's edge lies on the band's inner rim,
            # and the solve, with known person on the edge's own slope, carries the person across it: the rim is
            # opened past such a colour edge (on a grey photo luminance alone cannot tell person from background
            # there, and the known label is the evidence that holds)
            tri[self.rim(image, tri)] = 128
        if hands:
            seeds, zone = hand_seeds(hands, mask.shape, bone_width=s.hand_bone, zone_width=s.hand_zone)
            if s.hand_zone_keep and pose is not None:
                # the zone, wide enough for lost fingers, also covers background beside the hand: where the band
                # had it as known background and colour and the pose's mask agree, it stays known (no haze there)
                zone &= ~(background_in_hand_zone(image, prob, mask, zone, pose.segmentation) & (tri == 0))
            tri[zone] = 128
            tri[seeds] = 255
            mask = mask | seeds
        if pose is not None and stage.trusted and s.forearm_core > 0:
            # a forearm against a background of its own colour (skin on a sandy road) is lost by the band's solve,
            # which has only the person's other colours (clothes) as known person next to it: its middle, where
            # the pose network's mask and its landmarks put the limb, is known person
            support = (pose.segmentation >= 0.5) & ~stage.dropped & (prob >= _SURE_BACKGROUND)
            core = limb_cores(pose.landmarks, support, fraction=s.forearm_core, min_visibility=s.limb_visibility)
            tri[core] = 255
        return tri, hair, mask, head

    def _refine_stage(
        self,
        image: np.ndarray,
        trimap: np.ndarray,
        mask: np.ndarray,
        hair: np.ndarray,
        prior: np.ndarray | None = None,
        head: np.ndarray | None = None,
    ) -> tuple[np.ndarray, str]:
        """Step 6 at the working size: (alpha, method): `solve` started from the mask (HxW bool), its second solve
        raised toward `prior` where the colours cannot decide, off the hair and the `head`'s side of the shoulders
        (no pull without a `head`: nothing says where hair can be), then the steps' contrast stretch and the snap of
        values within `clean` of 0 or 1; method is the solver's."""
        s = self.settings
        if head is None:
            prior = None
        away = hair | head if head is not None else None
        solution = self.solve(image, trimap, mask.astype(np.float32), hair, prior, away)
        alpha = solution.alpha
        if s.step_contrast > 1:
            alpha = sharpen_steps(image, alpha, s.step_contrast)
        if s.clean > 0:
            alpha[alpha < s.clean] = 0.0
            alpha[alpha > 1.0 - s.clean] = 1.0
        return alpha, solution.method

    def run(self, rgb: np.ndarray) -> RouteResult:
        """The route on an RGB image array (any range of `p3m.infer.preprocess.array_to_rgb`: grey, RGBA,
        16-bit, float in [0, 1]) -> `RouteResult`."""
        s = self.settings
        rgb = array_to_rgb(rgb)
        h, w = rgb.shape[:2]
        timings = dict.fromkeys(STEPS, 0.0)
        clock = [time.perf_counter()]

        def lap(step: str) -> None:
            clock.append(time.perf_counter())
            timings[step] = clock[-1] - clock[-2]

        image, prob, mask, found = self._prior_stage(rgb)
        lap("prior")
        if not mask.any():
            return RouteResult(np.zeros((h, w), np.float32), NO_PERSON, {"person": ""}, timings)
        info: dict[str, Any] = {"prior": "pose detector" if found is not None else "selfie"}
        stage = self._pose_stage(image, prob, mask, found, info)
        pose, prob, mask = stage.pose, stage.prob, stage.mask
        lap("pose")
        hands = self.hands(image, pose, prob) if pose is not None and stage.trusted and s.hands and mask.any() else []
        info["hands"] = len(hands)
        lap("hands")
        tri, hair, mask, head = self._trimap_stage(image, stage, hands)
        # what the priors say where the colours cannot decide: the selfie prior, or where the pose network's mask is
        # trusted the higher of the two (the pose network, at 512 px, keeps limbs the selfie prior lost)
        priors = np.maximum(prob, pose.segmentation) if pose is not None and stage.trusted else prob
        lap("trimap")
        # the person check needs nothing of the solve: it runs beside it, on the other core when there is one
        with ThreadPoolExecutor(max_workers=1) as beside:
            evidence: dict[str, Any] = {}
            # a person the pose detector found is the verdict itself: the pose's own mask would agree with itself
            check = s.person_check and found is None
            checked = beside.submit(self._person, image, mask, prob, pose, stage.agree, evidence) if check else None
            alpha, method = self._refine_stage(image, tri, mask, hair, priors, head)
            info["solver"] = method
            lap("refine")
            verdict = checked.result() if checked is not None else "pose detector" if found else "not checked"
        info.update(evidence)
        info["person"] = verdict
        lap("person")  # what the check took beyond the solve
        if alpha.shape != (h, w):  # bilinear: stays in [0, 1]; one full-size array, nothing else at full size
            alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
        lap("upsample")
        warning = MASK_ONLY if method == "guess" else "" if verdict else NOT_SURE
        return RouteResult(alpha, warning, info, timings)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """HxW float32 alpha of an RGB image array: `run(rgb).alpha`."""
        return self.run(rgb).alpha
