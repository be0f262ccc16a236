"""The default model: the built-in portrait-cf route unless the published P3M-Net is dropped in; naming the
weights actually used everywhere; the warning for weights trained on drawn portraits; the matte -> anonymize chain."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skimage_data

from p3m.cli import main as run_cli
from p3m.errors import CheckpointError
from p3m.infer import Matter
from p3m.infer.sessions import PortraitSession
from p3m.models import create, save_checkpoint
from p3m.models import store as model_store
from tests.paths import TEST_DATA


@pytest.fixture
def portrait(tmp_path: Path) -> Path:
    """A real portrait (256x256, tests/data) as a file."""
    path = tmp_path / "in" / "person.png"
    path.parent.mkdir()
    path.write_bytes((TEST_DATA / "selfie_general_input.png").read_bytes())
    return path


def _synthetic_checkpoint(folder: Path) -> Path:
    torch.manual_seed(0)
    path = save_checkpoint(
        create("p3m-r34", width=16), folder / "drawn", metadata={"recipe": "p3m-train", "dataset_synthetic": True}
    )
    return path


def test_empty_folder_defaults_to_the_builtin_route(home: Path) -> None:
    (entry,) = model_store.list_weights()
    assert entry.name == "portrait-cf" and entry.format == "builtin" and "Apache-2.0" in entry.licence
    assert entry.path.is_file()  # shipped with the package: nothing to download
    assert model_store.default_model() == entry
    assert model_store.resolve("portrait-cf") == (entry.path, "portrait-cf")


def test_trained_models_are_used_only_when_named_and_the_published_one_wins(home: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    ck = save_checkpoint(create("p3m-r34", width=16), tmp_path / "ck" / "mine")
    model_store.register(ck, "mine", arch="p3m-r34", origin="test")
    assert model_store.default_model().name == "portrait-cf"  # a registered model does not take over
    assert model_store.default_model("p3m-r34").name == "mine"  # ... unless its architecture is asked for
    torch.save({"resnet.conv1.weight": torch.zeros(64, 3, 7, 7)}, home / "models" / model_store.PUBLISHED_R34)
    published = model_store.default_model()
    assert published.path.name == model_store.PUBLISHED_R34 and published.licence.startswith("MIT")


def test_the_builtin_name_cannot_be_registered_over(home: Path, tmp_path: Path) -> None:
    ck = save_checkpoint(create("p3m-r34", width=16), tmp_path / "ck" / "x")
    with pytest.raises(CheckpointError, match="built-in"):
        model_store.register(ck, "portrait-cf", arch="p3m-r34", origin="test")


def test_matter_default_mattes_a_real_portrait_and_names_the_route(home: Path, portrait: Path) -> None:
    matter = Matter()
    assert matter.model_name == "portrait-cf" and not matter.model_warning
    assert isinstance(matter.session, PortraitSession)
    result = matter.matte(portrait, foreground=True)
    assert result.info["model"] == "portrait-cf" and result.info["strategy"] == "portrait-cf"
    assert result.alpha.shape == (256, 256) and result.cutout.shape == (256, 256, 4)
    ref = cv2.imread(str(TEST_DATA / "selfie_general_mediapipe.png"), cv2.IMREAD_UNCHANGED) / 65535.0
    # the matte agrees with the segmentation of the person (IoU of the >0.5 regions)
    a, b = result.alpha > 0.5, ref > 0.5
    assert (a & b).sum() / (a | b).sum() > 0.85
    with pytest.raises(CheckpointError, match="built-in"):
        Matter(arch="p3m-r34", weights="portrait-cf")


@pytest.mark.slow
def test_weights_trained_on_drawn_portraits_warn_once_everywhere(
    home: Path, tmp_path: Path, portrait: Path, capsys
) -> None:
    ck = _synthetic_checkpoint(tmp_path / "ck")
    model_store.register(ck, "drawn", arch="p3m-r34", origin="trained:demo")
    assert model_store.trained_on_synthetic(ck)
    with pytest.warns(UserWarning, match="synthetic"):
        matter = Matter(weights="drawn", precision="fp32", strategy="resize")
    assert matter.model_name == "drawn" and "synthetic" in matter.model_warning
    assert matter.matte(portrait).info["warning"] == matter.model_warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the CLI prints its own line, no Python warning on top
        assert (
            run_cli(
                [
                    "matte",
                    str(portrait),
                    "-o",
                    str(tmp_path / "out"),
                    "--weights",
                    "drawn",
                    "--strategy",
                    "resize",
                    "--precision",
                    "fp32",
                    "--save",
                    "alpha",
                ]
            )
            == 0
        )
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "synthetic" in err
    assert "[drawn (p3m-r34) on cpu" in err


def test_demo_registered_weights_count_as_synthetic(home: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    ck = save_checkpoint(create("p3m-r34", width=16), tmp_path / "ck" / "old")  # sidecar without the flag
    stored = model_store.register(ck, "demo-r34", arch="p3m-r34", origin=f"p3m demo ({tmp_path})")
    assert model_store.trained_on_synthetic(stored)
    other = model_store.register(ck, "other", arch="p3m-r34", origin="test")
    assert not model_store.trained_on_synthetic(other)


def test_matte_cli_default_names_the_builtin_and_models_marks_it(
    home: Path, tmp_path: Path, portrait: Path, capsys
) -> None:
    assert run_cli(["matte", str(portrait), "-o", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "[portrait-cf on cpu, segmentation prior + closed-form matting]" in err and "warning" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["person_alpha.png", "person_rgba.png"]
    assert run_cli(["models"]) == 0
    out = capsys.readouterr().out
    assert "* portrait-cf" in out and "Apache-2.0" in out
    assert run_cli(["models", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["default"] == "portrait-cf" and listing["models"][0]["licence"].startswith("Apache-2.0")
    assert run_cli(["export", "--weights", "portrait-cf", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "not a network ONNX can hold" in capsys.readouterr().err


def test_anonymize_accepts_matte_alpha_outputs(home: Path, tmp_path: Path, portrait: Path, capsys) -> None:
    mattes = tmp_path / "mattes"
    assert run_cli(["matte", str(portrait), "-o", str(mattes), "--save", "alpha"]) == 0
    assert (mattes / "person_alpha.png").is_file()
    out = tmp_path / "anon"
    code = run_cli(["anonymize", str(portrait), "-o", str(out), "--alpha", str(mattes)])
    err = capsys.readouterr().err
    assert "no alpha matte" not in err
    assert code in (0, 1) and (out / "person.png").is_file()  # exit 1 only if no face was found
    missing = tmp_path / "empty"
    missing.mkdir()
    assert run_cli(["anonymize", str(portrait), "-o", str(tmp_path / "anon2"), "--alpha", str(missing)]) == 1
    assert "person_alpha.*" in capsys.readouterr().err


def test_the_builtin_route_runs_offline(home: Path, portrait: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    for name in ("connect", "connect_ex", "sendto"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    result = Matter().matte(portrait, foreground=True)  # weights load, prior, closed-form, foreground
    assert result.info["model"] == "portrait-cf" and result.alpha.max() > 0.9


@pytest.mark.slow
def test_an_image_without_a_person_is_reported_not_silently_empty(
    home: Path, tmp_path: Path, portrait: Path, capsys
) -> None:
    blank = tmp_path / "in" / "wall.png"
    cv2.imwrite(str(blank), np.full((120, 160, 3), 200, np.uint8))
    result = Matter().matte(blank)
    assert not result.alpha.any() and result.info["warning"] == "no person found: the matte is empty"
    assert "warning" not in Matter().matte(portrait).info
    cup = tmp_path / "in" / "coffee.png"  # scikit-image's cup: the selfie network takes 45% of it for a person
    cv2.imwrite(str(cup), cv2.cvtColor(skimage_data.coffee(), cv2.COLOR_RGB2BGR))
    assert Matter().matte(cup).info["warning"].startswith("no person recognised")
    assert run_cli(["matte", str(blank), str(cup), str(portrait), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 2 and "wall.png: no person found" in err
    assert "coffee.png: no person recognised" in err
