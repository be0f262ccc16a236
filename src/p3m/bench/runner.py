"""The PPT benchmark: data -> train (or load) -> predict both test sets -> evaluate both protocols -> report.

Output folder::

    data/                                  the synthetic dataset (only when the config asks for one)
    train/<setting>/<method>/              trainer output (train_log.jsonl, last.safetensors, ...)
    predictions/<setting>/<method>/<split>/<stem>.png   8-bit alpha, floor(255 a) as the authors' test script saves it
    metrics/<setting>/<method>/<split>.json             per-image and mean metrics, both protocols
    report/                                results.json, results.csv, report.md, report.html, figures

Trimap-based methods do not train: their setting folder is ``trimap-based``. A stage is finished when
its output exists together with a done marker (``.done.json`` in the stage folder, or the ``hash`` field
of a metrics file) holding the hash of the stage's configuration, which includes the hashes of the
stages it depends on. Re-running skips finished stages; ``force=True`` redoes everything. A training
stage that was interrupted resumes from the trainer's ``resume.pt`` when its configuration is unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from p3m.atomic import write_bytes_atomic
from p3m.bench.compare import compare_p3m_basic
from p3m.bench.config import BenchmarkConfig, MethodConfig, SettingConfig, load_benchmark_config, slug
from p3m.bench.methods import TRIMAP_BASED, ClassicalMethod, Method, NetworkMethod
from p3m.bench.report import Section, column_label, write_report
from p3m.data.p3m10k import P3M10k, Sample, open_dataset
from p3m.data.synth import SynthConfig, generate_dataset
from p3m.errors import BenchmarkConfigError, DatasetError, MethodError, P3MError
from p3m.io import read_image, read_mask, write_image
from p3m.metrics.evaluate import evaluate_arrays
from p3m.train.config import config_from_dict, config_to_dict
from p3m.train.resume import RESUME_FILE
from p3m.train.run_folder import LAST_FILE, LOG_FILE
from p3m.train.trainer import train

__all__ = [
    "DONE_MARKER",
    "BenchmarkResult",
    "run_benchmark",
]

DONE_MARKER = ".done.json"
STARTED_MARKER = ".started.json"
TRIMAP_SETTING = "trimap-based"
# the version of how predictions are timed, part of the prediction stage's hash: runs timed the old way (the first
# call, with its one-time compilation, counted) are re-timed
TIMING = "warm-up call untimed, every method"


@dataclass
class BenchmarkResult:
    """What `run_benchmark` produced."""

    out_dir: Path
    results: list[dict[str, Any]]  # one row per (method, setting, test split): metric means and timings
    report_html: Path
    report_markdown: Path
    table_markdown: str  # the main trimap-free table (P3M protocol), also in report.md
    comparison: dict[str, Any] = field(default_factory=dict)  # P3M-Net vs BASIC on SAD, with its statement
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------- helpers


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode())


def _done(folder: Path, stage_hash: str) -> dict | None:
    marker = _read_json(folder / DONE_MARKER)
    return marker if marker and marker.get("hash") == stage_hash else None


def _deep_merge(base: Mapping, extra: Mapping) -> dict:
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_log(path: Path) -> list[dict] | None:
    """The records of a trainer's JSONL log (a torn line is left out); None when there is no log."""
    if not path.is_file():
        return None
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


# ------------------------------------------------------------------------------------------- stages


