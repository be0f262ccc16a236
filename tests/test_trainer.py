"""Trainer: loss decreases, SIGKILL + --resume, SIGINT clean stop, DDP (torchrun, gloo), checkpoints and logs."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from p3m.train.config import load_config
from p3m.train.resume import RESUME_FILE
from p3m.train.trainer import lr_at, predict_validation, train, validation_net
from tests.paths import REPO

torch.set_num_threads(1)
VENV_BIN = Path(sys.executable).parent

TINY = [
    "data.crop_sizes=[32, 48, 64]",
    "data.resize=32",
    "data.trimap_kernel=[3, 5]",
    "data.workers=0",
    "data.pin_memory=false",
    "model.width=8",
    "train.batch_size=2",
    "train.log_every=1",
    "optim.lr=1e-3",
    "val.scale=0.5",
    "val.every=0",
    "train.threads=1",
]


@pytest.fixture(scope="module")
def synth_root(synth_dataset) -> Path:
    return synth_dataset(n_train=6, n_test_p=2, n_test_np=2, size=(64, 64), seed=5)


def tiny(root: Path, *extra: str):
    return load_config(None, [f"data.root={root}", *TINY, *extra])


def write_config(path: Path, root: Path, *extra: str) -> Path:
    import yaml

    from p3m.train.config import config_to_dict

    path.write_text(yaml.safe_dump(config_to_dict(tiny(root, *extra))))
    return path


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_lr_schedule():
    cfg = load_config(None, ["optim.lr=1.0", "optim.warmup_steps=4", "optim.schedule=cosine", "optim.min_lr=0.1"]).optim
    assert [lr_at(s, 14, cfg) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(4, 14, cfg) == pytest.approx(1.0)
    assert lr_at(9, 14, cfg) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(14, 14, cfg) == pytest.approx(0.1)
    const = load_config(None, ["optim.lr=0.5"]).optim
    assert lr_at(1000, 10, const) == 0.5


@pytest.mark.slow
class _ShapeNet(torch.nn.Module):
    """Records its input shapes; the fused alpha is a left-to-right ramp, the other outputs constant."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor):
        self.shapes.append(tuple(x.shape))
        b, _, h, w = x.shape
        ramp = torch.linspace(0, 1, w).expand(b, 1, h, w)
        return torch.zeros(b, 3, h, w), torch.zeros(b, 1, h, w), ramp


def test_validation_predicts_with_the_test_strategies_size_rule():
    from p3m.errors import ImageError
    from p3m.infer.runtime import TorchNet
    from p3m.infer.strategies import predict_resize, size_rule
    from p3m.train.config import ValConfig

    model = _ShapeNet()
    net = validation_net(model, torch.device("cpu"))
    image = np.random.default_rng(0).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    # max_side 100 is floored to 96 (a multiple of 32), as the network needs
    alpha = predict_validation(net, image, ValConfig(scale=0.5, max_side=100))
    assert model.shapes == [(1, 3, *size_rule(300, 200, 0.5, 96))] == [(1, 3, 96, 96)]
    assert alpha.shape == (300, 200) and alpha.dtype == np.float32
    same = predict_resize(TorchNet(lambda x: model(x)), image, resize_mode="fast", ratio=0.5, max_size=96)
    np.testing.assert_array_equal(alpha, same)
    assert alpha[:, 0].max() < 0.05 and alpha[:, -1].min() > 0.95
    with pytest.raises(ImageError, match="too small"):
        predict_validation(net, image[:40, :40], ValConfig(scale=0.5))


@pytest.mark.slow  # 30 steps of training: about 6 s of CPU, a tenth of the fast loop
def test_loss_goes_down_on_tiny_set(synth_root, tmp_path):
    torch.manual_seed(0)
    # whole-image crops, fixed trimap kernel: the same two samples every step, so the loss must fall
    cfg = tiny(
        synth_root,
        "train.max_steps=40",
        "data.max_samples=2",
        "train.batch_size=2",
        "data.flip_prob=0",
        "data.crop_sizes=[64]",
        "data.trimap_kernel=[4, 4]",
        "optim.lr=2e-3",
        "train.save_every=100",
    )
    result = train(cfg, out_dir=tmp_path / "run", progress=False)
    losses = [r["loss"]["total"] for r in result.history if r["type"] == "train"]
    assert len(losses) == 40 and result.step == 40
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.85 * first, (first, last)
    assert result.last_checkpoint.is_file() and (tmp_path / "run" / "curves.png").is_file()


