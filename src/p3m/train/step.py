"""One P3M-Net optimisation step: forward under autocast, P3M loss, backward, clipping, Adam; eager or captured
as one CUDA graph. Shared by the trainer and ``benchmarks/bench_train.py`` so the benchmark measures what
training runs.

Why a CUDA graph: on an H100 the eager bf16 step of the R34 recipe is bound by the host issuing ~3,000 kernel
launches (profile in ``benchmarks/RESULTS.md``). A graph replays forward, loss, backward and the optimizer step
with one launch. It needs static shapes and no host synchronisation inside the step, which is why the losses use
``torch.where`` instead of boolean-mask assignment and the optimizer is capturable with its learning rate in a
device tensor.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Any

import torch

from p3m.train.losses import p3m_loss

__all__ = ["TrainStep", "load_optimizer_state", "make_optimizer", "optimizer_state"]

Batch = dict[str, torch.Tensor]


def make_optimizer(
    params: Iterable[torch.Tensor],
    *,
    lr: float,
    betas=(0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    fused: bool | None = None,
    capturable: bool = False,
    device: torch.device | None = None,
) -> torch.optim.Adam:
    """Adam as in the recipe. ``fused=None`` picks the single-kernel fused implementation on CUDA (the foreach
    one issues ~10 launches per parameter chunk and took 10 % of the H100 step). ``capturable`` keeps the step
    counters and the learning rate on the device so `optimizer.step()` can be recorded in a CUDA graph."""
    params = list(params)
    device = device or (params[0].device if params else torch.device("cpu"))
    if fused is None:
        fused = device.type == "cuda"
    kwargs: dict[str, Any] = {"betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
    rate: float | torch.Tensor = lr
    if fused:
        kwargs["fused"] = True
    if capturable:
        kwargs["capturable"] = True
        rate = torch.tensor(lr, dtype=torch.float32, device=device)  # a float would be frozen into the graph
    return torch.optim.Adam(params, lr=rate, **kwargs)


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """`state_dict()` with the learning rate as a plain float, whatever the implementation (fused, capturable)."""
    state = optimizer.state_dict()
    for group in state["param_groups"]:
        if isinstance(group.get("lr"), torch.Tensor):
            group["lr"] = float(group["lr"])
    return state


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Load the moments and step counts of ``saved`` but keep this optimizer's options (implementation,
    capturable, hyper-parameters from the current config): a run saved eagerly can resume as a CUDA graph and
    the other way round."""
    options = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    optimizer.load_state_dict(saved)
    for group, own in zip(optimizer.param_groups, options, strict=True):
        group.update(own)
    for group in optimizer.param_groups:
        on_device = bool(group.get("capturable") or group.get("fused"))
        for p in group["params"]:
            st = optimizer.state.get(p)
            if st and "step" in st:
                step = torch.as_tensor(st["step"], dtype=torch.float32)
                st["step"] = step.to(p.device) if on_device else step.cpu()


def _no_mark(phase: str) -> None:
    return None


