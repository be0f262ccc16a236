"""The band-solver harness (benchmarks/bench_band_solvers.py): solving on the band's box is solving the image,
the uncertain trimap opens only what it says, band scores count only the band."""

from __future__ import annotations

import numpy as np

from benchmarks.bench_band_solvers import SOLVERS, Band, band_scores, solve_in_box, uncertain_trimap
from p3m.infer.closed_form import solve_band
from p3m.infer.portrait import PortraitSettings


def _scene(h: int = 96, w: int = 128) -> Band:
    """A disc (person) on a textured background, the prior a ramp across its edge, a 4 px band round it."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - 50, xx - 60)
    prior = np.clip((30 - r) / 20 + 0.5, 0, 1).astype(np.float32)
    mask = prior >= 0.5
    background = rng.integers(0, 256, (h, w, 3))
    person = np.array([200, 150, 120])
    image = np.where(mask[..., None], person, background).astype(np.uint8)
    trimap = np.where(mask, 255, 0).astype(np.uint8)
    trimap[np.abs(r - 30) <= 4] = 128
    return Band(image, prior, mask, trimap)


def test_solving_on_the_band_box_is_solving_the_whole_image():
    band = _scene()
    boxed, seconds = solve_in_box(SOLVERS["cf"], band, band.trimap)
    whole = solve_band(band.image, band.trimap, band.mask.astype(np.float32), eps=PortraitSettings().cf_eps).alpha
    assert seconds > 0
    np.testing.assert_allclose(boxed, whole, atol=1e-4)
    assert not np.allclose(boxed, band.mask)  # the band was solved, not left to the mask


def test_uncertain_trimap_opens_unsure_pixels_near_the_edge_only():
    band = _scene()
    prior = band.prior.copy()
    prior[5:10, 5:10] = 0.5  # unsure, but far from the mask's edge
    band = Band(band.image, prior, band.mask, band.trimap)
    tri = uncertain_trimap(band, low=0.2, high=0.95, reach=0.1)
    opened = (tri == 128) & (band.trimap != 128)
    assert opened.any()
    assert ((prior[opened] > 0.2) & (prior[opened] < 0.95)).all()
    assert (tri[5:10, 5:10] == 0).all()
    assert ((tri == 128) >= (band.trimap == 128)).all()  # never closes the route's band


def test_band_scores_count_the_band_only():
    ref = np.zeros((4, 4), np.uint8)
    alpha = np.zeros((4, 4), np.float32)
    alpha[0, 0] = 1.0  # in the band
    alpha[3, 3] = 0.5  # outside it
    unknown = np.zeros((2, 2), bool)
    unknown[0, 0] = True  # upsampled: the top-left 2x2
    s = band_scores(alpha, ref, unknown)
    assert s["sad"] == 1.5 / 1000 and s["sad_band"] == 1.0 / 1000
    assert s["mse_band"] == 1.0 / 4 and s["mse"] == 1.25 / 16
