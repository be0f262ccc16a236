"""The default job's speed-ups keep its outputs: the compiled foreground estimator against the numpy code it
replaced (tests/reference/foreground_before.py), on real photos and on synthetic mattes; the PNG encoder (lossless,
no metadata); the folder pipeline (`p3m.workers.run_stages`, `p3m.infer.batch.matte_here`) against one image after
the other."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from p3m import workers
from p3m.infer import foreground as fgmod
from p3m.infer.batch import (
    ROUTE_ALPHA_THREADS,
    alpha_threads,
    matte_here,
    matte_job,
    plan_outputs,
    prepare_output_folders,
    set_state,
)
from p3m.infer.matter import Matter
from p3m.infer.multilevel import level_sizes
from p3m.infer.strategies import NetOutput
from p3m.io import encode_image, read_image, read_mask, write_image
from p3m.workers import run_stages, usable_cpus
from tests.alike import mattes_differ
from tests.paths import PORTRAITS, REAL_PHOTOS, REFERENCE_ALPHA
from tests.reference.foreground_before import previous_estimate_foreground, previous_multilevel_foreground


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@pytest.mark.parametrize("photo", REAL_PHOTOS, ids=lambda p: p.stem)
def test_cutout_colours_match_the_previous_estimator_on_real_photos(photo) -> None:
    image = read_image(photo)
    alpha = read_mask(REFERENCE_ALPHA / f"{photo.stem}.png").astype(np.float32) / 255
    new = fgmod.estimate_foreground(image, alpha)
    old = previous_estimate_foreground(image, alpha)
    assert _max_diff(new, old) <= 1  # the goal is 2/255; only the seed means are summed in another order
    assert np.mean(new != old) < 1e-3


@pytest.mark.slow
def test_cutout_colours_match_the_previous_estimator_on_the_shared_portraits() -> None:
    images = sorted((PORTRAITS / "image").glob("*.jpg"))
    if not images:
        pytest.skip("the shared test portraits are absent")
    for path in images:
        image = read_image(path)
        alpha = read_mask(PORTRAITS / "reference_alpha" / f"{path.stem}.png").astype(np.float32) / 255
        assert _max_diff(fgmod.estimate_foreground(image, alpha), previous_estimate_foreground(image, alpha)) <= 2


@pytest.mark.parametrize("band_only_above", [None, 2_000])
def test_multilevel_float_output_equals_the_previous_code(band_only_above) -> None:
    rng = np.random.default_rng(5)
    h, w = 90, 130
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = np.clip((40 - np.hypot(yy - 45, xx - 65)) / 8 + rng.normal(0, 0.05, (h, w)), 0, 1).astype(np.float32)
    image = rng.random((h, w, 3)).astype(np.float32)
    f, b = fgmod.multilevel_foreground(image, alpha, band_only_above=band_only_above)
    rf, rb = previous_multilevel_foreground(image, alpha, band_only_above=band_only_above)
    np.testing.assert_allclose(f, rf, atol=2e-6)
    np.testing.assert_allclose(b, rb, atol=2e-6)


def test_estimate_foreground_on_edge_cases_matches_the_previous_code() -> None:
    rng = np.random.default_rng(6)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    # no unknown pixel: the image itself; one unknown pixel; a band touching every border; non-contiguous inputs
    solid = (rng.random((40, 50)) > 0.5).astype(np.float32)
    one = solid.copy()
    one[20, 25] = 0.5
    edges = rng.random((40, 50)).astype(np.float32)
    for alpha in (solid, one, edges, np.asfortranarray(edges)):
        np.testing.assert_array_equal(
            fgmod.estimate_foreground(image, alpha), previous_estimate_foreground(image, alpha)
        )
    wide = rng.integers(0, 256, (40, 100, 3), dtype=np.uint8)[:, ::2]
    np.testing.assert_array_equal(fgmod.estimate_foreground(wide, edges), previous_estimate_foreground(wide, edges))


def test_level_sizes_follow_the_published_rule() -> None:
    heights, widths = level_sizes(1080, 778)
    assert heights[0] == widths[0] == 1 and heights[-1] == 1080 and widths[-1] == 778
    assert len(heights) == 12  # ceil(log2(1080)) + 1 levels
    assert list(heights) == [round(1080 ** (k / 11)) for k in range(12)]


def _png_chunks(data: bytes) -> list[bytes]:
    chunks, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunks.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return chunks


@pytest.mark.parametrize("shape", [(37, 53), (37, 53, 3), (37, 53, 4)])
def test_png_encoding_is_lossless_and_carries_only_the_image(shape) -> None:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    data = encode_image(pixels, "png")
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert set(_png_chunks(data)) == {b"IHDR", b"IDAT", b"IEND"}  # no text, time, colour-profile or EXIF chunk
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == {1: "L", 3: "RGB", 4: "RGBA"}[shape[2] if len(shape) == 3 else 1]
        np.testing.assert_array_equal(np.asarray(img), pixels)
    # views are written as their pixels, bool masks as 0 / 255
    with Image.open(io.BytesIO(encode_image(pixels[::-1, ::2], "png"))) as img:
        np.testing.assert_array_equal(np.asarray(img), pixels[::-1, ::2])
    with Image.open(io.BytesIO(encode_image(pixels[..., 0] > 127 if len(shape) == 3 else pixels > 127, "png"))) as img:
        assert set(np.unique(np.asarray(img))) <= {0, 255}


# ----------------------------------------------------------------------------- the folder pipeline


def test_run_stages_keeps_order_and_runs_stages_at_once() -> None:
    seen: dict[str, set[int]] = {"a": set(), "b": set()}
    active = []

    def stage(name: str, delay: float):
        def fn(value):
            seen[name].add(threading.get_ident())
            active.append(threading.active_count())
            time.sleep(delay * (1 + value % 3))
            return value * 10 if name == "a" else value + 1

        return fn

    out = list(run_stages([stage("a", 0.002), stage("b", 0.001)], list(range(20))))
    assert out == [(i, i * 10 + 1) for i in range(20)]
    assert seen["a"].isdisjoint(seen["b"]) and threading.get_ident() not in seen["a"] | seen["b"]
    assert list(run_stages([stage("a", 0)], [])) == []


def test_run_stages_raises_a_stage_bug_here_and_stops_early() -> None:
    def bad(value):
        if value == 3:
            raise KeyError("bug")
        return value

    before = threading.active_count()
    got = []
    with pytest.raises(KeyError, match="bug"):
        for index, value in run_stages([lambda v: v, bad], list(range(100))):
            got.append((index, value))
    assert got == [(0, 0), (1, 1), (2, 2)]
    # an iterator closed early (an interrupt) stops its threads too
    it = run_stages([lambda v: v, lambda v: v], list(range(100)))
    assert next(it) == (0, 0)
    it.close()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before


def test_a_stage_on_several_threads_works_on_items_at_once_and_hands_them_on_in_order() -> None:
    lock = threading.Lock()
    busy, most = [0], [0]
    arrivals: list[int] = []

    def slow(value):  # the middle stage: later items often finish first
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        time.sleep(0.002 * (3 - value % 3))
        with lock:
            busy[0] -= 1
        return value * 10

    def last(value):
        arrivals.append(value // 10)
        return value + 1

    out = list(run_stages([lambda v: v, slow, last], list(range(30)), threads=[1, 3, 1]))
    assert out == [(i, i * 10 + 1) for i in range(30)]
    assert arrivals == list(range(30))  # the next stage sees the items in order
    assert most[0] > 1  # and the three threads did overlap
    with pytest.raises(ValueError, match="one count >= 1 per stage"):
        list(run_stages([lambda v: v], [1], threads=[0]))
    with pytest.raises(ValueError, match="one count >= 1 per stage"):
        list(run_stages([lambda v: v], [1], threads=[1, 1]))


def test_a_stage_bug_on_one_of_several_threads_stops_the_run() -> None:
    def bad(value):
        if value == 5:
            raise KeyError("bug")
        time.sleep(0.001)
        return value

    before = threading.active_count()
    got = []
    with pytest.raises(KeyError, match="bug"):
        for index, value in run_stages([bad, lambda v: v], list(range(100)), threads=[2, 1]):
            got.append((index, value))
    assert got == [(i, i) for i in range(5)]
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before


def test_usable_cpus_follow_the_affinity_mask(monkeypatch) -> None:
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert usable_cpus() == 3

    def absent(pid):
        raise AttributeError("no affinity here")

    monkeypatch.setattr(workers.os, "sched_getaffinity", absent, raising=False)
    monkeypatch.setattr(workers.os, "cpu_count", lambda: 6)
    assert usable_cpus() == 6


def test_alpha_threads_one_per_cpu_for_the_route_capped_and_one_for_a_network() -> None:
    route, net = Matter(), Matter.from_network(_BrightnessNet(), strategy="resize")
    assert [alpha_threads(route, cpus) for cpus in (1, 2, 3)] == [1, 2, 3]
    assert alpha_threads(route, 64) == ROUTE_ALPHA_THREADS
    assert alpha_threads(route) == min(usable_cpus(), ROUTE_ALPHA_THREADS)
    assert alpha_threads(net, 2) == alpha_threads(net, 64) == 1


def test_the_route_on_two_alpha_threads_writes_the_same_bytes_as_one_image_after_the_other(tmp_path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    paths = []
    for i, photo in enumerate(REAL_PHOTOS * 2):
        path = src / f"{i}_{photo.name}"
        path.write_bytes(photo.read_bytes())
        paths.append(path)
    bad = src / "3_broken.jpg"
    bad.write_bytes(b"not a jpeg")
    paths.insert(3, bad)
    matter = Matter()
    kinds = ["alpha", "rgba"]
    piped, _ = plan_outputs(paths, tmp_path / "piped", kinds)
    one_by_one, _ = plan_outputs(paths, tmp_path / "seq", kinds)
    prepare_output_folders(piped + one_by_one)
    outcomes = list(matte_here(matter, piped, threads=2))
    assert [i for i, _ in outcomes] == list(range(len(paths)))
    assert [bool(o.error) for _, o in outcomes] == [p == bad for p in paths]
    for job in one_by_one:
        matte_job(matter, job)
    for (src_path, outs), (_, seq_outs) in zip(piped, one_by_one, strict=True):
        for kind in kinds:
            if src_path == bad:
                assert not outs[kind].exists()
            else:
                assert outs[kind].read_bytes() == seq_outs[kind].read_bytes(), (src_path, kind)


class _BrightnessNet:
    """A NetFn: the local alpha is a smooth function of each pixel's brightness, classes from thresholds."""

    def __call__(self, x: np.ndarray) -> NetOutput:
        local = (1 / (1 + np.exp(-3 * x.mean(1)))).astype(np.float32)
        classes = np.where(local > 0.8, 2, np.where(local < 0.2, 0, 1)).astype(np.uint8)
        return NetOutput(classes, local, local)


