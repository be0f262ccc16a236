"""Resumable P3M-Net trainer: single process or DDP under ``torchrun`` (`JizhiziLi/P3M` core/train.py;
`ViTAE-Transformer/P3M-Net` core/train.py).

The output folder (`p3m.train.run_folder`) holds ``resume.pt`` (`p3m.train.resume`), ``last.safetensors``, the best
checkpoint per validation metric, ``train_log.jsonl``, ``config.yaml``, ``curves.png`` and, with the tensorboard
package, ``tb/``. A folder that already holds a run is refused unless ``resume`` (continue it) or ``overwrite``
(replace it at the new run's first save); `p3m.train.run_folder` states the rules.

Every file is written through a temp file in the same folder and ``os.replace``; ``resume.pt`` is also
fsync'ed, so a SIGKILL at any moment loses at most the steps since the last save. SIGINT (Ctrl-C) finishes
the current step, saves and returns with ``interrupted=True``; a second Ctrl-C aborts at once.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from tqdm import tqdm

from p3m import models
from p3m.atomic import is_temporary, write_bytes_atomic, write_with
from p3m.data.p3m10k import P3M10k, open_dataset
from p3m.data.synth import is_synth_output
from p3m.errors import P3MError
from p3m.infer.devices import resolve_device
from p3m.infer.runtime import TorchNet, autocast_dtype
from p3m.infer.strategies import predict_resize
from p3m.io import read_image, read_mask
from p3m.metrics.evaluate import evaluate_arrays
from p3m.models.checkpoint import error_reason, load_checkpoint, read_state_dict, save_checkpoint
from p3m.models.store import register, replacement_note
from p3m.train.config import (
    LoopConfig,
    OptimConfig,
    TrainConfig,
    ValConfig,
    config_from_dict,
    config_to_dict,
    load_config,
)
from p3m.train.data import P3MTrainDataset, ResumableSampler, make_loader, prepare_batch
from p3m.train.resume import RESUME_FILE, load_resume, rng_state, set_rng_state
from p3m.train.run_folder import CONFIG_FILE, LAST_FILE, LOG_FILE, PLOT_FILE, TB_DIR, RunFolder, plan_run
from p3m.train.step import TrainStep, load_optimizer_state, make_optimizer, optimizer_state

__all__ = ["TrainResult", "lr_at", "predict_validation", "train", "validate", "validation_net"]

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


def lr_at(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up, then constant or cosine."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        span = max(1, total_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr


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


def validation_net(model: torch.nn.Module, device: torch.device, *, channels_last: bool = False) -> TorchNet:
    """The model being trained as a `p3m.infer.strategies.NetFn`, so that validation predicts with the test
    strategies' own code (no copy of the model: it runs as it is, in eval mode, on ``device``)."""

    def forward(x: torch.Tensor) -> Any:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return model(x)

    return TorchNet(forward, device=str(device))


def predict_validation(net: TorchNet, image: np.ndarray, val: ValConfig) -> np.ndarray:
    """Whole-image RESIZE inference (`JizhiziLi/P3M` core/test.py) with OpenCV's bilinear resize: fused alpha HxW
    float32 in [0, 1]. Sides are scaled by ``val.scale``, floored to multiples of 32 and capped at ``val.max_side``
    (itself floored to a multiple of 32): `p3m.infer.strategies.size_rule`. An image too small for the network
    raises ImageError."""
    return predict_resize(net, image, resize_mode="fast", ratio=val.scale, max_size=val.max_side - val.max_side % 32)


def _score(
    pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None, facemask: np.ndarray | None, fast: bool
) -> dict[str, float]:
    result = evaluate_arrays(pred, gt, trimap=trimap, facemask=facemask, protocol="p3m", fast=fast)
    return {k: float(v) for k, v in dict(result).items() if isinstance(v, (int, float, np.floating))}


