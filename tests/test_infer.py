"""Inference: resize R, size rule, RESIZE/HYBRID against a literal transcription of the published code,
highres tiling, SAMPLES mode, foreground estimation, the Matter API and the model store."""

from __future__ import annotations

import itertools
import json
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.transform import resize as sk_resize

from p3m.errors import CheckpointError, DeviceError, ImageError
from p3m.infer import foreground as fgmod
from p3m.infer.matter import Matter, MatteResult
from p3m.infer.preprocess import to_rgb
from p3m.infer.resize import mask_resized, resize_fast, resize_paper, shrunk
from p3m.infer.runtime import TorchNet
from p3m.infer.strategies import (
    NetOutput,
    blend_ramp,
    plan_passes,
    predict,
    predict_highres,
    predict_hybrid,
    size_rule,
    tile_starts,
)
from p3m.models import create, fuse
from p3m.models import store as model_store
from p3m.models.blocks import P3MOutput
from p3m.models.checkpoint import save_checkpoint
from tests.reference.foreground import literal_multilevel
from tests.reference.inference import ref_hybrid_strategy, ref_resize_strategy, sk_R

torch.set_num_threads(1)


class VariedClasses(torch.nn.Module):
    """A width-16 P3M-Net whose semantic logits also follow the input colours, so that random weights
    still give background, transition and foreground regions (exercises every branch of HYBRID)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inner = create("p3m-r34", width=16)

    def forward(self, x: torch.Tensor) -> P3MOutput:
        out = self.inner(x)
        g = out.global_logits * 0.01 + 4.0 * x
        return P3MOutput(g, out.local_alpha, fuse(g, out.local_alpha), out.side2, out.side1, out.side0)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return VariedClasses().eval()


@pytest.fixture(scope="module")
def net(model: torch.nn.Module) -> TorchNet:
    return TorchNet(model, "cpu", "fp32")


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random colours (large regions of each class), uint8 RGB."""
    rng = np.random.default_rng(seed)
    small = rng.random((4, 5, 3))
    return (np.clip(sk_resize(small, (h, w), order=3), 0, 1) * 255).astype(np.uint8)


# ----------------------------------------------------------------------------- resize and sizes


def test_size_rule_examples_of_the_reference() -> None:
    assert size_rule(1080, 1620, 0.5) == (512, 800)
    assert size_rule(1080, 1620, 1.0) == (1056, 1600)
    assert size_rule(2160, 3840, 1.0) == (1600, 1600)  # capped per side: aspect not kept
    assert size_rule(2160, 3840, 1.0, None) == (2144, 3840)
    with pytest.raises(ImageError, match="too small"):
        size_rule(60, 500, 0.5)


@pytest.mark.parametrize(
    "shape,size",
    [
        ((90, 130, 3), (64, 96)),
        ((37, 53), (100, 90)),
        ((64, 96), (32, 160)),
        ((128, 128, 3), (256, 96)),
        ((5, 7), (1, 1)),
    ],
)
def test_resize_paper_equals_scikit_image(shape, size) -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, shape).astype(np.uint8)
    np.testing.assert_allclose(resize_paper(img, size), sk_R(img, size), atol=1e-6, rtol=0)
    f = rng.random(shape).astype(np.float32) * 0.6 + 0.2  # input range without 0: clip to it
    np.testing.assert_allclose(resize_paper(f, size), sk_R(f, size), atol=1e-6, rtol=0)


def test_resize_paper_border_and_constants() -> None:
    ones = np.ones((8, 8))
    ones[3, 3] = 0.0  # input range includes cval: nothing clipped back
    up = resize_paper(ones, (16, 16))
    assert up[0, 8] == pytest.approx(0.75)  # the attenuated frame of mode='constant'
    const = np.full((50, 70), 255, np.uint8)
    const[:10] = 0
    out = resize_paper(const, (123, 77))
    assert set(np.unique(out[40:-2, 2:-2])) == {1.0}  # constant runs stay exactly constant