@pytest.mark.slow
def test_validation_keeps_best_checkpoints_and_weights_load(synth_root, tmp_path):
    from p3m.models import load_model

    cfg = tiny(synth_root, "train.max_steps=4", "val.every_steps=2", "train.save_every=2")
    result = train(cfg, out_dir=tmp_path / "run", progress=False)
    vals = [r for r in result.history if r["type"] == "val"]
    assert [v["step"] for v in vals] == [2, 4]
    assert set(vals[0]["metrics"]) == {"P3M-500-P", "P3M-500-NP"}
    assert "sad" in vals[0]["metrics"]["P3M-500-P"] and "sad_privacy" in vals[0]["metrics"]["P3M-500-P"]
    assert {"sad_P3M-500-P", "sad_P3M-500-NP", "sad_privacy_P3M-500-P"} <= set(result.best_checkpoints)
    for path in result.best_checkpoints.values():
        assert path.is_file() and path.name.startswith("best_")
    _model, meta = load_model(result.last_checkpoint)
    assert meta["step"] == 4 and meta["arch"] == "p3m-r34"
    # trained on `p3m synth` output: recorded, so that using the weights on real photos warns
    assert meta["dataset_synthetic"] is True
    from p3m.models import store as model_store

    assert model_store.trained_on_synthetic(result.last_checkpoint)
    # resume state loads with the safe unpickler
    state = torch.load(tmp_path / "run" / RESUME_FILE, weights_only=True)
    assert state["step"] == 4 and "optimizer" in state and "rng" in state
    # a second run into the same folder without --resume is refused
    from p3m.errors import P3MError

    with pytest.raises(P3MError, match="--resume"):
        train(cfg, out_dir=tmp_path / "run", progress=False)


def _spawn_train(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [str(VENV_BIN / "p3m"), "train", str(config), "--out", str(out), "-q", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=REPO,
    )


def _wait_for_step(out: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        files_written = (out / RESUME_FILE).is_file() and (out / "train_log.jsonl").is_file()
        if files_written and any(r["step"] >= step for r in records(out) if r["type"] == "train"):
            return
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read().decode())
        time.sleep(0.05)
    raise AssertionError("training did not reach the step in time")


@pytest.mark.slow
@pytest.mark.subprocess
def test_sigkill_then_resume_reaches_the_same_step_count(synth_root, tmp_path):
    config = write_config(tmp_path / "c.yaml", synth_root, "train.max_steps=14", "train.save_every=3")
    out = tmp_path / "run"
    proc = _spawn_train(config, out)
    _wait_for_step(out, 5, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = torch.load(out / RESUME_FILE, weights_only=True)  # never corrupt, whenever the kill lands
    assert saved["step"] in (3, 6) and saved["step"] < 14
    proc = _spawn_train(config, out, "--resume")
    output = proc.communicate(timeout=180)[0].decode()
    assert proc.returncode == 0, output
    state = torch.load(out / RESUME_FILE, weights_only=True)
    assert state["step"] == 14
    steps = [r["step"] for r in records(out) if r["type"] == "train"]
    assert steps == list(range(1, 15))  # records of the steps lost by the kill were replaced, none duplicated
    assert not list(out.glob(".*.tmp"))
    from p3m.models import load_model

    _, meta = load_model(out / "last.safetensors")
    assert meta["step"] == 14


@pytest.mark.slow
def test_resume_matches_uninterrupted_run(synth_root, tmp_path):
    """Stopping at a save point and resuming gives the same weights as one uninterrupted run."""
    train(tiny(synth_root, "train.max_steps=6", "train.save_every=3"), out_dir=tmp_path / "a", progress=False)
    train(tiny(synth_root, "train.max_steps=3", "train.save_every=3"), out_dir=tmp_path / "b", progress=False)
    resumed = train(
        tiny(synth_root, "train.max_steps=6", "train.save_every=3"), out_dir=tmp_path / "b", resume=True, progress=False
    )
    assert resumed.step == 6
    a = torch.load(tmp_path / "a" / RESUME_FILE, weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / RESUME_FILE, weights_only=True)["model"]
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), key


@pytest.mark.slow
@pytest.mark.subprocess
def test_sigint_saves_and_exits_cleanly(synth_root, tmp_path):
    config = write_config(tmp_path / "c.yaml", synth_root, "train.max_steps=400", "train.save_every=1000")
    out = tmp_path / "run"
    proc = _spawn_train(config, out)
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / "train_log.jsonl").is_file() and records(out)):
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # save_every is 1000: only the interrupt handler can have saved
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 130, output
    assert "--resume" in output and "Traceback" not in output
    state = torch.load(out / RESUME_FILE, weights_only=True)
    assert 1 <= state["step"] < 400
    assert max(r["step"] for r in records(out)) <= state["step"]


