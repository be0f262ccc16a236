"""The built-in route with and without one of its steps, side by side in one run.

`--pair priors` (the default): the second prior (pose, hands, person check). "old" is the route as it was
before the second prior (selfie prior + closed-form matting: `PortraitSettings(pose=False, hands=False,
person_check=False)`), "new" with hands and limb gaps (`PortraitSettings.for_limbs(True)`, `p3m matte --hands`).
On the 12 shared real portraits (reference mattes) and on four altered copies of each, to check that settings
chosen on the originals do not overfit them: mirrored,
half-size, JPEG quality 60 and greyscale (the reference altered the same way where it changes); per variant the
mean and worst SAD (sum |alpha - reference| / 1000), the worst IoU of the > 0.5 regions, and the image whose SAD
changed most. scikit-image's astronaut has no reference matte: it is reported as the old/new SAD between the two
mattes and the share of the image each keeps. Then the cost: old and new timed one after the other on each original
(median of `--repeat`), and the new route's steps (pose, hands, person check) on their own.

`--pair spill`: "old" is the default route without the colour model that drops the prior's spill
(`PortraitSettings(spill_unsure=0.5)`, `p3m.infer.spill`), "new" the default route.

`--pair eps`: "old" is the default route with closed-form epsilon 1e-7 (`PortraitSettings(cf_eps=1e-7)`,
pymatting's), "new" the default route (1e-6).

`--pair sampled`: "old" is the default route without the band solve's data term from sampled colours
(`PortraitSettings(band_data=0)`, `p3m.infer.band_sampling`), "new" the default route.

`--pair zoom`: "old" is the default route without the zoomed third pass of the prior
(`PortraitSettings(zoom_tiles=0)`), "new" the default route (one tile on the person's edge).

`--pair gaps`: "old" is the route without the background dropped by colour in the gaps between limbs
(`PortraitSettings(gap_colour=False)`), "new" the default route, with it (`p3m.infer.spill.background_in_gaps`).

`--pair grey`: "old" is the default route without its two greyscale steps (`PortraitSettings(pose_rescue=False,
grey_pose=False)`: the pose detector where the selfie prior is confident nowhere, and the lower of the selfie and
pose priors on a greyscale photo), "new" the default route; with two more variants (the greyscale copies
mirrored and at half size), and the cost timed on the greyscale copies, where the new steps run.

`--pair steps`: "old" is the default route without the contrast stretch after the band's solve
(`PortraitSettings(step_contrast=1)`), "new" the default route (`p3m.infer.step_edges.sharpen_steps`: alpha
stretched about 0.5 where the person's and the background's colours are close and the alpha is smooth).

`--pair tight`: "old" is the default route with one closed-form solve on the band round the mask
(`PortraitSettings(tight_band=False)`), "new" the default route: a second solve on the band narrowed to where the
first alpha is fractional (`p3m.infer.tight_band`).

`--pair combined`: "old" is the route before the four steps landed together on 2026-12-06 (the step edges'
stretch, the tight second solve, the gaps' colour test by default and the two greyscale steps all off: the mattes
of f1ae4f2), "new" the route after them (the limbs' and the hair's steps, which came later, off in both).

`--pair hairgaps`: "old" is the default route without the background seen through hair made unknown inside the
mask (`PortraitSettings(hair_gaps=False)`), "new" the default route (`p3m.infer.spill.background_through_hair` on
the head's side of the shoulders, `p3m.infer.priors.above_shoulders`).

`--pair limbs`: "old" is the default route without this round's limb rules (`PortraitSettings(forearm_core=0,
legs_cut=False, gap_known=False)`), "new" the default route: the forearms' middle known person
(`p3m.infer.priors.limb_cores`), the legs' gap polygon where the frame cuts the legs off, and the gaps' colour
verdict per pixel known background where the pose mask agrees.

`--pair shade`: "old" is the default route whose zoomed pass removes only within `zoom_reach` of the background
(`PortraitSettings(zoom_unsure=0)`), "new" the default route: where the coarse prior is unsure the tile's removals
reach farther, kept where their chromaticity says shaded background (`p3m.infer.spill.background_by_chromaticity`).

`--pair handzone`: "old" is `p3m matte --hands` with the hands' unknown zone reopening all known background round
the bones (`PortraitSettings(hands=True, hand_zone_keep=False)`), "new" `--hands` as it is: the zone keeps the
known background where colour and the pose's mask say background (`p3m.infer.spill.background_in_hand_zone`).

`--pair ambiguous`: "old" is the default route without the second solve's pull toward the priors
(`PortraitSettings(prior_pull=0)`), "new" the default route: where the person's and the background's colours
round a pixel cannot decide its alpha, the second solve is raised toward the priors (`p3m.infer.prior_pull`).

`--pair round5`: "old" is the default route before the round that landed the limbs' rules, the zoomed pass's
shade and the hair gaps (all three off: the mattes of 5f3265e), "new" the default route.

`--pair inward`: "old" is the default route without the band's rim opened past a colour edge
(`PortraitSettings(rim_reach=0)`), "new" the default route.

`--pair round6`: "old" is the default route before the round that landed the pull toward the priors and the rim's
opening (both off: the mattes of 42e8f91), "new" the default route.

    P3M_TESTDATA=DIR .venv/bin/python -m benchmarks.bench_route_priors \
        [--pair priors|spill|eps|sampled|zoom|gaps|grey|steps|tight|combined|limbs|shade|handzone|hairgaps|round5|
         ambiguous|inward|round6]
        [--repeat 3] [--json F]

Needs the P3M demo portraits (`JizhiziLi/P3M` demo/imgs) in $P3M_TESTDATA; exits with a message without it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from skimage import data as skdata

from benchmarks.bench_portrait import scores
from p3m.infer.portrait import STEPS, PortraitMatting, PortraitSettings
from tests.paths import PORTRAITS

# the steps that landed after `--pair combined` was measured, off in both of its routes
_LATER_OFF: dict[str, Any] = {
    "hair_gaps": False,
    "forearm_core": 0.0,
    "legs_cut": False,
    "gap_known": False,
    "zoom_unsure": 0.0,
    "prior_pull": 0.0,
    "rim_reach": 0.0,
}

# (old, new) settings per `--pair`
PAIRS = {
    # the whole second prior (`p3m matte --hands`) against the route before it
    "priors": (PortraitSettings(pose=False, hands=False, person_check=False), PortraitSettings.for_limbs(True)),
    # the default route with and without the colour model on the prior's spill (threshold 0.5: off)
    "spill": (PortraitSettings(spill_unsure=0.5), PortraitSettings()),
    # the default route with the closed-form epsilon it had before (pymatting's 1e-7) and with today's
    "eps": (PortraitSettings(cf_eps=1e-7), PortraitSettings()),
    # the default route without and with Robust Matting's data term from sampled colours in the band solve
    "sampled": (PortraitSettings(band_data=0.0), PortraitSettings()),
    # the default route without and with the zoomed third pass of the prior (tiles along the person's edge)
    "zoom": (PortraitSettings(zoom_tiles=0), PortraitSettings()),
    # the default route without and with the colour test inside the pose's limb-gap polygons
    "gaps": (PortraitSettings(gap_colour=False), PortraitSettings(gap_colour=True)),
    # the default route without and with its greyscale steps (the pose detector's rescue, the pose prior on grey)
    "grey": (PortraitSettings(pose_rescue=False, grey_pose=False), PortraitSettings()),
    # the default route without and with the contrast stretch where a transition is a blurred step
    "steps": (PortraitSettings(step_contrast=1.0), PortraitSettings()),
    # the default route with one band solve, and with the second solve on the band narrowed to the transition
    "tight": (PortraitSettings(tight_band=False), PortraitSettings()),
    # the route before and after the four steps landed together (stretch, tight solve, gaps by default, grey steps;
    # the steps that landed later off in both: the pair stays what it measured)
    "combined": (
        PortraitSettings(
            step_contrast=1.0, tight_band=False, gap_colour=False, grey_pose=False, pose_rescue=False, **_LATER_OFF
        ),
        PortraitSettings(**_LATER_OFF),
    ),
    # the default route without and with the forearms' cores, the legs cut by the frame and the gaps' known background
    "limbs": (PortraitSettings(forearm_core=0.0, legs_cut=False, gap_known=False), PortraitSettings()),
    # the zoomed pass's removals within its reach only, and farther where the prior is unsure and the shade says so
    "shade": (PortraitSettings(zoom_unsure=0.0), PortraitSettings()),
    # `--hands` with the hands' zone reopening all known background round the bones, and keeping it where colour
    # and the pose's mask say background
    "handzone": (PortraitSettings(hands=True, hand_zone_keep=False), PortraitSettings(hands=True)),
    # the default route without and with the background seen through hair made unknown inside the mask
    "hairgaps": (PortraitSettings(hair_gaps=False), PortraitSettings()),
    # the default route without and with the second solve raised toward the priors where colour cannot decide
    "ambiguous": (PortraitSettings(prior_pull=0.0), PortraitSettings()),
    # the route before and after the round that added the limbs' steps, the zoomed pass's shade and the hair gaps
    # (RESULTS.md "Where issue 24 stands"): the later steps' switches give the earlier route's mattes
    "round5": (PortraitSettings(**_LATER_OFF), PortraitSettings()),
    # the default route without and with the band's person-side rim opened past a colour edge that lies on it
    "inward": (PortraitSettings(rim_reach=0.0), PortraitSettings()),
    # the route before and after the round that added the pull toward the priors and the rim's opening (RESULTS.md
    # "Where issue 24 stands"): both off give the mattes of 42e8f91
    "round6": (PortraitSettings(prior_pull=0.0, rim_reach=0.0), PortraitSettings()),
}


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    _, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def greyscale_copy(rgb: np.ndarray) -> np.ndarray:
    return np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None], 3, 2)


def _half(a: np.ndarray) -> np.ndarray:
    return cv2.resize(a, (a.shape[1] // 2, a.shape[0] // 2), interpolation=cv2.INTER_AREA)


VARIANTS = {
    "original": lambda rgb, ref: (rgb, ref),
    "mirrored": lambda rgb, ref: (rgb[:, ::-1].copy(), ref[:, ::-1].copy()),
    "half-size": lambda rgb, ref: (_half(rgb), _half(ref)),
    "JPEG-60": lambda rgb, ref: (_jpeg(rgb, 60), ref),
    "greyscale": lambda rgb, ref: (greyscale_copy(rgb), ref),
}
# the greyscale copies altered again: `--pair grey` checks that what it tunes on them does not overfit them
GREY_VARIANTS = {
    "greyscale mirrored": lambda rgb, ref: (greyscale_copy(rgb)[:, ::-1].copy(), ref[:, ::-1].copy()),
    "greyscale half-size": lambda rgb, ref: (_half(greyscale_copy(rgb)), _half(ref)),
}


def quality(
    old: PortraitMatting,
    new: PortraitMatting,
    data: list[tuple[str, np.ndarray, np.ndarray]],
    variants: dict | None = None,
) -> dict:
    out: dict[str, Any] = {}
    head = f"{'old SAD mean/worst':>19s} {'new SAD mean/worst':>19s} {'IoU min old/new':>16s}"
    print(f"\n{'variant':10s} {head}  most changed")
    for variant, alter in (variants or VARIANTS).items():
        rows = []
        for name, rgb, ref in data:
            image, target = alter(rgb, ref)
            a, b = scores(old(image), target), scores(new(image), target)
            rows.append({"image": name, "old": a, "new": b})
        sad_old = [r["old"]["sad"] for r in rows]
        sad_new = [r["new"]["sad"] for r in rows]
        change = max(rows, key=lambda r: abs(r["new"]["sad"] - r["old"]["sad"]))
        iou_old, iou_new = min(r["old"]["iou"] for r in rows), min(r["new"]["iou"] for r in rows)
        print(
            f"{variant:10s} {np.mean(sad_old):9.2f}/{max(sad_old):<9.2f} {np.mean(sad_new):9.2f}/{max(sad_new):<9.2f} "
            f"{iou_old:7.3f}/{iou_new:<8.3f}  {change['image']} "
            f"{change['old']['sad']:.2f} -> {change['new']['sad']:.2f}"
        )
        out[variant] = rows
    astronaut = skdata.astronaut()
    a, b = old(astronaut), new(astronaut)
    out["astronaut"] = {
        "sad_old_vs_new": float(np.abs(a - b).sum() / 1000),
        "kept_old": float((a > 0.5).mean()),
        "kept_new": float((b > 0.5).mean()),
    }
    print(
        f"astronaut (no reference): SAD between old and new {out['astronaut']['sad_old_vs_new']:.3f}; share kept "
        f"{out['astronaut']['kept_old']:.4f} old, {out['astronaut']['kept_new']:.4f} new"
    )
    return out


def cost(old: PortraitMatting, new: PortraitMatting, data: list, repeat: int) -> dict:
    """Seconds per original, old and new alternating (the same load on both), and the new route's steps."""
    old(data[0][1]), new(data[0][1])  # warm-up: lazy network loads, numba cache
    rows = []
    for name, rgb, _ in data:
        t_old, t_new, steps = [], [], []
        for _ in range(repeat):
            t = time.perf_counter()
            old(rgb)
            t_old.append(time.perf_counter() - t)
            t = time.perf_counter()
            result = new.run(rgb)
            t_new.append(time.perf_counter() - t)
            steps.append(result.timings)
        median = {k: statistics.median(s[k] for s in steps) for k in STEPS}
        rows.append({"image": name, "old": statistics.median(t_old), "new": statistics.median(t_new), **median})
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("old", "new", *STEPS)}
    ratios = [r["new"] / r["old"] for r in rows]
    print(
        f"\nseconds per image (mean of {len(rows)}, median of {repeat} each): old {mean['old']:.3f}, new "
        f"{mean['new']:.3f} (new/old per image: median {statistics.median(ratios):.2f}x, range "
        f"{min(ratios):.2f}-{max(ratios):.2f}x)"
    )
    print("new route's steps, mean s: " + ", ".join(f"{k} {mean[k]:.3f}" for k in STEPS))
    return {"images": rows, "mean": mean}


def portraits(only: list[str] | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(stem, RGB image, 8-bit reference matte) of the shared test portraits (those named in `only`, else all);
    exits with a message where they are absent."""
    paths = sorted((PORTRAITS / "image").glob("*.jpg"))
    if not paths:
        raise SystemExit(f"no test portraits under {PORTRAITS}: the shared test data is needed for this benchmark")
    data = []
    for p in paths:
        if only is None or p.stem in only:
            rgb = cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            data.append((p.stem, rgb, cv2.imread(str(PORTRAITS / "reference_alpha" / f"{p.stem}.png"), 0)))
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", choices=sorted(PAIRS), default="priors", help="which step to compare")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per image and route (default 3)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    data = portraits()
    torch.set_num_threads(args.threads)
    old, new = (PortraitMatting(settings) for settings in PAIRS[args.pair])
    grey = args.pair == "grey"
    variants = {**VARIANTS, **GREY_VARIANTS} if grey else VARIANTS
    timed = [(name, greyscale_copy(rgb), ref) for name, rgb, ref in data] if grey else data
    out = {"quality": quality(old, new, data, variants), "cost": cost(old, new, timed, args.repeat)}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