class _Runner:
    def __init__(
        self, cfg: BenchmarkConfig, out: Path, force: bool, progress: bool, log: Callable[[str], None]
    ) -> None:
        self.cfg, self.out, self.force, self.progress, self.log = cfg, out, force, progress, log

    # data ------------------------------------------------------------------------------------------
    def dataset(self) -> P3M10k:
        synth = self.cfg.dataset.synth
        root = Path(self.cfg.dataset.root).expanduser() if self.cfg.dataset.root else self.out / "data"
        if synth:
            try:
                synth_cfg = SynthConfig(**synth)
            except (TypeError, ValueError) as exc:
                raise BenchmarkConfigError(f"dataset.synth: {exc}") from None
            stage_hash = _hash({"synth": synth})
            if self.force or not _done(root, stage_hash):
                self.log(f"[data] generating the synthetic dataset in {root}")
                generate_dataset(root, synth_cfg, progress=self.progress, overwrite=self.force)
                _write_json(root / DONE_MARKER, {"stage": "data", "hash": stage_hash, "finished": time.time()})
            else:
                self.log(f"[data] skip: synthetic dataset already in {root}")
        needs_train = any(m.type not in TRIMAP_BASED and not m.weights for m in self.cfg.methods)
        require = list(self.cfg.test_splits) + (["train"] if needs_train else [])
        try:
            return open_dataset(root, validate=False, require=require)
        except DatasetError as exc:
            hint = "" if synth else " (the benchmark's dataset.root; override with --set dataset.root=PATH)"
            raise DatasetError(f"{exc}{hint}") from None

    # train -----------------------------------------------------------------------------------------
    def train_config(self, method: MethodConfig, setting: SettingConfig, root: Path) -> dict:
        cfg = _deep_merge(self.cfg.train, method.train)
        cfg.setdefault("model", {})
        cfg["model"]["arch"] = method.type
        if method.width is not None:
            cfg["model"]["width"] = int(method.width)
        cfg.setdefault("data", {})
        cfg["data"]["root"] = str(root)
        cfg["data"]["obfuscation"] = setting.obfuscation
        cfg.setdefault("copy_paste", {})
        cfg["copy_paste"]["enabled"] = setting.copy_paste or bool(cfg["copy_paste"].get("enabled", False))
        cfg["name"] = f"{self.cfg.name}-{slug(setting.name)}-{slug(method.name)}"
        cfg.pop("register_as", None)
        return cfg

    def train(self, method: MethodConfig, setting: SettingConfig, root: Path) -> tuple[Path, dict]:
        raw = self.train_config(method, setting, root)
        try:
            resolved = config_to_dict(config_from_dict(raw))
        except P3MError as exc:
            raise BenchmarkConfigError(f"method {method.name!r}, setting {setting.name!r}: {exc}") from None
        stage_hash = _hash({"train": resolved})
        folder = self.out / "train" / slug(setting.name) / slug(method.name)
        marker = None if self.force else _done(folder, stage_hash)
        if marker and (folder / LAST_FILE).is_file():
            self.log(f"[train] skip: {method.name} ({setting.name}) already trained in {folder}")
            return folder / LAST_FILE, marker
        started = _read_json(folder / STARTED_MARKER)
        resume = (
            not self.force
            and started is not None
            and started.get("hash") == stage_hash
            and (folder / RESUME_FILE).is_file()
        )
        if folder.exists() and not resume:  # the stage's own folder, of another configuration or forced
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(folder / STARTED_MARKER, {"hash": stage_hash})
        steps = resolved["train"]["max_steps"]
        self.log(
            f"[train] {method.name} ({setting.name}): {resolved['model']['arch']} width "
            f"{resolved['model']['width']}, {steps} steps{' (resuming)' if resume else ''} -> {folder}"
        )
        start = time.perf_counter()
        result = train(resolved, out_dir=folder, resume=resume, progress=self.progress)
        seconds = time.perf_counter() - start
        if result.interrupted or result.last_checkpoint is None:
            raise P3MError(f"training of {method.name} ({setting.name}) was interrupted; re-run to resume")
        marker = {
            "stage": "train",
            "hash": stage_hash,
            "seconds": seconds,
            "steps": result.step,
            "resumed": resume,
            "finished": time.time(),
        }
        _write_json(folder / DONE_MARKER, marker)
        return result.last_checkpoint, marker

    # methods ---------------------------------------------------------------------------------------
    def build(self, method: MethodConfig, weights: Path | None) -> Method:
        if method.type in TRIMAP_BASED:
            return ClassicalMethod(method.name, method.type, max_side=method.max_side)
        assert weights is not None  # networks are trained or loaded before they are built
        inf = self.cfg.inference
        arch = method.type if method.weights else None
        kwargs = method.arch_kwargs
        if method.weights and kwargs is None and method.width is not None:
            kwargs = {"width": int(method.width)}
        try:
            return NetworkMethod.from_checkpoint(
                method.name,
                weights,
                arch=arch,
                arch_kwargs=kwargs,
                strategy=inf.strategy,
                ratio=inf.ratio,
                resize_mode=inf.resize_mode,
                max_size=inf.max_size,
                device=inf.device,
                precision=inf.precision,
            )
        except MethodError:
            raise
        except P3MError as exc:
            raise P3MError(f"method {method.name!r}: {exc}") from None

    # predict ---------------------------------------------------------------------------------------
    def predict(
        self,
        method: MethodConfig,
        net: Callable[[], Method],
        setting: str,
        split: str,
        samples: list[Sample],
        upstream: str,
    ) -> tuple[Path, dict]:
        limit = method.max_images or self.cfg.inference.max_images
        samples = samples[: int(limit)] if limit else samples
        stems = [s.stem for s in samples]
        stage_hash = _hash(
            {
                "upstream": upstream,
                "inference": dataclasses.asdict(self.cfg.inference),
                "stems": stems,
                "max_side": method.max_side if method.type in TRIMAP_BASED else None,
                "timing": TIMING,
            }
        )
        folder = self.out / "predictions" / slug(setting) / slug(method.name) / split
        marker = None if self.force else _done(folder, stage_hash)
        if marker and all((folder / f"{stem}.png").is_file() for stem in stems):
            self.log(f"[predict] skip: {method.name} ({setting}) on {split}, {len(stems)} images")
            return folder, marker
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        model = net()
        self.log(f"[predict] {method.name} ({setting}) on {split}: {len(samples)} images")
        seconds, done, failed = self._predict_all(model, method, split, samples, folder)
        marker = {
            "stage": "predict",
            "hash": stage_hash,
            "images": done,
            "failed": failed,
            "seconds_per_image": seconds / max(done, 1),
            "params": model.info.get("params", 0),
            "finished": time.time(),
        }
        _write_json(folder / DONE_MARKER, marker)
        return folder, marker

    def _predict_all(
        self, model: Method, method: MethodConfig, split: str, samples: list[Sample], folder: Path
    ) -> tuple[float, int, list[str]]:
        """Predict and write every sample: (seconds spent predicting, images written, stems that failed)."""
        seconds, done, failed = 0.0, 0, []
        if samples:
            # one untimed call first: the speed columns exclude one-time work (numba compiles the classical solvers,
            # oneDNN builds its kernels for each input shape); the report says so
            with contextlib.suppress(P3MError, OSError, ValueError):
                sample = samples[0]
                trimap = read_mask(sample.trimap) if model.needs_trimap and sample.trimap is not None else None
                if trimap is not None or not model.needs_trimap:
                    model.predict(read_image(sample.image), trimap)
        for sample in tqdm(samples, desc=f"{method.name} {split}", unit="img", leave=False, disable=not self.progress):
            try:
                image = read_image(sample.image)
                trimap = read_mask(sample.trimap) if model.needs_trimap and sample.trimap is not None else None
                if model.needs_trimap and trimap is None:
                    raise MethodError(f"{sample.image}: no test trimap for {method.name}")
                start = time.perf_counter()
                alpha = model.predict(image, trimap)
                seconds += time.perf_counter() - start
            except P3MError as exc:
                self.log(f"[predict] skipping {sample.stem}: {exc}")
                failed.append(sample.stem)
                continue
            # dataset mode writes floor(255 a), a plain integer cast, as the authors' test script (core/test.py) does
            write_image(folder / f"{sample.stem}.png", np.floor(np.clip(alpha, 0, 1) * 255).astype(np.uint8))
            done += 1
        return seconds, done, failed

    # evaluate --------------------------------------------------------------------------------------
    def evaluate(
        self, method: MethodConfig, setting: str, split: str, samples: list[Sample], pred_dir: Path, upstream: str
    ) -> dict:
        path = self.out / "metrics" / slug(setting) / slug(method.name) / f"{split}.json"
        stage_hash = _hash({"upstream": upstream, "evaluation": dataclasses.asdict(self.cfg.evaluation)})
        existing = None if self.force else _read_json(path)
        if existing and existing.get("hash") == stage_hash:
            self.log(f"[evaluate] skip: {method.name} ({setting}) on {split}")
            return existing
        per_image: dict[str, dict[str, float]] = {}
        for sample in samples:
            pred_path = pred_dir / f"{sample.stem}.png"
            if not pred_path.is_file():
                continue
            try:
                pred, gt = read_mask(pred_path), read_mask(sample.mask)
                trimap = read_mask(sample.trimap) if sample.trimap is not None else None
                # privacy metrics are defined on P3M-500-P only (the IJCV code's TEST_PRIVACY)
                face = read_mask(sample.facemask) if sample.facemask is not None and split == "P3M-500-P" else None
                protocol = "both" if trimap is not None else "p3m"
                metrics = evaluate_arrays(pred, gt, trimap, face, protocol, fast=self.cfg.evaluation.fast)
            except (P3MError, ValueError) as exc:
                self.log(f"[evaluate] skipping {sample.stem}: {exc}")
                continue
            per_image[sample.stem] = {k: float(v) for k, v in metrics.items()}
        keys = sorted({k for m in per_image.values() for k in m})
        mean = {k: float(np.mean([m[k] for m in per_image.values() if k in m])) for k in keys}
        counts = {k: sum(1 for m in per_image.values() if k in m) for k in keys}
        data = {
            "hash": stage_hash,
            "method": method.name,
            "setting": setting,
            "split": split,
            "images": len(per_image),
            "mean": mean,
            "counts": counts,
            "per_image": per_image,
        }
        _write_json(path, data)
        self.log(
            f"[evaluate] {method.name} ({setting}) on {split}: SAD {mean.get('sad', float('nan')):.3f} "
            f"over {len(per_image)} images"
        )
        return data

    # one method ------------------------------------------------------------------------------------
    def upstream(
        self, method: MethodConfig, setting: SettingConfig | None, root: Path
    ) -> tuple[Path | None, dict, str]:
        """(weights, training marker, upstream hash) of a method in a setting: trained here, loaded, or none."""
        if method.type in TRIMAP_BASED:
            return None, {}, _hash({"method": method.type, "max_side": method.max_side})
        if method.weights:
            weights = Path(method.weights).expanduser()
            if not weights.is_file():
                raise BenchmarkConfigError(f"method {method.name!r}: weights file not found: {weights}")
            stamp = {
                "weights": str(weights.resolve()),
                "mtime": weights.stat().st_mtime,
                "arch": method.type,
                "width": method.width,
            }
            return weights, {}, _hash(stamp)
        assert setting is not None  # trained methods run once per setting
        weights, marker = self.train(method, setting, root)
        return weights, marker, marker["hash"]

    def run_method(
        self, dataset: P3M10k, method: MethodConfig, setting: SettingConfig | None, pred_dirs: dict
    ) -> list[dict[str, Any]]:
        """Train (or load), predict and evaluate one method in one setting: one result row per test split."""
        setting_name = setting.name if setting else TRIMAP_SETTING
        weights, train_marker, upstream = self.upstream(method, setting, dataset.root)
        built: list[Method] = []

        def net() -> Method:
            if not built:
                built.append(self.build(method, weights))
            return built[0]

        rows = []
        for split in self.cfg.test_splits:
            samples = dataset.split(split)
            pred_dir, pmarker = self.predict(method, net, setting_name, split, samples, upstream)
            pred_dirs[(method.name, setting_name, split)] = pred_dir
            # the whole marker (with its finish time): re-written predictions are always re-scored
            metrics = self.evaluate(method, setting_name, split, samples, pred_dir, _hash(pmarker))
            rows.append(_result_row(method, setting, split, metrics, pmarker, train_marker))
        return rows