@pytest.mark.slow
@pytest.mark.subprocess
def test_ddp_two_processes_gloo(synth_root, tmp_path):
    torchrun = VENV_BIN / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed in this environment")
    # resize 64: the last batch of an epoch holds 1 sample per rank, and BatchNorm needs > 1 value at 1/32
    config = write_config(
        tmp_path / "c.yaml",
        synth_root,
        "train.max_steps=3",
        "train.save_every=2",
        "val.every_steps=3",
        "val.max_images=1",
        "data.resize=64",
    )
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "--master_port",
            str(29500 + os.getpid() % 1000),
            str(VENV_BIN / "p3m"),
            "train",
            str(config),
            "--out",
            str(out),
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    state = torch.load(out / RESUME_FILE, weights_only=True)
    assert state["step"] == 3
    recs = records(out)
    # only rank 0 writes: one record per step, images counted over both ranks
    assert [r["step"] for r in recs if r["type"] == "train"] == [1, 2, 3]
    assert [r["step"] for r in recs if r["type"] == "val"] == [3]
    assert all(r["images_per_s"] > 0 for r in recs if r["type"] == "train")
    # 6 samples over 2 ranks at batch 2: 2 steps per epoch
    assert recs[1]["epoch"] == pytest.approx(1.0)


@pytest.mark.slow
def test_bf16_channels_last_overwrite_and_register(synth_root, tmp_path, monkeypatch, capsys):
    cfg = tiny(
        synth_root,
        "train.max_steps=2",
        "train.amp=bf16",
        "train.channels_last=true",
        "train.save_every=1",
        "optim.schedule=cosine",
        "optim.warmup_steps=1",
        "optim.clip_grad=1.0",
        "register_as=tiny-test",
        "data.crop_policy=mm21",
        "data.trimap_variant=mm21",
        "copy_paste.enabled=true",
        "copy_paste.prob=1.0",
    )
    first = train(cfg, out_dir=tmp_path / "run", progress=False)
    assert first.step == 2 and all(math.isfinite(r["loss"]["total"]) for r in first.history)
    assert any("tiny-test" in p.name for p in (tmp_path / "home").rglob("*"))
    (tmp_path / "run" / "notes.txt").write_text("keep me")
    again = train(tiny(synth_root, "train.max_steps=1"), out_dir=tmp_path / "run", progress=False, overwrite=True)
    assert again.step == 1 and [r["step"] for r in again.history] == [1]
    assert (tmp_path / "run" / "notes.txt").read_text() == "keep me"
    # the same name registered from another run folder: said, and the name now points to the new run's weights
    capsys.readouterr()
    train(tiny(synth_root, "train.max_steps=1", "register_as=tiny-test"), out_dir=tmp_path / "run2", progress=False)
    err = capsys.readouterr().err
    assert "note: `tiny-test` was registered by trained:" in err and str(tmp_path / "run") in err


