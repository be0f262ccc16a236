"""The built-in portrait route (p3m.infer.portrait) and its band-only closed-form solver (p3m.infer.closed_form).

Units are tested on drawn scenes whose answer is known (the segmentation network need not see a drawn shape as a
person, so the mask, trimap and refinement get a given prior; the prior's geometry is tested with a stand-in
network that returns its input's red channel); the whole route on the stored real portrait
(tests/data/selfie_general_input.png) and on odd inputs; its quality on the 12 shared real portraits (slow,
skipped without ../shared/testdata).
"""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest
import torch

from p3m.infer.closed_form import solve_alpha
from p3m.infer.portrait import PortraitMatting, PortraitSettings, _crop_box, working_size
from tests.paths import PORTRAITS, TEST_DATA
from tests.scenes import drawn_scene


@pytest.fixture(scope="module")
def route() -> PortraitMatting:
    return PortraitMatting()


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(TEST_DATA / "selfie_general_input.png")), cv2.COLOR_BGR2RGB)


class RedChannel:
    """Stand-in network session (`p3m.models.graph_session.GraphSession`): 'probability' = the input's red
    channel, so the prior's geometry can be checked."""

    runtime = "numpy"
    input_size = (256, 256)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        return (x[:, :1],)


# -- prior geometry --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(300, 500), (500, 300), (256, 256)])
def test_prior_samples_the_network_output_where_the_image_is(shape):
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    disc = np.clip((0.3 - np.hypot((yy - 0.6 * h) / h, (xx - 0.45 * w) / w)) * 30 + 0.5, 0, 1)
    red = cv2.GaussianBlur(disc, (0, 0), 3)
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = np.rint(red * 255)
    pm = PortraitMatting(PortraitSettings(matting_side=200))
    pm.net = RedChannel()
    prob = pm.prior(rgb)
    hw, ww = working_size(h, w, 200)
    assert prob.shape == (hw, ww) and prob.dtype == np.float32
    expect = cv2.resize(red, (ww, hw), interpolation=cv2.INTER_AREA)
    # the letterboxed pass and the zoomed, mirrored crop both land on the image's own pixels: measured mean
    # 0.0003-0.0006, max 0.006-0.027 (resampling); a shift by one network pixel gives 0.0034-0.0049, 0.09-0.12
    assert np.abs(prob - expect).mean() < 0.0015
    assert np.abs(prob - expect).max() < 0.05


def test_crop_box_is_a_square_around_the_person_or_the_largest_square_on_its_core():
    h, w = 100, 200
    mask = np.zeros((h, w), bool)
    mask[40:80, 120:150] = True  # small person: box 40x30 + 10% margin, square
    top, left, side = _crop_box(mask, mask, (1.0, 1.0), (h, w), 0.1)
    assert side == 48 and top <= 36 and top + side >= 84 and left <= 117 and left + side >= 153
    mask[:, 20:190] = False
    mask[0:100, 30:190] = True  # wider than the image is tall: largest square (100)
    core = np.zeros_like(mask)
    core[10:90, 140:180] = True  # ... centred on the confident core, inside the image
    top, left, side = _crop_box(core, mask, (1.0, 1.0), (h, w), 0.1)
    assert (top, side) == (0, 100) and left == 100


# -- mask ------------------------------------------------------------------------------------------------------


def test_mask_keeps_components_with_confident_pixels_only():
    prob = np.zeros((100, 100), np.float32)
    cv2.circle(prob, (30, 50), 20, 1.0, -1)  # the person: confident
    cv2.circle(prob, (80, 20), 12, 0.7, -1)  # a grey blob on its own: a leak, dropped
    cv2.circle(prob, (80, 80), 3, 1.0, -1)  # confident but tiny next to the person: dropped
    prob[45:55, 50:75] = 0.6  # grey region touching the person: part of its component
    m = PortraitMatting(PortraitSettings()).mask(prob)
    assert m[50, 30] and m[50, 70]
    assert not m[20, 80] and not m[80, 80]
    assert not PortraitMatting(PortraitSettings()).mask(np.full((50, 50), 0.8, np.float32)).any()


# -- trimap ----------------------------------------------------------------------------------------------------