@pytest.mark.parametrize("threads", [1, 3])
def test_matte_here_writes_what_matte_job_writes_and_reports_bad_files(tmp_path, threads) -> None:
    rng = np.random.default_rng(8)
    src = tmp_path / "in"
    src.mkdir()
    paths = []
    for i in range(5):
        path = src / f"p{i}.png"
        if i == 2:
            path.write_bytes(b"not an image")
        else:
            xx = np.arange(90)[None, :, None]
            base = np.sin(xx / (5 + i)) * 100 + 128 + rng.normal(0, 20, (70, 90, 1)) + np.array([0, 30 * i, -20])
            write_image(path, np.clip(base, 0, 255).astype(np.uint8))
        paths.append(path)
    matter = Matter.from_network(_BrightnessNet(), strategy="resize")
    kinds = ["alpha", "rgba", "fg", "composite"]
    piped, _ = plan_outputs(paths, tmp_path / "piped", kinds)
    one_by_one, _ = plan_outputs(paths, tmp_path / "seq", kinds)
    prepare_output_folders(piped + one_by_one)
    outcomes = list(matte_here(matter, piped, background=(0, 90, 200), threads=threads))
    assert [i for i, _ in outcomes] == list(range(5))
    errors = [o.error for _, o in outcomes if o.error]
    assert len(errors) == 1 and errors[0].startswith(f"{paths[2]}: ") and "\n" not in errors[0]
    for job in one_by_one:
        matte_job(matter, job, background=(0, 90, 200))
    for (src_path, outs), (_, seq_outs) in zip(piped, one_by_one, strict=True):
        for kind in kinds:
            if src_path == paths[2]:
                assert not outs[kind].exists() and not seq_outs[kind].exists()
            else:
                assert outs[kind].read_bytes() == seq_outs[kind].read_bytes(), (src_path, kind)
    assert set_state(piped[0][1]) == "done"