def validate(
    model: torch.nn.Module, dataset: P3M10k, cfg: TrainConfig, device: torch.device, *, progress: bool = False
) -> dict[str, dict[str, float]]:
    """Mean metrics per validation split present in ``dataset`` (a `P3M10k`)."""
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
            net = validation_net(model, device, channels_last=cfg.train.channels_last)
            for sample in tqdm(samples, desc=f"val {split}", leave=False, disable=not progress, unit="img"):
                try:
                    image, gt = read_image(sample.image), read_mask(sample.mask).astype(np.float64) / 255.0
                    trimap = read_mask(sample.trimap) if sample.trimap is not None else None
                    facemask = read_mask(sample.facemask) > 100 if sample.facemask is not None else None
                    pred = predict_validation(net, image, cfg.val)
                except P3MError as exc:
                    message = str(exc) if str(sample.image) in str(exc) else f"{sample.image}: {exc}"
                    print(f"p3m train: skipping validation image: {message}", file=sys.stderr)
                    continue
                if split == "P3M-500-NP":
                    facemask = None  # privacy metrics are defined on P3M-500-P only
                rows.append(_score(pred, gt, trimap, facemask, cfg.val.fast))
            keys = sorted({k for r in rows for k in r})
            results[split] = {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}
            results[split]["images"] = float(len(rows))
    finally:
        model.train(was_training)
    return results


# ---------------------------------------------------------------------------------------- logging


