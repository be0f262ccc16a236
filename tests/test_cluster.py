"""`--cluster` on `p3m matte`, `anonymize` and `evaluate`: a local Ray cluster started by these tests (2 CPUs, bound
to 127.0.0.1, no dashboard, no usage statistics, its temporary folder under a temporary folder of the test run)
gives byte-identical outputs and reports to one machine; an actor killed mid-job, a driver killed mid-job and a
corrupt file lose nothing. Without Ray the switch says in one line how to install it.

The Ray tests share one cluster per module (starting Ray takes ~10 s on the shared 2-core machine) and 30 synthetic
portraits of 160 px; the whole module takes about 3 minutes there.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from p3m.cli import main
from p3m.cluster import ClusterSpec, parse_cluster_spec
from p3m.errors import P3MError
from tests.paths import REPO

N_IMAGES = 30
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}


# --------------------------------------------------------------------------- without Ray (fast)


def test_cluster_spec_is_parsed_and_checked():
    assert parse_cluster_spec("auto") == ClusterSpec("auto")
    assert parse_cluster_spec("10.0.0.5:6379,actors=8,gpus=1,cpus=4,batch=2") == ClusterSpec(
        "10.0.0.5:6379", actors=8, cpus=4.0, gpus=1.0, batch=2
    )
    for bad, words in (
        ("local,actors=0", "at least 1"),
        ("local,threads=2", "unknown setting"),
        ("local,gpus=x", "must be a number"),
        (",actors=2", "needs a place"),
        ("local,cpus=0", "some cpus or gpus"),
    ):
        with pytest.raises(P3MError, match=words):
            parse_cluster_spec(bad)


@pytest.mark.parametrize("verb", ["matte", "anonymize", "evaluate"])
def test_without_ray_the_switch_says_how_to_install_it(verb, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as it does without the extra
    args = {
        "matte": ["matte", str(tmp_path), "-o", str(tmp_path / "out")],
        "anonymize": ["anonymize", str(tmp_path), "-o", str(tmp_path / "out")],
        "evaluate": ["evaluate", "--pred", str(tmp_path), "--gt", str(tmp_path)],
    }[verb]
    assert main([*args, "--cluster", "local"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"p3m {verb}: error: --cluster needs Ray, an optional part of p3m: pip install 'p3m[cluster]'"]
    assert not (tmp_path / "out").exists()


def test_a_bad_cluster_setting_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["matte", "x.jpg", "-o", "out", "--cluster", "local,actors=-1"])
    assert exc.value.code == 2
    assert "--cluster actors must be at least 1" in capsys.readouterr().err


# --------------------------------------------------------------------------- on a local Ray cluster


def _ray_temp() -> Path:
    # Ray's socket paths must stay under 107 characters: a short folder of its own, not pytest's deep tmp_path
    return Path(tempfile.mkdtemp(prefix="p3mray", dir="/tmp"))


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A 2-CPU Ray cluster on 127.0.0.1 for this module; `RayRunner` uses the session open in this process. Its
    authentication token (Ray's default) goes to a $HOME of its own, not the developer's ~/.ray."""
    ray = pytest.importorskip("ray")
    temp = _ray_temp()
    saved = {k: os.environ.get(k) for k in [*RAY_ENV, "RAY_ADDRESS", "HOME"]}
    os.environ.update(RAY_ENV, HOME=str(temp))
    os.environ.pop("RAY_ADDRESS", None)  # never join a cluster that happens to run on the machine
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        _temp_dir=str(temp),
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def split(synth_dataset) -> Path:
    """30 synthetic portraits with their faces (a P3M-500-NP split: original_image/, mask/)."""
    root = synth_dataset(n_train=0, n_test_p=0, n_test_np=N_IMAGES, size=(160, 160), seed=23)
    return next(root.rglob("original_image")).parent


@pytest.fixture(scope="module")
def photos(split, tmp_path_factory) -> Path:
    """The 30 portraits (faces to find, people to matte) and one corrupt file, in one folder."""
    folder = tmp_path_factory.mktemp("photos")
    for path in sorted((split / "original_image").glob("*.jpg")):
        shutil.copy(path, folder / path.name)
    assert len(list(folder.glob("*.jpg"))) == N_IMAGES
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    return folder


