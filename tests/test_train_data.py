"""Training data pipeline: crop policy, trimap generation/re-quantisation, copy-paste, obfuscation, fg/bg cache,
sampler, config overrides."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from p3m.errors import ConfigError
from p3m.infer.preprocess import IMAGENET_MEAN, IMAGENET_STD
from p3m.train import data as tdata
from p3m.train.config import CopyPasteConfig, DataConfig, load_config
from p3m.train.copy_paste import Face, FaceBank, paste_face

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def synth_root(synth_dataset) -> Path:
    return synth_dataset(n_train=6, n_test_p=2, n_test_np=2, size=(64, 64), seed=3)


def prepared(item: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A uint8 dataset item as the training step sees it (`prepare_batch` on the CPU)."""
    return tdata.prepare_batch(item, "cpu")


def small_cfg(**kw) -> DataConfig:
    base = dict(root="unused", crop_sizes=[32, 48, 64], resize=64, trimap_kernel=[3, 6], workers=0)
    base.update(kw)
    return DataConfig(**base)


# ------------------------------------------------------------------------------------ crop policy


def test_ijcv_crop_is_centred_on_the_unknown_pixel_and_clamped():
    trimap = np.zeros((100, 120), np.uint8)
    for cy, cx in [(50, 60), (3, 4), (97, 118)]:
        trimap[:] = 0
        trimap[cy, cx] = 128
        for seed in range(5):
            rng = np.random.default_rng(seed)
            y0, x0, ch, cw = tdata.choose_crop(trimap, [40], 40, rng, policy="ijcv", unknown_prob=1.0)
            assert (ch, cw) == (40, 40)
            # literal safe_crop: centre - c//2, clamped into [0, size - c]
            assert y0 == min(max(cy - 20, 0), 100 - 40)
            assert x0 == min(max(cx - 20, 0), 120 - 40)


def test_mm21_crop_top_left_on_unknown_pixel():
    trimap = np.zeros((100, 120), np.uint8)
    trimap[10:12, 30:33] = 128
    trimap[90:, :] = 128  # outside the [0, h - c) corner range: never chosen
    for seed in range(20):
        y0, x0, _ch, _cw = tdata.choose_crop(
            trimap, [40], 40, np.random.default_rng(seed), policy="mm21", unknown_prob=1.0
        )
        assert trimap[y0, x0] == 128 and y0 < 60 and x0 < 80


def test_crop_unknown_probability_and_sizes():
    trimap = np.zeros((200, 200), np.uint8)
    trimap[0:2, 0:2] = 128  # a tiny unknown area in a corner
    hits, sizes = 0, set()
    n = 400
    for seed in range(n):
        y0, x0, ch, cw = tdata.choose_crop(
            trimap, [32, 48, 64], 32, np.random.default_rng(seed), policy="ijcv", unknown_prob=0.5
        )
        sizes.add(ch)
        assert ch == cw and 0 <= y0 <= 200 - ch and 0 <= x0 <= 200 - cw
        hits += bool((trimap[y0 : y0 + ch, x0 : x0 + cw] == 128).any())
    assert sizes == {32, 48, 64}
    # w.p. 0.5 anchored on the corner, else a uniform centre rarely covers it
    assert 0.4 < hits / n < 0.7


def test_crop_size_fallback_when_not_smaller_than_image():
    trimap = np.full((60, 90), 128, np.uint8)
    for seed in range(10):
        _, _, ch, cw = tdata.choose_crop(trimap, [64, 96], 48, np.random.default_rng(seed))
        assert (ch, cw) == (48, 48)  # 64 and 96 >= min(h, w) = 60 -> the resize size
    _, _, ch, cw = tdata.choose_crop(trimap, [512], 512, np.random.default_rng(0))
    assert (ch, cw) == (60, 90)  # never padded: clamped to the image


# ------------------------------------------------------------------------------------ trimap