def test_resize_fast_matches_paper_inside_and_replicates_border() -> None:
    img = np.random.default_rng(2).integers(0, 256, (60, 80, 3)).astype(np.uint8)
    fast, paper = resize_fast(img, (150, 170)), resize_paper(img, (150, 170))
    np.testing.assert_allclose(fast[2:-2, 2:-2], paper[2:-2, 2:-2], atol=1e-5)
    ones = np.ones((8, 8), np.float32)
    assert resize_fast(ones, (16, 16)).min() == pytest.approx(1.0)


def test_shrunk_and_mask_resized() -> None:
    img = np.random.default_rng(4).integers(0, 256, (60, 90, 3)).astype(np.uint8)
    small = shrunk(img, 30)  # long side 90 -> 30: (20, 30), by area
    assert small.shape == (20, 30, 3)
    np.testing.assert_array_equal(small, img.reshape(20, 3, 30, 3, 3).mean(axis=(1, 3)).round().astype(np.uint8))
    assert shrunk(img, 90) is img and shrunk(img, 200) is img  # fits: never upscaled, not copied
    mask = np.zeros((2, 3), bool)
    mask[0, 1] = True
    big = mask_resized(mask, (4, 6))  # nearest: each pixel becomes a 2x2 block
    assert big.dtype == bool and big.shape == (4, 6)
    np.testing.assert_array_equal(big, np.kron(mask, np.ones((2, 2), bool)))
    assert mask_resized(mask, (2, 3)) is mask


# ----------------------------------------------------------------------------- strategies vs reference


def test_resize_strategy_matches_published_code(model, net) -> None:
    img = smooth_image(100, 140)
    ours = predict(net, img, "resize", resize_mode="paper")
    np.testing.assert_allclose(ours, ref_resize_strategy(model, img), atol=1e-5)


def test_hybrid_strategy_matches_published_code(model, net) -> None:
    img = smooth_image(90, 130, seed=3)
    ours = predict_hybrid(net, img, resize_mode="paper")
    ref, tri = ref_hybrid_strategy(model, img)
    # the reference mixes all three cases
    assert (tri == 255).any() and (tri == 0).any() and ((tri > 0) & (tri < 255)).any()
    # scipy's bilinear zoom may leave 254.99999 inside a constant run; ours keeps runs exact, so those
    # pixels legitimately take the trimap value; everywhere else the two agree to float precision
    ambiguous = (np.abs(tri - 255) < 1e-6) & (tri != 255) | (np.abs(tri) < 1e-6) & (tri != 0)
    np.testing.assert_allclose(ours[~ambiguous], ref[~ambiguous], atol=1e-5)
    np.testing.assert_array_equal(ours[ambiguous], np.rint(tri[ambiguous] / 255))
    assert ours.dtype == np.float32 and ours.shape == (90, 130)


def test_hybrid_fast_mode_is_close_to_paper(net) -> None:
    img = smooth_image(96, 128, seed=4)
    a = predict_hybrid(net, img, resize_mode="paper")
    b = predict_hybrid(net, img, resize_mode="fast")
    assert np.abs(a - b)[2:-2, 2:-2].mean() < 0.02


def test_highres_equals_hybrid_where_both_apply(net) -> None:
    img = smooth_image(100, 150, seed=5)
    for mode in ("paper", "fast"):
        hyb = predict_hybrid(net, img, resize_mode=mode)
        hr = predict_highres(net, img, resize_mode=mode)
        assert np.abs(hyb - hr).max() < 1e-3


def test_tile_offsets_are_multiples_of_32_and_cover() -> None:
    for n in (2144, 3840, 1056, 4000 - 4000 % 32):
        starts = tile_starts(n, 1024, 128)
        assert all(s % 32 == 0 for s in starts)
        assert starts[0] == 0 and starts[-1] == n - 1024
        assert all(b - a <= 1024 - 128 for a, b in itertools.pairwise(starts))  # overlap >= 128
    assert tile_starts(640, 1024, 128) == [0]
    w1, w2 = blend_ramp(256, 0, 96), blend_ramp(256, 96, 0)
    np.testing.assert_allclose(w1[-96:] + w2[:96], 1.0, atol=1e-6)