@pytest.fixture(scope="module")
def matted_here(photos, tmp_path_factory) -> Path:
    """`p3m matte` on one machine: the reference outputs."""
    out = tmp_path_factory.mktemp("matte-here")
    assert main(["matte", str(photos), "-o", str(out), "-q"]) == 1  # the corrupt file
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _sets(folder: Path) -> dict[str, set[str]]:
    """stem -> the output kinds written for it."""
    sets: dict[str, set[str]] = {}
    for p in folder.glob("*.png"):
        stem, _, kind = p.stem.rpartition("_")
        sets.setdefault(stem, set()).add(kind)
    return sets


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_matte_on_the_cluster_writes_the_same_bytes_and_reports_the_corrupt_file(
    ray_cluster, photos, matted_here, tmp_path, capsys
):
    capsys.readouterr()
    out = tmp_path / "out"
    rc = main(["matte", str(photos), "-o", str(out), "--cluster", "local,actors=2"])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"p3m matte: error: {photos / 'corrupt.jpg'}: " in err
    assert f"{N_IMAGES} image(s) written to {out}, 1 failed" in err
    here = _files(matted_here)
    assert len(here) == 2 * N_IMAGES
    assert _files(out) == here  # same names, same bytes


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_matte_reads_inputs_through_a_uri_and_skips_complete_sets(ray_cluster, photos, matted_here, tmp_path, capsys):
    """A file system URI (here file://, as s3:// or gs:// would be) is listed and read by Ray; --skip-existing skips
    the complete sets and redoes the incomplete one."""
    out = tmp_path / "out"
    out.mkdir()
    stems = sorted(p.stem for p in photos.glob("*.jpg") if p.stem != "corrupt")
    for stem in stems[:10]:
        for kind in ("alpha", "rgba"):
            shutil.copy(matted_here / f"{stem}_{kind}.png", out)
    (out / f"{stems[10]}_alpha.png").write_bytes(b"left by a killed run")  # an incomplete set: alpha, no rgba
    capsys.readouterr()
    rc = main(["matte", f"file://{photos}", "-o", str(out), "--skip-existing", "--cluster", "local,batch=3"])
    err = capsys.readouterr().err
    assert rc == 1, err  # the corrupt file
    assert f"{N_IMAGES - 10} image(s) written to {out}, 10 skipped (outputs exist), 1 failed" in err
    assert _files(out) == _files(matted_here)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_anonymize_on_the_cluster_writes_the_same_files_and_report(ray_cluster, photos, tmp_path, capsys):
    here, there = tmp_path / "here", tmp_path / "there"
    assert main(["anonymize", str(photos), "-o", str(here), "-q"]) == 1  # the corrupt file
    assert main(["anonymize", str(photos), "-o", str(there), "-q", "--cluster", "local,actors=2,batch=5"]) == 1
    capsys.readouterr()
    report = (here / "anonymize_report.csv").read_text()
    assert (there / "anonymize_report.csv").read_text() == report.replace(str(here), str(there))
    lines = report.splitlines()
    assert len(lines) == N_IMAGES + 2  # header, 30 images, the corrupt file
    corrupt = next(line for line in lines if line.startswith("corrupt,"))
    assert ",error," in corrupt and "corrupt.jpg" in corrupt
    assert sum(",ok," in line for line in lines) >= N_IMAGES * 2 // 3  # faces were found and obfuscated
    files_here, files_there = _files(here), _files(there)
    files_here.pop("anonymize_report.csv"), files_there.pop("anonymize_report.csv")
    assert len(files_here) == 2 * N_IMAGES  # image + face mask each
    assert files_there == files_here


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_evaluate_on_the_cluster_gives_the_same_tables(ray_cluster, split, matted_here, tmp_path):
    pred = tmp_path / "pred"
    pred.mkdir()
    for alpha in matted_here.glob("*_alpha.png"):
        shutil.copy(alpha, pred)
    for where, extra in (("here", ["--workers", "1"]), ("there", ["--cluster", "local,batch=8"])):
        argv = ["evaluate", "--pred", str(pred), "--gt", str(split / "mask"), "-o", str(tmp_path / where)]
        assert main([*argv, "--quiet", *extra]) == 0
    for name in ("per_image.csv", "summary.json", "summary.md"):
        assert (tmp_path / "there" / name).read_bytes() == (tmp_path / "here" / name).read_bytes()
    assert len((tmp_path / "here" / "per_image.csv").read_text().splitlines()) == N_IMAGES + 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_vanished_file_and_a_worker_bug_are_reported_per_image(ray_cluster, photos, matted_here, tmp_path):
    """A file deleted after the listing and an error the per-image function does not catch (here a malformed
    output path) fail their image only; the job goes on and the other images are written."""
    from p3m.cluster.runner import RayRunner
    from p3m.infer.batch import MatteWorker

    good = sorted(p for p in photos.glob("*.jpg") if p.stem != "corrupt")[:2]
    out = tmp_path / "out"
    jobs = [
        (good[0], {"alpha": out / f"{good[0].stem}_alpha.png"}),
        (tmp_path / "gone.jpg", {"alpha": out / "gone_alpha.png"}),
        (good[1], {"alpha": 42}),  # not a path: TypeError inside the worker
    ]
    worker = MatteWorker({"weights": "portrait-cf"})
    outcomes = dict(RayRunner(ClusterSpec("local", actors=1, batch=1), source=lambda job: job[0])(worker, jobs))
    assert sorted(outcomes) == [0, 1, 2]
    assert outcomes[0].error is None
    assert (out / f"{good[0].stem}_alpha.png").read_bytes() == (matted_here / f"{good[0].stem}_alpha.png").read_bytes()
    assert outcomes[1].error.startswith(f"{tmp_path / 'gone.jpg'}: not processed: its file could not be read")
    assert outcomes[2].error.startswith(f"{good[1]}: internal error: TypeError")
    assert sorted(p.name for p in out.iterdir()) == [f"{good[0].stem}_alpha.png"]


