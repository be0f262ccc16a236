"""Resumable P3M-Net trainer: single process or DDP under ``torchrun`` (reference §8).

Output folder layout::

    config.yaml                     the resolved config of the (latest) run
    resume.pt                       model + optimizer + scaler + step + RNG states (torch.load weights_only=True)
    last.safetensors / .json        latest weights for inference (p3m.models.load_model)
    best_<metric>_<split>.safetensors   best weights per validation metric (lower is better)
    train_log.jsonl                 one JSON record per log interval and per validation
    curves.png                      loss and validation curves
    tb/                             TensorBoard scalars (only when the tensorboard package is installed)

Every file is written through a temp file in the same folder and ``os.replace``; ``resume.pt`` is also
fsync'ed, so a SIGKILL at any moment loses at most the steps since the last save. SIGINT (Ctrl-C) finishes
the current step, saves and returns with ``interrupted=True``; a second Ctrl-C aborts at once.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from p3m.atomic import write_bytes_atomic, write_with
from p3m.errors import P3MError
from p3m.infer.preprocess import normalize
from p3m.infer.runtime import autocast_dtype, resolve_device
from p3m.train.config import TrainConfig, config_from_dict, config_to_dict, load_config

__all__ = ["LOG_FILE", "RESUME_FILE", "TrainResult", "lr_at", "predict_resize", "train", "validate"]

RESUME_FILE = "resume.pt"
LAST_FILE = "last.safetensors"
LOG_FILE = "train_log.jsonl"
PLOT_FILE = "curves.png"
UNUSED_HEADS = ("resnet.fc", "encoder.head")  # backbone classifier heads, kept only for state-dict parity


@dataclass
class TrainResult:
    """What `train` produced."""

    out_dir: Path
    last_checkpoint: Path | None  # safetensors weights for inference
    best_checkpoints: dict[str, Path] = field(default_factory=dict)  # "sad_P3M-500-P" -> path
    history: list[dict[str, Any]] = field(default_factory=list)  # the JSONL records
    step: int = 0
    epoch: int = 0
    interrupted: bool = False


# ---------------------------------------------------------------------------------------- helpers


def _as_config(config: TrainConfig | dict | str | os.PathLike) -> TrainConfig:
    if isinstance(config, TrainConfig):
        config.validate()
        return config
    if isinstance(config, dict):
        return config_from_dict(config)
    return load_config(config)


def lr_at(step: int, total_steps: int, cfg) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up, then constant or cosine."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        span = max(1, total_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr


def _rng_state() -> dict[str, Any]:
    """RNG states as tensors / plain lists, loadable with torch.load(weights_only=True)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class _Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_pref: str) -> _Dist:
    """Join the process group when launched by torchrun (RANK / WORLD_SIZE / LOCAL_RANK set)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    info = _Dist(world, int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = torch.cuda.is_available() and device_pref != "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return info


# ---------------------------------------------------------------------------------------- validation


def predict_resize(
    model: torch.nn.Module,
    image_u8: np.ndarray,
    *,
    scale: float,
    max_side: int,
    device: torch.device,
    channels_last: bool = False,
) -> np.ndarray:
    """Whole-image RESIZE inference (reference §9.2-§9.3, OpenCV bilinear): fused alpha HxW float in [0, 1].

    Each side is scaled by ``scale``, floored to a multiple of 32 (at least 32) and capped at ``max_side``.
    """
    import cv2

    h, w = image_u8.shape[:2]

    def side(n: int) -> int:
        s = int(n * scale)
        return max(32, min(max_side - max_side % 32, s - s % 32))

    hs, ws = side(h), side(w)
    x = torch.from_numpy(normalize(cv2.resize(image_u8, (ws, hs), interpolation=cv2.INTER_LINEAR)))[None].to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        fused = model(x)[2][0, 0].float().cpu().numpy()
    return np.clip(cv2.resize(fused, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


def _score(
    pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None, facemask: np.ndarray | None, fast: bool
) -> dict[str, float]:
    from p3m.evaluation import evaluate_arrays

    result = evaluate_arrays(pred, gt, trimap=trimap, facemask=facemask, protocol="p3m", fast=fast)
    return {k: float(v) for k, v in dict(result).items() if isinstance(v, (int, float, np.floating))}


def validate(
    model: torch.nn.Module, dataset, cfg: TrainConfig, device: torch.device, *, progress: bool = False
) -> dict[str, dict[str, float]]:
    """Mean metrics per validation split present in ``dataset`` (a `P3M10k`)."""
    from tqdm import tqdm

    from p3m.io import read_image, read_mask

    was_training = model.training
    model.eval()
    results: dict[str, dict[str, float]] = {}
    try:
        for split in cfg.val.splits:
            if split not in dataset.splits:
                continue
            samples = dataset.split(split)[: cfg.val.max_images] if cfg.val.max_images else dataset.split(split)
            if not samples:
                continue
            rows = []
            for sample in tqdm(samples, desc=f"val {split}", leave=False, disable=not progress, unit="img"):
                try:
                    image, gt = read_image(sample.image), read_mask(sample.mask).astype(np.float64) / 255.0
                    trimap = read_mask(sample.trimap) if sample.trimap is not None else None
                    facemask = read_mask(sample.facemask) > 100 if sample.facemask is not None else None
                except P3MError as exc:
                    print(f"p3m train: skipping validation image: {exc}", file=sys.stderr)
                    continue
                if split == "P3M-500-NP":
                    facemask = None  # privacy metrics are defined on P3M-500-P only (§10.2)
                pred = predict_resize(
                    model,
                    image,
                    scale=cfg.val.scale,
                    max_side=cfg.val.max_side,
                    device=device,
                    channels_last=cfg.train.channels_last,
                )
                rows.append(_score(pred, gt, trimap, facemask, cfg.val.fast))
            keys = sorted({k for r in rows for k in r})
            results[split] = {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}
            results[split]["images"] = float(len(rows))
    finally:
        model.train(was_training)
    return results


# ---------------------------------------------------------------------------------------- logging


class _Logger:
    """JSONL log, optional TensorBoard, curve plot; active on rank 0 only."""

    def __init__(self, out_dir: Path, active: bool, resume_step: int | None) -> None:
        self.path = out_dir / LOG_FILE
        self.active = active
        self.records: list[dict[str, Any]] = []
        self.tb = None
        if not active:
            return
        if resume_step is not None and self.path.is_file():
            # drop records of steps lost by a kill after the last save
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a kill
                if rec.get("step", 0) <= resume_step:
                    self.records.append(rec)
            write_bytes_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.records).encode("utf-8"))
        elif resume_step is None and self.path.is_file():
            self.path.unlink()
        try:
            from torch.utils.tensorboard import SummaryWriter  # needs the optional tensorboard package

            self.tb = SummaryWriter(str(out_dir / "tb"))
        except Exception:  # ImportError, or tensorboard present but broken
            self.tb = None

    def write(self, record: dict[str, Any]) -> None:
        if not self.active:
            return
        self.records.append(record)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
        if self.tb is not None:
            step = record.get("step", 0)
            if record.get("type") == "train":
                for k, v in record.get("loss", {}).items():
                    self.tb.add_scalar(f"loss/{k}", v, step)
                self.tb.add_scalar("lr", record.get("lr", 0.0), step)
            elif record.get("type") == "val":
                for split, metrics in record.get("metrics", {}).items():
                    for k, v in metrics.items():
                        self.tb.add_scalar(f"{split}/{k}", v, step)

    def plot(self, out_dir: Path) -> None:
        if not self.active or not self.records:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        train = [r for r in self.records if r.get("type") == "train"]
        val = [r for r in self.records if r.get("type") == "val"]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        if train:
            axes[0].plot([r["step"] for r in train], [r["loss"]["total"] for r in train], label="total")
            for key in ("global", "fusion_alpha", "composition"):
                if key in train[0]["loss"]:
                    axes[0].plot([r["step"] for r in train], [r["loss"].get(key, np.nan) for r in train], label=key)
            axes[0].set_yscale("log")
        axes[0].set_xlabel("step")
        axes[0].set_title("training loss")
        axes[0].legend()
        splits = sorted({s for r in val for s in r["metrics"]})
        for split in splits:
            pts = [(r["step"], r["metrics"][split].get("sad")) for r in val if split in r["metrics"]]
            axes[1].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"SAD {split}")
        axes[1].set_xlabel("step")
        axes[1].set_title("validation SAD (P3M protocol)")
        if splits:
            axes[1].legend()
        fig.tight_layout()
        try:
            write_with(out_dir / PLOT_FILE, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
        finally:
            plt.close(fig)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ---------------------------------------------------------------------------------------- training


class _StopFlag:
    """SIGINT handler: the first Ctrl-C asks for a clean stop after the current step, the second aborts."""

    def __init__(self) -> None:
        self.requested = False
        self.previous = None

    def __enter__(self) -> _StopFlag:
        import threading

        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\np3m train: interrupt received, saving after this step (Ctrl-C again to abort)", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def train(
    config: TrainConfig | dict | str | os.PathLike,
    *,
    out_dir: str | os.PathLike,
    resume: bool = False,
    progress: bool = True,
    overwrite: bool = False,
) -> TrainResult:
    """Train P3M-Net as configured; returns checkpoints and history. Run under torchrun for DDP.

    ``resume=True`` continues from ``out_dir/resume.pt`` (model, optimizer, scaler, step, RNG states);
    without it, an ``out_dir`` that already holds a run is refused, unless ``overwrite=True`` (then the
    previous run's files are deleted first; other files in the folder are left alone).
    """
    cfg = _as_config(config)
    out = Path(out_dir).expanduser()
    if resume and overwrite:
        raise P3MError("--resume and --overwrite exclude each other")
    info = _init_distributed(cfg.train.device)
    if overwrite and info.main and out.is_dir():
        _remove_run(out)
    if info.world > 1:
        dist.barrier()
    threads, cudnn_benchmark = torch.get_num_threads(), torch.backends.cudnn.benchmark
    try:
        return _train(cfg, out, info, resume=resume, progress=progress)
    finally:
        # train.threads and cuDNN autotuning are for training only: give the caller its settings back
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = cudnn_benchmark
        if info.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, out: Path, info: _Dist, *, resume: bool, progress: bool) -> TrainResult:
    from tqdm import tqdm

    from p3m import models
    from p3m.data.p3m10k import open_dataset
    from p3m.models.checkpoint import load_checkpoint, save_checkpoint
    from p3m.train.data import P3MTrainDataset, ResumableSampler, make_loader, prepare_batch
    from p3m.train.step import TrainStep, load_optimizer_state, make_optimizer, optimizer_state

    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = torch.device(resolve_device(cfg.train.device, local_rank=info.local_rank, fix="train.device=cpu"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed-size crops: pick the fastest convolution once
    resume_path = out / RESUME_FILE
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".*.tmp"):  # temp files of a killed save
            stale.unlink(missing_ok=True)
        if not resume and resume_path.exists():
            raise P3MError(f"{out} already holds a training run; pass --resume to continue it or choose another --out")
    state = None
    if resume and resume_path.is_file():
        state = _load_resume(resume_path)
    elif resume and info.main:
        print(f"p3m train: no {RESUME_FILE} in {out}; starting from scratch", file=sys.stderr)

    torch.manual_seed(cfg.train.seed)
    kwargs = {"width": cfg.model.width} if cfg.model.width is not None else {}
    model = models.create(cfg.model.arch, **kwargs)
    if cfg.model.backbone and state is None:
        _load_backbone(model, cfg.model.backbone)
    if cfg.model.pretrained and state is None:
        load_checkpoint(model, cfg.model.pretrained, strict=False)
    if state is not None:
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:  # torch lists every key on many lines
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise P3MError(
                f"{resume_path}: the saved model does not fit {cfg.model.arch} as configured "
                f"(model.arch or model.width changed since it was saved?): {first.rstrip(':. ')}"
            ) from None
    # classifier heads of the ImageNet backbones never reach the loss: freeze them so DDP does not wait for
    # their gradients (Adam skipped them anyway: they never had one)
    for name in UNUSED_HEADS:
        try:
            model.get_submodule(name).requires_grad_(False)
        except AttributeError:
            pass
    model.to(device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    o = cfg.optim
    trainable = [p for p in model.parameters() if p.requires_grad]
    _check_cuda_graph(cfg, device, info)
    optimizer = make_optimizer(
        trainable,
        lr=o.lr,
        betas=o.betas,
        eps=o.eps,
        weight_decay=o.weight_decay,
        fused=o.fused,
        capturable=cfg.train.cuda_graph,
        device=device,
    )
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype(cfg.train.amp, device) == torch.float16)
    step = 0
    best: dict[str, float] = {}
    if state is not None:
        try:
            load_optimizer_state(optimizer, state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            step = int(state["step"])
            best = {k: float(v) for k, v in (state.get("best") or {}).items()}
            _set_rng_state(state["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
            from p3m.models.checkpoint import error_reason

            raise P3MError(
                f"{resume_path}: inconsistent resume state: its optimizer, scaler, step or RNG entries "
                f"cannot be restored ({error_reason(exc)})"
            ) from None

    net: torch.nn.Module = model
    if info.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.train.find_unused_parameters,
        )
    compile_mode = (
        cfg.train.compile if isinstance(cfg.train.compile, str) else ("default" if cfg.train.compile else None)
    )
    amp_dtype = autocast_dtype(cfg.train.amp, device)
    train_step = TrainStep(
        net,
        optimizer,
        params=trainable,
        amp_dtype=amp_dtype,
        scaler=scaler,
        clip_grad=o.clip_grad,
        variant=cfg.data.trimap_variant,
        channels_last=cfg.train.channels_last,
        cuda_graph=cfg.train.cuda_graph,
        compile_mode=compile_mode,
    )

    dataset = P3MTrainDataset(cfg.data.root, cfg.data, copy_paste=cfg.copy_paste, seed=cfg.train.seed)
    sampler = ResumableSampler(dataset, num_replicas=info.world, rank=info.rank, seed=cfg.train.seed)
    bs = cfg.train.batch_size
    steps_per_epoch = math.ceil(sampler.num_samples / bs)
    total_steps = cfg.train.epochs * steps_per_epoch
    if cfg.train.max_steps is not None:
        total_steps = min(total_steps, cfg.train.max_steps)
    val_dataset = None
    if cfg.val.every or cfg.val.every_steps:
        val_dataset = open_dataset(cfg.data.root, validate=False)

    logger = _Logger(out, info.main, step if state is not None else None)
    best_paths = {k: out / f"best_{k}.safetensors" for k in best if (out / f"best_{k}.safetensors").is_file()}
    if info.main:
        import yaml

        write_bytes_atomic(out / "config.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False).encode("utf-8"))

    from p3m.data.synth import is_synth_output

    # recorded so that using these weights on real photos warns (p3m.models.store.trained_on_synthetic)
    meta = {"name": cfg.name, "recipe": "p3m-train", "dataset_synthetic": is_synth_output(cfg.data.root)}

    def save() -> None:
        if not info.main:
            return
        save_checkpoint(model, out / LAST_FILE, metadata={**meta, "step": step, "epoch": step // steps_per_epoch})
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer_state(optimizer),
            "scaler": scaler.state_dict(),
            "step": step,
            "epoch": step // steps_per_epoch,
            "best": best,
            "rng": _rng_state(),
            "config": config_to_dict(cfg),
        }
        write_with(resume_path, lambda tmp: torch.save(state, tmp), sync_dir=True)

    def run_validation() -> None:
        if val_dataset is None:
            return
        if info.main:
            results = validate(model, val_dataset, cfg, device, progress=False)
            record = {"type": "val", "step": step, "epoch": step / steps_per_epoch, "metrics": results}
            logger.write(record)
            for split, metrics in results.items():
                for metric in cfg.val.best:
                    if metric not in metrics:
                        continue
                    key = f"{metric}_{split}"
                    if metrics[metric] < best.get(key, math.inf):
                        best[key] = metrics[metric]
                        best_paths[key] = save_checkpoint(
                            model,
                            out / f"best_{key}.safetensors",
                            metadata={**meta, "step": step, "metric": metric, "split": split, "value": metrics[metric]},
                        )
            logger.plot(out)
        if info.world > 1:
            dist.barrier()

    bar = tqdm(
        total=total_steps,
        initial=step,
        disable=not (progress and info.main),
        unit="step",
        desc=f"train {cfg.name}",
        dynamic_ncols=True,
    )
    interrupted = False
    last_validated = -1
    window_images, window_start = 0, time.perf_counter()
    with _StopFlag() as stop:
        while step < total_steps and not interrupted:
            epoch = step // steps_per_epoch
            dataset.epoch = epoch
            sampler.set_epoch(epoch, (step % steps_per_epoch) * bs)
            loader = make_loader(
                dataset,
                sampler,
                batch_size=bs,
                workers=cfg.data.workers,
                pin_memory=cfg.data.pin_memory and device.type == "cuda",
                seed=cfg.train.seed,
                epoch=epoch,
            )
            for batch in loader:
                batch = prepare_batch(batch, device, non_blocking=True)
                lr = lr_at(step, total_steps, o)
                parts = train_step(batch, lr)
                step += 1
                window_images += batch["image"].shape[0] * info.world
                bar.update(1)
                if step % cfg.train.log_every == 0 or step == total_steps:
                    loss = {k: float(v) for k, v in parts.items()}
                    if not math.isfinite(loss["total"]):
                        raise P3MError(f"training diverged at step {step} (loss {loss['total']}); lower optim.lr")
                    elapsed = time.perf_counter() - window_start
                    record = {
                        "type": "train",
                        "step": step,
                        "epoch": step / steps_per_epoch,
                        "lr": lr,
                        "loss": loss,
                        "images_per_s": window_images / max(elapsed, 1e-9),
                        "time": time.time(),
                    }
                    if cfg.train.cuda_graph:
                        record["graph_replays"] = train_step.replays  # stays 0 if the capture failed
                    logger.write(record)
                    bar.set_postfix(loss=f"{loss['total']:.4f}")
                    window_images, window_start = 0, time.perf_counter()
                stop_now = stop.requested
                if info.world > 1:  # every rank must stop at the same step
                    flag = torch.tensor([1.0 if stop_now else 0.0], device=device)
                    dist.all_reduce(flag)
                    stop_now = bool(flag.item() > 0)
                if step % cfg.train.save_every == 0 or step % steps_per_epoch == 0 or stop_now:
                    save()
                if stop_now:
                    interrupted = True
                    break
                epoch_done = step % steps_per_epoch == 0
                if (cfg.val.every_steps and step % cfg.val.every_steps == 0) or (
                    epoch_done and cfg.val.every and (step // steps_per_epoch) % cfg.val.every == 0
                ):
                    run_validation()
                    last_validated = step
                if step >= total_steps:
                    break
    bar.close()
    if step >= total_steps and not interrupted:
        save()
        if last_validated != step and (cfg.val.every or cfg.val.every_steps):
            run_validation()
    logger.plot(out)
    logger.close()
    last = out / LAST_FILE if (out / LAST_FILE).is_file() else None
    if info.main and cfg.register_as and last is not None and not interrupted:
        _register(last, cfg)
    elif info.main and last is not None and not interrupted:
        print(
            f"p3m train: weights in {last}; use them with `p3m matte --weights {last}` "
            "(set register_as: NAME to list them in `p3m models`)",
            file=sys.stderr,
        )
    if interrupted and info.main:
        print(f"p3m train: stopped at step {step}; continue with --resume --out {out}", file=sys.stderr)
    return TrainResult(
        out_dir=out,
        last_checkpoint=last,
        best_checkpoints=dict(best_paths),
        history=list(logger.records),
        step=step,
        epoch=step // steps_per_epoch,
        interrupted=interrupted,
    )


_RESUME_KEYS = ("model", "optimizer", "scaler", "step", "rng")


def _load_resume(path: Path) -> dict[str, Any]:
    """``resume.pt`` read with the weights-only unpickler and checked for the trainer's entries; one line on error."""
    import pickle
    import warnings

    from p3m.models.checkpoint import error_reason, is_tensor_dict, unpickler_reason

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = unpickler_reason(str(exc)).split(". Please use")[0].removeprefix("WeightsUnpickler error: ")
        if "global" in reason.lower():
            raise P3MError(
                f"{path}: refused to load: the file references Python objects other than tensors "
                f"({reason}); p3m reads resume states with the weights-only unpickler and never runs "
                "pickled code"
            ) from None
        raise P3MError(
            f"{path}: cannot load resume state: corrupt, truncated or not a PyTorch file ({reason})"
        ) from None
    except Exception as exc:
        raise P3MError(
            f"{path}: cannot load resume state: corrupt, truncated or not a PyTorch file ({error_reason(exc)})"
        ) from None
    if not isinstance(state, dict):
        raise P3MError(f"{path}: not a p3m resume state (a {type(state).__name__}, not a dict)")
    missing = [k for k in _RESUME_KEYS if k not in state]
    if missing:
        if is_tensor_dict(state) or is_tensor_dict(state.get("state_dict")):
            raise P3MError(
                f"{path}: not a p3m resume state but model weights only (no optimizer, step or RNG "
                "state); to start from these weights, use --set model.pretrained=PATH without --resume"
            )
        raise P3MError(f"{path}: not a p3m resume state: missing {', '.join(missing)}")
    if not is_tensor_dict(state["model"]):
        raise P3MError(f"{path}: not a p3m resume state: 'model' is not a dict of tensors")
    return state


def _check_cuda_graph(cfg: TrainConfig, device: torch.device, info: _Dist) -> None:
    if not cfg.train.cuda_graph:
        return
    if device.type != "cuda":
        raise P3MError(f"train.cuda_graph needs a CUDA device (training runs on {device}); set train.cuda_graph=false")
    if info.world > 1:
        raise P3MError("train.cuda_graph works in single-process runs; under torchrun use train.compile instead")


def _remove_run(out: Path) -> None:
    """Delete the files a previous run wrote into ``out`` (and nothing else)."""
    import shutil

    names = [RESUME_FILE, LAST_FILE, "last.json", LOG_FILE, PLOT_FILE, "config.yaml"]
    paths = [out / n for n in names] + list(out.glob("best_*.safetensors")) + list(out.glob("best_*.json"))
    for path in paths:
        path.unlink(missing_ok=True)
    shutil.rmtree(out / "tb", ignore_errors=True)


def _load_backbone(model: torch.nn.Module, path: str) -> None:
    """Load ImageNet backbone weights into the encoder (`resnet` for R34, `encoder` otherwise), non-strict.

    The published backbone files are plain state dicts of the encoder (R34: including the unused `fc`).
    """
    from p3m.models.checkpoint import read_state_dict

    encoder = getattr(model, "resnet", None) or getattr(model, "encoder", None)
    if encoder is None:
        raise P3MError(f"model.backbone: {type(model).__name__} has no `resnet` or `encoder` to load into")
    state, _ = read_state_dict(path)
    own = encoder.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise P3MError(f"{path}: no tensor of this file matches the {type(model).__name__} encoder")
    encoder.load_state_dict(matched, strict=False)
    print(f"p3m train: backbone {Path(path).name}: loaded {len(matched)}/{len(own)} encoder tensors", file=sys.stderr)


def _register(checkpoint: Path, cfg: TrainConfig) -> None:
    from p3m.models.store import register

    path = register(checkpoint, cfg.register_as, arch=cfg.model.arch, origin=f"trained:{cfg.name}")
    print(f"p3m train: registered {checkpoint.name} as {cfg.register_as!r} ({path})", file=sys.stderr)