class PointwiseNet:
    """Net whose local output depends on each pixel alone: tiling must reproduce the untiled result."""

    def __call__(self, x: np.ndarray) -> NetOutput:
        local = (1 / (1 + np.exp(-x.sum(1)))).astype(np.float32)
        classes = np.full(local.shape, 1, np.uint8)
        return NetOutput(classes, local, local)


def test_highres_tiling_blends_exactly_for_a_position_independent_net() -> None:
    img = smooth_image(300, 420, seed=6)
    whole = predict_highres(PointwiseNet(), img, resize_mode="fast")
    tiled = predict_highres(PointwiseNet(), img, resize_mode="fast", single_pass_max=128, tile=128, overlap=64)
    np.testing.assert_allclose(tiled, whole, atol=1e-6)
    plan = plan_passes("highres", 300, 420, single_pass_max=128, tile=128, overlap=64)
    assert sum(p[0] == "local-tile" for p in plan["passes"]) > 4


def test_highres_keeps_aspect_and_bounds_the_passes() -> None:
    plan = plan_passes("highres", 2160, 3840)
    sizes = [p[1] for p in plan["passes"]]
    assert sizes[0] == (896, 1600)  # global pass: 1/2, longer side <= 1600, aspect kept
    assert plan["local_size"] == (2144, 3840)
    assert all(s == (1024, 1024) for s in sizes[1:])
    assert plan_passes("hybrid", 2160, 3840)["passes"][1][1] == (1600, 1600)
    # a side that fits one pass is not cut: 1056 x 1920 -> 2 tiles of 1056 x 1024
    wide = plan_passes("highres", 1080, 1920)["passes"]
    assert [p[1] for p in wide] == [(512, 960), (1056, 1024), (1056, 1024)]


def test_highres_with_real_tiles_runs(net) -> None:
    img = smooth_image(160, 224, seed=7)
    a = predict_highres(net, img, single_pass_max=96, tile=96, overlap=32)
    assert a.shape == (160, 224) and a.min() >= 0 and a.max() <= 1


def test_samples_mode_shorter_side_limit(net) -> None:
    import cv2

    img = smooth_image(150, 100, seed=8)
    got = predict(net, img, "resize", resize_mode="paper", shorter_side_limit=64)
    small = cv2.resize(img, (64, 96), interpolation=cv2.INTER_LINEAR)  # shorter side -> 64
    inner = predict(net, small, "resize", resize_mode="paper")
    want = cv2.resize(inner * 255, (100, 150), interpolation=cv2.INTER_LINEAR) / 255
    np.testing.assert_allclose(got, np.clip(want, 0, 1), atol=1e-5)
    assert plan_passes("resize", 150, 100, shorter_side_limit=64)["prescaled_to"] == (96, 64)


# ----------------------------------------------------------------------------- foreground


def _synthetic_composite(h: int = 80, w: int = 120, lo: float = -1, hi: float = 2):
    fg_colour = np.array([230, 40, 30], np.float32)
    bg_colour = np.array([20, 200, 60], np.float32)
    x = np.linspace(lo, hi, w, dtype=np.float32)
    alpha = np.clip(np.broadcast_to(x, (h, w)), 0, 1).copy()
    image = alpha[..., None] * fg_colour + (1 - alpha[..., None]) * bg_colour
    return np.rint(image).astype(np.uint8), alpha, fg_colour


@pytest.mark.parametrize("method,lo,hi,factor", [("ml", -1, 2, 0.01), ("ml", -5, 6, 0.01), ("blur", -5, 6, 0.25)])
def test_foreground_removes_the_old_background(method, lo, hi, factor) -> None:
    image, alpha, fg_colour = _synthetic_composite(80, 240, lo, hi)
    fg = fgmod.estimate_foreground(image, alpha, method)
    band = (alpha > 0.1) & (alpha < 0.9)
    err_est = np.abs(fg[band].astype(np.float32) - fg_colour).mean()
    err_raw = np.abs(image[band].astype(np.float32) - fg_colour).mean()
    assert err_est < factor * err_raw
    assert fg.dtype == np.uint8
    opaque = alpha >= 1
    np.testing.assert_array_equal(fg[opaque], image[opaque])