def _result_row(
    method: MethodConfig, setting: SettingConfig | None, split: str, metrics: dict, pmarker: dict, train_marker: dict
) -> dict[str, Any]:
    return {
        "method": method.name,
        "type": method.type,
        "kind": "trimap-based" if method.type in TRIMAP_BASED else "trimap-free",
        "setting": setting.name if setting else None,
        "setting_label": setting.label if setting else None,
        "obfuscation": setting.obfuscation if setting else None,
        "split": split,
        "column": column_label(setting.label if setting else None, split),
        "images": metrics["images"],
        "failed": list(pmarker.get("failed", [])),
        "metrics": metrics["mean"],
        # for the paired comparison of methods on the same images (p3m.bench.compare)
        "sad_per_image": {stem: m["sad"] for stem, m in metrics.get("per_image", {}).items() if "sad" in m},
        "counts": metrics.get("counts", {}),
        "params": pmarker.get("params", 0),
        "seconds_per_image": pmarker.get("seconds_per_image"),
        "train_seconds": train_marker.get("seconds"),
        "train_steps": train_marker.get("steps"),
        "width": method.width,
    }


# ------------------------------------------------------------------------------------------- public


def run_benchmark(
    config: BenchmarkConfig | Mapping[str, Any] | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    overrides: list[str] | tuple[str, ...] = (),
    sections: list[Section] | tuple[Section, ...] = (),
) -> BenchmarkResult:
    """Run the whole benchmark described by `config` (a `BenchmarkConfig`, a mapping, a YAML path or a built-in
    recipe name) into `out_dir`; see the module doc.

    `force` redoes every stage; `overrides` are `section.key=value` strings (YAML values) applied to the config;
    `sections` are extra parts of the report, shown before the measured tables (`p3m demo`'s real photos).
    """
    start = time.perf_counter()
    cfg = load_benchmark_config(config, overrides)
    out = Path(out_dir).expanduser().resolve()
    runner = _Runner(cfg, out, force, progress, log)
    dataset = runner.dataset()  # before creating `out`: a missing dataset leaves nothing behind
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    pred_dirs: dict[tuple[str, str, str], Path] = {}
    # trained methods once per setting, then the trimap-based ones once
    jobs: list[tuple[MethodConfig, SettingConfig | None]] = [
        (m, s) for s in cfg.settings for m in cfg.methods if m.type not in TRIMAP_BASED
    ]
    jobs += [(m, None) for m in cfg.methods if m.type in TRIMAP_BASED]
    curves: dict[str, list[dict]] = {}
    for method, setting in jobs:
        results += runner.run_method(dataset, method, setting, pred_dirs)
        if setting is not None and not method.weights:
            records = _read_log(out / "train" / slug(setting.name) / slug(method.name) / LOG_FILE)
            if records is not None:
                curves[f"{method.name} ({setting.label})"] = records

    comparison = compare_p3m_basic(results, cfg)
    log(f"[compare] {comparison['statement']}")
    paths = write_report(
        out / "report",
        cfg,
        results,
        comparison,
        curves=curves,
        dataset=dataset,
        pred_dirs=pred_dirs,
        seconds=time.perf_counter() - start,
        sections=sections,
    )
    log(f"[report] {paths['html']}")
    return BenchmarkResult(
        out_dir=out,
        results=results,
        report_html=paths["html"],
        report_markdown=paths["markdown"],
        table_markdown=paths["table_markdown"],
        comparison=comparison,
        seconds=time.perf_counter() - start,
    )
