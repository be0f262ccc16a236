"""Samples/s of the training data pipeline (`P3MTrainDataset.__getitem__`), one process, one thread.

A DataLoader worker is one such process, so the rate measured here is the rate of one worker; the script prints how
many workers a target rate (default 300 samples/s, the GPU step goal) needs.

Dataset: built in a temporary folder in the P3M-10k layout (never in the shared test data):

* ``--source portraits`` (default): the 12 real portraits of the shared test data (JPEG, 1080 px on the short side,
  up to 1920 px on the long one) as ``train/blurred_image`` (and, byte-identical, ``train/original_image`` for the
  on-the-fly obfuscation case), their reference mattes as ``train/mask``, and face masks from the CenterFace
  detector (``face_region``, scale 1.1); a portrait with no detected face gets an ellipse on the top of its matte
  (the head) instead, so that every sample exercises obfuscation and copy-paste. fg/bg are estimated once with
  `p3m.train.fg_cache.prepare_foreground` (the 2021-release path: lossless WebP cache; the "before" pipeline gets
  the same pixels as the PNG cache it used), timed as a one-time cost, then the cache is warm for every measurement.
* ``--source synth``: `p3m synth`'s generator at ``--size`` (default 1080x1440), which ships fg/bg as PNG.

Cases (each with composition, i.e. fg/bg, unless named): ``default`` (the published recipe), ``no-composition``,
``obfuscation blur`` (``data.image_dir=original_image``, ``data.obfuscation=blur``) and ``copy-paste``
(``copy_paste.enabled``, prob 0.5, faces of other samples). Each case runs the current pipeline ("after") and the
literal copy of the pipeline before the speed-up (``tests/reference/train_data.py``, "before") on the same samples
and seeds, interleaved round by round, so ratios come from one run on the same machine state; samples/s is the best
round. The two pipelines' tensors are also compared: the current items are uint8 and are converted on the training
device by `p3m.train.data.prepare_batch`, so ``prepare_batch`` (on the CPU here) of each current item must equal the
old float32 item bit for bit. The bytes one item hands over (worker -> main process queue, pinned copy, host ->
device copy) are reported for both, and the handover itself is timed: a one-worker DataLoader over a fixed item of
each pipeline (default recipe), batch 8, i.e. the worker's collate into shared memory, the queue and the main
process's unpacking (no pinning and no device copy: this is a CPU-only measurement). A stage table splits one
sample of the default recipe into decode, fg/bg load, trimap + crop choice (one stage: the current pipeline builds
the full trimap only when the crop choice needs it), crop/flip/resize and tensor conversion, for both pipelines.

Usage, from the repository root: ``.venv/bin/python -m benchmarks.bench_data [--samples 48] [--rounds 3] [--json OUT]``
(``--workdir DIR`` keeps and reuses the built dataset and its fg/bg cache).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".cache" / "numba"))

from benchmarks.bench_common import testdata_dir  # noqa: E402
from p3m.commands.synth import parse_size as synth_size  # noqa: E402
from p3m.data.trimap import random_kernel_size, trimap_crop, trimap_from_alpha  # noqa: E402
from p3m.io import read_image, read_mask, write_image  # noqa: E402
from p3m.train import data as tdata  # noqa: E402
from p3m.train.config import CopyPasteConfig, DataConfig  # noqa: E402
from tests.reference import train_data as ref  # noqa: E402

MARKER = "bench_data.json"


# ------------------------------------------------------------------------------------------ dataset


def head_ellipse(alpha: np.ndarray) -> np.ndarray:
    """Fallback face mask: an ellipse on the top of the opaque matte (where a portrait's head is)."""
    h, w = alpha.shape
    rows = np.flatnonzero((alpha == 255).any(axis=1))
    mask = np.zeros((h, w), np.uint8)
    if rows.size == 0:
        return mask
    r = max(8, int(0.08 * min(h, w)))
    top = int(rows[0])
    cy = min(h - 1, top + int(1.3 * r))
    xs = np.flatnonzero(alpha[cy] == 255)
    cx = int(np.median(xs)) if xs.size else w // 2
    cv2.ellipse(mask, (cx, cy), (int(0.8 * r), r), 0, 0, 360, 255, -1)
    return mask


def build_portraits(root: Path, testdata: Path, n: int) -> dict:
    from p3m.privacy.detect import CenterFaceDetector
    from p3m.privacy.region import face_region

    train = root / "train"
    for name in ("blurred_image", "original_image", "mask", "facemask"):
        (train / name).mkdir(parents=True, exist_ok=True)
    detector = CenterFaceDetector(0.2)
    info = {"images": [], "detected_faces": 0}
    for path in sorted((testdata / "portraits" / "image").glob("*.jpg"))[:n]:
        alpha_path = testdata / "portraits" / "reference_alpha" / f"{path.stem}.png"
        shutil.copyfile(path, train / "blurred_image" / path.name)  # the original JPEG bytes
        shutil.copyfile(path, train / "original_image" / path.name)
        shutil.copyfile(alpha_path, train / "mask" / alpha_path.name)
        image, alpha = read_image(path), read_mask(alpha_path)
        faces = detector.detect(image)
        face = face_region(image.shape, faces, 1.1).astype(np.uint8) * 255 if faces else head_ellipse(alpha)
        info["detected_faces"] += bool(faces)
        write_image(train / "facemask" / f"{path.stem}.png", face)
        info["images"].append(f"{image.shape[1]}x{image.shape[0]}")
    # fg/bg: the 2021-release path (no shipped fg/bg): estimate once into the cache
    from p3m.train.fg_cache import prepare_foreground

    t = time.perf_counter()
    report = prepare_foreground(root, progress=False)
    info["fg_estimate_s_per_image"] = (time.perf_counter() - t) / max(1, report.estimated)
    cache = root / "train" / "fg_bg_cache"
    # the pipeline before the speed-up read a PNG cache: give it the same pixels in its format
    from p3m.train.fg_cache import read_cache_image

    for webp in sorted(cache.rglob("*.webp")):
        write_image(webp.with_suffix(".png"), read_cache_image(webp))
    shutil.copytree(cache / "blurred_image", cache / "original_image")  # same pixels: same estimates
    return info


def build_synth(root: Path, n: int, size: tuple[int, int]) -> dict:
    from p3m.data.synth import SynthConfig, generate_dataset

    generate_dataset(root, SynthConfig(n_train=n, n_test_p=1, n_test_np=1, size=size, seed=5), overwrite=True)
    train = root / "train"
    shutil.copytree(train / "blurred_image", train / "original_image")
    # image_dir overrides estimate their own fg/bg: give them the shipped ones, so no estimate is timed
    cache = train / "fg_bg_cache" / "original_image"
    for kind in ("fg", "bg"):
        shutil.copytree(train / kind, cache / kind)
    return {"images": [f"{size[1]}x{size[0]}"] * n}


def build_dataset(args) -> tuple[Path, dict, Path | None]:
    """(root, info, temp folder to delete or None)."""
    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="p3m_bench_data_"))
    root = base / "P3M-10k"
    want = {"source": args.source, "images": args.images, "size": list(args.size)}
    marker = base / MARKER
    if marker.is_file():
        saved = json.loads(marker.read_text())
        if saved.get("want") == want:
            print(f"reusing the dataset in {root}")
            return root, saved["info"], None
    if root.exists():
        shutil.rmtree(root)
    t = time.perf_counter()
    if args.source == "portraits":
        testdata = testdata_dir(args.testdata)
        if testdata is None:
            sys.exit("bench_data: shared test data not found; pass --testdata DIR or use --source synth")
        info = build_portraits(root, testdata, args.images)
    else:
        info = build_synth(root, args.images, args.size)
    info["build_s"] = time.perf_counter() - t
    marker.write_text(json.dumps({"want": want, "info": info}, indent=2) + "\n")
    return root, info, None if args.workdir else base