def test_requantize_thresholds():
    values = np.array([[0, 49, 50, 128, 180, 181, 255]], np.uint8)
    assert tdata.requantize_trimap(values).tolist() == [[0, 0, 128, 128, 128, 255, 255]]


def test_trimap_generation_matches_literal_dilate_erode():
    alpha = np.zeros((64, 64), np.uint8)
    cv2.circle(alpha, (32, 32), 18, 255, -1)
    alpha[10:14, 10:40] = 100
    k = 5
    cfg = small_cfg(crop_sizes=[64], trimap_kernel=[k, k], flip_prob=0.0, resize=64)
    out = tdata.augment_sample(np.zeros((64, 64, 3), np.uint8), alpha, np.random.default_rng(0), cfg)
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    dil = cv2.dilate((alpha > 0).astype(np.uint8), element)
    ero = cv2.erode((alpha == 255).astype(np.uint8), element)
    want = np.where(ero == 1, 255, np.where(dil == 1, 128, 0))
    np.testing.assert_array_equal(out["trimap"], want)


def test_augment_resize_flip_and_variants():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    alpha = np.zeros((96, 96), np.uint8)
    alpha[:, 40:] = 255
    alpha[:, 36:40] = 128
    cfg = small_cfg(crop_sizes=[96], resize=64, flip_prob=1.0)
    # crop 96 >= min side -> fallback to resize 64 ... use an explicit larger fallback instead:
    cfg.resize = 96
    out = tdata.augment_sample(image, alpha, np.random.default_rng(1), cfg)
    np.testing.assert_array_equal(out["image"], image[:, ::-1])  # full-image crop, flipped, same size
    assert set(np.unique(out["trimap"])) <= {0, 128, 255}
    cfg = small_cfg(crop_sizes=[96], resize=64, flip_prob=0.0, trimap_variant="mm21")
    cfg.crop_sizes = [200]  # falls back to 64 crops of the 96 image, resized to 64 (identity)
    out = tdata.augment_sample(image, alpha, np.random.default_rng(2), cfg, fg=image, bg=image)
    assert out["image"].shape == (64, 64, 3) and out["fg"].shape == (64, 64, 3) and out["alpha"].shape == (64, 64)
    disc = np.zeros((96, 96), np.uint8)
    cv2.circle(disc, (48, 48), 30, 255, -1)
    big = small_cfg(crop_sizes=[90], resize=32, flip_prob=0.0, trimap_variant="mm21")
    vals = set(np.unique(tdata.augment_sample(image, disc, np.random.default_rng(3), big)["trimap"]).tolist())
    assert vals - {0, 128, 255}  # MM21 keeps the interpolated values of the bilinear resize


# ------------------------------------------------------------------------------------ copy-paste


def test_paste_face_identity_alignment_is_exact():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    face = np.zeros((64, 64), bool)
    face[20:30, 24:34] = True  # 10x10 box
    private = face.copy()
    private[20:22] = False  # a transition band crossing the face stays untouched
    src_img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    src_mask = np.zeros((40, 40), bool)
    src_mask[5:15, 7:17] = True  # same box size: base scale 1
    out, replaced = paste_face(
        target, face, private, Face(src_img, src_mask), np.random.default_rng(1), degree=0.0, scale=(1.0, 1.0), flip=0.0
    )
    np.testing.assert_array_equal(replaced, private)
    np.testing.assert_array_equal(out[20:30, 24:34][private[20:30, 24:34]], src_img[5:15, 7:17][private[20:30, 24:34]])
    np.testing.assert_array_equal(out[~private], target[~private])
    # flip = 1: the pasted face is mirrored
    out_f, _ = paste_face(
        target, face, private, Face(src_img, src_mask), np.random.default_rng(1), degree=0.0, scale=(1.0, 1.0), flip=1.0
    )
    np.testing.assert_array_equal(out_f[22:30, 24:34], src_img[7:15, 7:17][:, ::-1])


