"""The verdicts of benchmarks/bench_route_gaps.py measured and not kept in the route (issue 24): the geodesic
distance against a literal Dijkstra, and each verdict on a drawn scene whose answer is known (the one kept,
`p3m.infer.spill.background_in_gaps`, is tested in tests/test_spill.py)."""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest

from benchmarks.bench_route_gaps import (
    background_by_nearest,
    background_by_path,
    geodesic_distance,
)


def literal_geodesic(colours: np.ndarray, seeds: np.ndarray, gamma: float, tau: float) -> np.ndarray:
    """Dijkstra with a heap over the 8-connected grid, each step's cost written out from the definition."""
    h, w, _ = colours.shape
    dist = np.full((h, w), math.inf)
    heap = []
    for y, x in zip(*np.nonzero(seeds), strict=True):
        dist[y, x] = 0.0
        heap.append((0.0, int(y), int(x)))
    heapq.heapify(heap)
    while heap:
        d, y, x = heapq.heappop(heap)
        if d > dist[y, x]:
            continue
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                qy, qx = y + dy, x + dx
                if (dy, dx) == (0, 0) or not (0 <= qy < h and 0 <= qx < w):
                    continue
                length = math.hypot(dy, dx)
                change = max(0.0, math.dist(colours[y, x], colours[qy, qx]) - tau * length)
                nd = d + math.sqrt(length**2 + (gamma * change) ** 2)
                if nd < dist[qy, qx]:
                    dist[qy, qx] = nd
                    heapq.heappush(heap, (nd, qy, qx))
    return dist


@pytest.mark.parametrize(("gamma", "tau"), [(0.0, 0.0), (0.3, 0.0), (2.0, 10.0)])
def test_geodesic_distance_is_the_literal_shortest_path(gamma, tau):
    rng = np.random.default_rng(7)
    colours = rng.random((11, 15, 3)) * 60
    seeds = np.zeros((11, 15), bool)
    seeds[2, 3] = seeds[9, 12] = True
    got = geodesic_distance(colours, seeds, gamma, tau=tau)
    np.testing.assert_allclose(got, literal_geodesic(colours, seeds, gamma, tau), rtol=1e-12)
    assert (got[seeds] == 0).all()


def test_geodesic_distance_without_colour_is_the_chamfer_distance_and_without_seeds_inf():
    seeds = np.zeros((5, 7), bool)
    seeds[0, 0] = True
    d = geodesic_distance(np.zeros((5, 7, 3)), seeds, 5.0)
    assert d[0, 6] == pytest.approx(6.0) and d[4, 4] == pytest.approx(4 * math.sqrt(2))
    assert d[4, 6] == pytest.approx(4 * math.sqrt(2) + 2)
    assert np.isinf(geodesic_distance(np.zeros((3, 3)), np.zeros((3, 3), bool), 1.0)).all()


def test_an_edge_costs_what_its_colour_change_says_and_tau_frees_smooth_shading():
    ramp = np.repeat(np.linspace(0, 100, 21)[None, :, None], 3, 0)  # 5 grey levels per column
    step = np.where(np.arange(21) < 10, 0.0, 100.0)[None, :, None].repeat(3, 0)  # one 100-level edge
    seeds = np.zeros((3, 21), bool)
    seeds[:, 0] = True
    shaded = geodesic_distance(ramp, seeds, 1.0, tau=6.0)
    edged = geodesic_distance(step, seeds, 1.0, tau=6.0)
    assert shaded[1, 20] == pytest.approx(20.0)  # the ramp's steps are under tau: only its length counts
    assert edged[1, 20] > 100.0  # the edge is not


def scene(h: int = 80, w: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """(image, prior): a person (red shirt, dark red trousers, a navy scarf down the front in columns 32-44) left
    of column 50 with prior 1, a wall right of it with prior 0, and a strip of wall (columns 50-61) where the prior
    still says 0.8 (its confident spill). The wall is lit at the top and shaded at the bottom, in the scarf's
    navy, the shade continuing to the right: the spill is joined to more of the same wall."""
    rng = np.random.default_rng(3)
    image = np.zeros((h, w, 3))
    image[:, :50] = (190, 40, 40)
    image[h // 2 :, :50] = (120, 30, 40)
    image[:, 32:44] = (40, 45, 90)
    image[:, 50:] = (170, 175, 180)
    image[h // 2 :, 50:] = (40, 45, 90)
    image = np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
    prob = np.zeros((h, w), np.float32)
    prob[:, :50] = 1.0
    prob[:, 50:62] = 0.8
    prob[:, 62:66] = 0.5
    return image, prob


def test_the_path_verdict_finds_the_spill_joined_to_more_wall_and_keeps_the_person():
    image, prob = scene()
    verdict = background_by_path(image, prob, reach=0.2, erode=0.02, grid=120)
    assert verdict.shape == prob.shape and verdict.dtype == bool
    assert verdict[2:78, 52:62].mean() > 0.9  # the spill, the shaded part (the scarf's colour) included
    assert not verdict[:, :48].any()  # the person


def test_the_nearest_colour_verdict_models_two_background_colours_where_a_mean_would_not():
    image, prob = scene()
    verdict = background_by_nearest(image, prob, radius=0.2, grid=120)
    assert verdict[5:35, 52:62].mean() > 0.9  # lit wall: nearer to the lit wall's samples
    assert not verdict[:, :50].any()  # the person is confident: never judged
    # the shaded wall has the scarf's colour, and the scarf is within reach: next to the person colour cannot
    # tell (only the strip's far side, nearer in position to the wall's samples, goes)
    assert not verdict[45:75, 50:56].any() and verdict[45:75, 50:62].mean() < 0.5
