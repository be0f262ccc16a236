"""The shared training step (p3m.train.step): parity with a literal eager step, no host synchronisation (what a
CUDA graph needs, checked on CPU at the operator level), optimizer state across implementations, and the
configuration rules of train.cuda_graph / train.compile / optim.fused."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from p3m import models
from p3m.errors import ConfigError, P3MError
from p3m.train import train
from p3m.train.config import config_from_dict
from p3m.train.losses import p3m_loss
from p3m.train.step import TrainStep, load_optimizer_state, make_optimizer, optimizer_state

torch.set_num_threads(1)

# Operators that wait for the device or read a device value on the host: any of them makes
# torch.cuda.graph() fail (or silently freeze a value into the graph).
HOST_SYNC_OPS = {
    "_local_scalar_dense",
    "item",
    "nonzero",
    "masked_select",
    "is_nonzero",
    "equal",
    "unique",
    "_unique2",
    "repeat_interleave",
    "allclose",
    "boolean-mask indexing",
}


class OpRecorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        self.ops.append(name)
        indexed = name.startswith("index") and len(args) > 1 and isinstance(args[1], (list, tuple))
        if indexed and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1]):
            self.ops.append("boolean-mask indexing")  # the kernel counts the mask on the host
        return func(*args, **(kwargs or {}))


def tiny_batch(seed: int = 0, n: int = 2, size: int = 64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    alpha = torch.rand(n, 1, size, size, generator=g)
    trimap = torch.tensor([0.0, 128.0, 255.0])[torch.randint(0, 3, (n, 1, size, size), generator=g)]
    image, fg, bg = (torch.randn(n, 3, size, size, generator=g) for _ in range(3))
    return {"image": image, "alpha": alpha, "trimap": trimap, "fg": fg, "bg": bg}


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = models.create("p3m-r34", width=4).train()
    model.resnet.fc.requires_grad_(False)
    return model


def trainable(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def literal_step(model, optimizer, batch, lr, clip=None) -> float:
    """The recipe written out: Adam step on the P3M loss of one batch."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad()
    out = model(batch["image"])
    loss = p3m_loss(out, batch["alpha"], batch["trimap"], batch["image"], batch["fg"], batch["bg"]).total
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(trainable(model), clip)
    optimizer.step()
    return float(loss.detach())


@pytest.mark.parametrize("clip", [None, 0.5])
def test_step_matches_literal_eager_step(clip):
    a, b = tiny_model(), tiny_model()
    opt_a = torch.optim.Adam(trainable(a), lr=1e-3)
    opt_b = make_optimizer(trainable(b), lr=1e-3, fused=False)
    step = TrainStep(b, opt_b, params=trainable(b), clip_grad=clip)
    for i, lr in enumerate((1e-3, 5e-4)):
        batch = tiny_batch(i)
        want = literal_step(a, opt_a, batch, lr, clip)
        parts = step(batch, lr)
        assert float(parts["total"]) == pytest.approx(want, rel=1e-6)
        assert set(parts) >= {"global", "unknown_alpha", "fusion_laplacian", "composition", "total"}
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
    assert opt_b.param_groups[0]["lr"] == 5e-4


def test_fused_capturable_step_tracks_plain_adam():
    """The CUDA-graph configuration (fused, capturable, learning rate in a tensor) runs the same recipe. Each step
    starts both models from the same weights: Adam amplifies rounding differences of near-zero gradients, so
    free-running trajectories would drift apart for reasons that have nothing to do with the implementation."""
    a, b = tiny_model(), tiny_model()
    opt_a = make_optimizer(trainable(a), lr=1e-3, fused=False)
    opt_b = make_optimizer(trainable(b), lr=1e-3, fused=True, capturable=True)
    assert isinstance(opt_b.param_groups[0]["lr"], torch.Tensor)
    step_a = TrainStep(a, opt_a, params=trainable(a))
    step_b = TrainStep(b, opt_b, params=trainable(b))
    for i, lr in enumerate((1e-3, 2e-4, 2e-4)):
        with torch.no_grad():
            for x, y in zip(a.parameters(), b.parameters(), strict=True):
                y.copy_(x)
        pa, pb = step_a(tiny_batch(i), lr), step_b(tiny_batch(i), lr)
        assert float(pb["total"]) == pytest.approx(float(pa["total"]), rel=1e-5)
        for x, y in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-7)  # a wrong lr moves them by >1e-4
    assert float(opt_b.param_groups[0]["lr"]) == pytest.approx(2e-4)