def test_trimap_band_is_the_given_fraction_of_the_long_side_on_both_sides():
    mask = np.zeros((200, 300), bool)
    mask[50:150, 100:200] = True
    tri = PortraitMatting(PortraitSettings(band=0.02)).trimap(mask)  # no image: no hair widening; r = 6 px
    assert set(np.unique(tri)) == {0, 128, 255}
    row = tri[100]
    assert (row[94:106] == 128).all() and row[93] == 0 and row[106] == 255
    assert (row[194:206] == 128).all() and row[193] == 255 and row[206] == 0
    assert (PortraitMatting().trimap(np.zeros((40, 60), bool)) == 0).all()


def test_trimap_widens_where_strands_leave_the_head_but_not_on_a_busy_background():
    h, w = 240, 240
    mask = np.zeros((h, w), bool)
    cv2.circle(mask.view(np.uint8), (120, 140), 60, 1, -1)
    rng = np.random.default_rng(1)
    smooth = np.full((h, w, 3), 200, np.uint8)
    hair = smooth.copy()
    for k in range(40):  # dark strands crossing the top of the head's edge outwards
        a = np.pi * (1.1 + 0.8 * k / 40)
        p0 = (int(120 + 50 * np.cos(a)), int(140 + 50 * np.sin(a)))
        p1 = (int(120 + 66 * np.cos(a + rng.normal(0, 0.05))), int(140 + 66 * np.sin(a + rng.normal(0, 0.05))))
        cv2.line(hair, p0, p1, (40, 30, 20), 1)
    pm = PortraitMatting(PortraitSettings(band=0.01, hair_out=0.03, hair_in=0.02))
    plain = pm.trimap(mask) == 128
    widened = pm.trimap(mask, hair) == 128
    extra = widened & ~plain
    assert extra.sum() > 200
    ys, _ = np.nonzero(extra)
    assert ys.max() < 140  # only at the top, where the strands are
    busy = np.clip(smooth + rng.normal(0, 40, smooth.shape), 0, 255).astype(np.uint8)
    busy_hair = np.where(hair < 100, hair, busy)
    # the strands no longer stand out of their background: (almost) no widening
    assert ((pm.trimap(mask, busy_hair) == 128) & ~plain).sum() < extra.sum() / 4
    assert (pm.trimap(mask, smooth) == 128).sum() == plain.sum()


