"""Nothing lost, nobody locked out (issue 19): interrupted batches, p3m's own outputs as inputs, a bad model folder.

- Interrupted sets: `p3m matte` and `p3m anonymize` killed with SIGKILL (real kills of a real process, between the
  renames of a set and at random moments) never leave a set that a rerun takes as done unless it is whole and from
  one run; a plain rerun names the incomplete sets, ``--skip-existing`` redoes them, and the temporary files of the
  killed run are removed. The renames are slowed in the killed process (a wrapper around ``os.replace``) so that
  kills land inside a set's commit, the window that matters.
- Own outputs: a rerun into the input folder does not take ``<stem>_alpha.png`` etc. for inputs.
- The model folder: each kind of bad entry is listed apart with its reason, and neither `p3m models`, a plain
  `p3m matte` nor naming a good model breaks.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from p3m import atomic
from p3m.cli import main
from p3m.infer.batch import plan_outputs, set_state
from p3m.io import read_image, write_image
from p3m.models import create
from p3m.models import store as model_store
from p3m.models.checkpoint import save_checkpoint
from tests.hostile import portrait, unreadable

KINDS = ["alpha", "rgba", "fg", "composite"]

# `p3m ARGS...` in a process whose every rename of an image pauses PAUSE seconds after it happened: a kill then
# lands between two renames of one set with a chance that a test can count on
_SLOW_RENAMES = """
import os, sys, time
pause = float(sys.argv[1])
rename = os.replace
def slow_replace(src, dst, *args, **kwargs):
    rename(src, dst, *args, **kwargs)
    if os.fspath(dst).endswith((".png", ".jpg")):
        time.sleep(pause)
