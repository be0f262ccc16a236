"""The contrast stretch after the band's solve where a transition is a blurred step (p3m.infer.step_edges).

The cues against literal references (scipy's filters, Gaussian-weighted means written out as loops); the stretch
on drawn edges whose answer is known: a soft ramp between two close colours becomes a steeper one, the same ramp
between far colours and a striped (strand-like) alpha between close colours stay as they are; the route calls it
between the solve and the clean-up, and not with `step_contrast=1`.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

import p3m.infer.portrait as portrait_module
from p3m.infer.portrait import PortraitMatting, PortraitSettings
from p3m.infer.spill import gaussian_kernel
from p3m.infer.step_edges import (
    colour_separation,
    high_pass_energy,
    sharpen_steps,
    step_gain,
    stretch_about_half,
)
from tests.paths import TEST_DATA


def ramp_scene(
    fg: tuple[int, int, int], bg: tuple[int, int, int], width: int = 16, h: int = 64, w: int = 96
) -> tuple[np.ndarray, np.ndarray]:
    """(HxWx3 uint8 image, HxW float32 alpha): a vertical edge whose alpha ramps linearly from 1 (left) to 0 over
    `width` px, the image composited from the flat colours `fg` and `bg` with that alpha."""
    x = np.arange(w, dtype=np.float32)
    alpha = np.clip((w / 2 + width / 2 - x) / width, 0.0, 1.0)
    alpha = np.repeat(alpha[None], h, 0)
    image = alpha[..., None] * np.array(fg, np.float32) + (1 - alpha[..., None]) * np.array(bg, np.float32)
    return np.rint(image).astype(np.uint8), alpha


# -- the cues against literal references ------------------------------------------------------------------------


def test_high_pass_energy_is_the_box_mean_of_the_detail_a_gaussian_removes():
    rng = np.random.default_rng(0)
    x = rng.random((30, 41)).astype(np.float32)
    # OpenCV's Gaussian of std. dev. 1.5 has 13 taps (radius 6 = scipy's truncate 4), both reflect without
    # repeating the edge pixel (scipy's "mirror")
    detail = np.abs(x - ndimage.gaussian_filter(x.astype(np.float64), 1.5, truncate=4.0, mode="mirror"))
    reference = ndimage.uniform_filter(detail, 5, mode="mirror")
    assert np.abs(high_pass_energy(x) - reference).max() < 1e-5
    ramp = np.repeat(np.linspace(0, 1, 40, dtype=np.float32)[None], 20, 0)
    assert high_pass_energy(ramp)[:, 10:30].max() < 1e-5  # a linear ramp has no detail inside
    stripes = np.tile(np.array([0.2, 0.2, 0.8, 0.8], np.float32), (20, 10))
    assert high_pass_energy(stripes)[5:15, 5:35].min() > 0.1  # strands have


def literal_separation(image: np.ndarray, alpha: np.ndarray, sigma: float) -> np.ndarray:
    """|F - B| per pixel, F and B written out as Gaussian-weighted sums over the truncated kernel."""
    k = gaussian_kernel(sigma).astype(np.float64)
    r = len(k) // 2
    h, w = alpha.shape
    colours = image.astype(np.float64) / 255.0
    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            sums = {"f": np.zeros(3), "b": np.zeros(3)}
            weights = {"f": 0.0, "b": 0.0}
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    qy, qx = y + dy, x + dx
                    if not (0 <= qy < h and 0 <= qx < w):
                        continue
                    g = k[dy + r] * k[dx + r]
                    side = "f" if alpha[qy, qx] >= 0.95 else "b" if alpha[qy, qx] <= 0.05 else None
                    if side:
                        sums[side] += g * colours[qy, qx]
                        weights[side] += g
            if weights["f"] > 1e-6 and weights["b"] > 1e-6:
                out[y, x] = np.linalg.norm(sums["f"] / weights["f"] - sums["b"] / weights["b"])
            else:
                out[y, x] = np.inf
    return out


def test_colour_separation_is_the_distance_of_the_local_mean_colours():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (14, 17, 3), dtype=np.uint8)
    alpha = rng.choice([0.0, 0.03, 0.5, 0.97, 1.0], (14, 17)).astype(np.float32)
    alpha[:, 12:] = 0.5  # a strip with neither side in reach of its far edge at sigma 1
    for sigma in (1.0, 2.5):
        ours, ref = colour_separation(image, alpha, sigma), literal_separation(image, alpha, sigma)
        assert np.array_equal(np.isinf(ours), np.isinf(ref))
        assert np.isinf(ref).any() == (sigma == 1.0)
        assert np.abs(ours[np.isfinite(ref)] - ref[np.isfinite(ref)]).max() < 1e-5


def test_stretch_about_half_and_its_gain():
    alpha = np.array([[0.0, 0.1, 0.4, 0.5, 0.6, 0.9, 1.0]], np.float32)
    literal = [[min(max((a - 0.5) * 1.5 + 0.5, 0.0), 1.0) for a in row] for row in alpha.tolist()]
    assert np.allclose(stretch_about_half(alpha, 1.5), literal, atol=1e-7)
    assert np.array_equal(stretch_about_half(alpha, 1.0), alpha)
    gain = step_gain(
        np.array([0.0, 0.6, 0.9, 1.2, np.inf, 0.0, 0.0, 0.9]),
        np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.09, 0.12, 0.09]),
        1.4,
        separated=(0.6, 1.2),
        textured=(0.06, 0.12),
    )
    assert np.allclose(gain, [1.4, 1.4, 1.2, 1.0, 1.0, 1.2, 1.0, 1.1], atol=1e-6)


# -- the stretch on drawn edges ---------------------------------------------------------------------------------


def test_a_soft_ramp_between_close_colours_becomes_steeper():
    image, alpha = ramp_scene((120, 110, 100), (140, 135, 125))  # a dark suit on a dark stage: 0.1 apart
    out = sharpen_steps(image, alpha, 1.4, sigma=0.1)  # the colour means reach 29 px: both sides of the ramp
    assert out.dtype == np.float32 and out.shape == alpha.shape
    inside = (alpha > 0.05) & (alpha < 0.95)
    literal = np.clip((alpha - 0.5) * 1.4 + 0.5, 0, 1)
    # the ramp's inside is smooth (no texture) and the colours close: the full stretch
    assert np.abs(out - literal)[inside].max() < 1e-6
    assert ((out > 0) & (out < 1)).sum() < 0.75 * ((alpha > 0) & (alpha < 1)).sum()
    assert np.array_equal(out[alpha == 0], alpha[alpha == 0]) and np.array_equal(out[alpha == 1], alpha[alpha == 1])


def test_a_ramp_between_far_colours_and_strands_between_close_ones_stay():
    image, alpha = ramp_scene((250, 230, 190), (20, 20, 25))  # light hair over a dark background: 1.38 apart
    assert np.array_equal(sharpen_steps(image, alpha, 1.4, sigma=0.1), alpha)
    image, alpha = ramp_scene((120, 110, 100), (140, 135, 125))
    strands = alpha.copy()
    inside = (alpha > 0) & (alpha < 1)
    rows = np.broadcast_to(np.arange(alpha.shape[0])[:, None], alpha.shape)
    strands[inside] = np.where(rows % 4 < 2, 0.25, 0.75)[inside]  # horizontal strands 2 px wide across the ramp
    out = sharpen_steps(image, strands, 1.4, sigma=0.1)
    assert np.abs(out - strands)[inside].max() < 0.02  # textured alpha: at most a trace of the stretch


def test_sharpen_steps_leaves_what_it_should_not_touch_and_checks_its_input():
    image, alpha = ramp_scene((120, 110, 100), (140, 135, 125))
    assert np.array_equal(sharpen_steps(image, alpha, 1.0, sigma=0.1), alpha)  # strength 1: off
    binary = (alpha > 0.5).astype(np.float32)
    assert np.array_equal(sharpen_steps(image, binary, 1.4, sigma=0.1), binary)  # nothing fractional
    # no colour known on one side within the means' reach (1% of 96 px: 3 px; the ramp is 16 px wide) is no
    # evidence of a step: nothing moves
    assert np.array_equal(sharpen_steps(image, alpha, 1.4), alpha)
    with pytest.raises(ValueError, match="same size"):
        sharpen_steps(image[:10], alpha, 1.4)
    with pytest.raises(ValueError, match="uint8"):
        sharpen_steps(image / 255.0, alpha, 1.4)


def test_sharpen_steps_is_the_stretch_by_the_gain_of_its_cues_on_the_whole_image():
    """The texture is computed round the fractional pixels only: the same values as on the whole image."""
    rng = np.random.default_rng(2)
    image, alpha = ramp_scene((120, 110, 100), (140, 135, 125), width=10, h=120, w=200)
    image = np.clip(image + rng.integers(-20, 21, image.shape), 0, 255).astype(np.uint8)
    alpha[40:50, 60:140] = np.clip(alpha[40:50, 60:140] + 0.2 * rng.random((10, 80)), 0, 1)  # some texture
    out = sharpen_steps(image, alpha, 1.4, sigma=0.01)
    # sigma 2 px: the colour means on the image itself
    separation = np.minimum(colour_separation(image, alpha, 0.01 * 200), 1.2)
    gain = step_gain(separation, high_pass_energy(alpha), 1.4)
    reference = np.where((alpha > 0) & (alpha < 1), stretch_about_half(alpha, gain), alpha)
    assert np.abs(out - reference).max() < 1e-6
    assert np.abs(out - alpha).max() > 0.05  # it did stretch somewhere


# -- in the route -------------------------------------------------------------------------------------------------


def test_the_route_stretches_the_solved_alpha_before_its_clean_up(monkeypatch):
    rgb = cv2.cvtColor(cv2.imread(str(TEST_DATA / "selfie_general_input.png")), cv2.COLOR_BGR2RGB)
    calls = []
    real = portrait_module.sharpen_steps

    def spy(image, alpha, strength):
        calls.append((image.shape, alpha.copy(), strength))
        return real(image, alpha, strength)

    monkeypatch.setattr(portrait_module, "sharpen_steps", spy)
    default = PortraitMatting()
    assert default.settings.step_contrast == 1.4
    sharpened = default(rgb)
    assert len(calls) == 1 and calls[0][2] == 1.4
    solved = calls[0][1]
    assert ((solved > 0) & (solved < 1)).any()  # the raw solve, before the clean-up snapped it
    off = PortraitMatting(PortraitSettings(step_contrast=1.0))(rgb)
    assert len(calls) == 1  # not called when off
    monkeypatch.setattr(portrait_module, "sharpen_steps", lambda image, alpha, strength: alpha)
    assert np.array_equal(default(rgb), off)  # the stretch is the only difference
    assert not np.array_equal(sharpened, off)


def test_sharpen_steps_reads_the_colour_separation_of_a_shrunk_copy_back_bilinearly():
    """Where sigma is more than 2 px the colour means are computed on a copy shrunk by an integer factor; read
    back at the fractional pixels, they are what cv2.resize's bilinear upsampling of that copy gives there."""
    rng = np.random.default_rng(3)
    image, alpha = ramp_scene((120, 110, 100), (150, 140, 120), width=24, h=300, w=520)
    image = np.clip(image + rng.integers(-10, 11, image.shape), 0, 255).astype(np.uint8)
    out = sharpen_steps(image, alpha, 1.4, sigma=0.02)  # 10.4 px: a copy 5x smaller, 104 x 60
    small_image = cv2.resize(image, (104, 60), interpolation=cv2.INTER_AREA)
    small_alpha = cv2.resize(alpha, (104, 60), interpolation=cv2.INTER_AREA)
    coarse = np.minimum(colour_separation(small_image, small_alpha, 10.4 / 5), 1.2)
    separation = cv2.resize(coarse, (520, 300), interpolation=cv2.INTER_LINEAR)
    gain = step_gain(separation, high_pass_energy(alpha), 1.4)
    reference = np.where((alpha > 0) & (alpha < 1), stretch_about_half(alpha, gain), alpha)
    assert np.abs(out - reference).max() < 1e-4
    assert np.abs(out - alpha).max() > 0.05