def test_paste_face_random_augmentation_stays_in_private_area():
    rng = np.random.default_rng(5)
    target = rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)
    face = np.zeros((80, 80), bool)
    cv2.circle(face.view(np.uint8), (40, 30), 12, 1, -1)
    private = face & (np.arange(80)[None, :] < 45)
    src = Face(rng.integers(0, 256, (50, 50, 3), dtype=np.uint8), np.ones((50, 50), bool))
    changed_any = False
    for seed in range(10):
        out, replaced = paste_face(target, face, private, src, np.random.default_rng(seed))
        assert not (replaced & ~private).any()
        np.testing.assert_array_equal(out[~private], target[~private])
        changed_any |= bool(replaced.any())
    assert changed_any
    # nothing to paste into: unchanged
    out, replaced = paste_face(target, face, np.zeros_like(face), src, np.random.default_rng(0))
    assert not replaced.any() and (out == target).all()


def test_face_bank_folder(tmp_path):
    from p3m.errors import DatasetError
    from p3m.io import write_image

    (tmp_path / "image").mkdir()
    (tmp_path / "mask").mkdir()
    write_image(tmp_path / "image" / "a.jpg", np.full((16, 16, 3), 200, np.uint8))
    write_image(tmp_path / "mask" / "a.png", np.full((16, 16), 255, np.uint8))
    bank = FaceBank.from_folder(tmp_path)
    face = bank.pick(np.random.default_rng(0))
    assert len(bank) == 1 and face.mask.all() and face.image.shape == (16, 16, 3)
    with pytest.raises(DatasetError):
        FaceBank.from_folder(tmp_path / "image")


# ------------------------------------------------------------------------------------ dataset


def test_dataset_items_shapes_normalisation_and_determinism(synth_root):
    from p3m.io import read_image

    cfg = small_cfg(root=str(synth_root), crop_sizes=[64], resize=64, flip_prob=0.0)
    ds = tdata.P3MTrainDataset(synth_root, cfg, seed=7)
    assert len(ds) == 6
    raw_item = ds[0]
    assert all(v.dtype == torch.uint8 for v in raw_item.values())  # 11 bytes per pixel cross the process queue
    item = prepared(raw_item)
    assert all(v.dtype == torch.float32 for v in item.values())
    assert item["image"].shape == (3, 64, 64) and item["fg"].shape == (3, 64, 64)
    assert item["alpha"].shape == (1, 64, 64) and 0 <= float(item["alpha"].min()) <= float(item["alpha"].max()) <= 1
    assert set(torch.unique(item["trimap"]).tolist()) <= {0.0, 128.0, 255.0}
    # full-image crop without flip: de-normalising gives the stored image back
    raw = read_image(ds.images[0]).astype(np.float32)
    mean, std = IMAGENET_MEAN[:, None, None], IMAGENET_STD[:, None, None]
    back = (item["image"].numpy() * std + mean) * 255
    np.testing.assert_allclose(back, raw.transpose(2, 0, 1), atol=1e-3)
    # randomness depends on (seed, epoch, index) only
    cfg2 = small_cfg(root=str(synth_root))
    a, b = tdata.P3MTrainDataset(synth_root, cfg2, seed=7), tdata.P3MTrainDataset(synth_root, cfg2, seed=7)
    for k in a[3]:
        assert torch.equal(a[3][k], b[3][k])
    b.epoch = 1
    assert not all(torch.equal(a[3][k], b[3][k]) for k in ("image", "trimap"))


