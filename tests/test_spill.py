"""The local colour model that tells where the person prior spills onto the background (p3m.infer.spill).

`local_mean_colour` against a literal per-pixel normalised convolution; `background_by_colour` on drawn scenes
whose answer is known (a wall next to a person, a limb of the person's colour, samples out of reach). The route's
use of it (the matte's spill shrinks) is in tests/test_portrait.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from p3m.infer.spill import background_by_colour, gaussian_kernel, local_mean_colour


def literal_local_mean(colours: np.ndarray, weight: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the sums of the definition over every pixel of the image within the kernel's reach."""
    k = gaussian_kernel(sigma).astype(np.float64)
    r = len(k) // 2
    h, w, c = colours.shape
    mean, density = np.zeros((h, w, c)), np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            num, den = np.zeros(c), 0.0
            for qy in range(max(0, y - r), min(h, y + r + 1)):
                for qx in range(max(0, x - r), min(w, x + r + 1)):
                    g = k[qy - y + r] * k[qx - x + r] * weight[qy, qx]
                    num += g * colours[qy, qx]
                    den += g
            density[y, x] = den
            mean[y, x] = num / den if den > 1e-6 else 0.0
    return mean, density


def test_gaussian_kernel_is_normalised_symmetric_and_reaches_three_sigma():
    for sigma in (0.3, 1.0, 2.5):
        k = gaussian_kernel(sigma)
        assert k.dtype == np.float32 and len(k) % 2 == 1 and len(k) >= 3
        assert abs(float(k.sum()) - 1.0) < 1e-6 and np.allclose(k, k[::-1])
    assert len(gaussian_kernel(2.5)) == 2 * 8 + 1


@pytest.mark.parametrize("sigma", [0.8, 1.7])
def test_local_mean_colour_matches_the_literal_normalised_convolution(sigma):
    rng = np.random.default_rng(4)
    colours = (rng.random((9, 13, 3)) * 255).astype(np.float32)
    weight = (rng.random((9, 13)) > 0.6).astype(np.float32)
    weight[:, 9:] = 0.0  # a region without samples: density 0 far from the others
    mean, density = local_mean_colour(colours, weight, sigma)
    ref_mean, ref_density = literal_local_mean(colours, weight, sigma)
    assert mean.shape == colours.shape and density.shape == weight.shape
    assert np.abs(density - ref_density).max() < 1e-5
    assert np.abs(mean - ref_mean).max() < 1e-2  # float32 colours in [0, 255]


def scene(limb_colour: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A person (red, prior 1) on the left, a blue-grey wall (prior 0) on the right, and between them a strip
    of `limb_colour` where the prior is unsure (0.7)."""
    rng = np.random.default_rng(0)
    image = np.zeros((60, 90, 3), np.float64)
    image[:, :40] = (200, 50, 40)
    image[:, 40:] = (150, 170, 200)
    image[:, 40:44] = limb_colour
    image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
    prob = np.zeros((60, 90), np.float32)
    prob[:, :40] = 1.0
    prob[:, 40:44] = 0.7
    return image, prob


def test_background_by_colour_marks_the_wall_next_to_the_person_not_the_person():
    image, prob = scene((150, 170, 200))  # the unsure strip is wall
    verdict = background_by_colour(image, prob, sigma=0.04)
    assert verdict.shape == prob.shape and verdict.dtype == bool
    assert verdict[:, 40:44].mean() > 0.95  # the spill onto the wall
    assert not verdict[:, :38].any()  # the person
    assert verdict[:, 44].mean() > 0.9  # the wall just beyond, within reach of both kinds of samples


def test_background_by_colour_keeps_a_strip_of_the_persons_colour():
    image, prob = scene((200, 50, 40))  # the unsure strip is the person's (an arm the prior is unsure of)
    assert not background_by_colour(image, prob, sigma=0.04)[:, 40:44].any()


def test_background_by_colour_needs_both_kinds_of_samples_within_reach():
    image, prob = scene((150, 170, 200))
    verdict = background_by_colour(image, prob, sigma=0.04)  # 3.6 px
    assert not verdict[:, 75:].any()  # the wall far from the person: no foreground sample to compare with
    assert not background_by_colour(image, np.zeros_like(prob), sigma=0.04).any()


def test_background_by_colour_samples_the_background_in_the_priors_tail():
    # a shaded wall beside the person (the prior's tail, 0.2) and a lit wall further off (0): the strip where
    # the prior spills is shaded wall, far from the lit wall's colour, and is told apart only by the tail
    image, prob = scene((70, 80, 100))
    image[:, 44:60] = image[:, 40:44].mean((0, 1)).astype(np.uint8)
    prob[:, 44:60] = 0.2
    assert background_by_colour(image, prob, sigma=0.04)[:, 40:44].mean() > 0.95
    assert not background_by_colour(image, prob, sigma=0.04, background=0.05)[:, 40:44].any()


def test_background_by_colour_works_on_a_reduced_grid_and_resizes_back():
    image, prob = scene((150, 170, 200))
    big_image = image.repeat(8, 0).repeat(8, 1)  # 480x720: the model runs at 256 px and comes back
    big_prob = prob.repeat(8, 0).repeat(8, 1)
    verdict = background_by_colour(big_image, big_prob, sigma=0.04)
    assert verdict.shape == big_prob.shape
    assert verdict[:, 330:350].mean() > 0.9 and not verdict[:, :300].any()
