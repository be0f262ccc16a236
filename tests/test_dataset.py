"""P3M-10k dataset layer: trimaps, discovery of both layouts, pairing and validation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from p3m.data.p3m10k import SPLITS, P3M10k, Sample, open_dataset, summarize
from p3m.data.trimap import kernel_size_for_test_split, random_trimap, trimap_from_alpha
from p3m.errors import DatasetError, P3MError
from p3m.io import read_image
from tests.reference.trimap import literal_trimap

# --------------------------------------------------------------------------------------------------------------
# trimap


@pytest.mark.parametrize("k", [1, 3, 4, 5])
def test_trimap_matches_literal_reference(k):
    rng = np.random.default_rng(k)
    alpha = np.zeros((14, 17), np.uint8)
    alpha[3:11, 4:13] = 255
    alpha[5:8, 2:4] = rng.integers(1, 255, (3, 2))  # soft edge
    alpha[0, 0] = 255  # corner pixel: tests the border handling
    alpha[12, 15] = 40
    alpha[7, 8] = 200  # a hole of partial alpha inside the opaque block
    got = trimap_from_alpha(alpha, k)
    assert got.dtype == np.uint8 and got.shape == alpha.shape
    np.testing.assert_array_equal(got, literal_trimap(alpha, k))
    assert set(np.unique(got)) <= {0, 128, 255}


def test_trimap_values_and_channel0():
    alpha = np.zeros((40, 40), np.uint8)
    alpha[10:30, 10:30] = 255
    alpha[10:30, 28:30] = 128
    t = trimap_from_alpha(alpha, 5)
    assert t[20, 15] == 255 and t[0, 0] == 0 and t[20, 29] == 128 and t[20, 31] == 128
    three = np.repeat(alpha[..., None], 3, axis=2)
    np.testing.assert_array_equal(trimap_from_alpha(three, 5), t)
    with pytest.raises(ValueError):
        trimap_from_alpha(alpha.astype(np.float32), 5)
    with pytest.raises(ValueError):
        trimap_from_alpha(alpha, 0)


def test_random_trimap_draws_k_in_inclusive_range():
    alpha = np.zeros((64, 64), np.uint8)
    alpha[16:48, 16:48] = 255
    widths = set()
    for seed in range(60):
        expected_k = int(np.random.default_rng(seed).integers(15, 31))
        t = random_trimap(alpha, np.random.default_rng(seed))
        np.testing.assert_array_equal(t, trimap_from_alpha(alpha, expected_k))
        widths.add(int((t[32] == 128).sum()))
    # band width along a row grows with k; 16 values of k give many distinct widths
    assert len(widths) >= 8
    # the ends are inclusive: low == high gives exactly that kernel
    np.testing.assert_array_equal(random_trimap(alpha, np.random.default_rng(0), 30, 30), trimap_from_alpha(alpha, 30))
    with pytest.raises(ValueError):
        random_trimap(alpha, np.random.default_rng(0), 10, 5)


def test_kernel_size_for_test_split():
    assert kernel_size_for_test_split(1080, 1620) == 21
    assert kernel_size_for_test_split(320, 320) == 7
    assert kernel_size_for_test_split(96, 128) == 3
    assert kernel_size_for_test_split(32, 32) == 3
    for side in range(32, 2000, 37):
        assert kernel_size_for_test_split(side, side + 5) % 2 == 1


# --------------------------------------------------------------------------------------------------------------
# discovery and validation


@pytest.fixture(scope="module")
def synth_root(synth_dataset) -> Path:
    return synth_dataset(n_train=3, n_test_p=2, n_test_np=2, size=(64, 80), seed=5)


@pytest.fixture
def copy(synth_root, tmp_path) -> Path:
    dest = tmp_path / "P3M-10k"
    shutil.copytree(synth_root, dest)
    return dest


def test_open_generated_dataset(synth_root):
    ds = open_dataset(synth_root)
    assert isinstance(ds, P3M10k) and ds.root == synth_root
    assert list(ds.splits) == list(SPLITS)
    assert [len(ds.split(n)) for n in SPLITS] == [3, 2, 2]
    for name in SPLITS:
        samples = ds.split(name)
        assert [s.stem for s in samples] == sorted(s.stem for s in samples)
        for s in samples:
            assert isinstance(s, Sample)
            assert s.image.stem == s.mask.stem == s.stem
            assert s.image.suffix == ".jpg" and s.mask.suffix == ".png"
            assert s.facemask is not None and s.facemask.stem == s.stem
    train = ds.split("train")[0]
    assert train.image.parent.name == "blurred_image" and train.trimap is None
    assert train.fg.parent.name == "fg" and train.bg.parent.name == "bg"
    p = ds.split("P3M-500-P")[0]
    assert p.image.parent.name == "blurred_image" and p.trimap.parent.name == "trimap" and p.fg is None
    npp = ds.split("P3M-500-NP")[0]
    assert npp.image.parent.name == "original_image" and npp.image.parent.parent.parent.name == "validation"
    assert ds.ppt() == {"train": "train", "test": ["P3M-500-P", "P3M-500-NP"]}
    assert len(ds) == 7


def test_unknown_and_absent_split(synth_root, copy):
    ds = open_dataset(synth_root)
    with pytest.raises(DatasetError) as err:
        ds.split("test")
    assert all(name in str(err.value) for name in SPLITS)
    shutil.rmtree(copy / "train")
    partial = open_dataset(copy)
    assert list(partial.splits) == ["P3M-500-P", "P3M-500-NP"]
    with pytest.raises(DatasetError, match="not present"):
        partial.split("train")
    with pytest.raises(DatasetError, match="missing split folder train/"):
        open_dataset(copy, require=["train"])


def test_flat_layout_without_validation_folder(synth_root, copy):
    for name in ("P3M-500-P", "P3M-500-NP"):
        shutil.move(str(copy / "validation" / name), str(copy / name))
    (copy / "validation").rmdir()
    flat = open_dataset(copy)
    nested = open_dataset(synth_root)
    assert list(flat.splits) == list(SPLITS)
    for name in SPLITS:
        assert [s.stem for s in flat.split(name)] == [s.stem for s in nested.split(name)]
    assert flat.split("P3M-500-P")[0].image.parent.parent == copy / "P3M-500-P"
    assert "directly under the root" in summarize(flat)
    assert "under validation/" in summarize(nested)


def test_2021_and_2024_train_layouts(copy):
    # 2024 release: closed-form foreground in fg_blurred/
    shutil.move(str(copy / "train" / "fg"), str(copy / "train" / "fg_blurred"))
    s = open_dataset(copy).split("train")[0]
    assert s.fg.parent.name == "fg_blurred" and s.bg.parent.name == "bg" and s.facemask is not None
    # 2021 release: only blurred_image and mask; facemasks were a separate download
    for extra in ("fg_blurred", "bg", "facemask"):
        shutil.rmtree(copy / "train" / extra)
    for name in ("P3M-500-P", "P3M-500-NP"):
        shutil.rmtree(copy / "validation" / name / "facemask")
    ds = open_dataset(copy)
    s = ds.split("train")[0]
    assert (s.fg, s.bg, s.facemask, s.trimap) == (None, None, None, None)
    assert ds.split("P3M-500-NP")[0].trimap is not None


def test_missing_facemask_is_none_but_missing_trimap_is_a_problem(copy):
    p = open_dataset(copy).split("P3M-500-P")
    p[0].facemask.unlink()  # facemasks are a separate download; back views have no face
    again = open_dataset(copy).split("P3M-500-P")
    assert again[0].facemask is None and again[1].facemask is not None
    p[0].trimap.unlink()
    with pytest.raises(DatasetError, match="no trimap"):
        open_dataset(copy)


def test_pairs_by_stem_with_any_extension_and_ignores_junk(copy):
    mask_dir = copy / "validation" / "P3M-500-P" / "mask"
    first = sorted(mask_dir.iterdir())[0]
    Image.open(first).save(first.with_suffix(".bmp"))
    first.unlink()
    (mask_dir / "README.txt").write_text("not an image")
    (mask_dir / ".DS_Store").write_bytes(b"\0\1")
    (mask_dir / "._p_00000000.png").write_bytes(b"")
    s = open_dataset(copy).split("P3M-500-P")[0]
    assert s.mask.suffix == ".bmp" and s.mask.stem == s.stem


def test_empty_root_and_not_a_folder(tmp_path):
    with pytest.raises(DatasetError, match="no P3M-10k split found"):
        open_dataset(tmp_path)
    with pytest.raises(DatasetError, match="not a folder"):
        open_dataset(tmp_path / "missing")


def test_validator_reports_every_problem_at_once(copy):
    train = open_dataset(copy).split("train")
    p = open_dataset(copy).split("P3M-500-P")
    npp = open_dataset(copy).split("P3M-500-NP")
    train[0].mask.unlink()  # missing partner
    Image.new("L", (10, 12)).save(p[0].mask)  # size mismatch
    npp[0].image.write_bytes(b"")  # zero-byte image
    train[1].image.write_bytes(b"this is not a jpeg at all" * 10)  # garbage
    (copy / "validation" / "P3M-500-P" / "trimap" / "p_deadbeef.png").write_bytes(p[1].trimap.read_bytes())  # orphan
    npp[1].trimap.unlink()  # missing companion in a folder that exists

    with pytest.raises(DatasetError) as err:
        open_dataset(copy)
    msg = str(err.value)
    assert isinstance(err.value, P3MError)
    lines = msg.splitlines()
    assert lines[0].startswith(f"dataset {copy} has ") and "problems" in lines[0]
    assert all(line.startswith("  - ") for line in lines[1:])
    expected = {
        str(train[0].image): "no mask",
        str(p[0].mask): "is 10x12 but image",
        str(npp[0].image): "empty file",
        str(train[1].image): "not a recognised image",
        "p_deadbeef.png": "trimap file without image or mask",
        str(npp[1].image): "no trimap",
    }
    for name, what in expected.items():
        assert any(name in line and what in line for line in lines[1:]), (name, what, msg)
    assert f"has {len(lines) - 1} problems" in lines[0]
    assert "Traceback" not in msg


def test_validation_reads_headers_only(copy, monkeypatch):
    def no_decoding(self, *args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    ds = open_dataset(copy)
    assert len(ds) == 7
    with pytest.raises(AssertionError, match="decoded"):  # the patch does catch decoding
        read_image(ds.split("train")[0].image)


def test_validation_applies_exif_rotation(copy):
    """A portrait JPEG stored landscape with EXIF orientation 6 decodes upright: its mask is portrait-shaped."""
    s = open_dataset(copy).split("P3M-500-NP")[0]
    with Image.open(s.image) as img:
        rgb = img.convert("RGB")
    rotated = rgb.transpose(Image.Transpose.ROTATE_90)  # stored sideways...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...and tagged "rotate 90 CW to display"
    rotated.save(s.image, exif=exif.tobytes())
    assert len(open_dataset(copy)) == 7  # oriented size equals the mask size: no problem
    rotated.save(s.image)  # same pixels without the tag: now the sizes really differ
    with pytest.raises(DatasetError, match="but image"):
        open_dataset(copy)


def test_duplicate_stems_reported(copy):
    s = open_dataset(copy).split("train")[0]
    shutil.copy(s.image, s.image.with_suffix(".png"))
    with pytest.raises(DatasetError, match="two files share stem"):
        open_dataset(copy)
    with pytest.raises(DatasetError, match="two files share stem"):  # a pairing problem, found without validation
        open_dataset(copy, validate=False)


def test_validate_false_skips_header_checks(copy):
    s = open_dataset(copy).split("train")[0]
    s.image.write_bytes(b"")
    assert len(open_dataset(copy, validate=False).split("train")) == 3
    with pytest.raises(DatasetError, match="empty file"):
        open_dataset(copy)


def test_summarize(synth_root):
    text = summarize(open_dataset(synth_root))
    assert "\n" not in text
    assert str(synth_root) in text
    for part in ("train: 3 images", "P3M-500-P: 2 images", "P3M-500-NP: 2 images", "7 images in total"):
        assert part in text
