"""`p3m matte` and `p3m models`: outputs, naming, batches with bad files, exit codes, overwrite policy,
metadata-free atomic writes, EXIF orientation, device errors, weights discovery."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from p3m import io
from p3m.choices import parse_color
from p3m.commands import matte as matte_cmd
from p3m.commands import models as models_cmd
from p3m.errors import P3MError
from p3m.models import create
from p3m.models import store as model_store
from p3m.models.checkpoint import save_checkpoint
from tests.paths import PORTRAITS, REAL_PHOTOS

torch.set_num_threads(1)


def run_cli(argv: list[str]) -> int:
    """What `p3m.cli.main` does for these verbs: parse, run, P3MError -> one line + exit 2."""
    parser = argparse.ArgumentParser(prog="p3m")
    sub = parser.add_subparsers(dest="command")
    for module in (matte_cmd, models_cmd):
        module.add_parser(sub).set_defaults(_run=module.run)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code)
    try:
        return int(args._run(args) or 0)
    except P3MError as exc:
        print(f"p3m {args.command}: error: {exc}", file=sys.stderr)
        return 2


@pytest.fixture
def weights(home: Path, tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = save_checkpoint(create("p3m-r34", width=16), tmp_path / "ck" / "tiny16", metadata={"note": "random"})
    model_store.register(path, "tiny16", arch="p3m-r34", origin="test")
    return path


def real_size_portrait(dst: Path) -> Path:
    """A 1080 px portrait: the first of the shared set where it is checked out, else the shipped profile photo
    enlarged to 1728x1080 (the size of its original)."""
    found = sorted((PORTRAITS / "image").glob("*.jpg"))
    if found:
        return found[0]
    dst.mkdir(parents=True, exist_ok=True)
    path = dst / "people_profile.jpg"
    Image.open(REAL_PHOTOS[1]).resize((1728, 1080), Image.BICUBIC).save(path, quality=92)
    return path


def small_copies(dst: Path, n: int = 3, scale: int = 8) -> list[Path]:
    """Downscaled copies of real portraits (the pipeline is size-independent; tests stay fast): the shared set where
    it is checked out, else the three photos shipped in tests/data (1080 px divided by ``scale`` on the shorter side
    either way)."""
    assert n <= len(REAL_PHOTOS)
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    sources = sorted((PORTRAITS / "image").glob("*.jpg"))[:n] or list(REAL_PHOTOS[:n])
    for src in sources:
        img = Image.open(src)
        factor = 1080 / scale / min(img.size)
        img = img.resize((round(img.width * factor), round(img.height * factor)), Image.BILINEAR)
        p = dst / src.name
        img.save(p, quality=92)
        out.append(p)
    return out


def test_folder_end_to_end_with_all_outputs(weights: Path, tmp_path: Path, capsys) -> None:
    inputs = small_copies(tmp_path / "in")
    out = tmp_path / "out"
    code = run_cli(
        [
            "matte",
            str(tmp_path / "in"),
            "-o",
            str(out),
            "--save",
            "alpha,rgba,fg,composite",
            "--background",
            "#00ff00",
            "--quiet",
        ]
    )
    assert code == 0
    for p in inputs:
        h, w = io.read_image(p).shape[:2]
        alpha = np.asarray(Image.open(out / f"{p.stem}_alpha.png"))
        rgba = np.asarray(Image.open(out / f"{p.stem}_rgba.png"))
        fg = np.asarray(Image.open(out / f"{p.stem}_fg.png"))
        comp = np.asarray(Image.open(out / f"{p.stem}_composite.png"))
        assert alpha.shape == (h, w) and rgba.shape == (h, w, 4) and fg.shape == comp.shape == (h, w, 3)
        np.testing.assert_array_equal(rgba[..., 3], alpha)  # straight alpha: colours are F, not F*alpha
        seen = alpha > 0
        np.testing.assert_array_equal(rgba[..., :3][seen], fg[seen])
        assert not rgba[~seen].any()  # fully transparent pixels carry nothing of the photo
        a = alpha[..., None] / 255.0
        want = fg * a + np.array([0, 255, 0]) * (1 - a)
        assert np.abs(comp - want).max() <= 1.0
        for f in out.glob(f"{p.stem}_*"):
            assert io.has_metadata(f) == []
    assert sorted(x.name for x in out.iterdir() if x.name.startswith(".")) == []  # no temp files left


@pytest.mark.slow
def test_real_size_portrait_runs(weights: Path, tmp_path: Path) -> None:
    src = real_size_portrait(tmp_path / "in")
    out = tmp_path / "out"
    assert run_cli(["matte", str(src), "-o", str(out), "--strategy", "resize", "--quiet"]) == 0
    alpha = np.asarray(Image.open(out / f"{src.stem}_alpha.png"))
    assert alpha.shape == io.read_image(src).shape[:2]


def test_bad_files_are_reported_and_skipped(weights: Path, tmp_path: Path, capsys) -> None:
    inputs = small_copies(tmp_path / "in", n=2)
    (tmp_path / "in" / "empty.jpg").write_bytes(b"")
    (tmp_path / "in" / "text.png").write_text("not an image")
    out = tmp_path / "out"
    code = run_cli(["matte", str(tmp_path / "in"), str(tmp_path / "missing.jpg"), "-o", str(out), "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "empty.jpg" in err and "text.png" in err and "missing.jpg" in err
    assert "Traceback" not in err
    for p in inputs:
        assert (out / f"{p.stem}_alpha.png").is_file() and (out / f"{p.stem}_rgba.png").is_file()
    assert not (out / "empty_alpha.png").exists()


def test_overwrite_policy(weights: Path, tmp_path: Path, capsys) -> None:
    (src,) = small_copies(tmp_path / "in", n=1)
    out = tmp_path / "out"
    assert run_cli(["matte", str(src), "-o", str(out), "--quiet"]) == 0
    alpha_file = out / f"{src.stem}_alpha.png"
    stamp = alpha_file.stat().st_mtime_ns
    capsys.readouterr()
    assert run_cli(["matte", str(src), "-o", str(out), "--quiet"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert alpha_file.stat().st_mtime_ns == stamp
    assert run_cli(["matte", str(src), "-o", str(out), "--skip-existing"]) == 0
    assert "1 skipped" in capsys.readouterr().err
    assert alpha_file.stat().st_mtime_ns == stamp
    assert run_cli(["matte", str(src), "-o", str(out), "--overwrite", "--quiet"]) == 0
    assert alpha_file.stat().st_mtime_ns != stamp
    assert run_cli(["matte", str(src), "-o", str(out), "--overwrite", "--skip-existing"]) == 2  # exclusive


def test_exif_rotated_input_gives_upright_outputs(home: Path, tmp_path: Path) -> None:
    # an "all foreground" network: the semantic head says foreground everywhere, so alpha = 1 and the
    # cutout colours must be exactly the upright image
    torch.manual_seed(0)
    model = create("p3m-r34", width=16)
    head = [m for m in model.decoder0_g.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([-10.0, -10.0, 10.0]))
    weights = save_checkpoint(model, tmp_path / "ck" / "allfg")
    img = np.zeros((96, 160, 3), np.uint8)
    img[:, :80] = (200, 60, 40)
    img[:48, 80:] = (20, 30, 220)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    exif[0x010F] = "CameraMaker"
    src = tmp_path / "rotated.png"
    Image.fromarray(img).save(src, exif=exif)
    out = tmp_path / "out"
    assert run_cli(["matte", str(src), "-o", str(out), "--weights", str(weights), "--quiet"]) == 0
    alpha = np.asarray(Image.open(out / "rotated_alpha.png"))
    rgba = np.asarray(Image.open(out / "rotated_rgba.png"))
    assert alpha.shape == (160, 96) and (alpha == 255).all()
    upright = np.asarray(Image.fromarray(img).transpose(Image.Transpose.ROTATE_270))  # 90 deg clockwise
    np.testing.assert_array_equal(rgba[..., :3], upright)
    assert io.has_metadata(out / "rotated_rgba.png") == []


def test_composite_background_colours_and_image(weights: Path, tmp_path: Path) -> None:
    (src,) = small_copies(tmp_path / "in", n=1)
    assert parse_color("white") == (255, 255, 255)
    assert parse_color("#0f0") == (0, 255, 0)
    assert parse_color("10, 20,30") == (10, 20, 30)
    assert parse_color("sunset.png") is None
    bg = tmp_path / "bg.png"
    Image.fromarray(np.full((50, 70, 3), (10, 20, 250), np.uint8)).save(bg)
    out = tmp_path / "out"
    assert (
        run_cli(
            [
                "matte",
                str(src),
                "-o",
                str(out),
                "--save",
                "composite",
                "--background",
                str(bg),
                "--composite-format",
                "jpg",
                "--quiet",
            ]
        )
        == 0
    )
    comp = io.read_image(out / f"{src.stem}_composite.jpg")
    assert comp.shape == io.read_image(src).shape
    assert (
        run_cli(["matte", str(src), "-o", str(out), "--save", "composite", "--background", "nonsense", "--overwrite"])
        == 2
    )


def test_usage_errors_exit_2(weights: Path, tmp_path: Path, capsys) -> None:
    (src,) = small_copies(tmp_path / "in", n=1)
    assert run_cli(["matte", str(src), "-o", str(tmp_path / "o"), "--save", "alpha,depth"]) == 2
    assert run_cli(["matte", str(tmp_path / "nothing-here"), "-o", str(tmp_path / "o")]) == 2
    assert run_cli(["matte", str(src), "-o", str(tmp_path / "o"), "--weights", "no-such-model"]) == 2
    assert "no model named 'no-such-model'" in capsys.readouterr().err


def test_cuda_request_without_cuda_is_an_error(weights: Path, tmp_path: Path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    (src,) = small_copies(tmp_path / "in", n=1)
    assert run_cli(["matte", str(src), "-o", str(tmp_path / "o"), "--device", "cuda"]) == 2
    assert "CUDA is unavailable" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_no_weights_says_how_to_get_them(home: Path, tmp_path: Path, capsys) -> None:
    (src,) = small_copies(tmp_path / "in", n=1)
    # no name: the built-in route runs (tests/test_default_model.py); an architecture without weights cannot
    assert run_cli(["matte", str(src), "-o", str(tmp_path / "o"), "--arch", "p3m-swin-t"]) == 2
    err = capsys.readouterr().err
    assert "p3m demo" in err and "p3mnet_pretrained_on_p3m10k.pth" in err
    assert run_cli(["models"]) == 0
    assert "* portrait-cf" in capsys.readouterr().out


def test_models_lists_registered_and_dropped(weights: Path, home: Path, capsys) -> None:
    shutil.copy(weights, home / "models" / "mine.safetensors")  # dropped without sidecar: arch from keys
    assert run_cli(["models"]) == 0
    out = capsys.readouterr().out
    assert "tiny16" in out and "test" in out and "mine" in out and "dropped file" in out
    assert out.count("p3m-r34") == 2
    assert run_cli(["models", "--json"]) == 0
    assert '"name": "tiny16"' in capsys.readouterr().out


def test_weights_by_path_and_duplicate_stems(weights: Path, tmp_path: Path) -> None:
    (a,) = small_copies(tmp_path / "in" / "a", n=1)
    b_dir = tmp_path / "in" / "b"
    b_dir.mkdir()
    shutil.copy(a, b_dir / a.name)
    out = tmp_path / "out"
    code = run_cli(
        [
            "matte",
            str(tmp_path / "in"),
            "--recursive",
            "-o",
            str(out),
            "--weights",
            str(weights),
            "--save",
            "alpha",
            "--quiet",
        ]
    )
    assert code == 0
    assert (out / "a" / f"{a.stem}_alpha.png").is_file() and (out / "b" / f"{a.stem}_alpha.png").is_file()


def test_verbs_are_wired_into_the_p3m_command(weights: Path, capsys) -> None:
    from p3m.cli import COMMANDS, main

    assert {"matte", "models", "export"} <= set(COMMANDS)
    assert main(["models"]) == 0
    assert "tiny16" in capsys.readouterr().out


def test_inputs_whose_outputs_clash_are_reported_not_overwritten(weights: Path, tmp_path: Path, capsys) -> None:
    # p.png and p.jpg in one folder both map to p_alpha.png / p_rgba.png: the first is matted, the second is
    # reported and skipped (exit 1), and nothing it would write replaces the first one's outputs
    (src,) = small_copies(tmp_path / "in", n=1)
    pixels = io.read_image(src)
    png = tmp_path / "in" / "p.png"
    io.write_image(png, pixels)
    src.rename(tmp_path / "in" / "p.jpg")
    other = small_copies(tmp_path / "more", n=1, scale=10)[0]
    shutil.move(str(other), tmp_path / "in" / "q.jpg")
    out = tmp_path / "out"
    code = run_cli(["matte", str(tmp_path / "in"), "-o", str(out), "--save", "alpha"])
    err = capsys.readouterr().err
    assert code == 1
    assert "p.png: skipped: it would write the same files as" in err and "p.jpg" in err and "p_alpha.png" in err
    assert "1 image(s) written" not in err and "2 image(s) written" in err and "1 failed" in err
    assert sorted(x.name for x in out.iterdir()) == ["p_alpha.png", "q_alpha.png"]


def test_a_failed_image_leaves_no_part_of_its_output_set(weights: Path, tmp_path: Path, capsys) -> None:
    inputs = small_copies(tmp_path / "in", n=2)
    out = tmp_path / "out"
    (out / f"{inputs[0].stem}_rgba.png").mkdir(parents=True)  # the rgba output cannot be written
    code = run_cli(["matte", str(tmp_path / "in"), "-o", str(out), "--overwrite", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and inputs[0].name in err and "Errno" not in err and "Traceback" not in err
    assert not (out / f"{inputs[0].stem}_alpha.png").exists()  # alpha computed but not written without its rgba
    assert (out / f"{inputs[1].stem}_alpha.png").is_file() and (out / f"{inputs[1].stem}_rgba.png").is_file()
    assert not [x.name for x in out.iterdir() if x.name.startswith(".")]  # no temporary files left


def test_output_folder_that_is_a_file_is_one_clear_line(weights: Path, tmp_path: Path, capsys) -> None:
    from p3m.cli import main

    (src,) = small_copies(tmp_path / "in", n=1)
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output folder should be")
    code = main(["matte", str(src), "-o", str(blocker / "sub"), "--quiet"])
    err = capsys.readouterr().err
    assert code in (1, 2) and "Errno" not in err and "Traceback" not in err
    assert "not a folder" in err or "already exists" in err