class _Logger:
    """JSONL log, optional TensorBoard, curve plot; active on rank 0 only.

    ``deferred``: records are kept in memory until `start_file` (a run replacing an earlier one writes its log when
    it first saves, so that the earlier run's log stays until then)."""

    def __init__(self, out_dir: Path, active: bool, resume_step: int | None, *, deferred: bool = False) -> None:
        self.path = out_dir / LOG_FILE
        self.active = active
        self.deferred = deferred
        self.records: list[dict[str, Any]] = []
        self.tb: Any = None
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
            self.start_file()
        try:
            from torch.utils.tensorboard import SummaryWriter  # needs the optional tensorboard package

            self.tb = SummaryWriter(str(out_dir / TB_DIR))
        except Exception:  # ImportError, or tensorboard present but broken
            self.tb = None

    def start_file(self) -> None:
        """Write the records so far as the whole log (atomically), then append each new record."""
        if self.active:
            write_bytes_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.records).encode("utf-8"))
            self.deferred = False

    def write(self, record: dict[str, Any]) -> None:
        if not self.active:
            return
        self.records.append(record)
        if not self.deferred:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
                handle.flush()
        if self.tb is not None:
            self._scalars(record)

    def _scalars(self, record: dict[str, Any]) -> None:
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
        self.previous: Any = None  # the SIGINT handler to put back

    def __enter__(self) -> _StopFlag:
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

    ``resume=True`` continues from ``out_dir/resume.pt`` (model, optimizer, scaler, step, RNG states). An
    ``out_dir`` that already holds a run (weights or a log) is refused unless ``resume=True``, or ``overwrite=True``:
    then the earlier run's files stay until the new run first saves, which replaces them (other files in the folder
    are left alone). `p3m.train.run_folder` states the rules.
    """
    cfg = _as_config(config)
    out = Path(out_dir).expanduser()
    info = _init_distributed(cfg.train.device)
    threads, cudnn_benchmark = torch.get_num_threads(), torch.backends.cudnn.benchmark
    try:
        folder = plan_run(out, resume=resume, overwrite=overwrite, announce=info.main)
        return _train(cfg, folder, info, progress=progress)
    finally:
        # train.threads and cuDNN autotuning are for training only: give the caller its settings back
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = cudnn_benchmark
        if info.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, folder: RunFolder, info: _Dist, *, progress: bool) -> TrainResult:
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = torch.device(resolve_device(cfg.train.device, local_rank=info.local_rank, fix="train.device=cpu"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed-size crops: pick the fastest convolution once
    if info.main:
        folder.out.mkdir(parents=True, exist_ok=True)
        for stale in folder.out.iterdir():  # temp files of a killed save
            if is_temporary(stale) and stale.is_file():
                stale.unlink(missing_ok=True)
    state = load_resume(folder.resume_path) if folder.resume else None
    return _Run(cfg, folder, info, device, state).fit(progress)


def _build_model(cfg: TrainConfig, state: dict[str, Any] | None, resume_path: Path) -> torch.nn.Module:
    """The network as configured: seeded, with backbone / pretrained weights or the resumed state loaded."""
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
        with contextlib.suppress(AttributeError):
            model.get_submodule(name).requires_grad_(False)
    return model


def _restore(
    state: dict[str, Any], optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, resume_path: Path
) -> tuple[int, dict[str, float]]:
    """Load the optimizer, scaler and RNG states of a resume state; (step, best values)."""
    try:
        load_optimizer_state(optimizer, state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
        raise P3MError(
            f"{resume_path}: inconsistent resume state: its optimizer, scaler or RNG entries "
            f"cannot be restored ({error_reason(exc)})"
        ) from None
    return int(state["step"]), {k: float(v) for k, v in (state.get("best") or {}).items()}


def _compile_mode(loop: LoopConfig) -> str | None:
    return loop.compile if isinstance(loop.compile, str) else ("default" if loop.compile else None)


class _Run:
    """One training run: the model, optimizer, data and log, and the loop that drives them."""

    def __init__(
        self, cfg: TrainConfig, folder: RunFolder, info: _Dist, device: torch.device, state: dict[str, Any] | None
    ) -> None:
        self.cfg, self.folder, self.out, self.info, self.device = cfg, folder, folder.out, info, device
        model = _build_model(cfg, state, folder.resume_path)
        model.to(device)
        if cfg.train.channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stub lacks the keyword
        model.train()
        self.model = model
        self.step: int
        self.best: dict[str, float]
        o = cfg.optim
        trainable: list[torch.Tensor] = [p for p in model.parameters() if p.requires_grad]
        _check_cuda_graph(cfg, device, info)
        self.optimizer = make_optimizer(
            trainable,
            lr=o.lr,
            betas=o.betas,
            eps=o.eps,
            weight_decay=o.weight_decay,
            fused=o.fused,
            capturable=cfg.train.cuda_graph,
            device=device,
        )
        amp_dtype = autocast_dtype(cfg.train.amp, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        self.step, self.best = 0, {}
        if state is not None:
            self.step, self.best = _restore(state, self.optimizer, self.scaler, folder.resume_path)
        self.train_step = self._train_step(trainable, amp_dtype)
        self.dataset = P3MTrainDataset(cfg.data.root, cfg.data, copy_paste=cfg.copy_paste, seed=cfg.train.seed)
        self.sampler = ResumableSampler(self.dataset, num_replicas=info.world, rank=info.rank, seed=cfg.train.seed)
        self.steps_per_epoch = math.ceil(self.sampler.num_samples / cfg.train.batch_size)
        total_steps = cfg.train.epochs * self.steps_per_epoch
        self.total_steps = min(total_steps, cfg.train.max_steps) if cfg.train.max_steps is not None else total_steps
        self.val_dataset = open_dataset(cfg.data.root, validate=False) if cfg.val.every or cfg.val.every_steps else None
        resume_step = self.step if state is not None else None
        self.logger = _Logger(self.out, info.main, resume_step, deferred=folder.taking_over)
        self.best_paths = {
            k: self.out / f"best_{k}.safetensors" for k in self.best if (self.out / f"best_{k}.safetensors").is_file()
        }
        if info.main and not folder.taking_over:
            self._write_config()
        # recorded so that using these weights on real photos warns (p3m.models.store.trained_on_synthetic)
        self.meta = {"name": cfg.name, "recipe": "p3m-train", "dataset_synthetic": is_synth_output(cfg.data.root)}
        self.last_validated = -1
        self.window_images, self.window_start = 0, time.perf_counter()

    def _train_step(self, trainable: list[torch.Tensor], amp_dtype: torch.dtype | None) -> TrainStep:
        net: torch.nn.Module = self.model
        if self.info.world > 1:
            net = torch.nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.cfg.train.find_unused_parameters,
            )
        return TrainStep(
            net,
            self.optimizer,
            params=trainable,
            amp_dtype=amp_dtype,
            scaler=self.scaler,
            clip_grad=self.cfg.optim.clip_grad,
            variant=self.cfg.data.trimap_variant,
            channels_last=self.cfg.train.channels_last,
            cuda_graph=self.cfg.train.cuda_graph,
            compile_mode=_compile_mode(self.cfg.train),
        )

    # saving ----------------------------------------------------------------------------------------
    def _write_config(self) -> None:
        text = yaml.safe_dump(config_to_dict(self.cfg), sort_keys=False)
        write_bytes_atomic(self.out / CONFIG_FILE, text.encode("utf-8"))

    def save(self) -> None:
        """Latest weights and the resume state (rank 0); the first save of a run replacing another takes over."""
        if not self.info.main:
            return
        epoch = self.step // self.steps_per_epoch
        save_checkpoint(self.model, self.out / LAST_FILE, metadata={**self.meta, "step": self.step, "epoch": epoch})
        state = {
            "model": self.model.state_dict(),
            "optimizer": optimizer_state(self.optimizer),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": epoch,
            "best": self.best,
            "rng": rng_state(),
            "config": config_to_dict(self.cfg),
        }
        write_with(self.folder.resume_path, lambda tmp: torch.save(state, tmp), sync_dir=True)
        if self.folder.taking_over:
            self.folder.take_over(written=(RESUME_FILE, LAST_FILE, "last.json", LOG_FILE, CONFIG_FILE))
            self._write_config()
            self.logger.start_file()

    # validation ------------------------------------------------------------------------------------
    def run_validation(self) -> None:
        if self.val_dataset is None:
            return
        if self.folder.taking_over:
            self.save()  # the earlier run's files are replaced together, before any best checkpoint is written
        if self.info.main:
            results = validate(self.model, self.val_dataset, self.cfg, self.device, progress=False)
            epoch = self.step / self.steps_per_epoch
            self.logger.write({"type": "val", "step": self.step, "epoch": epoch, "metrics": results})
            for split, metrics in results.items():
                for metric in self.cfg.val.best:
                    if metric in metrics:
                        self._keep_best(metric, split, metrics[metric])
            self.logger.plot(self.out)
        if self.info.world > 1:
            dist.barrier()

    def _keep_best(self, metric: str, split: str, value: float) -> None:
        key = f"{metric}_{split}"
        if value < self.best.get(key, math.inf):
            self.best[key] = value
            self.best_paths[key] = save_checkpoint(
                self.model,
                self.out / f"best_{key}.safetensors",
                metadata={**self.meta, "step": self.step, "metric": metric, "split": split, "value": value},
            )

    # the loop --------------------------------------------------------------------------------------
    def _log_step(self, parts: dict[str, torch.Tensor], lr: float) -> float:
        loss = {k: float(v) for k, v in parts.items()}
        if not math.isfinite(loss["total"]):
            raise P3MError(f"training diverged at step {self.step} (loss {loss['total']}); lower optim.lr")
        elapsed = time.perf_counter() - self.window_start
        record = {
            "type": "train",
            "step": self.step,
            "epoch": self.step / self.steps_per_epoch,
            "lr": lr,
            "loss": loss,
            "images_per_s": self.window_images / max(elapsed, 1e-9),
            "time": time.time(),
        }
        if self.cfg.train.cuda_graph:
            record["graph_replays"] = self.train_step.replays  # stays 0 if the capture failed
        self.logger.write(record)
        self.window_images, self.window_start = 0, time.perf_counter()
        return loss["total"]

    def _stop_now(self, stop: _StopFlag) -> bool:
        stop_now = stop.requested
        if self.info.world > 1:  # every rank must stop at the same step
            flag = torch.tensor([1.0 if stop_now else 0.0], device=self.device)
            dist.all_reduce(flag)
            stop_now = bool(flag.item() > 0)
        return stop_now

    def _epoch(self, stop: _StopFlag, bar: Any) -> bool:
        """Train until the end of the current epoch or of the run; True when a stop was requested."""
        cfg, spe = self.cfg, self.steps_per_epoch
        epoch = self.step // spe
        self.dataset.epoch = epoch
        self.sampler.set_epoch(epoch, (self.step % spe) * cfg.train.batch_size)
        loader = make_loader(
            self.dataset,
            self.sampler,
            batch_size=cfg.train.batch_size,
            workers=cfg.data.workers,
            pin_memory=cfg.data.pin_memory and self.device.type == "cuda",
            seed=cfg.train.seed,
            epoch=epoch,
        )
        for batch in loader:
            batch = prepare_batch(batch, self.device, non_blocking=True)
            lr = lr_at(self.step, self.total_steps, cfg.optim)
            parts = self.train_step(batch, lr)
            self.step += 1
            self.window_images += batch["image"].shape[0] * self.info.world
            bar.update(1)
            if self.step % cfg.train.log_every == 0 or self.step == self.total_steps:
                bar.set_postfix(loss=f"{self._log_step(parts, lr):.4f}")
            stop_now = self._stop_now(stop)
            if self.step % cfg.train.save_every == 0 or self.step % spe == 0 or stop_now:
                self.save()
            if stop_now:
                return True
            epoch_done = self.step % spe == 0
            if (cfg.val.every_steps and self.step % cfg.val.every_steps == 0) or (
                epoch_done and cfg.val.every and (self.step // spe) % cfg.val.every == 0
            ):
                self.run_validation()
                self.last_validated = self.step
            if self.step >= self.total_steps:
                break
        return False

    def fit(self, progress: bool) -> TrainResult:
        """Run the loop to the configured end (or a stop request), save, and report what was written."""
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            disable=not (progress and self.info.main),
            unit="step",
            desc=f"train {self.cfg.name}",
            dynamic_ncols=True,
        )
        interrupted = False
        with _StopFlag() as stop:
            while self.step < self.total_steps and not interrupted:
                interrupted = self._epoch(stop, bar)
        bar.close()
        if self.step >= self.total_steps and not interrupted:
            self.save()
            if self.last_validated != self.step and (self.cfg.val.every or self.cfg.val.every_steps):
                self.run_validation()
        self.logger.plot(self.out)
        self.logger.close()
        return self._result(interrupted)

    def _result(self, interrupted: bool) -> TrainResult:
        out, cfg = self.out, self.cfg
        last = out / LAST_FILE if (out / LAST_FILE).is_file() else None
        if self.info.main and cfg.register_as and last is not None and not interrupted:
            _register(last, cfg)
        elif self.info.main and last is not None and not interrupted:
            print(
                f"p3m train: weights in {last}; use them with `p3m matte --weights {last}` "
                "(set register_as: NAME to list them in `p3m models`)",
                file=sys.stderr,
            )
        if interrupted and self.info.main:
            print(f"p3m train: stopped at step {self.step}; continue with --resume --out {out}", file=sys.stderr)
        return TrainResult(
            out_dir=out,
            last_checkpoint=last,
            best_checkpoints=dict(self.best_paths),
            history=list(self.logger.records),
            step=self.step,
            epoch=self.step // self.steps_per_epoch,
            interrupted=interrupted,
        )


def _check_cuda_graph(cfg: TrainConfig, device: torch.device, info: _Dist) -> None:
    if not cfg.train.cuda_graph:
        return
    if device.type != "cuda":
        raise P3MError(f"train.cuda_graph needs a CUDA device (training runs on {device}); set train.cuda_graph=false")
    if info.world > 1:
        raise P3MError("train.cuda_graph works in single-process runs; under torchrun use train.compile instead")


def _load_backbone(model: torch.nn.Module, path: str) -> None:
    """Load ImageNet backbone weights into the encoder (`resnet` for R34, `encoder` otherwise), non-strict.

    The published backbone files are plain state dicts of the encoder (R34: including the unused `fc`).
    """
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
    assert cfg.register_as is not None
    origin = f"trained:{cfg.name} ({checkpoint.resolve().parent})"
    note = replacement_note(cfg.register_as, origin)
    path = register(checkpoint, cfg.register_as, arch=cfg.model.arch, origin=origin)
    print(f"p3m train: registered {checkpoint.name} as {cfg.register_as!r} ({path})", file=sys.stderr)
    if note:
        print(f"p3m train: note: {note}", file=sys.stderr)
