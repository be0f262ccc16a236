"""`p3m evaluate` and the evaluation API: matching, summaries, parallel runs, bad inputs."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from p3m import cli
from p3m.metrics.evaluate import (
    DIM_KEYS,
    P3M_KEYS,
    PRIVACY_KEYS,
    TRIMAP_KEYS,
    binarize_facemask,
    evaluate_arrays,
    evaluate_dirs,
)
from tests.paths import PORTRAITS, REFERENCE_ALPHA
from tests.reference.metrics import ref_all


def run_cli(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    """`p3m.cli.main` with only this verb wired (other verbs may not exist yet in a partial checkout)."""
    monkeypatch.setattr(cli, "COMMANDS", ("evaluate",))
    code = cli.main(["evaluate", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _gray(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _perturb(mask: np.ndarray, seed: int) -> np.ndarray:
    """A plausible saved prediction: blurred, shifted, truncated to 8 bit (`ViTAE-Transformer/P3M-Net`
    core/infer.py)."""
    rng = np.random.default_rng(seed)
    alpha = mask.astype(np.float64) / 255
    pred = cv2.GaussianBlur(alpha, (0, 0), 1.3)
    pred = np.roll(pred, int(rng.integers(-2, 3)), axis=1)
    return np.floor(np.clip(pred, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def synth(synth_dataset) -> Path:
    """The test set, with perturbed masks as predictions in ``pred_P/`` beside it (its folder is its own)."""
    root = synth_dataset(n_train=0, n_test_p=4, n_test_np=4, size=(128, 128), seed=5)
    pred = root.parent / "pred_P"
    for i, mask in enumerate(sorted((root / "validation" / "P3M-500-P" / "mask").glob("*.png"))):
        _gray(pred / mask.name, _perturb(_read(mask), i))
    return root


def _reference_means(pred_dir: Path, split_dir: Path) -> dict[str, float]:
    rows = []
    for mask in sorted((split_dir / "mask").glob("*.png")):
        gt = _read(mask).astype(np.float64) / 255
        pred = _read(pred_dir / mask.name).astype(np.float64) / 255
        trimap = _read(split_dir / "trimap" / mask.name)
        face_path = split_dir / "facemask" / mask.name
        face = _read(face_path) > 100 if face_path.exists() else np.zeros(gt.shape, bool)
        rows.append(ref_all(pred, gt, trimap, face))
    means = {}
    for key in rows[0]:
        values = [r[key] for r in rows if not (key in PRIVACY_KEYS and math.isnan(r[key]))]
        means[key] = float(np.mean(values))
    return means


def test_dataset_evaluation_equals_reference(synth, tmp_path, monkeypatch, capsys):
    out = tmp_path / "report"
    code, stdout, err = run_cli(
        monkeypatch,
        capsys,
        "--pred",
        synth.parent / "pred_P",
        "--dataset",
        synth,
        "--split",
        "P3M-500-P",
        "-o",
        out,
        "--workers",
        "1",
        "--quiet",
    )
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"] == "p3m" and summary["images"] == 4
    expected = _reference_means(synth.parent / "pred_P", synth / "validation" / "P3M-500-P")
    assert set(summary["means"]) == set(P3M_KEYS + TRIMAP_KEYS + PRIVACY_KEYS) == set(expected)
    for key, value in expected.items():
        assert summary["means"][key] == pytest.approx(value, rel=1e-6), key
    assert summary["means"]["sad"] > 0 and summary["means"]["conn"] > 0
    # table printed and written; CSV has one row per image
    assert "P3M protocol" in stdout and "| SAD |" in stdout
    assert (out / "summary.md").read_text() == stdout
    with open(out / "per_image.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and rows[0]["name"].startswith("p_")
    assert float(rows[0]["sad"]) > 0


def _nan_equal(rows_a: list[dict], rows_b: list[dict]) -> bool:
    def norm(row):
        return {k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}

    return [norm(r) for r in rows_a] == [norm(r) for r in rows_b]


@pytest.mark.slow
def test_dirs_evaluation_both_protocols_and_workers(synth, tmp_path):
    split = synth / "validation" / "P3M-500-P"
    args = (synth.parent / "pred_P", split / "mask", split / "trimap", split / "facemask")
    serial = evaluate_dirs(*args, protocol="both", workers=1)
    parallel = evaluate_dirs(*args, protocol="both", workers=2)
    assert _nan_equal(serial.rows, parallel.rows)
    assert set(serial.means) == set(P3M_KEYS + TRIMAP_KEYS + PRIVACY_KEYS + DIM_KEYS)
    # per-image values are the arrays' values
    first = serial.rows[0]
    name = first["name"]
    direct = evaluate_arrays(
        _read(args[0] / f"{name}.png"),
        _read(args[1] / f"{name}.png"),
        _read(args[2] / f"{name}.png"),
        _read(args[3] / f"{name}.png"),
        protocol="both",
    )
    assert _nan_equal([{k: first[k] for k in direct}], [direct])
    assert "DIM protocol" in serial.to_markdown()


@pytest.mark.slow
def test_reference_alphas_against_themselves_are_exactly_zero(tmp_path, monkeypatch, capsys):
    # the shared set where it is checked out, else the three reference mattes shipped in tests/data
    names = sorted((PORTRAITS / "reference_alpha").glob("*.png"))[:4] or sorted(REFERENCE_ALPHA.glob("*.png"))
    assert len(names) >= 3
    gt_dir, tri_dir, face_dir = tmp_path / "gt", tmp_path / "trimap", tmp_path / "face"
    for path in names:
        mask = _read(path)
        small = cv2.resize(mask, (mask.shape[1] // 2, mask.shape[0] // 2), interpolation=cv2.INTER_AREA)
        _gray(gt_dir / path.name, small)
        trimap = np.full(small.shape, 128, np.uint8)
        trimap[cv2.dilate((small > 0).astype(np.uint8), np.ones((9, 9))) == 0] = 0
        trimap[cv2.erode((small == 255).astype(np.uint8), np.ones((9, 9))) == 1] = 255
        _gray(tri_dir / path.name, trimap)
        face = np.zeros(small.shape, np.uint8)
        face[50:150, 200:300] = 255
        _gray(face_dir / path.name, face)
    code, _stdout, err = run_cli(
        monkeypatch,
        capsys,
        "--pred",
        gt_dir,
        "--gt",
        gt_dir,
        "--trimap",
        tri_dir,
        "--facemask",
        face_dir,
        "--protocol",
        "both",
        "-o",
        tmp_path / "out",
        "--workers",
        "2",
    )
    assert code == 0, err
    assert "evaluate" in err  # progress bar on stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(summary["means"]) == len(P3M_KEYS + TRIMAP_KEYS + PRIVACY_KEYS + DIM_KEYS)
    assert all(value == 0.0 for value in summary["means"].values()), summary["means"]


def _bad_inputs(tmp_path: Path) -> tuple[Path, Path]:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c", "d", "e", "f"):
        _gray(gt / f"{name}.png", rng.integers(0, 256, (20, 24), dtype=np.uint8))
    shutil.copy(gt / "a.png", pred / "a.png") if pred.exists() else (pred.mkdir(), shutil.copy(gt / "a.png", pred))
    _gray(pred / "b.png", np.zeros((20, 25), np.uint8))  # size mismatch
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(pred / "c.png")  # RGB prediction
    (pred / "d.png").write_bytes(b"not an image")  # unreadable
    (pred / "e.png").write_bytes(b"")  # empty
    # f.png missing
    _gray(pred / "zzz.png", np.zeros((20, 24), np.uint8))  # extra
    return gt, pred


def test_bad_inputs_are_all_listed_without_traceback(tmp_path, monkeypatch, capsys):
    gt, pred = _bad_inputs(tmp_path)
    code, _stdout, err = run_cli(monkeypatch, capsys, "--pred", pred, "--gt", gt, "--quiet")
    assert code == 2
    assert "Traceback" not in err
    assert err.startswith("p3m evaluate: error: ")
    for expected in (
        "b.png: size 25x20 differs",
        "c.png: prediction is not a grayscale image (mode RGB)",
        "d.png: not a readable image",
        "e.png: empty file",
        "f.png: missing prediction",
        "zzz.png: extra prediction",
    ):
        assert expected in err, expected
    assert "6 problems" in err


@pytest.mark.slow
def test_allow_missing_lists_and_excludes(tmp_path, monkeypatch, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for name in ("a", "b", "c"):
        _gray(gt / f"{name}.png", np.full((10, 10), 200, np.uint8))
    _gray(pred / "a.png", np.full((10, 10), 100, np.uint8))
    code, _, err = run_cli(monkeypatch, capsys, "--pred", pred, "--gt", gt, "--quiet")
    assert code == 2 and "b.png: missing prediction" in err and "c.png: missing prediction" in err
    code, _stdout, err = run_cli(
        monkeypatch, capsys, "--pred", pred, "--gt", gt, "--allow-missing", "--quiet", "-o", tmp_path / "out"
    )
    assert code == 0
    assert "2 ground-truth mattes have no prediction" in err and "b.png" in err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images"] == 1 and len(summary["excluded"]) == 2
    assert summary["means"]["sad"] == pytest.approx(100 * 100 / 255 / 1000)
    # --allow-missing does not hide other problems
    _gray(pred / "zzz.png", np.full((10, 10), 1, np.uint8))
    code, _, err = run_cli(monkeypatch, capsys, "--pred", pred, "--gt", gt, "--allow-missing", "--quiet")
    assert code == 2 and "extra prediction" in err


@pytest.mark.slow
def test_file_failing_to_decode_is_skipped_and_reported(tmp_path, monkeypatch, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        image = rng.integers(0, 256, (64, 64), dtype=np.uint8)
        _gray(gt / f"{name}.png", image)
        _gray(pred / f"{name}.png", image)
    data = (pred / "b.png").read_bytes()
    (pred / "b.png").write_bytes(data[: len(data) // 2])  # header fine, pixel data truncated
    code, _stdout, err = run_cli(monkeypatch, capsys, "--pred", pred, "--gt", gt, "--quiet", "-o", tmp_path / "o")
    assert code == 1 and "Traceback" not in err
    assert "1 files could not be scored" in err and "b.png" in err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["images"] == 1 and len(summary["failures"]) == 1


def test_usage_errors(tmp_path, monkeypatch, capsys):
    gt = tmp_path / "gt"
    _gray(gt / "a.png", np.zeros((8, 8), np.uint8))
    code, _, err = run_cli(monkeypatch, capsys, "--pred", gt, "--gt", gt, "--protocol", "dim", "--quiet")
    assert code == 2 and "needs trimaps" in err
    code, _, err = run_cli(monkeypatch, capsys, "--pred", gt, "--dataset", tmp_path, "--quiet")
    assert code == 2 and "--split" in err
    code, _, err = run_cli(monkeypatch, capsys, "--pred", gt, "--quiet")
    assert code == 2 and "--gt" in err
    code, _, err = run_cli(monkeypatch, capsys, "--pred", tmp_path / "nope", "--gt", gt, "--quiet")
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli(
        monkeypatch, capsys, "--pred", gt, "--dataset", tmp_path / "nope", "--split", "P3M-500-P", "--quiet"
    )
    assert code == 2 and "Traceback" not in err


def test_evaluate_arrays_api():
    rng = np.random.default_rng(4)
    gt = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    pred = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    trimap = np.where(gt > 200, 255, np.where(gt < 50, 0, 128)).astype(np.uint8)
    face8 = np.zeros((30, 40), np.uint8)
    face8[5:10, 5:10] = 101
    face8[20:25, 5:10] = 100  # not > 100: not face
    values = evaluate_arrays(pred, gt, trimap, face8)
    assert set(values) == set(P3M_KEYS + TRIMAP_KEYS + PRIVACY_KEYS)
    assert values == evaluate_arrays(pred / 255, gt / 255, trimap, binarize_facemask(face8))
    assert binarize_facemask(face8).sum() == 25
    assert set(evaluate_arrays(pred, gt, trimap, protocol="dim")) == set(DIM_KEYS)
    assert set(evaluate_arrays(pred, gt, fast=True)) == {"sad", "mse", "mad"}
    with pytest.raises(ValueError, match="needs a trimap"):
        evaluate_arrays(pred, gt, protocol="dim")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate_arrays(pred * 2.0, gt)
    with pytest.raises(ValueError, match="protocol"):
        evaluate_arrays(pred, gt, protocol="matlab")
    with pytest.raises(ValueError, match="shape"):
        evaluate_arrays(pred[:, :39], gt)


def test_matte_output_names_are_accepted(tmp_path):
    """`p3m matte` writes `<stem>_alpha.png`; those stand for `<stem>`, an exact stem wins, others stay extra."""
    gt = tmp_path / "gt"
    pred = tmp_path / "pred"
    a = np.zeros((8, 8), np.uint8)
    a[2:6, 2:6] = 255
    for stem in ("p_a", "p_b"):
        _gray(gt / f"{stem}.png", a)
    _gray(pred / "p_a_alpha.png", a)  # perfect
    _gray(pred / "p_b.png", a)  # exact stem wins over the _alpha one below
    _gray(pred / "p_b_alpha.png", np.zeros_like(a))
    from p3m.errors import P3MError

    with pytest.raises(P3MError, match="p_b_alpha"):  # p_b_alpha is an extra prediction: reported
        evaluate_dirs(pred, gt, workers=1)
    (pred / "p_b_alpha.png").unlink()
    result = evaluate_dirs(pred, gt, workers=1)
    assert sorted(r["name"] for r in result.rows) == ["p_a", "p_b"]
    assert result.means["sad"] == 0.0


def test_a_matte_output_folder_is_read_as_it_is(tmp_path, monkeypatch, capsys):
    """`p3m matte`'s folder holds <stem>_alpha.png beside its other kinds: the alphas are scored, the rest ignored."""
    gt, pred = tmp_path / "gt", tmp_path / "out"
    a = np.zeros((8, 8), np.uint8)
    a[2:6, 2:6] = 255
    a[2, 2:6] = 128  # a soft edge: a matte, not a binary mask
    for stem in ("p_a", "p_b"):
        _gray(gt / f"{stem}.png", a)
        _gray(pred / f"{stem}_alpha.png", a)
        _gray(pred / f"{stem}_fg.png", np.full((8, 8), 77, np.uint8))
        Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(pred / f"{stem}_rgba.png")
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(pred / f"{stem}_composite.jpg")
    code, stdout, err = run_cli(monkeypatch, capsys, "--pred", pred, "--gt", gt, "--quiet", "--workers", "1")
    assert code == 0 and err == "", err
    assert "2 images" in stdout and "| 0.0000 |" in stdout
    # a stray file that is no kind of p3m matte's output is still reported
    _gray(pred / "p_c_alpha.png", a)
    code, _, err = run_cli(monkeypatch, capsys, "--pred", pred, "--gt", gt, "--quiet", "--workers", "1")
    assert code == 2 and "p_c_alpha.png: extra prediction" in err and "_rgba" not in err