def test_dataloader_workers_do_not_change_samples(synth_root):
    cfg = small_cfg(root=str(synth_root))
    ds = tdata.P3MTrainDataset(synth_root, cfg, seed=1)
    batches = []
    for workers in (0, 2):
        sampler = tdata.ResumableSampler(ds, seed=1)
        sampler.set_epoch(0)
        loader = tdata.make_loader(ds, sampler, batch_size=3, workers=workers, pin_memory=False, seed=1, epoch=0)
        batches.append([b["image"] for b in loader])
    for x, y in zip(*batches, strict=True):
        assert torch.equal(x, y)
    auto = tdata.make_loader(
        ds, tdata.ResumableSampler(ds, seed=1), batch_size=3, workers=None, pin_memory=False, seed=1, epoch=0
    )
    assert auto.num_workers == tdata.resolve_workers(None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_prepare_batch_on_cuda_gives_the_cpu_bits():
    # runs on a bare GPU box too (no PIL needed): PYTHONPATH=src python3 -m pytest tests/test_train_data.py -k cuda
    values = torch.arange(256, dtype=torch.uint8).view(16, 16)
    image = torch.stack([values, values.T, values.flip(0)])
    batch = {
        "image": image[None].repeat(4, 1, 1, 1),
        "alpha": values[None, None].repeat(4, 1, 1, 1),
        "trimap": values[None, None].repeat(4, 1, 1, 1),
        "fg": image[None].flip(3).repeat(4, 1, 1, 1),
        "bg": image[None].flip(2).repeat(4, 1, 1, 1),
    }
    want = tdata.prepare_batch(batch, "cpu")
    got = tdata.prepare_batch({k: v.pin_memory() for k, v in batch.items()}, "cuda")
    assert list(got) == list(want) and all(v.device.type == "cuda" for v in got.values())
    for name, value in got.items():
        assert value.dtype == want[name].dtype == torch.float32 and torch.equal(value.cpu(), want[name]), name


def test_resumable_sampler_skips_and_shards():
    ds = list(range(10))
    full = tdata.ResumableSampler(ds, seed=3)
    full.set_epoch(2)
    order = list(full)
    assert sorted(order) == ds
    part = tdata.ResumableSampler(ds, seed=3)
    part.set_epoch(2, start=4)
    assert list(part) == order[4:] and len(part) == 6
    r0 = tdata.ResumableSampler(ds, num_replicas=2, rank=0, seed=3)
    r1 = tdata.ResumableSampler(ds, num_replicas=2, rank=1, seed=3)
    r0.set_epoch(0)
    r1.set_epoch(0)
    assert sorted(list(r0) + list(r1)) == ds


def test_on_the_fly_obfuscation_from_original_images(synth_root, tmp_path):
    from p3m.data.obfuscate import private_area
    from p3m.io import read_image, read_mask

    root = tmp_path / "ds"
    shutil.copytree(synth_root, root)
    shutil.copytree(root / "train" / "blurred_image", root / "train" / "original_image")
    cfg = small_cfg(
        root=str(root),
        crop_sizes=[64],
        resize=64,
        flip_prob=0.0,
        image_dir="original_image",
        obfuscation="zero",
        composition=False,
    )
    ds = tdata.P3MTrainDataset(root, cfg, seed=0)
    assert ds.images[0].parent.name == "original_image"
    checked = 0
    for i, sample in enumerate(ds.samples):
        face = read_mask(sample.facemask) > 100
        private = private_area(face, alpha=read_mask(sample.mask))
        if not private.any():
            continue
        assert not ds[i]["image"][:, private].any()  # zero obfuscation: zero bytes
        img = prepared(ds[i])["image"].numpy()
        zero = (0 - IMAGENET_MEAN[:, None]) / IMAGENET_STD[:, None]
        np.testing.assert_allclose(img[:, private], np.broadcast_to(zero, (3, int(private.sum()))), atol=1e-5)
        raw = read_image(ds.images[i]).astype(np.float32).transpose(2, 0, 1)
        back = (img * IMAGENET_STD[:, None, None] + IMAGENET_MEAN[:, None, None]) * 255
        np.testing.assert_allclose(back[:, ~private], raw[:, ~private], atol=1e-3)
        checked += 1
    assert checked > 0


def test_copy_paste_in_dataset_changes_only_private_area(synth_root):
    from p3m.data.obfuscate import private_area
    from p3m.io import read_mask

    cfg = small_cfg(root=str(synth_root), crop_sizes=[64], resize=64, flip_prob=0.0, composition=False)
    plain = tdata.P3MTrainDataset(synth_root, cfg, seed=0)
    cp = tdata.P3MTrainDataset(synth_root, cfg, seed=0, copy_paste=CopyPasteConfig(enabled=True, prob=1.0))
    changed = 0
    for i, sample in enumerate(plain.samples):
        a, b = plain[i]["image"], cp[i]["image"]
        private = private_area(read_mask(sample.facemask) > 100, alpha=read_mask(sample.mask))
        diff = (a != b).any(0).numpy()
        assert not (diff & ~private).any()
        changed += bool(diff.any())
    assert changed > 0


def test_missing_fg_bg_are_estimated_and_cached(synth_root, tmp_path):
    from p3m.train.fg_cache import prepare_foreground

    root = tmp_path / "nofg"
    shutil.copytree(synth_root, root)
    shutil.rmtree(root / "train" / "fg")
    shutil.rmtree(root / "train" / "bg")
    report = prepare_foreground(root, limit=2, progress=False)
    assert (report.estimated, report.cached, report.failures) == (2, 0, [])
    fg_file = root / "train" / "fg_bg_cache" / "blurred_image" / "fg"
    assert len(list(fg_file.glob("*.webp"))) == 2 and not list(fg_file.glob("*.png"))
    again = prepare_foreground(root, limit=2, progress=False)
    assert (again.estimated, again.cached) == (0, 2)
    # the dataset uses the cache; the estimate composes back to the image
    cfg = small_cfg(root=str(root), crop_sizes=[64], resize=64, flip_prob=0.0, max_samples=2)
    ds = tdata.P3MTrainDataset(root, cfg, seed=0)
    item = prepared(ds[0])
    alpha = item["alpha"]
    comp = alpha * item["fg"] + (1 - alpha) * item["bg"]
    assert float((comp - item["image"]).abs().mean()) < 0.1


# ------------------------------------------------------------------------------------ config


def test_config_overrides_and_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ndata:\n  resize: 64\n  crop_sizes: [32, 64]\n")
    cfg = load_config(path, ["optim.lr=1e-3", "train.batch_size=2", "copy_paste.enabled=true"])
    assert cfg.optim.lr == pytest.approx(1e-3) and cfg.train.batch_size == 2 and cfg.copy_paste.enabled
    assert cfg.data.resize == 64 and cfg.data.crop_sizes == [32, 64]
    with pytest.raises(ConfigError, match=r"unknown key 'data\.resise'"):
        load_config(path, ["data.resise=64"])
    with pytest.raises(ConfigError, match=r"train\.batch_size has the wrong type"):
        load_config(path, ["train.batch_size=big"])
    with pytest.raises(ConfigError, match="multiple of 32"):
        load_config(path, ["data.resize=50"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(path, ["nonsense"])
    for name in ("p3m-r34", "p3m-vitae-s", "p3m-swin-t", "demo"):  # the built-in recipes
        cfg = load_config(name)
        assert cfg.data.resize % 32 == 0 and cfg.name == name
    published = load_config("p3m-r34")
    assert (published.optim.lr, published.train.epochs, published.train.batch_size) == (1e-5, 150, 8)
    assert (published.data.crop_sizes, published.data.resize) == ([512, 768, 1024], 512)


def test_builtin_recipes_work_from_any_folder_and_a_path_still_works(tmp_path, monkeypatch, capsys):
    from p3m.cli import main
    from p3m.config import list_recipes

    monkeypatch.chdir(tmp_path)  # no configs/ folder here: the recipes come from the package
    assert list_recipes("train") == ["demo", "p3m-r34", "p3m-swin-t", "p3m-vitae-s"]
    with pytest.raises(ConfigError, match=r"no built-in train recipe 'nope' \(built-in: demo, p3m-r34"):
        load_config("nope")
    (tmp_path / "demo.yaml").write_text("name: mine\ntrain: {batch_size: 3}\n")
    assert load_config("demo.yaml").name == "mine" and load_config("./demo.yaml").train.batch_size == 3
    assert load_config("demo").name == "demo"  # a bare name is the recipe, never a file of that stem
    assert main(["train", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == list_recipes("train")
    assert all(len(line.split()) > 3 for line in listed)  # each with what it is for
    assert main(["train"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "p3m-r34" in err


def test_config_problems_are_listed_together(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\ndata: {resize: 50, bogus: 1}\ntrain: {batch_size: two}\noptim: {schedule: steps}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: invalid training config: ") and "\n" not in message
    for needle in ("unknown key 'data.bogus'", "train.batch_size has the wrong type", "multiple of 32", "'steps'"):
        assert needle in message, needle
    assert load_config(None, ["model=null"]).model.arch == "p3m-r34"  # an empty section takes its defaults


def test_workers_default_is_the_cores_per_process_minus_one(monkeypatch):
    assert DataConfig().workers is None  # automatic
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert tdata.resolve_workers(None) == 15
    assert tdata.resolve_workers(3) == 3 and tdata.resolve_workers(0) == 0  # an explicit count wins
    for world, want in (("1", 15), ("2", 7), ("4", 3), ("8", 1), ("16", 0), ("32", 0), ("", 15), ("x", 15)):
        monkeypatch.setenv("WORLD_SIZE", world)
        assert tdata.resolve_workers(None) == want, world
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(96)))
    assert tdata.resolve_workers(None) == 16  # at most MAX_AUTO_WORKERS
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert tdata.resolve_workers(None) == 0
    monkeypatch.delattr(os, "sched_getaffinity")  # no affinity API: all the machine's cores
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert tdata.resolve_workers(None) == 2
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert tdata.resolve_workers(None) == 0
    # the configs that name a count keep it; a negative count is refused
    assert load_config("p3m-r34").data.workers == 8
    assert load_config("demo").data.workers == 0
    with pytest.raises(ConfigError, match=r"data\.workers must be >= 0"):
        load_config("demo", ["data.workers=-1"])
    assert load_config("demo", ["data.workers=null"]).data.workers is None


def test_prepare_command_reports_and_skips_bad_files(synth_root, tmp_path, capsys):
    from p3m.cli import main

    root = tmp_path / "ds"
    shutil.copytree(synth_root, root)
    shutil.rmtree(root / "train" / "fg")
    shutil.rmtree(root / "train" / "bg")
    bad = sorted((root / "train" / "blurred_image").iterdir())[0]
    bad.write_bytes(b"not an image")
    assert main(["prepare", str(root), "--limit", "3", "-q"]) == 1  # one bad file: reported, the others done
    err = capsys.readouterr().err
    assert bad.name in err and "2 estimated" in err and "1 failed" in err
    assert len(list((root / "train" / "fg_bg_cache" / "blurred_image" / "fg").glob("*.webp"))) == 2


def test_unreadable_sample_is_reported_and_replaced(synth_root, tmp_path, capsys):
    root = tmp_path / "ds"
    shutil.copytree(synth_root, root)
    cfg = small_cfg(root=str(root))
    ds = tdata.P3MTrainDataset(root, cfg, seed=0)
    ds.images[1].write_bytes(b"")  # zero-byte image
    item = ds[1]
    assert item["image"].shape == (3, 64, 64)
    err = capsys.readouterr().err
    assert ds.images[1].name in err and err.count("\n") == 1
    ds[1]
    assert capsys.readouterr().err == ""  # reported once
    for path in ds.images:
        path.write_bytes(b"")
    from p3m.errors import DatasetError

    with pytest.raises(DatasetError, match="no readable sample"):
        ds[0]