class TrainStep:
    """Callable ``step(batch, lr) -> loss parts`` (detached 0-d tensors; convert them only when logging).

    ``batch`` holds device tensors ``image``, ``alpha``, ``trimap`` and, for the composition loss, ``fg`` and
    ``bg``. With ``cuda_graph`` the first ``warmup_steps`` steps run eagerly on a side stream (cuDNN autotuning,
    allocator warm-up), the next one is captured, and later batches of the same shapes replay the graph; a batch of
    other shapes (an epoch's last, smaller batch) runs eagerly. The parts returned by a replay are the graph's
    static outputs: they are overwritten by the next step.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        params: list[torch.Tensor],
        amp_dtype: torch.dtype | None = None,
        scaler: torch.amp.GradScaler | None = None,
        clip_grad: float | None = None,
        variant: str = "ijcv",
        channels_last: bool = False,
        cuda_graph: bool = False,
        compile_mode: str | None = None,
        warmup_steps: int = 3,
    ) -> None:
        """``net`` is the model as called (maybe DDP-wrapped); ``compile_mode`` compiles it and the loss."""
        if cuda_graph and compile_mode is not None:
            raise ValueError("cuda_graph and compile exclude each other (compile mode 'reduce-overhead' makes its own)")
        if cuda_graph and scaler is not None and scaler.is_enabled():
            raise ValueError("cuda_graph does not work with fp16 loss scaling (its overflow check syncs the host)")
        if cuda_graph and not all(p.is_cuda for p in params):
            raise ValueError("cuda_graph needs the model on a CUDA device")
        # under DDP: compile the wrapper (DDPOptimizer buckets)
        self.net: Callable[..., Any] = torch.compile(net, mode=compile_mode) if compile_mode is not None else net
        self.optimizer = optimizer
        self.params = params
        self.amp_dtype = amp_dtype
        self.scaler = scaler if scaler is not None and scaler.is_enabled() else None
        self.clip_grad = clip_grad
        self.variant = variant
        self.channels_last = channels_last
        self.cuda_graph = cuda_graph
        self.warmup_steps = max(1, warmup_steps)
        self.loss_fn: Callable = p3m_loss if compile_mode is None else torch.compile(p3m_loss, mode=compile_mode)
        self.graph: torch.cuda.CUDAGraph | None = None
        self._graph_key: tuple | None = None
        self._static: Batch = {}
        self._static_parts: dict[str, torch.Tensor] = {}
        self._eager_steps = 0
        self.replays = 0

    # ----------------------------------------------------------------------------------------- pieces

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)  # in place: the captured optimizer step reads this tensor
            else:
                group["lr"] = lr

    def compute(self, batch: Batch, mark: Callable[[str], None] = _no_mark) -> dict[str, torch.Tensor]:
        """Forward, loss, backward, clipping and optimizer step on ``batch`` (gradients must be zero or None);
        ``mark(phase)`` is called after each phase (the benchmark times them)."""
        image = batch["image"]
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        # autocast's weight-cast cache is off under graph capture, as PyTorch asks (casts are recorded as kernels)
        autocast = (
            torch.autocast(image.device.type, dtype=self.amp_dtype, cache_enabled=not self.cuda_graph)
            if self.amp_dtype
            else nullcontext()
        )
        with autocast:
            output = self.net(image)
        mark("forward")
        terms = self.loss_fn(
            output,
            batch["alpha"],
            batch["trimap"],
            batch["image"],
            batch.get("fg"),
            batch.get("bg"),
            variant=self.variant,
        )
        mark("loss")
        if self.scaler is not None:
            self.scaler.scale(terms.total).backward()
            if self.clip_grad:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.params, self.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            terms.total.backward()
            if self.clip_grad:
                torch.nn.utils.clip_grad_norm_(self.params, self.clip_grad)
            self.optimizer.step()
        mark("backward+optimizer")
        return terms.parts

    # ----------------------------------------------------------------------------------------- the step

    def __call__(self, batch: Batch, lr: float) -> dict[str, torch.Tensor]:
        self.set_lr(lr)
        if not self.cuda_graph:
            self.optimizer.zero_grad(set_to_none=True)
            return self.compute(batch)
        key = tuple((k, tuple(v.shape), v.dtype, v.device) for k, v in sorted(batch.items()))
        if self.graph is None and self._eager_steps < self.warmup_steps:
            return self._warmup(batch)
        if self.graph is None and not self._capture(batch, key):
            self.optimizer.zero_grad(set_to_none=True)
            return self.compute(batch)
        if key != self._graph_key:
            # gradients stay the graph's tensors: zero them in place, backward accumulates into them
            self.optimizer.zero_grad(set_to_none=False)
            return self.compute(batch)
        for name, value in batch.items():
            self._static[name].copy_(value, non_blocking=True)
        assert self.graph is not None  # captured above
        self.graph.replay()
        self.replays += 1
        return self._static_parts

    def _warmup(self, batch: Batch) -> dict[str, torch.Tensor]:
        side = torch.cuda.Stream(device=batch["image"].device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self.optimizer.zero_grad(set_to_none=True)
            parts = self.compute(batch)
        torch.cuda.current_stream().wait_stream(side)
        self._eager_steps += 1
        return parts

    def _capture(self, batch: Batch, key: tuple) -> bool:
        """Record one step into a CUDA graph (nothing runs while recording). False, with a warning, when the
        step cannot be captured; training then goes on eagerly."""
        self._static = {name: value.clone() for name, value in batch.items()}
        self.optimizer.zero_grad(set_to_none=True)  # the graph allocates the gradients it writes
        graph = torch.cuda.CUDAGraph()
        try:
            # thread_local: the DataLoader's pin-memory thread keeps allocating and querying pinned host memory
            # while we capture; "global" mode would turn those calls into capture errors
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self._static_parts = self.compute(self._static)
        except Exception as exc:  # e.g. an operator that synchronises with the host
            print(
                f"p3m train: cannot capture the training step as a CUDA graph "
                f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}); continuing without it",
                file=sys.stderr,
            )
            self.cuda_graph = False
            self._static, self._static_parts = {}, {}
            torch.cuda.synchronize()
            return False
        self.graph, self._graph_key = graph, key
        return True