os.replace = slow_replace
from p3m.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _start_slow(pause: float, argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _SLOW_RENAMES, str(pause), *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> bool:
    """Poll until ``predicate()`` (True) or the process ends or time runs out (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    return False


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


def _final(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _inputs(folder: Path, n: int, size: tuple[int, int] = (96, 72)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"p{i}.png"
        write_image(path, portrait(*size, seed=i))
        paths.append(path)
    return paths


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.int16)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to one grey level: CPU runs of one network differ by that much in a few composite pixels."""
    return a.shape == b.shape and int(np.abs(a - b).max(initial=0)) <= 1


def _weights(tmp_path: Path, name: str, seed: int) -> str:
    torch.manual_seed(seed)
    path = save_checkpoint(create("p3m-r34", width=16), tmp_path / "ck" / name)
    model_store.register(path, name, arch="p3m-r34", origin="test")
    return name


@pytest.fixture
def tiny(home: Path, tmp_path: Path) -> str:
    return _weights(tmp_path, "tiny-a", 0)


def _matte(inputs: Path, out: Path, weights: str, *extra: str) -> list[str]:
    return ["matte", str(inputs), "-o", str(out), "--save", ",".join(KINDS), "--weights", weights, "-q", *extra]


# ------------------------------------------------------------------------------------------ item 7: interrupted sets


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_set_killed_between_its_renames_is_redone_and_its_leftovers_removed(tiny, tmp_path, capsys) -> None:
    src = tmp_path / "in"
    inputs = _inputs(src, 3)
    out, ref = tmp_path / "out", tmp_path / "ref"
    proc = _start_slow(3.0, _matte(src, out, tiny))
    assert _wait_for(lambda: bool(_final(out)), proc), proc.stderr.read().decode() if proc.stderr else ""
    _kill(proc)  # SIGKILL in the pause after the first rename of the first set

    jobs, _ = plan_outputs(inputs, out, KINDS)
    states = {src.name: set_state(outs) for src, outs in jobs}
    assert states == {"p0.png": "incomplete", "p1.png": "new", "p2.png": "new"}
    assert any(atomic.is_pending_mark(name) for name in _hidden(out))
    assert any(atomic.is_temporary(name) for name in _hidden(out))  # the set's files not yet renamed

    # a plain rerun starts nothing and says which set is incomplete
    assert main(_matte(src, out, tiny)) == 2
    err = capsys.readouterr().err
    assert "1 incomplete output set(s)" in err and "p0.png" in err and "missing" in err and "interrupted" in err
    assert "--skip-existing" in err and "Traceback" not in err and err.count("\n") == 1

    # --skip-existing redoes it, removes the leftovers, and every set ends as a clean run writes it
    assert main([*_matte(src, out, tiny), "--skip-existing"]) == 0
    assert _hidden(out) == []
    assert main(_matte(src, ref, tiny)) == 0
    assert [p.name for p in _final(out)] == [p.name for p in _final(ref)]
    for a, b in zip(_final(out), _final(ref), strict=True):
        assert _same(_pixels(a), _pixels(b)), a.name


@pytest.mark.slow
@pytest.mark.subprocess
def test_random_sigkills_never_leave_a_mixed_or_torn_set_taken_as_done(tiny, tmp_path) -> None:
    """Run A (weights a) is complete; runs B (weights b, --overwrite) are killed at random moments, again and again.
    After every kill, each set a rerun would take as done holds A's files only or B's files only, every file
    that exists decodes, and a final --skip-existing run completes every set and leaves no temporary file."""
    other = _weights(tmp_path, "tiny-b", 1)
    src = tmp_path / "in"
    inputs = _inputs(src, 3)
    out, ref_b = tmp_path / "out", tmp_path / "ref-b"
    assert main(_matte(src, out, tiny)) == 0
    ref_a = tmp_path / "ref-a"
    shutil.copytree(out, ref_a)
    assert main(_matte(src, ref_b, other)) == 0
    jobs, _ = plan_outputs(inputs, out, KINDS)
    versions = {}
    for _, outs in jobs:
        for dest in outs.values():
            a, b = _pixels(ref_a / dest.name), _pixels(ref_b / dest.name)
            assert not _same(a, b)  # the two runs are told apart by every file
            versions[dest.name] = {"A": a, "B": b}

    def run_of(dest: Path) -> str:
        pixels = _pixels(dest)  # a torn file would not decode: an ImageError fails the test
        return next((run for run, ref in versions[dest.name].items() if _same(pixels, ref)), "?")

    def check() -> set[str]:
        states = set()
        for _, outs in jobs:
            state = set_state(outs)
            states.add(state)
            found = {run_of(d) for d in outs.values() if d.is_file()}
            assert "?" not in found  # each file is one run's, whole
            if state == "done":
                assert len(found) == 1, f"a set taken as done mixes runs: {found}"
        return states

    rng = random.Random(19)
    seen: set[str] = set()
    for i in range(6):
        proc = _start_slow(0.08, _matte(src, out, other, "--overwrite"))
        if i % 2:  # anywhere in the run, from start-up on
            _wait_for(lambda: False, proc, timeout=rng.uniform(0.5, 6.0))
        else:  # inside a set's commit: after its marks appear
            _wait_for(lambda: any(atomic.is_pending_mark(n) for n in _hidden(out)), proc)
            time.sleep(rng.uniform(0.0, 0.4))
        _kill(proc)
        seen |= check()
    assert "incomplete" in seen  # the kills did land inside sets
    assert main([*_matte(src, out, other), "--skip-existing"]) == 0
    assert check() == {"done"} and _hidden(out) == []
    for dest in _final(out):
        read_image(dest)


@pytest.mark.slow
@pytest.mark.subprocess
def test_an_anonymize_run_killed_mid_set_is_named_by_a_plain_rerun(tmp_path, capsys) -> None:
    src = tmp_path / "in"
    _inputs(src, 2)
    out = tmp_path / "anon"
    proc = _start_slow(3.0, ["anonymize", str(src), "-o", str(out), "-q"])
    assert _wait_for(lambda: bool(_final(out)), proc)
    _kill(proc)
    assert any(atomic.is_pending_mark(n) for n in _hidden(out))
    assert main(["anonymize", str(src), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "left incomplete by an interrupted run" in err and "Traceback" not in err
    assert main(["anonymize", str(src), "-o", str(out), "-q", "--overwrite"]) == 0
    assert _hidden(out) == []  # the killed run's temporary files and marks are gone
    assert sorted(p.name for p in _final(out)) == ["anonymize_report.csv", "p0.png", "p0.png", "p1.png", "p1.png"]


def test_commit_set_marks_live_files_and_orphan_cleanup_spares_a_live_writer(tmp_path) -> None:
    a, b = tmp_path / "x_alpha.png", tmp_path / "x_rgba.png"
    staged = [(atomic.stage_bytes(a, b"1"), a), (atomic.stage_bytes(b, b"2"), b)]
    assert atomic.remove_orphans(tmp_path) == []  # this process holds them: a concurrent run is never robbed
    atomic.commit_set(staged)
    assert a.read_bytes() == b"1" and atomic.is_whole(a) and atomic.is_whole(b)
    assert _hidden(tmp_path) == []
    # what a killed writer leaves: a temporary file nobody holds, a mark beside a file, a mark of a missing file
    (tmp_path / ".x_fg.png.abc123.tmp").write_bytes(b"partial")
    atomic.pending_mark(a).touch()
    atomic.pending_mark(tmp_path / "x_gone.png").touch()
    assert not atomic.is_whole(a)
    removed = sorted(p.name for p in atomic.remove_orphans(tmp_path))
    assert removed == [".x_fg.png.abc123.tmp", ".x_gone.png.p3m-pending"]
    assert not atomic.is_whole(a)  # the mark beside an existing file stays: its set is still incomplete
    atomic.commit_set([(atomic.stage_bytes(a, b"3"), a)])
    assert atomic.is_whole(a) and _hidden(tmp_path) == []


def test_a_failing_commit_leaves_no_part_of_the_set_and_no_mark(tmp_path) -> None:
    a, b = tmp_path / "y_alpha.png", tmp_path / "y_rgba.png"
    b.mkdir()
    (b / "keep").write_text("a folder in the way")
    staged = [(atomic.stage_bytes(a, b"1"), a), (atomic.stage_bytes(tmp_path / "z.png", b"2"), b)]
    with pytest.raises(OSError) as info:
        atomic.commit_set(staged)
    assert info.value.filename == str(b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y_rgba.png"]


# ----------------------------------------------------------------------------------- item 8: own outputs as inputs


@pytest.mark.slow  # keeps the fast loop under a minute (about 1 s of CPU); make test runs it
def test_a_rerun_into_the_input_folder_does_not_matte_its_own_outputs(tiny, tmp_path, capsys) -> None:
    same = tmp_path / "same"
    _inputs(same, 1)
    argv = ["matte", str(same), "-o", str(same), "--weights", tiny]
    assert main(argv) == 0
    assert sorted(p.name for p in same.iterdir()) == ["p0.png", "p0_alpha.png", "p0_rgba.png"]
    capsys.readouterr()
    assert main([*argv, "--skip-existing"]) == 0
    err = capsys.readouterr().err
    assert sorted(p.name for p in same.iterdir()) == ["p0.png", "p0_alpha.png", "p0_rgba.png"]
    assert "left out 2 file(s) that p3m wrote (p0_alpha.png, p0_rgba.png)" in err and "1 skipped" in err
    # a glob is a folder listing too; a file named one by one is an input whatever its name
    assert main(["matte", str(same / "*.png"), "-o", str(same), "--weights", tiny, "--skip-existing", "-q"]) == 0
    assert not (same / "p0_alpha_alpha.png").exists()
    assert main(["matte", str(same / "p0_alpha.png"), "-o", str(same), "--weights", tiny, "-q"]) == 0
    assert (same / "p0_alpha_alpha.png").is_file()


def test_a_folder_of_own_outputs_only_is_no_input(tiny, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    _inputs(tmp_path / "in", 1)
    assert main(["matte", str(tmp_path / "in"), "-o", str(out), "--weights", tiny, "-q"]) == 0
    capsys.readouterr()  # the first run's summary line
    assert main(["matte", str(out), "-o", str(tmp_path / "again"), "--weights", tiny]) == 2
    err = capsys.readouterr().err
    assert "no input images (left out 2 file(s) that p3m wrote" in err and err.count("\n") == 1


@pytest.mark.slow
def test_anonymize_reruns_leave_their_own_outputs_out(tmp_path) -> None:
    photos = tmp_path / "photos"
    _inputs(photos, 2)
    out = photos / "anon"  # inside the input folder, found again with --recursive
    argv = ["anonymize", str(photos), "-o", str(out), "-r", "-q"]
    assert main(argv) == 0
    first = sorted(str(p.relative_to(out)) for p in _final(out))
    assert first == ["anonymize_report.csv", "facemask/p0.png", "facemask/p1.png", "p0.png", "p1.png"]
    assert main([*argv, "--overwrite"]) == 0  # no 'same name' errors from its own outputs, no facemask/facemask
    assert sorted(str(p.relative_to(out)) for p in _final(out)) == first
    # matte takes anonymised photos (the point of P3M) but not the face masks
    from p3m.io import find_inputs

    found, _, left_out = find_inputs([out], recursive=True, verb="matte")
    assert sorted(p.name for p in found) == ["p0.png", "p1.png"] and len(left_out) == 2


# ------------------------------------------------------------------------------------ item 12: a bad model folder


def _models_folder(home: Path, tmp_path: Path, monkeypatch) -> dict[str, str]:
    """A model folder with one good model and one entry of each bad kind -> {name: expected words}."""
    models = home / "models"
    good = _weights(tmp_path, "good", 0)
    torch.manual_seed(0)
    net = create("p3m-r34", width=16)
    bad: dict[str, str] = {}
    for name, sidecar, words in [
        ("deep", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("archlist", '{"arch": ["p3m-r34"], "format_version": 1}', "'arch' must be an architecture name"),
        ("future", '{"arch": "p3m-r34", "format_version": 999}', "format_version 999"),
    ]:
        path = save_checkpoint(net, models / name)
        path.with_suffix(".json").write_text(sidecar)
        bad[name] = words
    (models / "folder.safetensors").mkdir()
    bad["folder"] = "is a folder"
    (models / "empty.pth").write_bytes(b"")
    bad["empty"] = "empty file"
    (models / "junk.safetensors").write_bytes(b"\x00\x01 not safetensors at all")
    bad["junk"] = "unreadable safetensors file"
    locked = save_checkpoint(net, models / "locked")
    unreadable(locked, monkeypatch)
    bad["locked"] = "ermission denied"
    os.symlink(models / "nowhere.pth", models / "dangling.pth")
    bad["dangling"] = "broken symlink"
    os.symlink(models / "loop2.pth", models / "loop1.pth")
    os.symlink(models / "loop1.pth", models / "loop2.pth")
    bad["loop1"] = bad["loop2"] = "symlink loop"
    assert good == "good"
    return bad


def test_every_bad_entry_is_listed_with_its_reason_and_the_rest_works(home, tmp_path, monkeypatch, capsys) -> None:
    bad = _models_folder(home, tmp_path, monkeypatch)
    assert [e.name for e in model_store.list_weights()] == ["good", model_store.BUILTIN]
    unusable = {e.name: e.problem for e in model_store.list_unusable()}
    assert set(unusable) == set(bad)
    for name, words in bad.items():
        assert words in unusable[name] and "\n" not in unusable[name], (name, unusable[name])
    assert model_store.default_model().name == model_store.BUILTIN
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"{len(bad)} unusable entries of the model folder, left out:" in out
    assert "  deep: " in out and "nested too deeply" in out
    for name in ("archlist", "loop1", "dangling"):  # naming a bad one says why, in one line
        assert main(["matte", str(_inputs(tmp_path / "in", 1)[0]), "-o", str(tmp_path / "o"), "--weights", name]) == 2
        err = capsys.readouterr().err
        assert f"'{name}'" in err and bad[name] in err and err.count("\n") == 1 and "Traceback" not in err
    assert main(["matte", str(tmp_path / "in"), "-o", str(tmp_path / "o1"), "--weights", "good", "-q"]) == 0


def test_a_corrupt_index_is_listed_and_breaks_nothing(home, tmp_path, capsys) -> None:
    good = _weights(tmp_path, "good", 0)
    index = home / "models" / "index.json"
    for text, words in [("{oops", "unreadable model index"), ("[" * 50_000 + "]" * 50_000, "nested too deeply")]:
        index.write_text(text)
        assert [e.name for e in model_store.list_unusable()] == ["index.json"]
        (problem,) = [e.problem for e in model_store.list_unusable()]
        assert words in problem and "fix or delete it" in problem
        # the registered file is still offered, as a file of the folder
        assert [e.name for e in model_store.list_weights()] == [good, model_store.BUILTIN]
        assert main(["models"]) == 0 and "index.json: " in capsys.readouterr().out
    index.write_text('{"version": 1, "models": {"x": {"file": ["a"]}, "y": 3, "z": {"file": "gone.pth"}}}')
    problems = {e.name: e.problem for e in model_store.list_unusable()}
    assert set(problems) == {"x", "y", "z"} and "missing" in problems["z"] and "names no weights file" in problems["x"]


@pytest.mark.slow
def test_plain_matte_uses_the_builtin_route_whatever_the_folder_holds(home, tmp_path, monkeypatch, capsys) -> None:
    _models_folder(home, tmp_path, monkeypatch)
    (home / "models" / "index.json").write_text("[" * 50_000)
    (src,) = _inputs(tmp_path / "in", 1, size=(64, 48))
    assert main(["matte", str(src), "-o", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "portrait-cf" in err and "internal error" not in err


@pytest.mark.slow
def test_the_server_starts_and_lists_with_a_bad_model_folder(home, tmp_path, monkeypatch) -> None:
    pytest.importorskip("fastapi")
    import warnings

    with warnings.catch_warnings():  # starlette's note about its httpx client, not about p3m
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from p3m.serve import ServeSettings, create_app

    bad = _models_folder(home, tmp_path, monkeypatch)
    with TestClient(create_app(ServeSettings(workers=1)), base_url="http://127.0.0.1") as client:
        health = client.get("/v1/health").json()
        assert health["matting"]["ready"], health
        listed = client.get("/v1/models").json()
        assert listed["loaded"]["name"] == model_store.BUILTIN
        assert {m["name"] for m in listed["available"]} == {"good", model_store.BUILTIN}
        assert not set(bad) & {m["name"] for m in listed["available"]}


# ------------------------------------------------------------------------------------------------------ smaller


def test_a_recursive_glob_does_not_follow_a_link_to_a_parent_folder(tmp_path) -> None:
    from p3m.io import collect_images

    for i in range(4):  # four links up: a listing that followed them would grow as 4^depth
        (tmp_path / "sub").mkdir(exist_ok=True)
        os.symlink(tmp_path, tmp_path / "sub" / f"up{i}")
    write_image(tmp_path / "sub" / "a.png", np.zeros((4, 4), np.uint8))
    start = time.monotonic()
    paths, problems = collect_images([str(tmp_path / "**" / "*.png")], recursive=True)
    assert [p.name for p in paths] == ["a.png"] and problems == [] and time.monotonic() - start < 10


def test_a_symlink_loop_is_called_one(tmp_path, capsys) -> None:
    os.symlink(tmp_path / "b.png", tmp_path / "a.png")
    os.symlink(tmp_path / "a.png", tmp_path / "b.png")
    from p3m.errors import ImageError
    from p3m.io import collect_images

    _, problems = collect_images([tmp_path / "a.png"])
    assert problems == [f"{tmp_path / 'a.png'}: symlink loop"]
    _, problems = collect_images([tmp_path])  # inside a folder too
    assert f"{tmp_path / 'a.png'}: symlink loop" in problems
    with pytest.raises(ImageError, match=r"a\.png: symlink loop"):
        read_image(tmp_path / "a.png")
    assert main(["matte", str(tmp_path / "a.png"), "-o", str(tmp_path / "out")]) == 2
    assert "symlink loop" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_every_file_of_a_training_run_follows_the_umask(synth_dataset, tmp_path, umask) -> None:
    root = synth_dataset(n_train=2, n_test_p=1, n_test_np=1, size=(64, 64))
    out = tmp_path / "run"
    script = "import os, sys; os.umask(int(sys.argv[1])); from p3m.cli import main; sys.exit(main(sys.argv[2:]))"
    argv = ["train", "demo", "--out", str(out), "-q", "--set", f"data.root={root}", "--set", "train.max_steps=2"]
    argv += ["--set", "train.save_every=1", "--set", "val.every=0", "--set", "data.crop_sizes=[64]"]
    run = subprocess.run([sys.executable, "-c", script, str(umask), *argv], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert "curves.png" in {p.name for p in files}
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {p.name: oct(0o666 & ~umask) for p in files}


def test_the_outputs_of_a_set_carry_the_plain_mode(tmp_path) -> None:
    arr = np.zeros((4, 4), np.uint8)
    from p3m.io import write_image_set

    umask = os.umask(0)
    os.umask(umask)
    for path in write_image_set([(tmp_path / "a.png", arr), (tmp_path / "b.png", arr)]):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask
