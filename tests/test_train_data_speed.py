"""The faster training data pipeline produces exactly what the pipeline before it produced.

`tests.reference.train_data` is a literal copy of the replaced code; every test here compares the current code against
it (bit for bit, same dtypes, same random draws) on fixed seeds, so any change in what the pipeline produces fails here.
Items are now uint8 and converted on the training device by `prepare_batch`: what is compared is `prepare_batch` of
the new items (one by one and collated) against the old float32 items. Covered: the OpenCV read of the fg/bg cache
against PIL (and what happens to an unreadable cache file), the uint8 trimap and the crop-window trimap, the crop
choice, crop/flip/resize, normalisation, tensors and `prepare_batch`, the copy-paste helpers, and whole dataset items
for the default recipe, the MM21 variant, on-the-fly obfuscation, copy-paste and the fg/bg cache.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from p3m.data.trimap import random_kernel_size, random_trimap, trimap_crop, trimap_from_alpha
from p3m.infer.preprocess import normalize
from p3m.io import read_image, write_image
from p3m.train import data as tdata
from p3m.train import fg_cache
from p3m.train.config import CopyPasteConfig, DataConfig
from p3m.train.copy_paste import Face, FaceBank, copy_where, face_box, paste_face
from tests.reference import train_data as ref

torch.set_num_threads(1)


def soft_alpha(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A matte with opaque blobs, soft edges, thin strands and pixels touching the borders."""
    alpha = np.zeros((h, w), np.uint8)
    for _ in range(3):
        centre = (int(rng.integers(w)), int(rng.integers(h)))
        axes = (int(rng.integers(3, w // 2)), int(rng.integers(3, h // 2)))
        cv2.ellipse(alpha, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), float(rng.uniform(0.5, 3)))
    for _ in range(4):
        p = [(int(rng.integers(w)), int(rng.integers(h))) for _ in range(2)]
        cv2.line(alpha, p[0], p[1], int(rng.integers(1, 255)), 1)
    alpha[0, : w // 3] = 255
    alpha[:, -1] = rng.integers(0, 256, h).astype(np.uint8)
    return alpha


def assert_same(a, b):
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    else:
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------ fg/bg cache read


def test_cache_read_gives_the_pil_pixels(tmp_path, monkeypatch):
    import p3m.io

    rng = np.random.default_rng(0)
    written = {}
    for h, w in ((1, 1), (37, 53), (120, 81)):
        smooth = cv2.resize(rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8), (w, h))
        for name, pixels in {"noise": rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "smooth": smooth}.items():
            # lossless WebP as load_or_estimate writes them, and PNG as earlier versions wrote them
            for path in (
                fg_cache.write_cache_image(tmp_path / f"{name}_{h}x{w}.webp", pixels),
                write_image(tmp_path / f"{name}_{h}x{w}.png", pixels),
            ):
                written[path] = read_image(path)
                np.testing.assert_array_equal(written[path], pixels)  # lossless
                assert p3m.io.has_metadata(path) == []
    # files p3m does not write take read_image's rules (grey, alpha composited over white, 16 bits rounded)
    foreign = [
        write_image(tmp_path / "grey.png", rng.integers(0, 256, (20, 30), dtype=np.uint8)),
        write_image(tmp_path / "rgba.png", rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)),
    ]
    cv2.imwrite(str(tmp_path / "rgb16.png"), rng.integers(0, 65536, (20, 30, 3), dtype=np.uint16))
    foreign.append(tmp_path / "rgb16.png")
    for path in foreign:
        assert_same(fg_cache.read_cache_image(path), read_image(path))

    def no_pil(*args, **kwargs):
        raise AssertionError("the files p3m writes are decoded by OpenCV")

    monkeypatch.setattr(fg_cache, "read_image", no_pil)
    for path, want in written.items():
        assert_same(fg_cache.read_cache_image(path), want)


def test_unreadable_cache_file_is_estimated_again(tmp_path, monkeypatch, capfd):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    calls = []

    def estimate(image_u8, alpha_u8):  # pymatting stand-in: fast, and counts the estimates
        calls.append(1)
        return image_u8 // 2, 255 - image_u8

    monkeypatch.setattr(fg_cache, "estimate_fg_bg", estimate)
    fg, bg = fg_cache.load_or_estimate(image, alpha, tmp_path, "blurred_image", "a")
    assert len(calls) == 1
    assert_same(fg_cache.load_or_estimate(image, alpha, tmp_path, "blurred_image", "a")[0], fg)  # a hit
    assert len(calls) == 1
    _fg_path, bg_path = fg_cache.cache_paths(tmp_path, "blurred_image", "a")
    for damage in (lambda d: d[: len(d) // 2], lambda d: b"not a png", lambda d: b""):
        bg_path.write_bytes(damage(bg_path.read_bytes()))
        got_fg, got_bg = fg_cache.load_or_estimate(image, alpha, tmp_path, "blurred_image", "a")
        assert_same(got_fg, fg)
        assert_same(got_bg, bg)
        err = capfd.readouterr().err
        mine = [line for line in err.splitlines() if line.startswith("p3m:")]
        assert len(mine) == 1 and str(bg_path) in mine[0] and "estimating fg/bg again" in mine[0], err
        assert "Traceback" not in err
        assert_same(read_image(bg_path), bg)  # repaired
    assert len(calls) == 4


# ------------------------------------------------------------------------------------ trimap and crop


def test_trimap_and_crop_window_trimap_match_reference():
    rng = np.random.default_rng(2)
    for case in range(12):
        h, w = int(rng.integers(20, 90)), int(rng.integers(20, 90))
        alpha = soft_alpha(rng, h, w)
        for k in [1, 2, 3, 4, 5, 8, 15, 16, 29, 30, int(rng.integers(6, 40))]:
            full = trimap_from_alpha(alpha, k)
            assert_same(full, ref.ref_trimap_from_alpha(alpha, k))
            for _ in range(4):
                y0, x0 = int(rng.integers(h)), int(rng.integers(w))
                ch, cw = int(rng.integers(0, h - y0 + 1)), int(rng.integers(0, w - x0 + 1))
                np.testing.assert_array_equal(trimap_crop(alpha, k, y0, x0, ch, cw), full[y0 : y0 + ch, x0 : x0 + cw])
        assert_same(
            random_trimap(alpha, np.random.default_rng(case)), ref.ref_random_trimap(alpha, np.random.default_rng(case))
        )
    # 3-channel masks use channel 0, as before
    alpha3 = np.dstack([soft_alpha(rng, 40, 50)] * 3)
    assert_same(trimap_from_alpha(alpha3, 7), ref.ref_trimap_from_alpha(alpha3, 7))
    assert_same(trimap_crop(alpha3, 7, 5, 6, 20, 30), ref.ref_trimap_from_alpha(alpha3, 7)[5:25, 6:36])
    with pytest.raises(ValueError):
        trimap_crop(alpha3, 7, 30, 0, 20, 10)


def test_choose_crop_matches_reference_draw_for_draw():
    rng = np.random.default_rng(3)
    for case in range(40):
        h, w = int(rng.integers(30, 120)), int(rng.integers(30, 120))
        trimap = ref.ref_trimap_from_alpha(soft_alpha(rng, h, w), int(rng.integers(3, 12)))
        if case % 7 == 0:
            trimap[:] = 0  # no unknown pixel at all
        sizes = sorted({int(v) for v in rng.integers(8, 140, 3)})
        for policy in ("ijcv", "mm21"):
            for prob in (0.0, 0.5, 1.0):
                a, b = np.random.default_rng(case), np.random.default_rng(case)
                got = tdata.choose_crop(trimap, sizes, 32, a, policy=policy, unknown_prob=prob)
                want = ref.ref_choose_crop(trimap, sizes, 32, b, policy=policy, unknown_prob=prob)
                assert got == want and all(type(v) is int for v in got)
                assert a.integers(1 << 30) == b.integers(1 << 30)  # the same number of draws
    with pytest.raises(ValueError, match="crop policy"):
        tdata.choose_crop(trimap, [16], 16, np.random.default_rng(0), policy="other")


def random_sample(rng: np.random.Generator, h: int, w: int):
    image, fg, bg = (rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(3))
    return image, soft_alpha(rng, h, w), fg, bg


def test_augment_sample_matches_reference():
    rng = np.random.default_rng(4)
    for case in range(24):
        h, w = int(rng.integers(40, 130)), int(rng.integers(40, 130))
        image, alpha, fg, bg = random_sample(rng, h, w)
        policy = ("ijcv", "mm21")[case % 2]
        cfg = DataConfig(
            root="unused",
            crop_sizes=[24, 48, 96],
            resize=32,
            trimap_kernel=[3, 15],
            crop_policy=policy,
            trimap_variant=("ijcv", "mm21")[case // 2 % 2],
            unknown_prob=(0.5, 1.0, 0.0)[case % 3],
            flip_prob=0.5,
        )
        kw = {"fg": fg, "bg": bg} if case % 4 else {}
        got = tdata.augment_sample(image, alpha, np.random.default_rng(case), cfg, **kw)
        assert_same(got, ref.ref_augment_sample(image, alpha, np.random.default_rng(case), cfg, **kw))
        # the k drawn by the caller (the dataset's face path) and a trimap given by the caller
        a, b = np.random.default_rng(case + 100), np.random.default_rng(case + 100)
        k = random_kernel_size(a, 3, 15)
        trimap = ref.ref_random_trimap(alpha, b, 3, 15)
        assert_same(
            tdata.augment_sample(image, alpha, a, cfg, kernel_size=k, **kw),
            ref.ref_augment_sample(image, alpha, b, cfg, trimap=trimap, **kw),
        )
        assert_same(
            tdata.augment_sample(image, alpha, np.random.default_rng(1), cfg, trimap=trimap, **kw),
            ref.ref_augment_sample(image, alpha, np.random.default_rng(1), cfg, trimap=trimap, **kw),
        )
    # strided inputs (a BGR view, a flipped view) are handled as before
    image, alpha, fg, bg = random_sample(rng, 70, 90)
    cfg = DataConfig(root="unused", crop_sizes=[40], resize=32, trimap_kernel=[3, 5], flip_prob=0.5)
    for seed in range(6):
        got = tdata.augment_sample(
            image[:, ::-1], alpha[::-1], np.random.default_rng(seed), cfg, fg=fg[..., ::-1], bg=bg
        )
        want = ref.ref_augment_sample(
            image[:, ::-1], alpha[::-1], np.random.default_rng(seed), cfg, fg=fg[..., ::-1], bg=bg
        )
        assert_same(got, want)


def ref_item(out: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The old pipeline's item of augment_sample's arrays (ReferenceTrainDataset._item's last lines)."""
    item = {
        "image": ref.ref_normalize(out["image"]),
        "alpha": torch.from_numpy(out["alpha"].astype(np.float32) / 255.0)[None],
        "trimap": torch.from_numpy(out["trimap"].astype(np.float32))[None],
    }
    if "fg" in out:
        item["fg"], item["bg"] = ref.ref_normalize(out["fg"]), ref.ref_normalize(out["bg"])
    return item


def test_normalisation_tensors_and_prepare_batch_match_reference():
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    image = np.dstack([values, values.T, values[::-1]])  # every value in every channel
    assert_same(torch.from_numpy(normalize(image)), ref.ref_normalize(image))  # inference's normalize is unchanged
    as_float = image.astype(np.float32)
    assert_same(torch.from_numpy(normalize(as_float)), ref.ref_normalize(as_float))
    rng = np.random.default_rng(6)
    outs = [{"image": image, "alpha": values, "trimap": values, "fg": image[::-1], "bg": image[:, ::-1]}]
    for _ in range(3):  # random bytes, strided views
        rgb = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
        outs.append(
            {
                "image": rgb[0][:, ::-1],
                "alpha": rng.integers(0, 256, (16, 16), dtype=np.uint8),
                "trimap": rng.choice(np.array([0, 128, 255], np.uint8), (16, 16)),
                "fg": rgb[1],
                "bg": rgb[2],
            }
        )
    for out in outs:
        item = tdata.to_tensors(out)
        assert list(item) == ["image", "alpha", "trimap", "fg", "bg"]
        assert all(v.dtype == torch.uint8 and v.is_contiguous() for v in item.values())
        assert item["image"].shape == (3, 16, 16) and item["alpha"].shape == (1, 16, 16)
        assert sum(v.nbytes for v in item.values()) == 11 * 256  # 11 bytes per pixel, 44 before
        assert_same(tdata.prepare_batch(item, "cpu"), ref_item(out))
    batch = default_collate([tdata.to_tensors(out) for out in outs])
    assert_same(
        tdata.prepare_batch(batch, torch.device("cpu"), non_blocking=False),
        default_collate([ref_item(out) for out in outs]),
    )
    no_fg = {k: outs[1][k] for k in ("image", "alpha", "trimap")}
    assert_same(tdata.prepare_batch(tdata.to_tensors(no_fg), "cpu"), ref_item(no_fg))
    floats = {"image": torch.zeros(2, 3, 4, 4), "other": torch.arange(3)}  # not uint8: moved, not converted
    assert_same(tdata.prepare_batch(floats, "cpu"), floats)
    with pytest.raises(TypeError, match="uint8"):
        tdata.to_tensors({"image": image.astype(np.float32), "alpha": values, "trimap": values})
    with pytest.raises(ValueError, match="3, H, W"):
        tdata.prepare_batch({"image": torch.zeros(2, 4, 4, 3, dtype=torch.uint8)}, "cpu")


# ------------------------------------------------------------------------------------ copy-paste helpers


def test_face_box_copy_where_and_paste_face_match_reference():
    rng = np.random.default_rng(5)
    empty = np.zeros((30, 40), bool)
    assert face_box(empty) is None and ref.ref_face_box(empty) is None
    for case in range(20):
        h, w = int(rng.integers(20, 80)), int(rng.integers(20, 80))
        mask = soft_alpha(rng, h, w) > int(rng.integers(1, 255))
        for m in (mask, mask.astype(np.uint8) * 255, mask.astype(np.int32), mask[:, ::-1]):
            assert face_box(m) == ref.ref_face_box(m)
        dst, src = (rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(2))
        want = dst.copy()
        want[mask] = src[mask]
        got = dst.copy()
        copy_where(got, src, mask)
        np.testing.assert_array_equal(got, want)
        target, face = rng.integers(0, 256, (h, w, 3), dtype=np.uint8), soft_alpha(rng, h, w) > 128
        private = face & (soft_alpha(rng, h, w) < 200)
        source = Face(rng.integers(0, 256, (50, 40, 3), dtype=np.uint8), soft_alpha(rng, 50, 40) > 100)
        a, b = np.random.default_rng(case), np.random.default_rng(case)
        got_image, got_replaced = paste_face(target, face, private, source, a)
        want_image, want_replaced = ref.ref_paste_face(target, face, private, source, b)
        assert_same(got_image, want_image)
        assert_same(got_replaced, want_replaced)


# ------------------------------------------------------------------------------------ whole dataset items


@pytest.fixture(scope="module")
def synth_root(synth_dataset, tmp_path_factory) -> Path:
    """A synthetic set large enough for crops smaller than the image, with original_image and an fg/bg cache."""
    root = tmp_path_factory.mktemp("speed") / "P3M-10k"
    shutil.copytree(synth_dataset(n_train=6, n_test_p=1, n_test_np=1, size=(96, 128), seed=11), root)
    train = root / "train"
    shutil.copytree(train / "blurred_image", train / "original_image")
    # the estimated-fg/bg path reads the cache: the same pixels as the reference's PNG cache and as p3m's WebP one
    for folder in ("blurred_image", "original_image"):
        for kind in ("fg", "bg"):
            shutil.copytree(train / kind, train / "fg_bg_cache" / folder / kind)
        for png in sorted((train / "fg").glob("*.png")):
            fg_path, bg_path = fg_cache.cache_paths(train / "fg_bg_cache", folder, png.stem)
            fg_cache.write_cache_image(fg_path, read_image(png))
            fg_cache.write_cache_image(bg_path, read_image(train / "bg" / png.name))
    return root


def dataset_cases(root: Path):
    base = dict(root=str(root), crop_sizes=[32, 48, 64, 200], resize=32, trimap_kernel=[3, 9], workers=0)
    return {
        "default": (DataConfig(**base), None),
        "mm21": (DataConfig(**base, crop_policy="mm21", trimap_variant="mm21", unknown_prob=0.7), None),
        "no composition": (DataConfig(**base, composition=False, flip_prob=1.0), None),
        "blur": (DataConfig(**base, image_dir="original_image", obfuscation="blur"), None),
        "mosaic": (DataConfig(**base, image_dir="original_image", obfuscation="mosaic"), None),
        "copy-paste": (DataConfig(**base), CopyPasteConfig(enabled=True, prob=1.0)),
        "fg/bg cache": (
            DataConfig(**base, fg_cache=str(root / "train" / "fg_bg_cache"), image_dir="blurred_image"),
            None,
        ),
    }


@pytest.mark.parametrize("case", ["default", "mm21", "no composition", "blur", "mosaic", "copy-paste", "fg/bg cache"])
def test_dataset_items_match_reference(synth_root, case):
    cfg, cp = dataset_cases(synth_root)[case]
    new = tdata.P3MTrainDataset(synth_root, cfg, copy_paste=cp, seed=21)
    old = ref.ReferenceTrainDataset(synth_root, cfg, copy_paste=cp, seed=21)
    if case == "fg/bg cache":
        assert not new.use_shipped_fg  # the image_dir override reads the estimated (cached) fg/bg
    for epoch in range(3):
        new.epoch = old.epoch = epoch
        items = [new[index] for index in range(len(new))]
        want = [old[index] for index in range(len(new))]
        for item, old_item in zip(items, want, strict=True):
            assert all(v.dtype == torch.uint8 for v in item.values())
            assert_same(tdata.prepare_batch(item, "cpu"), old_item)
        assert_same(tdata.prepare_batch(default_collate(items), "cpu"), default_collate(want))


def test_face_bank_pick_matches_reference(synth_root):
    samples = tdata.P3MTrainDataset(synth_root, dataset_cases(synth_root)["default"][0]).samples
    bank = FaceBank.from_samples([s.image for s in samples], [s.facemask for s in samples])
    for seed in range(4):
        got = bank.pick(np.random.default_rng(seed), exclude=samples[0].image)
        want = ref.ref_pick(bank, np.random.default_rng(seed), exclude=samples[0].image)
        assert_same(got.image, want.image)
        assert_same(got.mask, want.mask)


def test_cache_is_lossless_webp_and_png_pairs_are_not_entries(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    calls = []

    def estimate(image_u8, alpha_u8):
        calls.append(1)
        return image_u8 // 3, 255 - image_u8

    monkeypatch.setattr(fg_cache, "estimate_fg_bg", estimate)
    # PNG files where the cache keeps its entries are not an entry (no release wrote PNG caches)
    base = tmp_path / "blurred_image"
    for kind, pixels in (("fg", image // 2), ("bg", image // 4)):
        write_image(base / kind / "old.png", pixels)
    assert fg_cache.cached_pair(tmp_path, "blurred_image", "old") is None
    fg, bg = fg_cache.load_or_estimate(image, alpha, tmp_path, "blurred_image", "old")
    assert len(calls) == 1 and np.array_equal(fg, image // 3) and np.array_equal(bg, 255 - image)
    # entries are lossless WebP, found again without estimating
    webp = fg_cache.cache_paths(tmp_path, "blurred_image", "old")
    assert [p.suffix for p in webp] == [".webp", ".webp"] and all(p.is_file() for p in webp)
    assert fg_cache.cached_pair(tmp_path, "blurred_image", "old") == webp
    assert np.array_equal(read_image(webp[0]), image // 3) and np.array_equal(read_image(webp[1]), 255 - image)
    assert np.array_equal(fg_cache.load_or_estimate(image, alpha, tmp_path, "blurred_image", "old")[0], image // 3)
    assert len(calls) == 1