@pytest.mark.parametrize("variant", ["ijcv", "mm21"])
def test_step_has_no_host_synchronisation(variant):
    """Everything a captured step runs (forward, loss, backward, clipping, fused capturable Adam) stays on the
    device: the operator trace of a whole step holds no host read-back."""
    model = tiny_model()
    opt = make_optimizer(trainable(model), lr=1e-3, fused=True, capturable=True)
    step = TrainStep(model, opt, params=trainable(model), clip_grad=1.0, variant=variant)
    step(tiny_batch(0), 1e-3)  # optimizer state initialisation happens before capture too
    with OpRecorder() as rec:
        step.compute(tiny_batch(1))
    assert len(rec.ops) > 300  # the recorder saw the step
    assert {"convolution", "max_unpool2d", "_fused_adam_"} <= set(rec.ops)
    assert not HOST_SYNC_OPS & set(rec.ops), sorted(HOST_SYNC_OPS & set(rec.ops))


def test_recorder_catches_a_host_sync():
    """The check above can fail: boolean-mask assignment (what the loss used before) syncs."""
    x = torch.zeros(4)
    with OpRecorder() as rec:
        x[x == 0] = 1.0
    assert HOST_SYNC_OPS & set(rec.ops)


def test_optimizer_state_moves_between_implementations():
    """A run saved with plain Adam resumes with fused capturable Adam (and back) on the same trajectory."""
    a = tiny_model()
    opt = make_optimizer(trainable(a), lr=1e-3, fused=False)
    step = TrainStep(a, opt, params=trainable(a))
    step(tiny_batch(0), 1e-3)
    saved = copy.deepcopy(optimizer_state(opt))
    b = copy.deepcopy(a)
    opt_b = make_optimizer(trainable(b), lr=1e-3, fused=True, capturable=True)
    load_optimizer_state(opt_b, saved)
    assert opt_b.param_groups[0]["fused"] and opt_b.param_groups[0]["capturable"]
    assert isinstance(opt_b.param_groups[0]["lr"], torch.Tensor)
    step(tiny_batch(1), 1e-3)
    TrainStep(b, opt_b, params=trainable(b))(tiny_batch(1), 1e-3)
    for x, y in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-3, atol=1e-4)  # a wrong lr moves them by >1e-3
    # and the other way: the saved lr is a float, the step counts come back as CPU tensors for plain Adam
    state = optimizer_state(opt_b)
    assert isinstance(state["param_groups"][0]["lr"], float)
    opt_c = make_optimizer(trainable(copy.deepcopy(b)), lr=1e-3, fused=False)
    load_optimizer_state(opt_c, state)
    first = next(iter(opt_c.state.values()))
    assert float(first["step"]) == 2 and first["step"].device.type == "cpu"
    assert opt_c.param_groups[0]["fused"] in (None, False) and not opt_c.param_groups[0]["capturable"]