def test_multilevel_foreground_matches_literal_reference() -> None:
    rng = np.random.default_rng(11)
    image = rng.random((13, 21, 3)).astype(np.float32)
    alpha = np.clip(rng.random((13, 21)) * 1.6 - 0.3, 0, 1).astype(np.float32)
    f, b = fgmod.multilevel_foreground(image, alpha, n_big_iterations=2, n_small_iterations=3, small_size=8)
    rf, rb = literal_multilevel(image.astype(np.float64), alpha.astype(np.float64), n_big=2, n_small=3, small=8)
    np.testing.assert_allclose(f, rf, atol=1e-4)
    np.testing.assert_allclose(b, rb, atol=1e-4)


def test_band_only_fine_levels_match_full_updates() -> None:
    rng = np.random.default_rng(12)
    h, w = 300, 400
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = np.clip((160 - np.hypot(yy - 150, xx - 200)) / 12 + rng.normal(0, 0.05, (h, w)), 0, 1).astype(np.float32)
    image = (rng.random((h, w, 3)) * 0.2 + np.where(alpha[..., None] > 0.5, 0.7, 0.1)).astype(np.float32)
    band = (alpha > 0) & (alpha < 1)
    full, _ = fgmod.multilevel_foreground(image, alpha, band_only_above=None)
    fast, _ = fgmod.multilevel_foreground(image, alpha, band_only_above=10_000)
    assert np.abs(full - fast)[band].mean() < 0.5 / 255


def test_foreground_outside_the_band_is_the_image() -> None:
    image, alpha, _ = _synthetic_composite(100, 300)
    alpha[:] = np.where(alpha > 0.5, 1.0, 0.0)
    alpha[40:50, 100:110] = 0.5
    fg = fgmod.estimate_foreground(image, alpha, margin=8)
    assert fgmod.unknown_bbox(alpha, 8) == (32, 58, 92, 118)
    outside = np.ones(alpha.shape, bool)
    outside[32:58, 92:118] = False
    np.testing.assert_array_equal(fg[outside], image[outside])


def test_cutout_is_straight_rgba_and_composite() -> None:
    image, alpha, _ = _synthetic_composite()
    fg = fgmod.estimate_foreground(image, alpha)
    rgba = fgmod.cutout_rgba(fg, alpha)
    assert rgba.dtype == np.uint8 and rgba.shape == (*alpha.shape, 4)
    seen = rgba[..., 3] > 0
    np.testing.assert_array_equal(rgba[..., :3][seen], fg[seen])  # not premultiplied
    assert (alpha == 0).any() and not rgba[~seen].any()  # what the matte leaves out: nothing of the photo
    np.testing.assert_array_equal(rgba[..., 3], np.rint(alpha * 255).astype(np.uint8))
    comp = fgmod.composite(fg, alpha, (0, 0, 255))
    want = fg.astype(np.float32) * alpha[..., None] + np.array([0, 0, 255]) * (1 - alpha[..., None])
    assert np.abs(comp.astype(np.float32) - want).max() <= 0.5 + 1e-4
    assert fgmod.alpha_to_uint8(np.array([0.999]), "truncate")[0] == 254


# ----------------------------------------------------------------------------- Matter


@pytest.fixture
def store(tmp_path: Path, home: Path) -> Path:
    """The test's folder, holding its P3M_HOME (``store / "home"``, conftest's ``home``)."""
    return tmp_path


@pytest.fixture
def tiny_weights(store: Path) -> Path:
    torch.manual_seed(1)
    path = save_checkpoint(create("p3m-r34", width=16), store / "ck" / "tiny")
    model_store.register(path, "tiny", arch="p3m-r34", origin="test")
    return path