def test_trimap_does_not_widen_into_textured_clothing_on_a_plain_background():
    h = w = 600
    mask = np.zeros((h, w), bool)
    cv2.circle(mask.view(np.uint8), (300, 300), 200, 1, -1)
    rng = np.random.default_rng(2)
    pattern = (rng.random((h // 3, w // 3)) > 0.5).repeat(3, 0).repeat(3, 1)  # a busy print, 3 px cells
    image = np.full((h, w, 3), 235, np.uint8)
    image[mask & pattern] = (30, 60, 30)
    pm = PortraitMatting(PortraitSettings(band=0.01, hair_out=0.03, hair_in=0.02))
    # the print's texture stops at the edge: nothing crosses the band, so the band stays as it is
    assert np.array_equal(pm.trimap(mask, image), pm.trimap(mask))


# -- refinement ------------------------------------------------------------------------------------------------


def test_refine_recovers_the_drawn_alpha_from_a_coarse_prior():
    image, alpha = drawn_scene()
    coarse = cv2.resize(
        cv2.resize(alpha.astype(np.float32), (20, 15), interpolation=cv2.INTER_AREA),
        alpha.shape[::-1],
        interpolation=cv2.INTER_LINEAR,
    )  # a blurry 8x-upsampled prior
    pm = PortraitMatting(PortraitSettings(band=0.04))
    mask = pm.mask(coarse)
    tri = pm.trimap(mask, image)
    assert (alpha[tri == 255] > 0.99).all() and (alpha[tri == 0] < 0.01).all()  # the band holds the edge
    result = pm.refine(image, tri, mask.astype(np.float32))
    assert result.shape == alpha.shape and result.dtype == np.float32
    assert np.abs(result - alpha).sum() < 0.15 * np.abs(mask - alpha).sum()
    assert np.abs(result - alpha).max() < 0.2


def test_band_solver_agrees_with_pymatting_closed_form():
    from p3m.pymatting_import import import_pymatting

    image, _ = drawn_scene(40, 50, seed=3)
    tri = np.zeros((40, 50), np.uint8)
    tri[8:32, 10:40] = 128
    tri[15:25, 20:30] = 255
    tri[0, :] = 128  # an unknown row on the image border
    ref = import_pymatting().estimate_alpha_cf(image / 255.0, tri / 255.0)
    ours = solve_alpha(image, tri, rtol=1e-9, ridge=0.0)
    assert np.abs(ours - ref).max() < 1e-4


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (6, 1), (2, 2), (3, 3)])
def test_band_solver_on_images_too_small_for_a_window(shape):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    tri = np.full(shape, 128, np.uint8)
    guess = rng.random(shape).astype(np.float32)
    alpha = solve_alpha(image, tri, guess)
    assert alpha.shape == shape and np.isfinite(alpha).all() and alpha.min() >= 0 and alpha.max() <= 1
    if min(shape) < 3:  # in no window: the data term alone decides
        assert np.allclose(alpha, guess, atol=1e-5)


def test_band_solver_with_nothing_unknown_returns_the_trimap():
    tri = np.zeros((5, 6), np.uint8)
    tri[1:3] = 255
    assert np.array_equal(solve_alpha(np.zeros((5, 6, 3), np.uint8), tri), (tri == 255).astype(np.float32))


# -- the whole route -------------------------------------------------------------------------------------------


def test_route_mattes_the_stored_real_portrait(route, portrait):
    alpha = route(portrait)
    assert alpha.shape == portrait.shape[:2] and alpha.dtype == np.float32
    assert alpha.min() >= 0 and alpha.max() <= 1
    ref = cv2.imread(str(TEST_DATA / "selfie_general_mediapipe.png"), cv2.IMREAD_UNCHANGED) / 65535.0
    a, b = alpha > 0.5, ref > 0.5
    assert (a & b).sum() / (a | b).sum() > 0.93  # measured 0.97
    soft = ((alpha > 0.05) & (alpha < 0.95)).mean()
    assert 0.002 < soft < 0.1  # a matte, not a mask and not a blur
    result = route.run(portrait)
    assert set(result.timings) == {"prior", "pose", "hands", "trimap", "refine", "person", "upsample"}
    assert result.warning == "" and result.info["solver"] == "ic0" and result.alpha.tobytes() == alpha.tobytes()


def test_person_check_runs_beside_the_solve_and_its_verdict_reaches_the_result(portrait, monkeypatch):
    """The check needs nothing of the solve: it runs on another thread while the solve runs, its evidence and
    verdict land in the result, and an error in it reaches the caller."""
    import threading

    route = PortraitMatting()
    threads: dict[str, int] = {}
    both_running = threading.Barrier(2, timeout=30)  # each side waits for the other: they must overlap
    real_solve = route.solve

    def person(*args):
        threads["person"] = threading.get_ident()
        both_running.wait()
        args[-1]["face"] = 0.0
        return ""  # nobody recognised

    def solve(*args):
        threads["solve"] = threading.get_ident()
        both_running.wait()
        return real_solve(*args)

    monkeypatch.setattr(route, "_person", person)
    monkeypatch.setattr(route, "solve", solve)
    result = route.run(portrait)
    assert threads["person"] != threads["solve"] == threading.get_ident()
    assert result.info["person"] == "" and result.info["face"] == 0.0
    assert result.warning.startswith("no person recognised")

    def broken(*args):
        raise RuntimeError("detector broke")

    monkeypatch.setattr(route, "_person", broken)
    monkeypatch.setattr(route, "solve", real_solve)
    with pytest.raises(RuntimeError, match="detector broke"):
        route.run(portrait)


def test_route_keeps_the_torch_thread_count(portrait):
    route = PortraitMatting(runtime="torch")
    assert route.net.runtime == "torch"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        route(portrait)
        torch.ones(64, 64) @ torch.ones(64, 64)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 40, 3), (40, 1, 3), (8, 8, 3), (3, 300, 3)])