def test_cli_errors_are_one_line(tmp_path, capsys):
    from p3m.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  batch_size: -1\n  bogus: 1\n")
    assert main(["train", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown key 'train.bogus'" in err
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read config" in capsys.readouterr().err


@pytest.mark.slow
def test_train_threads_apply_to_training_only(synth_root, tmp_path):
    """`train.threads` is for the training loop; the caller's torch thread count is restored afterwards."""
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    seen = []
    original = torch.set_num_threads

    def spy(n):
        seen.append(n)
        original(n)

    torch.set_num_threads = spy
    try:
        train(tiny(synth_root, "train.max_steps=1", f"train.threads={target}"), out_dir=tmp_path / "t", progress=False)
    finally:
        torch.set_num_threads = original
    assert seen[0] == target and torch.get_num_threads() == before


class _Payload:
    """A pickled object that would run code if unpickled without the weights-only guard."""

    def __reduce__(self):
        return (print, ("payload ran",))


def test_bad_resume_files_are_one_clear_line(synth_root, tmp_path, capsys):
    from p3m import models
    from p3m.cli import main

    cfg = write_config(tmp_path / "c.yaml", synth_root, "train.max_steps=1")
    run = tmp_path / "run"
    run.mkdir()
    cases = {
        # a plain state dict (e.g. the weights of a model) is not a resume state
        "weights only": (models.create("p3m-r34", width=8).state_dict(), "model weights only"),
        "refused payload": ({"model": _Payload()}, "refused to load"),
        "other dict": ({"step": 3}, "missing model, optimizer, scaler, rng"),
    }
    for name, (obj, needle) in cases.items():
        torch.save(obj, run / RESUME_FILE)
        assert main(["train", str(cfg), "--out", str(run), "--resume"]) == 2, name
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert err.count("\n") == 0 and needle in err and str(run / RESUME_FILE) in err, (name, err)
        assert "KeyError" not in err and "payload ran" not in captured.out + captured.err
    (run / RESUME_FILE).write_bytes(b"not a torch file at all")
    assert main(["train", str(cfg), "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot load resume state" in err


# ------------------------------------------------------------------------------------------ run folders (issue 19)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(synth_root, tmp_path_factory) -> Path:
    """A finished 2-step run with validation: resume.pt, last.safetensors, a best checkpoint and a log."""
    out = tmp_path_factory.mktemp("finished") / "run"
    cfg = tiny(synth_root, "train.max_steps=2", "train.save_every=2", "val.every_steps=2", "val.max_images=1")
    train(cfg, out_dir=out, progress=False)
    assert (out / RESUME_FILE).is_file() and list(out.glob("best_*.safetensors"))
    return out


def _copy_run(src: Path, dst: Path, *drop: str) -> Path:
    import shutil

    shutil.copytree(src, dst)
    for name in drop:
        (dst / name).unlink()
    return dst


@pytest.mark.parametrize("flags", [[], ["--resume"]])
def test_folder_with_weights_but_no_resume_state_is_refused(synth_root, finished_run, tmp_path, capsys, flags):
    """Weights and a log without resume.pt: refused without --overwrite (with --resume, saying why), untouched."""
    from p3m.cli import main

    run = _copy_run(finished_run, tmp_path / "run", RESUME_FILE)
    before = _snapshot(run)
    cfg = write_config(tmp_path / "c.yaml", synth_root, "train.max_steps=1")
    assert main(["train", str(cfg), "--out", str(run), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "last.safetensors" in err and "--overwrite" in err, err
    if flags:
        assert f"no {RESUME_FILE}" in err and "starting from scratch" not in err
    else:
        assert "already holds a training run" in err
    assert _snapshot(run) == before


def test_a_log_alone_is_a_run_and_other_files_are_not(synth_root, tmp_path):
    from p3m.errors import P3MError

    (tmp_path / "logged").mkdir()
    (tmp_path / "logged" / "train_log.jsonl").write_text('{"type": "train", "step": 1}\n')
    with pytest.raises(P3MError, match="already holds a training run"):
        train(tiny(synth_root, "train.max_steps=1"), out_dir=tmp_path / "logged", progress=False)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.txt").write_text("mine")
    result = train(tiny(synth_root, "train.max_steps=1"), out_dir=tmp_path / "notes", progress=False)
    assert result.step == 1 and (tmp_path / "notes" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("flags", [[], ["--resume"], ["--overwrite"]])
def test_resume_state_that_is_a_folder_is_refused_and_nothing_is_deleted(
    synth_root, finished_run, tmp_path, capsys, flags
):
    from p3m.cli import main

    run = _copy_run(finished_run, tmp_path / "run", RESUME_FILE)
    (run / RESUME_FILE).mkdir()
    before = _snapshot(run)
    cfg = write_config(tmp_path / "c.yaml", synth_root, "train.max_steps=1")
    assert main(["train", str(cfg), "--out", str(run), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and RESUME_FILE in err and ".tmp" not in err, err
    assert _snapshot(run) == before and (run / RESUME_FILE).is_dir()


@pytest.mark.slow  # keeps the fast loop under a minute (about 1 s of CPU); make test runs it
def test_overwrite_keeps_the_earlier_run_until_the_new_run_saves(synth_root, finished_run, tmp_path, monkeypatch):
    from p3m.train import trainer

    run = _copy_run(finished_run, tmp_path / "run")
    (run / "notes.txt").write_text("keep me")
    before = _snapshot(run)
    cfg = tiny(synth_root, "train.max_steps=3", "train.save_every=2")

    class Killed(Exception):
        pass

    def killed(*args, **kwargs):  # the new run dies at its first save, before writing anything
        raise Killed

    monkeypatch.setattr(trainer, "save_checkpoint", killed)
    with pytest.raises(Killed):
        train(cfg, out_dir=run, progress=False, overwrite=True)
    assert _snapshot(run) == before  # the earlier run is whole: weights, resume state, best checkpoint, log
    monkeypatch.undo()

    result = train(cfg, out_dir=run, progress=False, overwrite=True)
    assert result.step == 3
    assert [r["step"] for r in records(run) if r["type"] == "train"] == [1, 2, 3]  # the new run's log only
    assert not list(run.glob("best_*"))  # the earlier run's best checkpoints went with it
    assert (run / "notes.txt").read_text() == "keep me"
    assert torch.load(run / RESUME_FILE, weights_only=True)["step"] == 3


def _corrupt(state: dict, field: str, value) -> dict:
    node = state
    parts = field.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    return state


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("step", -100, "'step' must be a whole number >= 0, got -100"),
        ("step", 2.5, "'step' must be a whole number"),
        ("epoch", "one", "'epoch' must be a whole number"),
        ("best", {"sad_P3M-500-P": "low"}, "'best' must map"),
        ("optimizer", {"state": {}}, "'optimizer.param_groups'"),
        ("scaler", [1, 2], "'scaler' must be a GradScaler state dict"),
        ("rng.torch", torch.zeros(3), "'rng.torch' must be a 1-D uint8 tensor"),
        ("rng.numpy.pos", -5, "'rng.numpy.pos' must be a whole number in [0, 624]"),
        ("rng.numpy.keys", torch.zeros(10, dtype=torch.int64), "'rng.numpy.keys' must be 624 int64 values"),
        ("rng.numpy.has_gauss", 7, "'rng.numpy.has_gauss' must be 0 or 1"),
        ("rng.python.state", [1, 2, 3], "'rng.python.state' must be a list of 625"),
        ("rng.python.gauss", "x", "'rng.python.gauss' must be a number or None"),
    ],
)
def test_every_resume_field_is_checked_into_one_line(synth_root, finished_run, tmp_path, capsys, field, value, needle):
    from p3m.cli import main

    run = _copy_run(finished_run, tmp_path / "run")
    state = torch.load(run / RESUME_FILE, weights_only=True)
    torch.save(_corrupt(state, field, value), run / RESUME_FILE)
    before = _snapshot(run)
    cfg = write_config(tmp_path / "c.yaml", synth_root, "train.max_steps=3")
    assert main(["train", str(cfg), "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and needle in err and str(run / RESUME_FILE) in err, err
    assert "internal error" not in err
    assert _snapshot(run) == before