def test_matter_accepts_paths_pil_arrays_and_bytes(tiny_weights: Path, store: Path) -> None:
    matter = Matter(weights="tiny", precision="fp32", strategy="resize")
    img = smooth_image(96, 128, seed=9)
    path = store / "in.png"
    Image.fromarray(img).save(path)
    ref = matter.matte(img).alpha
    assert ref.dtype == np.float32 and ref.shape == (96, 128)
    for source in (path, str(path), Image.fromarray(img), path.read_bytes(), img.astype(np.float32) / 255):
        np.testing.assert_allclose(matter.matte(source).alpha, ref, atol=1e-6)
    res = matter.matte(img, foreground=True)
    assert res.foreground.shape == (96, 128, 3) and res.cutout.shape == (96, 128, 4)
    assert res.info["plan"]["passes"] == [("fused", (32, 64))]


def test_matter_exif_orientation(tiny_weights: Path, store: Path) -> None:
    img = smooth_image(64, 128, seed=10)  # stored landscape, orientation 6 = display rotated 90 deg cw
    exif = Image.Exif()
    exif[0x0112] = 6
    path = store / "rot.jpg"
    Image.fromarray(img).save(path, exif=exif, quality=95)
    matter = Matter(weights="tiny", precision="fp32", strategy="resize")
    shown = to_rgb(path)
    assert shown.shape == (128, 64, 3)
    assert matter.matte(path).alpha.shape == (128, 64)
    assert matter.matte(Image.open(path)).alpha.shape == (128, 64)


def test_matter_is_thread_safe(tiny_weights: Path) -> None:
    matter = Matter(weights="tiny", precision="fp32", strategy="resize")
    images = [smooth_image(64 + 32 * (i % 2), 96, seed=20 + i) for i in range(6)]
    expected = [r.alpha for r in matter.matte_batch(iter(images))]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = matter.matte(images[i]).alpha

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, want in enumerate(expected):
        np.testing.assert_array_equal(results[i], want)


def test_matter_refuses_an_architecture_without_weights(store: Path) -> None:
    # no name: the built-in route (tests/test_default_model.py); an architecture asked for needs its weights
    with pytest.raises(CheckpointError, match="p3m demo"):
        Matter(arch="p3m-swin-t")


