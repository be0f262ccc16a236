"""Synthetic P3M-10k generator and the `p3m synth` command."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from p3m import cli
from p3m.commands.synth import parse_size
from p3m.data.p3m10k import open_dataset
from p3m.data.synth import (
    META_FILE,
    Portrait,
    SynthConfig,
    dataset_stems,
    generate_dataset,
    is_synth_output,
    render_portrait,
    render_sample,
)
from p3m.errors import DatasetError
from p3m.io import encode_image, read_image, read_mask

CONFIG = SynthConfig(n_train=3, n_test_p=2, n_test_np=2, size=(96, 112), seed=3)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def root(synth_dataset) -> Path:
    return synth_dataset(**dataclasses.asdict(CONFIG))


# --------------------------------------------------------------------------------------------------------------
# layout and determinism


def test_layout_is_exactly_the_2024_release_plus_extras(root):
    stems = dataset_stems(CONFIG)
    expected = {META_FILE}
    for stem in stems["train"]:
        expected |= {
            f"train/blurred_image/{stem}.jpg",
            f"train/mask/{stem}.png",
            f"train/fg/{stem}.png",
            f"train/bg/{stem}.png",
            f"train/facemask/{stem}.png",
        }
    for stem in stems["P3M-500-P"]:
        base = "validation/P3M-500-P"
        expected |= {
            f"{base}/blurred_image/{stem}.jpg",
            f"{base}/mask/{stem}.png",
            f"{base}/trimap/{stem}.png",
            f"{base}/facemask/{stem}.png",
        }
    for stem in stems["P3M-500-NP"]:
        base = "validation/P3M-500-NP"
        expected |= {
            f"{base}/original_image/{stem}.jpg",
            f"{base}/mask/{stem}.png",
            f"{base}/trimap/{stem}.png",
            f"{base}/facemask/{stem}.png",
        }
    assert set(_files(root)) == expected
    all_stems = [s for names in stems.values() for s in names]
    assert len(set(all_stems)) == 7
    assert all(len(s) == 10 and s.startswith("p_") and all(c in "0123456789abcdef" for c in s[2:]) for s in all_stems)
    meta = json.loads((root / META_FILE).read_text())
    assert meta["generator"] == "p3m.data.synth" and meta["config"]["seed"] == 3
    assert meta["counts"] == {"train": 3, "P3M-500-P": 2, "P3M-500-NP": 2}
    assert is_synth_output(root)
    ds = open_dataset(root)  # validates every header and size
    assert [len(v) for v in ds.splits.values()] == [3, 2, 2]
    image = read_image(ds.split("train")[0].image)
    assert image.shape == (96, 112, 3)


def test_same_config_gives_byte_identical_files(root, tmp_path):
    again = generate_dataset(tmp_path / "again", CONFIG)
    assert _files(again) == _files(root)


def test_parallel_workers_write_the_same_files(tmp_path):
    small = SynthConfig(n_train=2, n_test_p=1, n_test_np=1, size=(48, 48), seed=2)
    one = generate_dataset(tmp_path / "one", small)
    two = generate_dataset(tmp_path / "two", small, workers=2)
    assert _files(one) == _files(two)


def test_interrupted_run_can_be_rerun(tmp_path, monkeypatch):
    import p3m.data.synth as synth

    small = SynthConfig(n_train=2, n_test_p=1, n_test_np=1, size=(48, 48))

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "_write_sample", crash)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path, small)
    assert json.loads((tmp_path / META_FILE).read_text())["complete"] is False
    monkeypatch.undo()
    generate_dataset(tmp_path, small)  # the half-written folder is recognised as ours
    assert json.loads((tmp_path / META_FILE).read_text())["complete"] is True


def test_different_seed_differs(root, tmp_path):
    other = SynthConfig(n_train=3, n_test_p=2, n_test_np=2, size=(96, 112), seed=4)
    assert set(dataset_stems(other)["train"]).isdisjoint(dataset_stems(CONFIG)["train"])
    a = render_sample(CONFIG, "train", 0).portrait.image
    b = render_sample(other, "train", 0).portrait.image
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 10


def test_samples_do_not_depend_on_other_counts():
    bigger = SynthConfig(n_train=9, n_test_p=5, n_test_np=2, size=(96, 112), seed=3)
    assert dataset_stems(bigger)["train"][:3] == dataset_stems(CONFIG)["train"]
    assert dataset_stems(bigger)["P3M-500-P"][:2] == dataset_stems(CONFIG)["P3M-500-P"]
    np.testing.assert_array_equal(render_sample(bigger, "train", 2).image, render_sample(CONFIG, "train", 2).image)


# --------------------------------------------------------------------------------------------------------------
# what the portraits contain


@pytest.fixture(scope="module")
def portraits() -> list[Portrait]:
    return [render_portrait(np.random.default_rng(s), (128, 128), back_view_prob=0.0) for s in range(4)]


def test_portrait_fields_and_composite(portraits):
    for p in portraits:
        assert p.image.dtype == np.uint8 and p.image.shape == (128, 128, 3)
        assert p.alpha.dtype == np.float32 and p.alpha.min() >= 0.0 and p.alpha.max() <= 1.0
        assert p.fg.shape == p.bg.shape == p.image.shape and p.facemask.dtype == bool
        a = p.alpha[..., None]
        composite = a * p.fg.astype(np.float64) + (1 - a) * p.bg.astype(np.float64)
        # fg is stored as uint8: the composite is exact up to that rounding
        assert np.abs(composite - p.image).max() <= 1.0
        assert p.alpha.max() == 1.0 and p.alpha.min() == 0.0


def test_hair_alpha_is_fractional_with_thin_strands(portraits):
    for p in portraits:
        soft = (p.alpha > 0) & (p.alpha < 1)
        assert (soft & p.hair).sum() > 150, "hair must carry many fractional-alpha pixels"
        # Thin strands: faint pixels (alpha <= 0.5) more than 3 px away from the opaque silhouette.
        opaque = (p.alpha >= 0.999).astype(np.uint8)
        far = cv2.distanceTransform(1 - opaque, cv2.DIST_L2, 3) > 3
        strands = (p.alpha > 0) & (p.alpha <= 0.5) & far & p.hair
        assert strands.sum() > 40
        # area coverage of a 4x canvas: many distinct levels (1/16 steps), not a two-level aliased edge
        assert np.unique(np.round(p.alpha[soft] * 16)).size >= 8


def test_facemask_is_inside_the_head(portraits):
    for p in portraits:
        assert p.facemask.sum() > 0.01 * p.facemask.size
        assert np.all(p.alpha[p.facemask] > 0.5)
        assert p.face_boxes
        for x0, y0, x1, y1 in p.face_boxes:
            assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128
        inside_boxes = np.zeros_like(p.facemask)
        for x0, y0, x1, y1 in p.face_boxes:
            inside_boxes[y0:y1, x0:x1] = True
        assert np.all(inside_boxes[p.facemask])


def test_faces_have_dark_eyes_and_bright_sclera(portraits):
    for p in portraits:
        face = p.image[p.facemask].astype(np.float64).mean(axis=1)
        assert face.min() < 0.5 * np.median(face)  # pupils, brows
        assert face.max() > 200  # sclera / highlights


def test_back_views_and_two_people_occur():
    kinds = {"back": 0, "two": 0}
    for seed in range(20):
        p = render_portrait(np.random.default_rng(seed), (64, 64), two_person_prob=0.5, back_view_prob=0.5)
        kinds["back"] += p.facemask.sum() == 0
        kinds["two"] += len(p.face_boxes) == 2
    assert kinds["back"] >= 1 and kinds["two"] >= 1


def test_render_portrait_rejects_tiny_size():
    with pytest.raises(ValueError):
        render_portrait(np.random.default_rng(0), (16, 64))


# --------------------------------------------------------------------------------------------------------------
# obfuscation and the written files


@pytest.mark.parametrize("split", ["train", "P3M-500-P", "P3M-500-NP"])
def test_written_files_match_the_rendered_samples(root, split):
    ds = open_dataset(root)
    index_of = {stem: i for i, stem in enumerate(dataset_stems(CONFIG)[split])}
    for item in ds.split(split):
        sample = render_sample(CONFIG, split, index_of[item.stem])
        assert sample.stem == item.stem
        np.testing.assert_array_equal(read_mask(item.mask), sample.mask)
        np.testing.assert_array_equal(read_mask(item.facemask) > 0, sample.portrait.facemask)
        assert set(np.unique(read_mask(item.facemask))) <= {0, 255}
        # the file is the q95 JPEG of exactly this image
        assert item.image.read_bytes() == encode_image(sample.image, "jpg", quality=CONFIG.jpeg_quality)
        jpeg = read_image(item.image).astype(np.int16)
        if split == "train":
            np.testing.assert_array_equal(read_image(item.fg), sample.fg)
            np.testing.assert_array_equal(read_image(item.bg), sample.portrait.bg)
            a = read_mask(item.mask)[..., None] / 255.0
            composite = a * read_image(item.fg) + (1 - a) * read_image(item.bg)
            assert np.abs(composite - jpeg).mean() < 4.0  # the written layers recompose the written image (JPEG aside)
            assert np.abs(composite - sample.image).max() <= 1.0  # exactly, before JPEG
        else:
            trimap = read_mask(item.trimap)
            assert set(np.unique(trimap)) <= {0, 128, 255}
            np.testing.assert_array_equal(trimap, sample.trimap)


@pytest.mark.parametrize("split", ["train", "P3M-500-P"])
def test_obfuscation_changes_only_the_private_area(split):
    changed = 0
    for index in range(3 if split == "train" else 2):
        s = render_sample(CONFIG, split, index)
        original = s.portrait.image
        private = s.private_area
        # private area = facemask minus the transition band: no fractional alpha inside it
        assert not np.any(private & ~s.portrait.facemask)
        assert not np.any(private & (s.mask > 0) & (s.mask < 255))
        assert not np.any(private & (s.trimap == 128))
        np.testing.assert_array_equal(s.image[~private], original[~private])
        if private.sum() > 50:
            diff = np.abs(s.image.astype(int) - original.astype(int))[private]
            assert diff.mean() > 3.0, "the face must really be blurred"
            changed += 1
        # nothing of the face survives in the training foreground either
        np.testing.assert_array_equal(s.fg[private], s.image[private])
    assert changed >= 1


def test_np_split_keeps_faces():
    for index in range(2):
        s = render_sample(CONFIG, "P3M-500-NP", index)
        np.testing.assert_array_equal(s.image, s.portrait.image)
        assert not s.private_area.any()
        np.testing.assert_array_equal(s.fg, s.portrait.fg)


# --------------------------------------------------------------------------------------------------------------
# overwrite policy and the command


def test_refuses_foreign_non_empty_folder(tmp_path):
    (tmp_path / "holiday.jpg").write_bytes(b"x")
    small = SynthConfig(n_train=1, n_test_p=1, n_test_np=1, size=(48, 48))
    with pytest.raises(DatasetError, match="not empty"):
        generate_dataset(tmp_path, small)
    generate_dataset(tmp_path, small, overwrite=True)
    assert (tmp_path / "holiday.jpg").exists() and is_synth_output(tmp_path)


def test_regenerating_a_synth_folder_removes_stale_files(tmp_path):
    generate_dataset(tmp_path, SynthConfig(n_train=3, n_test_p=1, n_test_np=1, size=(48, 48)))
    generate_dataset(tmp_path, SynthConfig(n_train=1, n_test_p=1, n_test_np=1, size=(48, 48), seed=9))
    assert len(list((tmp_path / "train" / "mask").iterdir())) == 1
    assert [len(v) for v in open_dataset(tmp_path).splits.values()] == [1, 1, 1]


def test_config_validation():
    with pytest.raises(ValueError):
        SynthConfig(n_train=0, n_test_p=0, n_test_np=0)
    with pytest.raises(ValueError):
        SynthConfig(size=(16, 16))
    with pytest.raises(ValueError):
        SynthConfig(two_person_prob=1.5)


def test_parse_size():
    import argparse

    assert parse_size("320") == (320, 320)
    assert parse_size("240x320") == (240, 320)
    for bad in ("abc", "10", "1x2x3", "0x100"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)


@pytest.fixture
def synth_only_cli(monkeypatch):
    """The real `p3m.cli.main` with only the verb under test wired (other verbs may not exist yet)."""
    monkeypatch.setattr(cli, "COMMANDS", ("synth",))
    return cli.main


def test_cli_writes_dataset_and_summary(synth_only_cli, tmp_path, capsys):
    out = tmp_path / "demo"
    assert synth_only_cli(["synth", str(out), "--train", "2", "--test", "1", "--size", "48x64", "--seed", "1"]) == 0
    text = capsys.readouterr().out.strip()
    assert "\n" not in text
    assert str(out) in text and "train: 2 images" in text and "P3M-500-NP: 1 images" in text
    ds = open_dataset(out)
    assert read_image(ds.split("train")[0].image).shape == (48, 64, 3)
    assert json.loads((out / META_FILE).read_text())["config"]["seed"] == 1
    # a second run into its own output is allowed and replaces it
    assert synth_only_cli(["synth", str(out), "--train", "1", "--test", "1", "--size", "48"]) == 0


def test_cli_refuses_foreign_folder_with_one_line(synth_only_cli, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert synth_only_cli(["synth", str(tmp_path), "--train", "1", "--test", "1", "--size", "48"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("p3m synth: error:") and "--overwrite" in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert synth_only_cli(["synth", str(tmp_path), "--train", "1", "--test", "1", "--size", "48", "--overwrite"]) == 0


def test_cli_unwritable_outdir_is_one_line(synth_only_cli, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    assert (
        synth_only_cli(["synth", str(tmp_path / "a_file" / "sub"), "--train", "1", "--test", "1", "--size", "48"]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("p3m synth: error:") and "cannot write" in err and "\n" not in err
    assert synth_only_cli(["synth", str(tmp_path / "x"), "--train", "0", "--test", "0"]) == 2
    assert "at least one image" in capsys.readouterr().err
