"""Metrics: the fast P3M protocol against the literal reference (tests/reference/metrics.py), the DIM protocol
against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi

from p3m.metrics import (
    conn,
    grad,
    mad,
    mad_privacy,
    mad_trimap,
    mse,
    mse_privacy,
    mse_trimap,
    p3m_metrics,
    sad,
    sad_bg,
    sad_fg,
    sad_privacy,
    sad_trimap,
)
from p3m.metrics import dim as dim_metrics_module
from p3m.metrics.dim import (
    dim_conn,
    dim_grad,
    dim_gradient_kernel,
    dim_metrics,
    dim_mse,
    dim_sad,
    mat2gray,
    matlab_colon,
)
from p3m.metrics.p3m import CONN_THRESHOLDS, gaussian_kernel1d
from tests.paths import PORTRAITS, REFERENCE_ALPHA
from tests.reference.metrics import ref_all, ref_conn, ref_grad

RTOL = 1e-6


def assert_same(fast: dict, ref: dict, label: str = "") -> None:
    assert set(fast) == set(ref), label
    for key, expected in ref.items():
        value = fast[key]
        if math.isnan(expected):
            assert math.isnan(value), f"{label} {key}: {value} vs nan"
        elif math.isinf(expected):
            assert value == expected, f"{label} {key}: {value} vs {expected}"
        else:
            assert abs(value - expected) <= RTOL * abs(expected) or value == expected, (
                f"{label} {key}: fast {value!r} vs reference {expected!r}"
            )


# ---------------------------------------------------------------------------------------------- input families


def _soft_edges(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.5, 2 + max(h, w) / 1.5)
    dist = np.hypot(yy - cy, xx - cx)
    gt = np.clip((r - dist) / rng.uniform(1, 6), 0, 1)
    pred = np.clip(gt + rng.normal(0, 0.05, gt.shape) * (gt > 0) * (gt < 1), 0, 1)
    pred = ndi.shift(pred, (rng.uniform(-2, 2), rng.uniform(-2, 2)), order=1, mode="nearest")
    return np.clip(pred, 0, 1), gt


def _quantised(rng, h, w):
    pred, gt = _soft_edges(rng, h, w)
    return np.floor(pred * 255) / 255, np.round(gt * 255) / 255  # saved prediction (truncated), 8-bit GT


def _uniform(rng, h, w):
    return rng.random((h, w)), rng.random((h, w))


def _thresholds(rng, h, w):
    # values sitting exactly on the Conn thresholds and on their float neighbours
    values = np.concatenate(
        [
            CONN_THRESHOLDS,
            np.nextafter(CONN_THRESHOLDS, 2),
            np.nextafter(CONN_THRESHOLDS, -1),
            np.arange(0, 256, 51) / 255,
            [0.15, 0.25, 0.45, 0.65],
        ]
    )
    values = np.clip(values, 0, 1)
    return rng.choice(values, (h, w)), rng.choice(values, (h, w))


def _blocks(rng, h, w):
    # few flat regions: many equal-size components (tie-breaks), nested and non-nested levels
    gt = rng.choice([0.0, 0.2, 0.5, 0.7, 1.0], (max(1, h // 3), max(1, w // 3)))
    gt = np.kron(gt, np.ones((3, 3)))[:h, :w]
    gt = np.pad(gt, ((0, h - gt.shape[0]), (0, w - gt.shape[1])), mode="edge")
    pred = gt.copy()
    flip = rng.random(gt.shape) < 0.2
    pred[flip] = rng.choice([0.0, 0.35, 1.0], int(flip.sum()))
    return pred, gt


def _binary(rng, h, w):
    gt = (rng.random((h, w)) < 0.5).astype(float)
    return (rng.random((h, w)) < 0.5).astype(float), gt


def _noisy(rng, h, w):
    # the benchmark's worst case: noise on every pixel of the prediction, a clean GT with flat regions (the
    # prediction differs everywhere, the GT gradient is exactly 0 on most tiles)
    _, gt = _soft_edges(rng, h, w)
    return np.clip(gt + rng.normal(0, 0.02, gt.shape), 0, 1), gt


FAMILIES = {
    "soft": _soft_edges,
    "quantised": _quantised,
    "uniform": _uniform,
    "thresholds": _thresholds,
    "blocks": _blocks,
    "binary": _binary,
    "noisy": _noisy,
}
SHAPES = [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (13, 13), (17, 30), (31, 9), (40, 41), (64, 48)]


def _trimap(rng, gt):
    tri = np.full(gt.shape, 128, np.uint8)
    tri[gt <= 0.02] = 0
    tri[gt >= 0.98] = 255
    tri[rng.random(gt.shape) < 0.05] = 128
    return tri


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fast_equals_reference_on_random_inputs(family):
    rng = np.random.default_rng(sorted(FAMILIES).index(family))
    for h, w in SHAPES:
        for _ in range(3):
            pred, gt = FAMILIES[family](rng, h, w)
            trimap = _trimap(rng, gt)
            face = rng.random(gt.shape) < 0.3
            assert_same(p3m_metrics(pred, gt, trimap, face), ref_all(pred, gt, trimap, face), f"{family} {h}x{w}")


@pytest.mark.parametrize(
    "pred, gt",
    [
        (np.zeros((9, 11)), np.zeros((9, 11))),  # all zero
        (np.ones((9, 11)), np.ones((9, 11))),  # all one
        (np.zeros((9, 11)), np.ones((9, 11))),
        (np.ones((9, 11)), np.zeros((9, 11))),
        (np.full((1, 1), 0.7), np.full((1, 1), 0.3)),  # single pixel
        (np.full((1, 1), 1.0), np.full((1, 1), 1.0)),
        (np.eye(12), np.eye(12)[::-1]),  # diagonals: 4-connectivity splits them into pixels
        (np.full((5, 8), 0.95), np.full((5, 8), 0.97)),  # no component above 0.97: top levels skipped
    ],
)
def test_structured_cases_equal_reference(pred, gt):
    trimap = np.where(gt > 0.5, 255, 0).astype(np.uint8)  # no unknown pixel: the zero-unknown case
    face = np.zeros(gt.shape, bool)  # empty face region
    assert_same(p3m_metrics(pred, gt, trimap, face), ref_all(pred, gt, trimap, face))


def test_conn_when_the_largest_components_are_not_nested():
    # a large dim blob (0.35) and a small bright one (0.9): the largest component jumps between them
    gt = np.zeros((20, 30))
    gt[2:18, 2:14] = 0.35
    gt[5:9, 20:24] = 0.9
    pred = gt.copy()
    pred[3:6, 3:6] = 0.8
    pred[6, 21] = 0.5
    pred[15, 25] = 1.0
    assert conn(pred, gt) == pytest.approx(ref_conn(pred, gt), rel=RTOL)
    assert conn(pred, gt) > 0


def test_conn_tie_goes_to_first_component_in_raster_order():
    # two single-pixel components of equal area at every level; which one is "largest" changes the value
    pred = np.zeros((3, 3))
    gt = np.zeros((3, 3))
    pred[0, 2] = pred[2, 0] = 1.0
    gt[0, 2], gt[2, 0] = 128 / 255, 140 / 255
    # raster order: (0, 2) wins; (2, 0) is outside Omega_1, l = 0: |phi_p - phi_a| = |0 - (1 - 140/255)|
    expected = (115 / 255) / 1000
    assert conn(pred, gt) == pytest.approx(expected, rel=1e-12)
    assert ref_conn(pred, gt) == pytest.approx(expected, rel=1e-12)


def test_conn_runs_split_where_prediction_equals_gt():
    # one level-5 component whose rows alternate between p == alpha and p != alpha (the fast code cuts its row runs
    # there), next to an equal-area component found later in raster order: the tie must still go to the first one
    gt = np.zeros((12, 40))
    gt[1:5, 2:20] = 0.55
    gt[7:11, 2:20] = 0.55
    pred = gt.copy()
    pred[1:5, 3:20:2] = 0.57
    pred[7:11, 4:20:3] = 0.9
    pred[3, 30] = 1.0
    assert conn(pred, gt) == pytest.approx(ref_conn(pred, gt), rel=RTOL)
    assert p3m_metrics(pred, gt)["conn"] == pytest.approx(ref_conn(pred, gt), rel=RTOL)


def test_rows_with_many_and_few_runs_equal_reference():
    # smooth rows (few runs, cut 8 pixels at a time) and noisy rows (a run every pixel or two) in one image
    rng = np.random.default_rng(13)
    pred, gt = _soft_edges(rng, 48, 203)
    noisy_rows = rng.random(48) < 0.5
    pred[noisy_rows] = rng.random((int(noisy_rows.sum()), 203))
    trimap = _trimap(rng, gt)
    face = rng.random(gt.shape) < 0.3
    assert_same(p3m_metrics(pred, gt, trimap, face), ref_all(pred, gt, trimap, face))


def test_conn_uses_arange_thresholds():
    # 153/255 == 0.6 < arange's 0.6000000000000001: that pixel stops at level 5 (l = 0.5)
    gt = np.ones((4, 4))
    gt[1, 1] = 153 / 255
    pred = np.ones((4, 4))
    assert CONN_THRESHOLDS[6] > 0.6
    assert conn(pred, gt) == pytest.approx(0.5 / 1000, rel=1e-12)


def test_single_metric_functions_match_the_combined_call():
    rng = np.random.default_rng(7)
    pred, gt = _soft_edges(rng, 37, 53)
    trimap = _trimap(rng, gt)
    face = rng.random(gt.shape) < 0.2
    combined = p3m_metrics(pred, gt, trimap, face)
    singles = {
        "sad": sad(pred, gt),
        "mse": mse(pred, gt),
        "mad": mad(pred, gt),
        "grad": grad(pred, gt),
        "conn": conn(pred, gt),
        "sad_t": sad_trimap(pred, gt, trimap),
        "mse_t": mse_trimap(pred, gt, trimap),
        "mad_t": mad_trimap(pred, gt, trimap),
        "sad_fg": sad_fg(pred, gt, trimap),
        "sad_bg": sad_bg(pred, gt, trimap),
        "sad_privacy": sad_privacy(pred, gt, face),
        "mse_privacy": mse_privacy(pred, gt, face),
        "mad_privacy": mad_privacy(pred, gt, face),
    }
    assert set(singles) == set(combined)
    for key, value in singles.items():  # the combined pass sums in another order: last bits may differ
        assert value == pytest.approx(combined[key], rel=1e-12), key


def test_whole_image_values_by_hand():
    pred = np.array([[0.0, 0.5], [1.0, 0.25]])
    gt = np.array([[0.0, 1.0], [0.5, 0.25]])
    assert sad(pred, gt) == pytest.approx(1.0 / 1000)
    assert mad(pred, gt) == pytest.approx(1.0 / 4)
    assert mse(pred, gt) == pytest.approx(0.5 / 4)  # raw, no x1000
    trimap = np.array([[0, 128], [255, 128]], np.uint8)
    # forced p: 0 on Bg, 1 on Fg -> |d~| = [0, 0.5, 0.5, 0]; n_u = 2
    assert sad_trimap(pred, gt, trimap) == pytest.approx(1.0 / 1000)
    assert mad_trimap(pred, gt, trimap) == pytest.approx(1.0 / 2)
    assert mse_trimap(pred, gt, trimap) == pytest.approx(0.5 / 2)
    assert sad_fg(pred, gt, trimap) == pytest.approx(0.5 / 1000)  # un-forced p on Fg
    assert sad_bg(pred, gt, trimap) == 0.0
    face = np.array([[False, True], [False, False]])
    assert (sad_privacy(pred, gt, face), mse_privacy(pred, gt, face), mad_privacy(pred, gt, face)) == pytest.approx(
        (0.5 / 1000, 0.25, 0.5)
    )


def test_zero_unknown_fallback():
    pred = np.array([[0.2, 0.4, 0.6]])
    gt = np.array([[0.0, 0.5, 1.0]])
    grey = np.array([[0, 64, 255]], np.uint8)  # no 128, one other grey value: n_u = 3 - 1 - 1 = 1
    # forced p = [0, 0.4, 1]: sum |d~| = 0.1, sum d~^2 = 0.01
    assert mad_trimap(pred, gt, grey) == pytest.approx(0.1)
    assert mse_trimap(pred, gt, grey) == pytest.approx(0.01)
    ternary = np.array([[0, 255, 255]], np.uint8)  # fallback is 0 too: the quotient is inf (numerator > 0)
    assert mad_trimap(pred, gt, ternary) == math.inf
    exact = np.array([[0, 255, 255]], np.uint8)
    assert math.isnan(mse_trimap(np.array([[0.0, 1.0, 1.0]]), np.array([[0.0, 1.0, 1.0]]), exact))  # 0 / 0


def test_privacy_metrics_are_nan_without_face_pixels():
    pred, gt = np.zeros((4, 4)), np.ones((4, 4))
    face = np.zeros((4, 4), bool)
    assert all(math.isnan(f(pred, gt, face)) for f in (sad_privacy, mse_privacy, mad_privacy))


def test_gaussian_kernels_are_scipys():
    from scipy.ndimage import _filters

    for order in (0, 1):
        np.testing.assert_array_equal(gaussian_kernel1d(1.4, order, 6), _filters._gaussian_kernel1d(1.4, order, 6))


def _scipy_grad_error_map(pred, gt):
    mags = []
    for x in (pred, gt):
        xa = ndi.gaussian_filter(x, sigma=1.4, order=[1, 0], output=np.float32)
        xb = ndi.gaussian_filter(x, sigma=1.4, order=[0, 1], output=np.float32)
        mags.append(np.sqrt(xa**2 + xb**2))
    return (mags[0] - mags[1]) ** 2


def test_grad_error_map_is_bitwise_scipys():
    from p3m.metrics.p3m import _grad_error_map_full

    rng = np.random.default_rng(3)
    for shape in [(1, 1), (2, 9), (6, 6), (25, 70), (70, 25), (41, 33), (64, 64)]:
        pred, gt = _soft_edges(rng, *shape)
        pred[: shape[0] // 2] = gt[: shape[0] // 2]  # half the image identical: the skipped tiles
        np.testing.assert_array_equal(_grad_error_map_full(pred, gt), _scipy_grad_error_map(pred, gt))
        noisy, gt = _noisy(rng, *shape)  # differs everywhere; the GT is flat on most tiles
        np.testing.assert_array_equal(_grad_error_map_full(noisy, gt), _scipy_grad_error_map(noisy, gt))
        np.testing.assert_array_equal(_grad_error_map_full(gt, noisy), _scipy_grad_error_map(gt, noisy))


@pytest.mark.parametrize("value", [np.nan, np.inf, 0.5])
def test_grad_flat_regions_with_nan_and_inf(value):
    # GT and prediction flat but for one odd pixel (the same in both), far from the prediction's only difference:
    # a window holding a nan or an inf never counts as flat (SciPy spreads nan there)
    from p3m.metrics.p3m import _grad_error_map_full

    gt = np.zeros((40, 50))
    gt[30, 40] = value
    pred = gt.copy()
    pred[5:9, 5:9] = 1.0
    with np.errstate(invalid="ignore"):
        expected = _scipy_grad_error_map(pred, gt)
        np.testing.assert_array_equal(_grad_error_map_full(pred, gt), expected)
        np.testing.assert_array_equal(_grad_error_map_full(gt, pred), _scipy_grad_error_map(gt, pred))


def test_grad_and_conn_are_zero_for_identical_maps():
    rng = np.random.default_rng(5)
    _, gt = _soft_edges(rng, 50, 60)
    assert grad(gt, gt) == 0.0
    assert conn(gt, gt) == 0.0


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="one shape"):
        sad(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="2-D"):
        p3m_metrics(np.zeros((3, 3, 1)), np.zeros((3, 3, 1)))
    with pytest.raises(ValueError, match="trimap"):
        sad_trimap(np.zeros((3, 3)), np.zeros((3, 3)), np.zeros((2, 3), np.uint8))


def test_real_portrait_matches_reference():
    # one 1080x1080 case from the shared set where it is checked out, else a 480x480 one shipped in tests/data
    path = PORTRAITS / "reference_alpha" / "p_22fc0130.png"
    path = path if path.exists() else REFERENCE_ALPHA / "people_cap.png"
    import cv2

    from p3m.io import read_mask

    alpha = read_mask(path)[:1080, :1080].astype(np.float64) / 255
    pred = np.floor(np.clip(cv2.GaussianBlur(alpha, (0, 0), 1.5), 0, 1) * 255) / 255
    trimap = np.full(alpha.shape, 128, np.uint8)
    trimap[alpha == 0] = 0
    trimap[alpha == 1] = 255
    face = np.zeros(alpha.shape, bool)
    face[100:400, 300:700] = True
    fast = p3m_metrics(pred, alpha, trimap, face)
    assert_same(fast, ref_all(pred, alpha, trimap, face), f"{path.name}, {alpha.shape}")
    assert fast["grad"] == ref_grad(pred, alpha)  # same float32 sum, bit for bit


# ---------------------------------------------------------------------------------------------- DIM protocol


def test_dim_kernel_from_its_formula():
    sigma, eps = 1.4, 1e-2
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * eps)))
    assert half == 4  # 9x9 kernel
    g = lambda x: math.exp(-(x**2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))  # noqa: E731
    dg = lambda x: -x * g(x) / sigma**2  # noqa: E731
    hx = [[g(i - half) * dg(j - half) for j in range(9)] for i in range(9)]
    norm = math.sqrt(sum(v * v for row in hx for v in row))
    expected = np.array([[v / norm for v in row] for row in hx])
    kernel = dim_gradient_kernel()
    assert kernel.shape == (9, 9)
    np.testing.assert_allclose(kernel, expected, rtol=1e-14, atol=1e-17)
    assert kernel[4, 3] > 0 > kernel[4, 5]  # -x * gauss: positive left of centre, negative right


def test_mat2gray_by_hand():
    np.testing.assert_allclose(mat2gray(np.array([[2.0, 4.0], [6.0, 3.0]])), [[0, 0.5], [1, 0.25]])
    np.testing.assert_array_equal(mat2gray(np.full((2, 2), 0.3)), np.full((2, 2), 0.3))  # constant map kept


def test_matlab_colon_thresholds():
    t = matlab_colon(0, 0.1, 1)
    assert len(t) == 11 and t[0] == 0 and t[-1] == 1
    assert t[6] == 0.6 and t[7] == 0.7  # counted down from 1 (arange gives 0.6000000000000001, ...)
    assert np.arange(0, 1.1, 0.1)[6] != 0.6


def test_dim_sad_mse_by_hand():
    pred = np.array([[0.0, 51 / 255], [1.0, 0.5]])
    gt = np.array([[1.0, 102 / 255], [0.0, 0.5]])
    trimap = np.array([[0, 128], [128, 128]], np.uint8)  # only U counts
    assert dim_sad(pred, gt, trimap) == pytest.approx((51 + 255 + 0) / 255 / 1000)
    assert dim_mse(pred, gt, trimap) == pytest.approx(((51 / 255) ** 2 + 1 + 0) / 3)
    assert math.isnan(dim_mse(pred, gt, np.zeros((2, 2), np.uint8)))


def _dim_grad_by_loops(pred, gt, trimap):
    """Independent DIM Grad: explicit convolution with replicated borders, loops only."""
    hx = dim_gradient_kernel()
    hy = hx.T
    k = 4

    def normalise(x):
        lo, hi = x.min(), x.max()
        return (x - lo) / (hi - lo)

    def conv(x, h):
        rows, cols = x.shape
        out = np.zeros_like(x)
        for r in range(rows):
            for c in range(cols):
                total = 0.0
                for u in range(-k, k + 1):
                    for v in range(-k, k + 1):
                        rr = min(max(r - u, 0), rows - 1)
                        cc = min(max(c - v, 0), cols - 1)
                        total += x[rr, cc] * h[u + k, v + k]
                out[r, c] = total
        return out

    mags = []
    for x in (normalise(pred), normalise(gt)):
        mags.append(np.sqrt(conv(x, hx) ** 2 + conv(x, hy) ** 2))
    return float(np.sum(((mags[0] - mags[1]) ** 2)[trimap == 128]) / 1000)


def test_dim_grad_against_explicit_convolution():
    rng = np.random.default_rng(11)
    pred, gt = _quantised(rng, 11, 14)
    pred[0, 0], gt[0, 0] = 0.0, 0.0
    pred[-1, -1], gt[-1, -1] = 0.5, 1.0  # pred's range is not [0, 1]: mat2gray stretches it
    trimap = _trimap(rng, gt)
    assert dim_grad(pred, gt, trimap) == pytest.approx(_dim_grad_by_loops(pred, gt, trimap), rel=1e-10)


def test_dim_conn_4x4_by_hand():
    # GT 153/255 == 0.6 at one pixel, prediction 1: MATLAB's 0:0.1:1 has exactly 0.6, so the pixel reaches
    # level 6 (l = 0.6): |phi_p - phi_a| = |(1 - 0.4) - 1| = 0.4. The P3M protocol (arange) gives 0.5.
    gt = np.ones((4, 4))
    gt[1, 1] = 153 / 255
    pred = np.ones((4, 4))
    trimap = np.full((4, 4), 128, np.uint8)
    assert dim_conn(pred, gt, trimap) == pytest.approx(0.4 / 1000, rel=1e-6)
    assert conn(pred, gt) == pytest.approx(0.5 / 1000, rel=1e-12)
    trimap[1, 1] = 255  # only U counts
    assert dim_conn(pred, gt, trimap) == 0.0


def test_dim_conn_tie_goes_to_first_component_in_column_major_order():
    pred = np.zeros((3, 3))
    gt = np.zeros((3, 3))
    pred[0, 2] = pred[2, 0] = 1.0
    gt[0, 2], gt[2, 0] = 128 / 255, 140 / 255
    trimap = np.full((3, 3), 128, np.uint8)
    # MATLAB scans columns: (2, 0) wins, so (0, 2) gets l = 0: |0 - (1 - 128/255)| = 127/255
    assert dim_conn(pred, gt, trimap) == pytest.approx(127 / 255 / 1000, rel=1e-6)
    assert conn(pred, gt) == pytest.approx(115 / 255 / 1000, rel=1e-12)  # P3M: raster order, the other one


def test_dim_metrics_keys_and_zero_for_identical():
    rng = np.random.default_rng(2)
    _, gt = _quantised(rng, 20, 20)
    trimap = _trimap(rng, gt)
    values = dim_metrics(gt, gt, trimap)
    assert set(values) == {"dim_sad", "dim_mse", "dim_grad", "dim_conn"}
    assert all(v == 0.0 for v in values.values())
    assert set(dim_metrics(gt, gt, trimap, fast=True)) == {"dim_sad", "dim_mse"}
    assert dim_metrics_module.DIM_SIGMA == 1.4


def test_published_conn_baseline_agrees_with_the_literal_reference():
    """The benchmark's published-code baseline computes the same Conn (up to its float32 threshold map)."""
    from tests.reference.metrics import published_conn, ref_conn

    rng = np.random.default_rng(7)
    for shape in [(40, 56), (33, 17)]:
        gt = np.clip(rng.random(shape) * 1.4 - 0.2, 0, 1)
        pred = np.clip(gt + rng.normal(0, 0.1, shape), 0, 1)
        assert published_conn(pred, gt) == pytest.approx(ref_conn(pred, gt), rel=1e-6)
