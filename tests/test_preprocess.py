"""One input conversion (p3m.infer.preprocess), one runtime (p3m.infer.runtime), one renderer (MatteResult.render)
and the matting sessions behind one interface (p3m.infer.sessions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from p3m import choices
from p3m.errors import CheckpointError, ChoiceError, DeviceError, ImageError
from p3m.infer import foreground, runtime, strategies
from p3m.infer.matter import Matter, MatteResult
from p3m.infer.preprocess import IMAGENET_MEAN, IMAGENET_STD, array_to_rgb, normalize, to_rgb
from p3m.infer.sessions import OnnxSession, PortraitSession, StrategyOptions, TorchSession, new_session
from p3m.io import read_image
from p3m.models import create, save_checkpoint

torch.set_num_threads(1)


def gradient(h: int = 40, w: int = 56) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.dstack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (h + w - 2)]).astype(np.uint8)


# ----------------------------------------------------------------------------- one conversion, one rule set


def test_pil_16bit_image_converts_like_the_file_it_came_from(tmp_path: Path) -> None:
    """Issue 19, item 11: a PIL `I;16` image was clipped to white (an empty matte) while its file worked."""
    values = (np.linspace(0, 65535, 48 * 64).reshape(48, 64)).astype(np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I")  # 16-bit grey, decoded by PIL as I;16 (or I)
        from_pil = to_rgb(img)
    from_path = to_rgb(path)
    expected = np.rint(values / 257.0).astype(np.uint8)  # literal rule: v / 257, rounded
    np.testing.assert_array_equal(from_path, np.dstack([expected] * 3))
    np.testing.assert_array_equal(from_pil, from_path)
    np.testing.assert_array_equal(to_rgb(Image.fromarray(values)), from_path)  # I;16 built in memory
    np.testing.assert_array_equal(to_rgb(values), from_path)  # a uint16 array follows the same rule


def test_pil_images_of_every_mode_equal_their_files(tmp_path: Path) -> None:
    rgb = gradient()
    alpha = np.tile(np.linspace(0, 255, rgb.shape[1]).astype(np.uint8), (rgb.shape[0], 1))
    images = {
        "rgb.png": Image.fromarray(rgb),
        "l.png": Image.fromarray(rgb[..., 0]),
        "rgba.png": Image.fromarray(np.dstack([rgb, alpha])),
        "la.png": Image.fromarray(np.dstack([rgb[..., 0], alpha])).convert("LA"),
        "p.png": Image.fromarray(rgb).convert("P"),
        "bw.png": Image.fromarray(rgb[..., 0] > 128),
        "f.tif": Image.fromarray(rgb[..., 1].astype(np.float32) / 255.0),
        "cmyk.tif": Image.fromarray(rgb).convert("CMYK"),
    }
    for name, img in images.items():
        img.save(tmp_path / name)
        with Image.open(tmp_path / name) as reopened:
            np.testing.assert_array_equal(to_rgb(reopened), read_image(tmp_path / name), err_msg=name)
        assert to_rgb(img).shape == (*rgb.shape[:2], 3)
    # alpha over white, as read_image does: the literal formula
    a = alpha[..., None] / 255.0
    np.testing.assert_array_equal(
        to_rgb(images["rgba.png"]), np.clip(np.rint(rgb * a + 255.0 * (1 - a)), 0, 255).astype(np.uint8)
    )


def test_arrays_of_the_documented_ranges() -> None:
    rgb = gradient()
    assert np.shares_memory(to_rgb(rgb), rgb)  # already RGB uint8: no copy
    np.testing.assert_array_equal(to_rgb(rgb.astype(np.float32) / 255), rgb)
    np.testing.assert_array_equal(to_rgb(rgb.astype(np.float64) / 255), rgb)
    np.testing.assert_array_equal(to_rgb(rgb[..., 0]), np.dstack([rgb[..., 0]] * 3))
    np.testing.assert_array_equal(to_rgb(rgb[..., :1]), np.dstack([rgb[..., 0]] * 3))
    opaque = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(to_rgb(opaque), rgb)
    clear = np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)])
    assert (to_rgb(clear) == 255).all()  # transparent pixels are white, as an image viewer shows them
    np.testing.assert_array_equal(to_rgb(rgb.astype(np.uint16) * 257), rgb)


@pytest.mark.parametrize(
    "array, needle",
    [
        (gradient().astype(np.float32), r"\[0, 1\].*0\.\.255"),  # 0..255 floats: was clipped to an empty matte
        (gradient().astype(np.float32) / 255 - 0.5, r"\[0, 1\]"),
        (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
        (np.zeros((8, 8, 3), np.int64), "uint8"),
        (np.zeros((8, 8, 3), bool), "uint8"),
        (np.zeros((8, 8, 5), np.uint8), "HxW"),
        (np.zeros((0, 8, 3), np.uint8), "empty"),
        (np.zeros(8, np.uint8), "HxW"),
    ],
)
def test_arrays_outside_their_range_are_one_line_errors(array: np.ndarray, needle: str) -> None:
    with pytest.raises(ImageError, match=needle) as info:
        to_rgb(array)
    assert "\n" not in str(info.value)
    with pytest.raises(ImageError):
        array_to_rgb(array)


def test_matter_refuses_a_float_array_in_0_255_instead_of_clipping_it() -> None:
    matter = Matter.from_network(_ConstantNet(), strategy="resize")
    image = gradient(64, 96)
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        matter.matte(image.astype(np.float32))
    np.testing.assert_array_equal(matter.matte(image.astype(np.float32) / 255).alpha, matter.matte(image).alpha)


def test_normalize_is_the_published_formula() -> None:
    rgb = gradient()
    x = normalize(rgb)
    assert x.shape == (3, *rgb.shape[:2]) and x.dtype == np.float32 and x.flags.c_contiguous
    literal = (
        (rgb.astype(np.float32) / 255.0 - np.array([0.485, 0.456, 0.406], np.float32))
        / np.array([0.229, 0.224, 0.225], np.float32)
    ).transpose(2, 0, 1)
    np.testing.assert_array_equal(x, literal)
    np.testing.assert_array_equal(normalize(rgb.astype(np.float64)), x)  # floats in 0..255 (resized images)
    assert IMAGENET_MEAN.dtype == IMAGENET_STD.dtype == np.float32


# ----------------------------------------------------------------------------- one runtime


def test_resolve_device() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    assert runtime.resolve_device("auto") == "cpu" and runtime.resolve_device("cpu") == "cpu"
    assert runtime.resolve_device("auto", local_rank=3) == "cpu"
    with pytest.raises(DeviceError, match=r"CUDA is unavailable.*use --device cpu"):
        runtime.resolve_device("cuda")
    with pytest.raises(DeviceError, match=r"use train\.device=cpu"):
        runtime.resolve_device("cuda:0", fix="train.device=cpu")
    for bad in ("tpu", "cuda0", "gpu"):
        with pytest.raises(DeviceError, match="unknown device"):
            runtime.resolve_device(bad)


def test_resolve_precision_one_rule_for_inference_and_training(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("fp32", "bf16", "fp16"):
        assert runtime.resolve_precision(name, "cpu") == name
        assert runtime.resolve_precision(name, "cpu", training=True) == name
    with pytest.raises(ChoiceError, match=r"unknown precision 'int8'; use one of auto, fp32, bf16, fp16"):
        runtime.resolve_precision("int8", "cpu")
    for native in (True, False):
        monkeypatch.setattr(runtime, "native_bf16", lambda device, native=native: native)
        expected_cpu = "bf16" if native else "fp32"
        assert runtime.resolve_precision("auto", "cpu") == expected_cpu
        assert runtime.resolve_precision("auto", "cuda") == ("bf16" if native else "fp16")
        assert runtime.resolve_precision("auto", "cuda", training=True) == ("bf16" if native else "fp32")
        assert runtime.autocast_dtype("auto", "cuda") == (torch.bfloat16 if native else None)
    assert runtime.autocast_dtype("none", "cpu") is None and runtime.autocast_dtype("fp32", "cpu") is None
    assert runtime.autocast_dtype("bf16", "cpu") == torch.bfloat16
    assert runtime.autocast_dtype("fp16", "cpu") == torch.float16


def test_every_strategy_name_has_one_implementation() -> None:
    assert tuple(strategies._STRATEGIES) == choices.STRATEGIES
    for name in choices.STRATEGIES:
        assert strategies.plan_passes(name, 640, 480)["strategy"] == name
    with pytest.raises(ChoiceError, match="unknown strategy 'fast'"):
        strategies.plan_passes("fast", 64, 64)
    with pytest.raises(ChoiceError, match="unknown strategy"):
        strategies.predict(_ConstantNet(), gradient(64, 64), "fast")


# ----------------------------------------------------------------------------- one renderer


class _ConstantNet:
    """A NetFn: background on the left half, foreground on the right, a soft local alpha (a ramp)."""

    def __call__(self, x: np.ndarray) -> strategies.NetOutput:
        b, _, h, w = x.shape
        classes = np.zeros((b, h, w), np.uint8)
        classes[:, :, w // 2 :] = 2
        classes[:, :, w // 2 - 4 : w // 2 + 4] = 1
        ramp = np.tile(np.linspace(0, 1, w, dtype=np.float32), (b, h, 1))
        return strategies.NetOutput(classes, ramp, np.where(classes == 1, ramp, classes / 2).astype(np.float32))


def test_render_makes_every_output_kind() -> None:
    image = gradient(64, 96)
    result = Matter.from_network(_ConstantNet(), strategy="resize").matte(image, foreground=True)
    assert 0 < (result.alpha > 0).mean() < 1
    fg = foreground.estimate_foreground(image, result.alpha, "ml")
    np.testing.assert_array_equal(result.render("alpha"), np.rint(result.alpha * 255).astype(np.uint8))
    np.testing.assert_array_equal(result.render("fg"), fg)
    np.testing.assert_array_equal(result.render("rgba"), result.cutout)
    a8 = result.render("alpha")
    np.testing.assert_array_equal(result.render("rgba"), np.dstack([np.where(a8[..., None] > 0, fg, 0), a8]))
    a = result.alpha[..., None].astype(np.float32)
    green = np.clip(np.rint(fg * a + np.array([0, 255, 0], np.float32) * (1 - a)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(result.render("composite", (0, 255, 0)), green)
    np.testing.assert_array_equal(result.composite((0, 255, 0)), green)
    # a background image of another size is scaled to cover and centre-cropped
    backdrop = gradient(32, 32)[::-1]
    fitted = foreground.fit_background(backdrop, 64, 96)
    assert fitted.shape == (64, 96, 3)
    np.testing.assert_array_equal(result.render("composite", backdrop), foreground.composite(fg, result.alpha, fitted))
    assert {k: result.render(k).shape for k in choices.OUTPUT_KINDS} == {
        "alpha": (64, 96),
        "rgba": (64, 96, 4),
        "fg": (64, 96, 3),
        "composite": (64, 96, 3),
    }
    with pytest.raises(ChoiceError, match="unknown output kind 'mask'"):
        result.render("mask")


def test_render_estimates_the_foreground_when_it_was_not_asked_for() -> None:
    image = gradient(64, 96)
    matter = Matter.from_network(_ConstantNet(), strategy="resize", foreground_method="blur")
    bare, full = matter.matte(image), matter.matte(image, foreground=True)
    assert bare.foreground is None and bare.foreground_method == "blur"
    for kind in choices.OUTPUT_KINDS:
        np.testing.assert_array_equal(bare.render(kind), full.render(kind))
    assert bare.foreground is None  # rendering is pure: the result is left as it was


def test_render_is_a_pure_function_of_arrays() -> None:
    image = gradient(48, 48)
    alpha = np.tile(np.linspace(0, 1, 48, dtype=np.float32), (48, 1))
    before = (image.copy(), alpha.copy())
    out = [foreground.render(k, image, alpha) for k in choices.OUTPUT_KINDS]
    again = [MatteResult(alpha=alpha, image=image).render(k) for k in choices.OUTPUT_KINDS]
    for a, b in zip(out, again, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(image, before[0])
    np.testing.assert_array_equal(alpha, before[1])


# ----------------------------------------------------------------------------- sessions


def test_sessions_answer_one_interface(tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = save_checkpoint(create("p3m-r34", width=16), tmp_path / "tiny")
    route = new_session()
    network = new_session(weights=weights, precision="fp32")
    assert isinstance(route, PortraitSession) and isinstance(network, TorchSession)
    assert (route.name, route.arch, route.backend, route.precision, route.device) == (
        "portrait-cf",
        "portrait-cf",
        "onnxruntime",  # the route's small networks run on ONNX Runtime by default (p3m.models.graph_session)
        "fp32",
        "cpu",
    )
    assert new_session(backend="torch").backend == "torch"  # ... or on torch, when asked
    assert route.licence.startswith("Apache-2.0") and route.weights is not None and route.weights.is_file()
    assert (network.name, network.arch, network.backend, network.precision) == (
        "tiny.safetensors",
        "p3m-r34",
        "torch",
        "fp32",
    )
    assert network.licence.startswith("MIT") and network.weights == weights
    image = gradient(64, 96)
    for options in (StrategyOptions("resize"), StrategyOptions("hybrid", "paper")):
        assert route.plan(64, 96, options)["strategy"] == "portrait-cf"
        assert network.plan(64, 96, options) == strategies.plan_passes(options.strategy, 64, 96)
        np.testing.assert_array_equal(  # one loaded session serves any strategy
            network.predict_alpha(image, options),
            strategies.predict(network.net, image, options.strategy, resize_mode=options.resize_mode),
        )
        for session in (route, network):
            alpha = session.predict_alpha(image, options)
            assert alpha.shape == (64, 96) and alpha.dtype == np.float32
    assert route.method(StrategyOptions()) == "segmentation prior + closed-form matting"
    assert network.method(StrategyOptions("resize")) == "torch, resize"
    blank = np.full((64, 96, 3), 128, np.uint8)
    assert route.predict(blank, StrategyOptions()).warning == "no person found: the matte is empty"
    assert network.predict(blank, StrategyOptions()).warning == ""
    with pytest.raises(ChoiceError, match="unknown backend 'tensorrt'"):
        new_session(backend="tensorrt")
    with pytest.raises(ChoiceError, match="unknown strategy 'fast'"):
        StrategyOptions("fast")
    assert OnnxSession.backend == "onnxruntime"
    # the input contract registered beside each architecture: a segmentation network is not a P3M-Net
    selfie = save_checkpoint(create("mediapipe-selfie"), tmp_path / "selfie")
    with pytest.raises(CheckpointError, match=r"mediapipe-selfie takes x/255, RGB.*not a matting network"):
        new_session(weights=selfie)


def test_a_copy_of_matter_with_another_strategy_shares_the_model() -> None:
    """The server's per-request strategy: copy.copy(matter), then set the strategy on the copy."""
    import copy

    matter = Matter.from_network(_ConstantNet(), strategy="hybrid")
    job = copy.copy(matter)
    job.strategy = "resize"
    assert job.session is matter.session and (job.strategy, matter.strategy) == ("resize", "hybrid")
    image = gradient(64, 96)
    assert job.matte(image).info["strategy"] == "resize" and matter.matte(image).info["strategy"] == "hybrid"
    with pytest.raises(ChoiceError):
        job.strategy = "fastest"


def test_matter_names_what_it_loaded(tmp_path: Path) -> None:
    matter = Matter()
    assert isinstance(matter.session, PortraitSession) and not matter.session.uses_strategies
    assert matter.describe() == "portrait-cf on cpu, segmentation prior + closed-form matting"
    torch.manual_seed(0)
    weights = save_checkpoint(create("p3m-r34", width=16), tmp_path / "tiny")
    net = Matter(arch="p3m-r34", weights=weights, precision="fp32")
    assert (net.model_name, net.arch, net.backend, net.precision, net.session.uses_strategies) == (
        "tiny.safetensors",
        "p3m-r34",
        "torch",
        "fp32",
        True,
    )
    assert net.describe() == "tiny.safetensors (p3m-r34) on cpu, torch, hybrid"
