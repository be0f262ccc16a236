"""Time face detection, private area + obfuscation and the audit per 1080p image (shared test-data portraits).

Run, from the repository root: `.venv/bin/python -m benchmarks.bench_privacy [--images N] [--repeat R]`. Prints the
median time per image for each stage, measured in this one run on this machine (state the machine when quoting
the numbers).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from functools import partial

import cv2

from p3m.io import read_image, read_mask
from p3m.privacy.audit import face_detail, face_similarity
from p3m.privacy.detect import CenterFaceDetector
from p3m.data.obfuscate import obfuscate, private_area
from p3m.privacy.region import face_region
from tests.paths import PORTRAITS

PYRAMID = "detect, pyramid (640 + native)"


def _private_area_of_faces(image, faces, alpha):
    return private_area(face_region(image.shape, faces, 1.1), alpha=alpha)


def _audit_measures(out, image, faces):
    return [(face_detail(out, f, faces), face_similarity(out, image, f)) for f in faces]


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4, help="number of test portraits (default 4)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per stage and image (default 3)")
    parser.add_argument("--threads", type=int, default=0, help="cv2.setNumThreads (0: OpenCV default)")
    args = parser.parse_args()
    if args.threads:
        cv2.setNumThreads(args.threads)
    paths = sorted((PORTRAITS / "image").glob("*.jpg"))
    if not paths:
        raise SystemExit(f"no test portraits under {PORTRAITS}")
    # the open faces first: they exercise the whole pipeline
    paths.sort(key=lambda p: p.stem not in ("p_07141906", "p_818e689d", "p_bac3c1ff"))
    paths = paths[: args.images]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads)"
    )
    pyramid = CenterFaceDetector(0.2)
    single = CenterFaceDetector(0.2, multiscale=False)
    rows: dict[str, list[float]] = {}
    for path in paths:
        image = read_image(path)
        alpha = read_mask(PORTRAITS / "reference_alpha" / f"{path.stem}.png")
        pyramid.detect(image)  # warm-up (network load, allocations)
        faces = pyramid.detect(image)
        rows.setdefault(PYRAMID, []).append(_median_ms(partial(pyramid.detect, image), args.repeat))
        rows.setdefault("detect, one level (640)", []).append(_median_ms(partial(single.detect, image), args.repeat))
        region = face_region(image.shape, faces, 1.1)
        rows.setdefault("face region + private area", []).append(
            _median_ms(partial(_private_area_of_faces, image, faces, alpha), args.repeat)
        )
        private = private_area(region, alpha=alpha)
        for method in ("blur", "mosaic", "zero"):
            rows.setdefault(f"obfuscate {method}", []).append(
                _median_ms(partial(obfuscate, image, private, method), args.repeat)
            )
        out = obfuscate(image, private, "blur")
        if faces:
            rows.setdefault("audit measures per face (detail + SSIM)", []).append(
                _median_ms(partial(_audit_measures, out, image, faces), args.repeat)
            )
        print(
            f"{path.name}: {image.shape[1]}x{image.shape[0]}, {len(faces)} faces, private area {int(private.sum())} px"
        )
    print(f"\nmedian ms per image over {len(paths)} portraits (each stage timed {args.repeat}x):")
    for name, values in rows.items():
        print(f"  {name:42s} {statistics.median(values):8.1f} ms   (range {min(values):.1f}-{max(values):.1f})")
    total = sum(statistics.median(rows[k]) for k in (PYRAMID, "face region + private area", "obfuscate blur"))
    print(f"  {'total anonymize (pyramid + blur)':42s} {total:8.1f} ms   ({1000.0 / total:.1f} images/s, excl. I/O)")


if __name__ == "__main__":
    main()