# ------------------------------------------------------------------------------------------ timing


def cases(root: Path) -> dict[str, tuple[DataConfig, CopyPasteConfig | None]]:
    base = dict(root=str(root), workers=0)
    return {
        "default": (DataConfig(**base), None),
        "no-composition": (DataConfig(**base, composition=False), None),
        "obfuscation blur": (DataConfig(**base, image_dir="original_image", obfuscation="blur"), None),
        "copy-paste": (DataConfig(**base), CopyPasteConfig(enabled=True)),
    }


def time_samples(ds, indices: list[tuple[int, int]]) -> float:
    """Seconds for ``ds[i]`` over (epoch, index) pairs."""
    t = time.perf_counter()
    for epoch, index in indices:
        ds.epoch = epoch
        ds[index]
    return time.perf_counter() - t


class _FixedItems(torch.utils.data.Dataset):
    """The same item ``n`` times: a DataLoader over it times only collating and handing batches over."""

    def __init__(self, item: dict, n: int) -> None:
        self.item, self.n = item, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        return self.item


def handover_ms(item: dict, *, batch_size: int = 8, batches: int = 40, rounds: int = 3) -> float:
    """ms per sample to pass ``item`` through a one-worker DataLoader (collate into shared memory in the worker,
    queue, unpack in this process), best of ``rounds``."""
    best = float("inf")
    for _ in range(rounds):
        loader = torch.utils.data.DataLoader(
            _FixedItems(item, batch_size * (batches + 1)), batch_size=batch_size, num_workers=1, prefetch_factor=4
        )
        batches_iter = iter(loader)
        next(batches_iter)  # worker start-up
        t = time.perf_counter()
        count = sum(batch["image"].shape[0] for batch in batches_iter)
        best = min(best, (time.perf_counter() - t) / count * 1000.0)
    return best