def test_route_on_tiny_images(route, shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    alpha = route(image)
    assert alpha.shape == shape[:2] and alpha.dtype == np.float32 and np.isfinite(alpha).all()


@pytest.mark.parametrize("fill", ["flat", "noise"])
def test_route_without_a_person_gives_an_empty_matte(route, fill):
    rng = np.random.default_rng(0)
    image = (
        np.full((240, 320, 3), 128, np.uint8) if fill == "flat" else rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    )
    assert not route(image).any()
    blank = PortraitMatting()
    blank.net = RedChannel()  # an all-background prior (black image): no person, nothing solved
    assert not blank(np.zeros((90, 120, 3), np.uint8)).any()


def test_route_accepts_grey_images_and_rejects_other_dtypes(route, portrait):
    grey = cv2.cvtColor(portrait, cv2.COLOR_RGB2GRAY)
    a = route(grey)
    assert a.shape == grey.shape
    assert np.array_equal(a, route(grey[..., None])) and np.array_equal(a, route(np.dstack([grey] * 3)))
    assert np.array_equal(route(portrait), route(np.dstack([portrait, np.full(grey.shape, 255, np.uint8)])))
    with pytest.raises(ValueError, match="uint8"):
        route(portrait.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        route(np.zeros((0, 10, 3), np.uint8))


def test_route_on_a_large_image_solves_at_the_working_size_with_bounded_memory(portrait):
    big = cv2.resize(portrait, (3000, 2000), interpolation=cv2.INTER_LINEAR)
    pm = PortraitMatting(PortraitSettings(matting_side=512))
    seen = []
    solve = pm.solve

    def spy(image, trimap, *args):
        seen.append(trimap.shape)
        return solve(image, trimap, *args)

    pm.solve = spy
    pm(big[:100, :150])  # warm-up outside the measurement
    tracemalloc.start()
    try:
        alpha = pm(big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert alpha.shape == big.shape[:2] and seen[-1] == (341, 512)
    # the float32 output (4 bytes per pixel) is the only full-size array the route makes
    assert peak < 4 * big.shape[0] * big.shape[1] + 40e6
    assert ((alpha > 0.5) == (cv2.resize(pm(portrait), (3000, 2000)) > 0.5)).mean() > 0.97


# -- quality on the shared real portraits ----------------------------------------------------------------------


@pytest.mark.slow
def test_quality_on_the_shared_real_portraits(route):
    paths = sorted((PORTRAITS / "image").glob("*.jpg"))
    if not paths:
        pytest.skip(f"no shared test portraits under {PORTRAITS}")
    sads, ious = {}, {}
    for path in paths:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        ref = cv2.imread(str(PORTRAITS / "reference_alpha" / f"{path.stem}.png"), cv2.IMREAD_GRAYSCALE) / 255.0
        alpha = route(rgb)
        sads[path.stem] = float(np.abs(alpha - ref).sum() / 1000)
        ious[path.stem] = float(((alpha > 0.5) & (ref > 0.5)).sum() / ((alpha > 0.5) | (ref > 0.5)).sum())
    # measured (benchmarks/RESULTS.md, "Portrait route", "Step edges", "The band narrowed to the transition", "The
    # route's savings, and the gaps' colour test by default", "The zoomed pass's shade", "Limbs the band loses", "The
    # background seen through hair", "Edges the colours cannot decide", "The band's rim opened past a colour edge"):
    # mean 7.10, worst 14.18 (7.21 / 14.27 without the rim's opening; 7.43 / 14.49 without the second solve's pull
    # toward the priors either; 7.57 / 14.42 without the hair's gaps either; 8.66 / 22.23
    # without the zoomed pass's removals told by the shade's chromaticity either: p_09ba26b4 22.23 -> 9.20; 8.88
    # without the forearms' cores and the gaps' known background either; 9.12 without the gaps' colour test either;
    # 9.30 / 22.16 with the stretch of step edges alone, 9.34 / 22.78 with the tight solve alone, 10.04 / 22.96
    # before the three; 11.0 / 22.5 before the colour model on the prior's spill, the band's data term and the
    # zoomed pass); the prototype route: 20.9 and 41.3. The bars catch a regression of half a point on the mean
    # (and leave room for other CPUs' rounding); the worst is issue 24's bar
    assert np.mean(list(sads.values())) <= 7.6, sads
    assert max(sads.values()) <= 15.0, sads
    # the limbs' rules: p_bd6af989's forearm on the road and the road between its thighs (IoU 0.973 before), the
    # beach between p_07141906's arm and shirt (0.980 before); the zoomed pass's shade: p_09ba26b4's shadow on the
    # wall (0.944 before); the pull toward the priors where the colours cannot decide: p_09ba26b4's fingers and cuff
    # (0.9782 before), p_bd6af989's forearm and neck (0.9796 before), 0.9804 each; with the rim opened past a colour
    # edge too (p_09ba26b4's shade under the forearm, p_bd6af989's strands over foliage) 0.9821 and 0.9816; issue
    # 24's bar, IoU >= 0.98 on each photo, met by all 12 (p_07141906 0.9831)
    if {"p_bd6af989", "p_07141906", "p_09ba26b4"} <= set(ious):
        assert ious["p_07141906"] >= 0.982, ious
    assert min(ious.values()) >= 0.98, ious