def _children(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc: Linux)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        below = [child for child, parent in parents.items() if parent in frontier]
        found += below
        frontier = below
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_an_actor_killed_mid_job_loses_nothing(ray_cluster, photos, matted_here, tmp_path, capsys):
    out = tmp_path / "out"
    result: dict[str, int] = {}
    job = threading.Thread(
        target=lambda: result.update(
            rc=main(["matte", str(photos), "-o", str(out), "-q", "--cluster", "local,actors=2,batch=8"])
        )
    )
    job.start()
    try:
        _wait_for(lambda: len(list(out.glob("*_rgba.png"))) >= 2, 120, "the first outputs")
        actors = [p for p in _children(os.getpid()) if "MapWorker" in _cmdline(p)]
        assert actors, "no actor process found"
        os.kill(actors[0], signal.SIGKILL)  # in the middle of its batch of 8 images
        written_before = len(list(out.glob("*_rgba.png")))
    finally:
        job.join(240)
    assert not job.is_alive()
    assert written_before < N_IMAGES  # it was killed while there was work left
    assert result["rc"] == 1  # the corrupt file only
    err = capsys.readouterr().err
    assert err.count("p3m matte: error:") == 1 and "corrupt.jpg" in err
    assert _files(out) == _files(matted_here)


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.timeout(400)
def test_a_driver_killed_mid_job_then_rerun_with_skip_existing_completes(
    ray_cluster, photos, matted_here, tmp_path, capsys
):
    """The driver (`p3m matte --cluster local`, its own Ray) is killed with everything it started; a rerun with
    --skip-existing finishes the rest, and no image is left with part of its outputs."""
    out = tmp_path / "out"
    temp = _ray_temp()
    env = {**os.environ, **RAY_ENV, "RAY_TMPDIR": str(temp), "HOME": str(temp)}
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "p3m.cli", "matte", str(photos), "-o", str(out), "-q"]
    driver = subprocess.Popen(
        [*command, "--cluster", "local,actors=1,batch=2"],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: len(list(out.glob("*_rgba.png"))) >= 3, 240, "the first outputs of the driver")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(30)
        # what Ray started in a session of its own (its GCS server, raylet): found by its temporary folder
        for pid in [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]:
            if str(temp) in _cmdline(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
    done_before = len(list(out.glob("*_rgba.png")))
    assert done_before < N_IMAGES
    capsys.readouterr()
    assert main(["matte", str(photos), "-o", str(out), "--skip-existing", "--cluster", "local"]) == 1
    err = capsys.readouterr().err
    assert err.count("p3m matte: error:") == 1 and "corrupt.jpg" in err
    assert all(kinds == {"alpha", "rgba"} for kinds in _sets(out).values())
    assert _files(out) == _files(matted_here)