class ToyP3M(torch.nn.Module):
    """A one-convolution stand-in with the P3M-Net output contract: compiles in seconds, unlike the real network."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 13, 3, padding=1)

    def forward(self, x):
        from p3m.models.blocks import P3MOutput, fuse

        y = self.conv(x)
        g, local = y[:, :3], y[:, 3:4].sigmoid()
        return P3MOutput(g, local, fuse(g, local), y[:, 4:7], y[:, 7:10], y[:, 10:13])


@pytest.mark.slow
def test_compiled_step_matches_eager_step():
    """train.compile: network and loss go through torch.compile (Inductor on CPU here) and train the same."""
    losses = {}
    for mode in (None, "default"):
        torch.manual_seed(0)
        model = ToyP3M()
        step = TrainStep(
            model, make_optimizer(model.parameters(), lr=1e-2), params=list(model.parameters()), compile_mode=mode
        )
        losses[mode] = [float(step(tiny_batch(i, size=32), 1e-2)["total"]) for i in range(3)]
        if mode is not None:
            assert step.loss_fn is not p3m_loss and hasattr(step.net, "_orig_mod")  # really compiled
    assert losses["default"] == pytest.approx(losses[None], rel=1e-5)
    assert losses[None][2] != losses[None][0]


def test_step_refuses_graph_with_compile_or_fp16():
    model = tiny_model()
    opt = make_optimizer(trainable(model), lr=1e-3)
    with pytest.raises(ValueError, match="exclude"):
        TrainStep(model, opt, params=trainable(model), cuda_graph=True, compile_mode="default")
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    with pytest.raises(ValueError, match="fp16"):
        TrainStep(model, opt, params=trainable(model), cuda_graph=True, scaler=scaler)
    with pytest.raises(ValueError, match="CUDA device"):
        TrainStep(model, opt, params=trainable(model), cuda_graph=True)


def test_config_rules():
    cfg = config_from_dict({"train": {"compile": "reduce-overhead"}, "optim": {"fused": True}})
    assert cfg.train.compile == "reduce-overhead" and cfg.optim.fused is True
    assert config_from_dict({"train": {"compile": True}}).train.compile is True
    with pytest.raises(ConfigError, match=r"train\.compile must be one of"):
        config_from_dict({"train": {"compile": "fastest"}})
    with pytest.raises(ConfigError, match="exclude each other"):
        config_from_dict({"train": {"cuda_graph": True, "compile": True}})
    with pytest.raises(ConfigError, match="fp16"):
        config_from_dict({"train": {"cuda_graph": True, "amp": "fp16"}})


def test_cuda_graph_on_cpu_is_a_clear_error(tmp_path):
    cfg = {"train": {"cuda_graph": True, "device": "cpu", "max_steps": 1}, "data": {"root": str(tmp_path)}}
    with pytest.raises(P3MError, match="needs a CUDA device"):
        train(cfg, out_dir=tmp_path / "run", progress=False)


# ------------------------------------------------------------------------------ CUDA (run where a GPU is lent)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def moved_alike(before, a, b) -> float:
    """Mean |(a - before) - (b - before)| relative to the mean update of a."""
    da = torch.cat([(x - p).flatten() for x, p in zip(a.parameters(), before, strict=True)])
    db = torch.cat([(y - p).flatten() for y, p in zip(b.parameters(), before, strict=True)])
    return float((da - db).abs().mean() / da.abs().mean())


@needs_cuda
@pytest.mark.parametrize("amp", [None, torch.bfloat16])
def test_cuda_graph_step_replays_the_eager_step(amp):
    """Warm-up, capture, replays with new batches and learning rates, an odd-sized batch in between: every step
    computes what the eager step computes (max_unpool2d and cuDNN are not bit-deterministic on the GPU, hence
    the tolerances)."""
    dev = torch.device("cuda")
    a, b = tiny_model().to(dev), tiny_model().to(dev)
    opt_a = make_optimizer(trainable(a), lr=1e-3, fused=True, capturable=True)
    opt_b = make_optimizer(trainable(b), lr=1e-3, fused=True, capturable=True)
    eager = TrainStep(a, opt_a, params=trainable(a), amp_dtype=amp, clip_grad=1.0)
    graphed = TrainStep(b, opt_b, params=trainable(b), amp_dtype=amp, clip_grad=1.0, cuda_graph=True, warmup_steps=2)
    plan = [(0, 2, 1e-3), (1, 2, 1e-3), (2, 2, 5e-4), (3, 2, 5e-4), (4, 1, 5e-4), (5, 2, 2e-4), (6, 2, 2e-4)]
    for seed, n, lr in plan:
        batch = {k: v.to(dev) for k, v in tiny_batch(seed, n).items()}
        with torch.no_grad():
            for x, y in zip(a.parameters(), b.parameters(), strict=True):
                y.copy_(x)
        before = [p.detach().clone() for p in a.parameters()]
        la, lb = float(eager(batch, lr)["total"]), float(graphed(batch, lr)["total"])
        assert lb == pytest.approx(la, rel=2e-3), (seed, la, lb)
        assert moved_alike(before, a, b) < 0.05, seed
    assert graphed.graph is not None and graphed.replays == 4  # steps 3, 4, 6, 7 (5 is the odd batch)
    # the learning rate lives in a tensor the graph reads: lr 0 must leave every weight bit-identical
    frozen = [p.detach().clone() for p in b.parameters()]
    graphed({k: v.to(dev) for k, v in tiny_batch(9).items()}, 0.0)
    assert graphed.replays == 5
    assert all(torch.equal(p, q) for p, q in zip(b.parameters(), frozen, strict=True))


@needs_cuda
def test_trainer_with_cuda_graph_resumes(tmp_path):
    """Real loader (worker processes, pin-memory thread running during the capture), graph replays, resume."""
    from p3m.data.synth import SynthConfig, generate_dataset
    from p3m.train.config import load_config

    root = tmp_path / "P3M-10k"
    generate_dataset(root, SynthConfig(n_train=8, n_test_p=1, n_test_np=1, size=(64, 64), seed=5))
    sets = [
        f"data.root={root}",
        "data.crop_sizes=[64]",
        "data.resize=64",
        "data.trimap_kernel=[3, 5]",
        "data.workers=2",
        "data.pin_memory=true",
        "model.width=8",
        "train.batch_size=2",
        "train.log_every=1",
        "val.every=0",
        "train.device=cuda",
        "train.cuda_graph=true",
        "train.amp=bf16",
        "train.channels_last=true",
        "train.save_every=3",
    ]
    first = train(load_config(None, [*sets, "train.max_steps=6"]), out_dir=tmp_path / "run", progress=False)
    recs = [r for r in first.history if r["type"] == "train"]
    assert first.step == 6 and recs[-1]["graph_replays"] == 3
    assert all(math.isfinite(r["loss"]["total"]) for r in recs)
    again = train(
        load_config(None, [*sets, "train.max_steps=9"]), out_dir=tmp_path / "run", progress=False, resume=True
    )
    assert again.step == 9 and math.isfinite(again.history[-1]["loss"]["total"])