def test_the_route_mattes_on_one_torch_thread_in_process_and_in_folders(tmp_path, monkeypatch) -> None:
    import torch

    path = tmp_path / "p.png"
    write_image(path, np.full((80, 72, 3), 120, np.uint8))
    jobs, _ = plan_outputs([path], tmp_path / "out", ["alpha"])
    prepare_output_folders(jobs)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        # the route on torch (by default its networks run on ONNX Runtime, one thread of its own, and torch is not
        # even imported: tests/test_graph_session.py)
        route_matter = Matter(backend="torch")
        net_matter = Matter.from_network(_BrightnessNet(), strategy="resize")
        assert route_matter.backend == "torch"
        seen: dict[str, list[int]] = {"route": [], "net": []}
        run = route_matter.session.route.run
        monkeypatch.setattr(
            route_matter.session.route, "run", lambda rgb: seen["route"].append(torch.get_num_threads()) or run(rgb)
        )
        net = net_matter.session.net
        monkeypatch.setattr(net_matter.session, "net", lambda x: seen["net"].append(torch.get_num_threads()) or net(x))
        route_matter.matte(path)  # in process, one image
        assert seen["route"] == [1] and torch.get_num_threads() == 2
        assert [o.error for _, o in matte_here(route_matter, jobs)] == [None]  # the folder pipeline
        assert seen["route"] == [1, 1] and torch.get_num_threads() == 2
        assert [o.error for _, o in matte_here(net_matter, jobs)] == [None]
        assert seen["net"] and set(seen["net"]) == {2}  # a network's passes keep every thread
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_the_route_matte_is_the_same_with_one_or_two_torch_threads(monkeypatch) -> None:
    import torch

    from p3m.infer import sessions

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        matter = Matter(backend="torch")  # the route's networks on torch
        one = [matter.matte(p).alpha for p in REAL_PHOTOS]
        monkeypatch.setattr(sessions, "ROUTE_TORCH_THREADS", 2)
        seen = []
        run = matter.session.route.run
        monkeypatch.setattr(matter.session.route, "run", lambda rgb: seen.append(torch.get_num_threads()) or run(rgb))
        two = [matter.matte(p).alpha for p in REAL_PHOTOS]
        assert set(seen) == {2}
        # the networks' outputs differ by float rounding between thread counts (up to 4e-4 on these photos), and the
        # route reads them (`tests/alike.py`): measured, 1 pixel of people_cap.jpg 0.05 apart (the snap of values
        # within `clean` of 0), the rest at most 1e-5; with `prior_pull=0` byte-identical
        for path, a, b in zip(REAL_PHOTOS, one, two, strict=True):
            assert not mattes_differ(a, b), (path.name, mattes_differ(a, b))
    finally:
        torch.set_num_threads(before)


def test_torch_threads_sets_the_calling_threads_count_and_restores_it() -> None:
    import torch

    from p3m.infer.runtime import torch_threads

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        inside, release = threading.Event(), threading.Event()
        seen = {}

        def hold() -> None:
            torch.ones(4) + 1  # a first op: this thread's count is its own from here on
            with torch_threads(1):
                seen["worker"] = torch.get_num_threads()
                inside.set()
                release.wait(10)
            seen["worker after"] = torch.get_num_threads()

        worker = threading.Thread(target=hold)
        worker.start()
        inside.wait(10)
        seen["main meanwhile"] = torch.get_num_threads()  # another thread's block does not change this one
        release.set()
        worker.join(10)
        assert seen == {"worker": 1, "main meanwhile": 2, "worker after": 2}
        with pytest.raises(RuntimeError), torch_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