def stage_profile(ds, indices: list[tuple[int, int]], which: str) -> dict[str, float]:
    """Mean ms per sample of each stage of the default recipe, through the same functions the pipeline calls."""
    from time import perf_counter as now

    from p3m.train.fg_cache import load_or_estimate

    cfg = ds.cfg
    stages: dict[str, float] = {}

    def add(name: str, t0: float) -> float:
        t1 = now()
        stages[name] = stages.get(name, 0.0) + (t1 - t0) * 1000.0
        return t1

    for epoch, index in indices:
        rng = tdata.sample_rng(ds.seed, epoch, index)
        sample = ds.samples[index]
        shipped = ds.use_shipped_fg and sample.fg is not None and sample.bg is not None  # as in ds.load
        t = now()
        if which == "before":
            image = read_image(ds.images[index])
            alpha = read_mask(sample.mask)
            t = add("decode image + alpha", t)
            if shipped:
                fg, bg = read_image(sample.fg), read_image(sample.bg)
            else:
                fg, bg = ref.ref_load_or_estimate(image, alpha, ds.cache_dir, ds.image_folder, sample.stem)
            t = add("fg/bg load", t)
            trimap = ref.ref_random_trimap(alpha, rng, cfg.trimap_kernel[0], cfg.trimap_kernel[1])
            y0, x0, ch, cw = ref.ref_choose_crop(
                trimap, cfg.crop_sizes, cfg.resize, rng, policy=cfg.crop_policy, unknown_prob=cfg.unknown_prob
            )
            t = add("trimap + crop choice", t)
            flip = rng.random() < cfg.flip_prob
            out = {}
            for name, array in {"image": image, "alpha": alpha, "trimap": trimap, "fg": fg, "bg": bg}.items():
                crop = array[y0 : y0 + ch, x0 : x0 + cw]
                if flip:
                    crop = crop[:, ::-1]
                out[name] = cv2.resize(
                    np.ascontiguousarray(crop), (cfg.resize, cfg.resize), interpolation=cv2.INTER_LINEAR
                )
            out["trimap"] = ref.ref_requantize_trimap(out["trimap"])
            t = add("crop/flip/resize", t)
            [ref.ref_normalize(out[k]) for k in ("image", "fg", "bg")]
            torch.from_numpy(out["alpha"].astype(np.float32) / 255.0)
            torch.from_numpy(out["trimap"].astype(np.float32))
            add("tensor conversion", t)
        else:  # the steps of P3MTrainDataset.load + augment_sample + to_tensors, one by one
            image = read_image(ds.images[index])
            alpha = read_mask(sample.mask)
            t = add("decode image + alpha", t)
            if shipped:
                fg, bg = read_image(sample.fg), read_image(sample.bg)
            else:
                fg, bg = load_or_estimate(image, alpha, ds.cache_dir, ds.image_folder, sample.stem)
            t = add("fg/bg load", t)
            k = random_kernel_size(rng, cfg.trimap_kernel[0], cfg.trimap_kernel[1])
            built: list[np.ndarray] = []

            def full_trimap(built=built, alpha=alpha, k=k) -> np.ndarray:  # bound now: called within this pass
                if not built:
                    built.append(trimap_from_alpha(alpha, k))
                return built[0]

            y0, x0, ch, cw = tdata._crop_window(
                alpha.shape[:2],
                full_trimap,
                cfg.crop_sizes,
                cfg.resize,
                rng,
                policy=cfg.crop_policy,
                unknown_prob=cfg.unknown_prob,
            )
            trimap = built[0][y0 : y0 + ch, x0 : x0 + cw] if built else trimap_crop(alpha, k, y0, x0, ch, cw)
            t = add("trimap + crop choice", t)
            flip = rng.random() < cfg.flip_prob
            out = tdata.crop_resize(
                {"image": image, "alpha": alpha, "fg": fg, "bg": bg}, (y0, x0, ch, cw), flip, cfg.resize
            )
            out["trimap"] = tdata.requantize_trimap(
                tdata.crop_resize({"trimap": trimap}, (0, 0, ch, cw), flip, cfg.resize)["trimap"]
            )
            t = add("crop/flip/resize", t)
            tdata.to_tensors(out)
            add("tensor conversion", t)
    return {name: total / len(indices) for name, total in stages.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("portraits", "synth"), default="portraits")
    parser.add_argument("--testdata", help="test data folder (with portraits/); default $P3M_TESTDATA")
    parser.add_argument("--images", type=int, default=12, help="training images (default 12)")
    parser.add_argument("--size", type=synth_size, default=(1080, 1440), help="HxW for --source synth")
    parser.add_argument("--samples", type=int, default=48, help="samples per case and round (default 48)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds, best taken (default 3)")
    parser.add_argument("--cases", default="all", help="comma-separated case names (default all)")
    parser.add_argument("--no-before", action="store_true", help="time only the current pipeline")
    parser.add_argument("--target", type=float, default=300.0, help="samples/s to size the worker count for")
    parser.add_argument("--workdir", help="keep the built dataset here and reuse it on the next run")
    parser.add_argument("--json", help="write the results as JSON here")
    args = parser.parse_args()

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    root, info, temp = build_dataset(args)
    try:
        report = run(args, root, info)
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(args, root: Path, info: dict) -> dict:
    import PIL
    from PIL import features

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    env = {
        "machine": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "pillow_libjpeg_turbo": features.version("libjpeg_turbo"),
        "pillow_zlib": features.version("zlib"),
        "torch_threads": torch.get_num_threads(),
        "opencv_threads": cv2.getNumThreads(),
        "loadavg_start": load,
    }
    print(
        f"machine: {env['machine']}, {env['cpus']} logical CPUs, load average {load:.2f}; one thread "
        f"(torch {env['torch']}, OpenCV {env['opencv']})"
    )
    print(
        f"dataset: {args.source}, {len(info['images'])} images ({', '.join(sorted(set(info['images'])))})"
        + (
            f", fg/bg estimate {info['fg_estimate_s_per_image']:.1f} s/image once"
            if info.get("fg_estimate_s_per_image")
            else ""
        )
    )
    selected = cases(root)
    if args.cases != "all":
        names = [c.strip() for c in args.cases.split(",")]
        unknown = set(names) - set(selected)
        if unknown:
            sys.exit(f"bench_data: unknown case(s) {', '.join(sorted(unknown))}; known: {', '.join(selected)}")
        selected = {n: selected[n] for n in names}
    pipelines = (
        {"after": tdata.P3MTrainDataset}
        if args.no_before
        else {"before": ref.ReferenceTrainDataset, "after": tdata.P3MTrainDataset}
    )
    seed = 10007
    results: dict[str, dict] = {}
    for name, (cfg, cp) in selected.items():
        datasets = {p: cls(root, cfg, copy_paste=cp, seed=seed) for p, cls in pipelines.items()}
        n = len(datasets["after"])
        for ds in datasets.values():  # warm-up: imports, numba, allocator
            ds.epoch = 99
            ds[0], ds[1 % n]
        identical = None
        item = datasets["after"][0]
        handover = {"after": sum(v.nbytes for v in item.values())}  # bytes of one item, as the worker hands it over
        if "before" in datasets:  # the two pipelines must give the same tensors (one pass over the images)
            identical = True
            handover["before"] = sum(v.nbytes for v in datasets["before"][0].values())
            for index in range(n):
                datasets["before"].epoch = datasets["after"].epoch = 7
                a, b = datasets["before"][index], tdata.prepare_batch(datasets["after"][index], "cpu")
                identical &= list(a) == list(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)
        times: dict[str, list[float]] = {p: [] for p in pipelines}
        for r in range(args.rounds):
            indices = [(r * 1000 + i // n, i % n) for i in range(args.samples)]
            for p, ds in datasets.items():
                times[p].append(time_samples(ds, indices))
        row = {"bytes_per_sample": handover}
        for p, ts in times.items():
            row[p] = {
                "samples_per_s": args.samples / min(ts),
                "ms_per_sample": min(ts) / args.samples * 1000.0,
                "rounds_ms_per_sample": [t / args.samples * 1000.0 for t in ts],
            }
        if "before" in row:
            row["speedup"] = row["after"]["samples_per_s"] / row["before"]["samples_per_s"]
            row["identical_outputs"] = bool(identical)
        row["workers_for_target"] = int(np.ceil(args.target / row["after"]["samples_per_s"]))
        if "before" in row:
            row["workers_for_target_before"] = int(np.ceil(args.target / row["before"]["samples_per_s"]))
        results[name] = row
        line = f"  {name:18s} after {row['after']['samples_per_s']:6.1f}/s ({row['after']['ms_per_sample']:6.1f} ms)"
        if "before" in pipelines:
            line = (
                f"  {name:18s} before {row['before']['samples_per_s']:6.1f}/s "
                f"({row['before']['ms_per_sample']:6.1f} ms)  "
                + line.strip()[len(name) :].strip()
                + f"  {row['speedup']:.2f}x"
                + ("" if identical else "  OUTPUTS DIFFER")
            )
        print(line, flush=True)

    stages, handover = {}, {}
    if "default" in selected:
        cfg, _ = selected["default"]
        items = {"after": tdata.P3MTrainDataset(root, cfg, seed=seed)[0]}
        if "before" in pipelines:
            items["before"] = ref.ReferenceTrainDataset(root, cfg, seed=seed)[0]
        for p in pipelines:
            handover[p] = {
                "bytes_per_sample": sum(v.nbytes for v in items[p].values()),
                "ms_per_sample": handover_ms(items[p]),
            }
        ds = tdata.P3MTrainDataset(root, cfg, seed=seed)
        n = len(ds)
        indices = [(2000 + i // n, i % n) for i in range(args.samples)]
        for p in pipelines:
            stage_profile(ds, indices[:2], p)  # warm-up
            stages[p] = stage_profile(ds, indices, p)

    print(
        f"\none worker (one process, one thread), best of {args.rounds} rounds of {args.samples} samples, "
        f"{cfg.resize}x{cfg.resize} from crops {cfg.crop_sizes}:"
    )
    head = f"{'case':18s} " + " ".join(f"{p + ' samples/s':>18s}" for p in pipelines)
    head += f" {'speedup':>8s} {'same output':>11s}" if "before" in pipelines else ""
    print(head + f" {'workers for ' + format(args.target, 'g') + '/s':>18s}")
    for name, row in results.items():
        line = f"{name:18s} " + " ".join(
            f"{row[p]['samples_per_s']:8.1f} ({row[p]['ms_per_sample']:5.1f} ms)" for p in pipelines
        )
        if "speedup" in row:
            line += f" {row['speedup']:7.2f}x {'yes' if row['identical_outputs'] else 'NO':>11s}"
        print(line + f" {row['workers_for_target']:18d}")
    print(
        "bytes handed over per sample (worker -> main process -> device): "
        + "; ".join(
            f"{name} "
            + ", ".join(
                f"{p} {row['bytes_per_sample'][p] / 1e6:.2f} MB" for p in pipelines if p in row["bytes_per_sample"]
            )
            for name, row in results.items()
        )
    )
    if stages:
        print(f"\nstages of one default-recipe sample, mean ms over {args.samples} samples:")
        print(f"{'stage':26s} " + " ".join(f"{p:>9s}" for p in pipelines))
        for stage in stages["after"]:
            cells = [f"{stages[p].get(stage, float('nan')):9.1f}" for p in pipelines]
            print(f"{stage:26s} " + " ".join(cells))
        print(f"{'total':26s} " + " ".join(f"{sum(stages[p].values()):9.1f}" for p in pipelines))
    if handover:
        print(
            "\nhanding one default-recipe sample over (one-worker DataLoader, batch 8: collate into shared memory, "
            "queue, unpack): "
            + ", ".join(
                f"{p} {h['ms_per_sample']:.2f} ms for {h['bytes_per_sample'] / 1e6:.2f} MB" for p, h in handover.items()
            )
        )
    env["loadavg_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at the end: {env['loadavg_end']:.2f}")
    return {
        "env": env,
        "dataset": {"source": args.source, **info},
        "samples": args.samples,
        "rounds": args.rounds,
        "target_samples_per_s": args.target,
        "cases": results,
        "stages_ms": stages,
        "handover": handover,
    }


if __name__ == "__main__":
    sys.exit(main())