def test_missing_folders_are_named_exactly(tmp_path, monkeypatch, capsys):
    pred = tmp_path / "pred"
    _gray(pred / "a.png", np.full((8, 8), 128, np.uint8))
    code, stdout, err = run_cli(monkeypatch, capsys, "--pred", pred, "--gt", tmp_path / "nope", "--quiet")
    assert code == 2 and stdout == ""
    assert err.strip() == f"p3m evaluate: error: ground truth folder {tmp_path / 'nope'} does not exist"
    code, _, err = run_cli(monkeypatch, capsys, "--pred", tmp_path / "gone", "--gt", pred, "--quiet")
    assert err.strip() == f"p3m evaluate: error: prediction folder {tmp_path / 'gone'} does not exist"
    code, _, err = run_cli(monkeypatch, capsys, "--pred", pred, "--gt", pred, "--trimap", pred / "a.png", "--quiet")
    assert code == 2 and err.strip().endswith(f"trimap folder {pred / 'a.png'} is a file, not a folder")
    # an empty ground-truth folder is said once, not as one "extra prediction" per file
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(monkeypatch, capsys, "--pred", pred, "--gt", tmp_path / "empty", "--quiet")
    assert code == 2 and "contains no images" in err and "extra prediction" not in err


@pytest.mark.slow
def test_binary_mask_predictions_are_scored_with_a_warning(tmp_path, monkeypatch, capsys):
    gt, zero_one, hard = tmp_path / "gt", tmp_path / "p01", tmp_path / "p0255"
    soft = np.tile(np.linspace(0, 255, 16).astype(np.uint8), (16, 1))
    mask = (soft > 127).astype(np.uint8)
    for name in ("a", "b"):
        _gray(gt / f"{name}.png", soft)
        _gray(zero_one / f"{name}.png", mask)
        _gray(hard / f"{name}.png", mask * 255)
    code, stdout, err = run_cli(monkeypatch, capsys, "--pred", zero_one, "--gt", gt, "--quiet", "-o", tmp_path / "o")
    assert code == 0 and "SAD" in stdout
    warning = [line for line in err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "2 of 2 predictions hold only the values 0 and 1" in warning[0]
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["warnings"] == [
        warning[0].removeprefix("p3m evaluate: warning: ")
    ]
    code, stdout, err = run_cli(monkeypatch, capsys, "--pred", hard, "--gt", gt, "--quiet")
    assert code == 0 and err.count("\n") == 1 and "2 of 2 predictions are binary masks" in err
    # soft predictions: no warning
    code, stdout, err = run_cli(monkeypatch, capsys, "--pred", gt, "--gt", gt, "--quiet")
    assert code == 0 and err == ""