def test_matter_cuda_request_fails_loudly(tiny_weights: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(DeviceError, match="CUDA is unavailable"):
        Matter(weights="tiny", device="cuda")


def test_matter_rejects_bad_arrays(tiny_weights: Path) -> None:
    matter = Matter(weights="tiny", precision="fp32", strategy="resize")
    with pytest.raises(ImageError):
        matter.matte(np.zeros((10, 10, 3), np.int64))
    with pytest.raises(ImageError, match="too small"):
        matter.matte(np.zeros((20, 20, 3), np.uint8))


def test_matte_result_composite_uses_foreground() -> None:
    image, alpha, _ = _synthetic_composite()
    res = MatteResult(alpha=alpha, image=image)
    out = res.composite((255, 255, 255))
    assert out.shape == image.shape and out.dtype == np.uint8


# ----------------------------------------------------------------------------- model store


def test_store_register_list_resolve(tiny_weights: Path, store: Path) -> None:
    home = model_store.model_home()
    assert home == store / "home" / "models"
    index = json.loads((home / "index.json").read_text())
    assert index["models"]["tiny"]["arch"] == "p3m-r34"
    assert (home / "tiny.safetensors").is_file() and (home / "tiny.json").is_file()
    builtin, entry = model_store.list_weights()
    assert builtin.name == model_store.BUILTIN
    assert (entry.name, entry.arch, entry.origin, entry.format) == ("tiny", "p3m-r34", "test", "safetensors")
    assert model_store.resolve("tiny") == (home / "tiny.safetensors", "p3m-r34")
    assert model_store.resolve(str(tiny_weights))[1] == "p3m-r34"
    with pytest.raises(CheckpointError, match="available: portrait-cf, tiny"):
        model_store.resolve("nope")


def test_store_says_when_a_registration_replaces_one_from_elsewhere(tiny_weights: Path, store: Path) -> None:
    """The model folder is shared by every checkout: registering a name another run registered says so."""
    assert model_store.replacement_note("fresh", "p3m demo (/a)") == ""  # nothing to replace
    assert model_store.replacement_note("tiny", "test") == ""  # the same origin re-registers its own model
    note = model_store.replacement_note("tiny", "p3m demo (/b)")
    assert note.startswith("`tiny` was registered by test on ") and "stay where that run wrote them" in note
    model_store.register(tiny_weights, "tiny", arch="p3m-r34", origin="p3m demo (/b)")
    assert model_store.replacement_note("tiny", "p3m demo (/b)") == ""
    assert "registered by p3m demo (/b)" in model_store.replacement_note("tiny", "p3m demo (/a)")


def test_store_picks_up_dropped_files_and_guesses_arch(store: Path) -> None:
    home = model_store.model_home()
    home.mkdir(parents=True)
    torch.save({"state_dict": {"resnet.conv1.weight": torch.zeros(16, 3, 7, 7)}}, home / "published.pth")
    torch.save({"encoder.layers.0.RC.proj1.weight": torch.zeros(1)}, home / "vit.pth")
    from safetensors.torch import save_file

    save_file({"encoder.patch_embed.proj1.weight": torch.zeros(1)}, str(home / "swin.safetensors"))
    (home / "notes.txt").write_text("not a model")
    entries = {e.name: e for e in model_store.list_weights()}
    assert set(entries) == {"published", "vit", "swin", model_store.BUILTIN}
    assert entries["published"].arch == "p3m-r34" and entries["published"].origin == "dropped file"
    assert model_store.guess_arch(home / "published.pth") == ("p3m-r34", {"width": 16})
    assert entries["vit"].arch == "p3m-vitae-s" and entries["swin"].arch == "p3m-swin-t"


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/h_infer_pwned"),))


def test_store_never_unpickles_code(store: Path) -> None:
    home = model_store.model_home()
    home.mkdir(parents=True)
    marker = Path("/tmp/h_infer_pwned")
    marker.unlink(missing_ok=True)
    with open(home / "evil.pth", "wb") as f:
        pickle.dump({"resnet.x": _Payload()}, f)
    assert [e.name for e in model_store.list_weights()] == [model_store.BUILTIN]
    (entry,) = model_store.list_unusable()  # listed apart, with the weights-only unpickler's reason
    assert entry.name == "evil" and entry.arch is None and "unreadable pth file" in entry.problem
    assert not marker.exists()


@pytest.mark.slow  # keeps the fast loop under a minute (about 1 s of CPU); make test runs it
def test_branch_selection_keeps_hybrid_and_highres_results() -> None:
    """TorchNet over a P3M-Net asks the 1/2 pass for the semantic branch and the full pass for the matting branch
    only; the alpha is the same as with every output computed."""
    torch.manual_seed(0)
    selecting = TorchNet(create("p3m-r34", width=16).eval(), "cpu", "fp32")
    assert selecting.selects_outputs

    def everything(x: np.ndarray) -> NetOutput:  # a plain callable: always the full forward
        return selecting(x)

    calls: list[str] = []
    original = selecting.runner

    def spy(t, outputs="all"):
        calls.append(outputs)
        return original(t, outputs=outputs)

    selecting.runner = spy
    img = smooth_image(90, 130, seed=5)
    np.testing.assert_allclose(predict_hybrid(selecting, img), predict_hybrid(everything, img), atol=1e-6)
    assert calls[:2] == ["global", "local"]
    calls.clear()
    np.testing.assert_allclose(predict_highres(selecting, img), predict_highres(everything, img), atol=1e-6)
    assert calls[:2] == ["global", "local"]
    assert not TorchNet(VariedClasses().eval(), "cpu", "fp32").selects_outputs  # forward(x) only: full passes
