"""The built-in route's person check (`p3m.infer.portrait`, step 7): false-person rate and miss rate.

Images without people: scikit-image's data set (shipped with the package: a cup, a cat, a rocket, coins, a horse
silhouette, textures, a retina, a galaxy field, text, a logo, ...), two crops of the astronaut photo without the
astronaut (the flag, the shuttle model) and six synthetic backgrounds (`p3m.data.synth`). Images with people: the three
photos shipped in tests/data and, where the shared test data is checked out, the 12 real portraits.

For each: the share of the matte above 0.5, the evidence (pose/selfie agreement, confident share, face score when
looked for), the verdict and the warning. A false person is an image without people whose matte is not empty and
carries no warning; a miss is an image with a person that is empty or flagged.

    .venv/bin/python -m benchmarks.bench_person
    .venv/bin/python -m benchmarks.bench_person --variants --faces-anywhere  # every copy, faces off the person too

`--variants`: each picture also mirrored, at half size, as JPEG-60 and in grey (`bench_route_priors.VARIANTS`), the
rates per copy. `--faces-anywhere`: the check before faces had to lie on the person (any face the detectors report
counts: `face_inside` 0, `face_largest` unbounded).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from skimage import data as skdata
from skimage.util import img_as_ubyte

from benchmarks.bench_route_priors import VARIANTS
from p3m.data.synth import _background
from p3m.infer.portrait import PortraitMatting, PortraitSettings
from tests.paths import PORTRAITS, TEST_DATA

NO_PEOPLE = (
    "coffee", "chelsea", "rocket", "coins", "horse", "moon", "brick", "grass", "gravel", "retina",
    "hubble_deep_field", "page", "text", "logo", "clock", "cell", "immunohistochemistry", "colorwheel",
    "microaneurysms", "shepp_logan_phantom",
)  # fmt: skip


def as_rgb(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 of any scikit-image picture (bool, grey, RGBA)."""
    image = img_as_ubyte(image.astype(np.float64) if image.dtype == bool else image)
    return np.repeat(image[..., None], 3, 2) if image.ndim == 2 else image[..., :3]


def without_people() -> dict[str, np.ndarray]:
    images = {name: as_rgb(getattr(skdata, name)()) for name in NO_PEOPLE}
    astronaut = skdata.astronaut()
    images["astronaut: flag"] = astronaut[:240, :80]  # the crops hold no part of her
    images["astronaut: shuttle model"] = astronaut[:260, 360:]
    for seed in range(6):
        images[f"synthetic background {seed}"] = _background(np.random.default_rng(seed), 512, 512)
    return images


def with_people() -> dict[str, np.ndarray]:
    paths = sorted(TEST_DATA.glob("people_*.jpg")) + sorted((PORTRAITS / "image").glob("*.jpg"))
    return {p.stem: cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths}


def check(route: PortraitMatting, images: dict[str, np.ndarray], person: bool) -> list[dict[str, Any]]:
    rows = []
    for name, rgb in images.items():
        result = route.run(rgb)
        share = float((result.alpha > 0.5).mean())
        wrong = (share == 0 or bool(result.warning)) if person else (share > 0 and not result.warning)
        rows.append({"image": name, "person": person, "matte": share, **result.info, "warning": result.warning})
        rows[-1]["wrong"] = bool(wrong)
        info = result.info
        print(
            f"  {name:26s} {share:6.3f} {info.get('pose_agreement', 0):6.3f} {info.get('confident', 0):6.3f} "
            f"{info.get('face', float('nan')):6.3f}  {info.get('person', '') or '-':17s} "
            f"{'WRONG' if wrong else 'ok':5s} {result.warning[:40]}"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--variants", action="store_true", help="also mirrored, half-size, JPEG-60 and grey copies")
    parser.add_argument("--faces-anywhere", action="store_true", help="any face counts, on the person or not")
    args = parser.parse_args()
    torch.set_num_threads(2)
    settings = PortraitSettings(face_inside=0.0, face_largest=float("inf")) if args.faces_anywhere else None
    route = PortraitMatting(settings)
    header = f"  {'image':26s} {'matte':>6s} {'agree':>6s} {'conf.':>6s} {'face':>6s}  {'verdict':17s} result"
    copies = VARIANTS if args.variants else {"original": VARIANTS["original"]}
    rows: dict[str, Any] = {}
    for copy, alter in copies.items():
        print(f"\n== {copy}\nimages without people\n{header}")
        empty = check(route, {k: alter(v, v)[0] for k, v in without_people().items()}, person=False)
        print(f"\nimages with people\n{header}")
        people = check(route, {k: alter(v, v)[0] for k, v in with_people().items()}, person=True)
        rows[copy] = {"without_people": empty, "with_people": people}
    for copy, found in rows.items():
        empty, people = found["without_people"], found["with_people"]
        false_person = [r["image"] for r in empty if r["wrong"]]
        kept = sum(r["matte"] > 0 for r in empty)
        missed = [r["image"] for r in people if r["wrong"]]
        print(
            f"{copy}: false-person rate {len(false_person)}/{len(empty)} images without people {false_person} "
            f"({kept} with a non-empty matte, each flagged unless counted here); "
            f"miss rate {len(missed)}/{len(people)} images with people {missed}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
