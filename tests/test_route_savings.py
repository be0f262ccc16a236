"""The built-in portrait route's speed-ups compute what the code they replaced computed.

Each faster function is compared, on random inputs and edge cases, with the literal previous code kept in
`tests/reference/route_before.py`; the route's mattes on the 12 shared portraits are checked by
`tests/test_portrait.py`'s quality bars and measured by `benchmarks/bench_route_savings.py`.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from p3m.infer.boxes import box_round, box_round_points
from p3m.infer.closed_form import _at
from p3m.infer.portrait import _depth, _distance_to, _near, _touching
from p3m.infer.priors import hysteresis_mask
from p3m.infer.spill import background_in_gaps, local_mean_colour
from tests.reference.route_before import (
    previous_background_in_gaps,
    previous_distance_to,
    previous_local_mean_colour,
    previous_mask,
    previous_touching,
)


def random_prior(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """HxW float32 in [0, 1]: blurred noise stretched round 0.5, so thresholds cut it into blobs of every size."""
    noise = rng.random((h, w)).astype(np.float32)
    if min(h, w) > 2:
        noise = cv2.GaussianBlur(noise, (0, 0), float(rng.uniform(0.3, 4.0)))
    return np.clip((noise - noise.mean()) * rng.uniform(1.0, 30.0) + rng.uniform(0.3, 0.7), 0, 1).astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
def test_hysteresis_mask_is_the_previous_mask(seed):
    rng = np.random.default_rng(seed)
    components = set()
    for _ in range(150):
        h, w = (int(v) for v in rng.integers(1, 90, 2))
        prob = random_prior(rng, h, w)
        low, high, share = float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.5, 0.99)), float(rng.uniform(0, 0.5))
        new = hysteresis_mask(prob, low, high, share)
        assert new.dtype == bool and new.shape == prob.shape
        np.testing.assert_array_equal(new, previous_mask(prob, low, high, share))
        components.add(min(cv2.connectedComponents((prob >= low).astype(np.uint8), connectivity=8)[0], 20))
    # both ways of counting (a few components, many) and the shortcuts (none, all, one kept) were exercised
    assert {1, 2, 3}.issubset(components) and max(components) == 20


def test_hysteresis_mask_edge_cases():
    empty = np.zeros((7, 9), np.float32)
    assert not hysteresis_mask(empty, 0.5, 0.9, 0.1).any()
    two = np.zeros((20, 20), np.float32)
    two[2:6, 2:6], two[10:18, 10:18] = 0.95, 0.95  # both confident, the small one 1/4 of the large one
    np.testing.assert_array_equal(hysteresis_mask(two, 0.5, 0.9, 0.1), two > 0)
    np.testing.assert_array_equal(hysteresis_mask(two, 0.5, 0.9, 0.5), previous_mask(two, 0.5, 0.9, 0.5))
    assert hysteresis_mask(two, 0.5, 0.9, 0.5).sum() == 64
    grey = np.full((5, 5), 0.7, np.float32)  # no confident pixel anywhere: nothing kept
    assert not hysteresis_mask(grey, 0.5, 0.9, 0.1).any()


def gap_scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, ...]:
    """(image HxWx3 uint8, prob, mask, gaps): a person blob with a gap polygon; person, background and gap
    colours drawn from overlapping random palettes, so the nearest samples decide both ways."""
    yy, xx = np.mgrid[0:h, 0:w]
    blob = ((yy - h / 2) / (0.35 * h)) ** 2 + ((xx - w / 2) / (0.3 * w)) ** 2 < 1
    prob = np.where(blob, rng.uniform(0.9, 1.0, (h, w)), rng.uniform(0.0, 0.4, (h, w))).astype(np.float32)
    gaps = np.zeros((h, w), bool)
    gaps[h // 3 : 2 * h // 3, w // 3 : w // 2 + int(rng.integers(1, w // 4))] = True
    spread = float(rng.uniform(5, 60))
    person, back = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    image = np.where(blob[..., None], person, back) + rng.normal(0, spread, (h, w, 3))
    mixed = rng.random((h, w)) < rng.uniform(0.2, 0.8)  # inside the gap: some person-, some background-coloured
    image = np.where((gaps & mixed)[..., None], back + rng.normal(0, spread, (h, w, 3)), image)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), prob, blob, gaps


@pytest.mark.parametrize("seed", range(3))
def test_background_in_gaps_is_the_previous_verdict(seed):
    rng = np.random.default_rng(seed)
    shares = []
    for _ in range(12):
        h, w = (int(v) for v in rng.integers(40, 160, 2))
        image, prob, mask, gaps = gap_scene(rng, h, w)
        knobs = {"ratio": float(rng.uniform(1.0, 3.0)), "step": int(rng.integers(1, 5)), "smooth": 0.0}
        if rng.random() < 0.5:
            knobs["smooth"] = float(rng.uniform(0.005, 0.02))
        new = background_in_gaps(image, prob, mask, gaps, **knobs)
        np.testing.assert_array_equal(new, previous_background_in_gaps(image, prob, mask, gaps, **knobs))
        shares.append(new[mask & gaps].mean())
    assert min(shares) < 0.5 < max(shares)  # verdicts both ways were compared
    # a float image (the general path of the distinct colours) too
    image, prob, mask, gaps = gap_scene(rng, 60, 80)
    as_float = image.astype(np.float32)
    np.testing.assert_array_equal(
        background_in_gaps(as_float, prob, mask, gaps), previous_background_in_gaps(as_float, prob, mask, gaps)
    )


def test_near_is_the_thresholded_distance_transform():
    rng = np.random.default_rng(5)
    for i in range(200):
        h, w = (int(v) for v in rng.integers(1, 120, 2))
        mask = rng.random((h, w)) < rng.choice([0.0, 0.0005, 0.01, 0.2])
        if i % 7 == 0:
            mask[:] = False
            mask[int(rng.integers(h)), int(rng.integers(w))] = True  # one pixel: distances sqrt(integer) exactly
        radius = float(rng.choice([0.0, 1.0, 2.0, float(np.sqrt(5)), rng.uniform(0, 40)]))
        np.testing.assert_array_equal(_near(mask, radius), _distance_to(mask) <= radius)


def random_masks(rng: np.random.Generator, count: int):
    """HxW bool masks: blobs of a random prior cut at a random level (some touching the frame), scattered pixels,
    and the edge cases (none, all, one pixel, a full row)."""
    for i in range(count):
        h, w = (int(v) for v in rng.integers(1, 120, 2))
        kind = i % 5
        if kind == 0:
            mask = rng.random((h, w)) < rng.choice([0.0005, 0.01, 0.2])
        elif kind == 1:
            mask = np.zeros((h, w), bool) if i % 10 else np.ones((h, w), bool)
        elif kind == 2:
            mask = np.zeros((h, w), bool)
            mask[int(rng.integers(h)), int(rng.integers(w))] = True
            if i % 3 == 0:
                mask[int(rng.integers(h)), :] = True
        else:
            mask = random_prior(rng, h, w) >= rng.uniform(0.3, 0.8)
        yield mask


def test_box_round_is_the_grown_bounding_box_clipped_to_the_image():
    mask = np.zeros((30, 40), bool)
    assert box_round(mask, 3) is None
    mask[5, 7] = mask[12, 20] = True
    assert mask[box_round(mask, 0)].shape == (8, 14) and mask[box_round(mask, 0)].sum() == 2
    assert box_round(mask, 2) == np.s_[3:15, 5:23]
    assert box_round(mask, 6) == np.s_[0:19, 1:27]  # clipped at the top, not at the left
    assert box_round(mask, 100) == np.s_[0:30, 0:40]
    # the same box from the pixels' coordinates (the form the steps that already hold them use)
    ys, xs = np.nonzero(mask)
    for grow in (0, 2, 6, 100):
        assert box_round_points(ys, xs, grow, mask.shape) == box_round(mask, grow)


# OpenCV's precise distance transform is not bit-reproducible: two calls on the same mask can differ by 1-2 units in
# the last place (the route only compares distances with radii). So the boxed distances are compared with the whole
# image's to 2 ulp, and their answers at radii (half-integers: no distance sqrt(integer) lies within rounding of one)
# exactly.
_RADII = (0.5, 1.5, 2.5, 7.5, 20.5)


def _same_distances(new: np.ndarray, whole: np.ndarray, reach: float = np.inf) -> None:
    finite = np.isfinite(new)
    np.testing.assert_array_max_ulp(new[finite], whole[finite], maxulp=2)
    for radius in (r for r in _RADII if r <= reach):
        np.testing.assert_array_equal(new <= radius, whole <= radius)


def test_distance_to_within_a_reach_is_the_whole_images_up_to_it():
    rng = np.random.default_rng(11)
    for mask in random_masks(rng, 300):
        whole = previous_distance_to(mask)
        reach = float(rng.choice([0.0, 1.0, 7.5, rng.uniform(0, 30)]))
        boxed = _distance_to(mask, reach)
        assert boxed.dtype == np.float32 and boxed.shape == mask.shape
        # the whole image's up to the reach (and wherever finite: every True pixel is in the box), beyond it inf
        assert (whole[np.isinf(boxed)] > reach).all()
        _same_distances(boxed, whole, reach)


def test_depth_is_the_whole_images_distance_to_the_outside():
    rng = np.random.default_rng(12)
    for mask in random_masks(rng, 300):
        depth, whole = _depth(mask), previous_distance_to(~mask)
        assert depth.dtype == np.float32 and depth.shape == mask.shape
        np.testing.assert_array_equal(np.isinf(depth), np.isinf(whole))  # a mask of True pixels only
        _same_distances(depth, whole)
    # a blob in a corner and one in the middle of a large frame: the box's ring decides the distances
    mask = np.zeros((300, 400), bool)
    mask[0:40, 0:90] = True
    mask[150:260, 120:330] = True
    _same_distances(_depth(mask), previous_distance_to(~mask))
    assert _depth(mask)[205, 225] == 55.0 and not _depth(mask)[~mask].any()


def test_touching_is_the_whole_images_component_test():
    rng = np.random.default_rng(13)
    kept = []
    for i in range(300):
        h, w = (int(v) for v in rng.integers(1, 120, 2))
        base = random_prior(rng, h, w) >= rng.uniform(0.4, 0.8)
        extra = (random_prior(rng, h, w) >= rng.uniform(0.4, 0.8)) & ~base
        if i % 9 == 0:
            extra[:] = False
        if i % 11 == 0:
            base[:] = False
        new = _touching(extra, base)
        assert new.dtype == bool and new.shape == extra.shape
        np.testing.assert_array_equal(new, previous_touching(extra, base))
        kept.append((new.sum(), (extra & ~new).sum()))
    # parts kept and parts dropped were both compared
    assert sum(k for k, _ in kept) > 0 and sum(d for _, d in kept) > 0
    # a part that reaches the base only through the base outside its own box
    base = np.zeros((50, 50), bool)
    base[:, 45:] = True
    base[40:42, 20:46] = True
    extra = np.zeros((50, 50), bool)
    extra[10:40, 20:22] = True
    extra[0:5, 0:5] = True
    np.testing.assert_array_equal(_touching(extra, base), previous_touching(extra, base))
    assert _touching(extra, base)[10:40, 20:22].all() and not _touching(extra, base)[0:5, 0:5].any()


def test_local_mean_colour_is_the_previous_code_bit_for_bit():
    rng = np.random.default_rng(14)
    for i in range(60):
        h, w = (int(v) for v in rng.integers(1, 90, 2))
        channels = int(rng.choice([1, 3]))
        colours = rng.random((h, w, channels)).astype(np.float32)
        weight = random_prior(rng, h, w)
        if i % 2:
            weight = weight >= 0.5  # a bool mask, often with wide empty parts (density 0: mean 0)
        sigma = float(rng.uniform(0.5, 8.0))
        new, old = local_mean_colour(colours, weight, sigma), previous_local_mean_colour(colours, weight, sigma)
        for a, b in zip(new, old, strict=True):
            assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
            np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


def test_values_at_flat_indices_are_the_whole_arrays_made_float64():
    rng = np.random.default_rng(15)
    flat = rng.choice(40 * 30, 200, replace=False)
    for values in (rng.random((40, 30)).astype(np.float32), rng.random((40, 30)), rng.random((40, 30)) < 0.5):
        got = _at(values, flat)
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, np.asarray(values, np.float64).ravel()[flat])
    np.testing.assert_array_equal(_at(np.arange(12, dtype=np.uint8).reshape(3, 4)[:, ::2], np.array([5, 0])), [10, 0])
