"""The real-photo path in any clone: the default model on the three real photos shipped in tests/data, matted and
scored against their reference mattes in one step (`p3m matte photos -o out && p3m evaluate --pred out --gt refs`)."""

from __future__ import annotations

import csv
import json

import pytest

from p3m import cli
from p3m.io import read_mask
from tests.paths import REFERENCE_ALPHA


@pytest.mark.slow
def test_matte_then_evaluate_the_shipped_real_photos(real_photos, tmp_path, capsys):
    out, report = tmp_path / "out", tmp_path / "report"
    assert cli.main(["matte", str(real_photos), "-o", str(out), "-q"]) == 0
    err = capsys.readouterr().err
    assert "portrait-cf" in err  # a quiet run still names the model it used
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{p.stem}_{kind}.png" for p in real_photos.iterdir() for kind in ("alpha", "rgba"))
    # p3m matte's folder is read as it is: the _alpha files are the predictions, the _rgba files are ignored
    assert cli.main(["evaluate", "--pred", str(out), "--gt", str(REFERENCE_ALPHA), "-o", str(report), "-q"]) == 0
    summary = json.loads((report / "summary.json").read_text())
    assert summary["images"] == 3
    # the default model finds each person and its outline: measured mean SAD 2.2 on these 360-640 px photos (an
    # empty matte scores 44-56 on them, the person's bounding box 27-50)
    rows = list(csv.DictReader((report / "per_image.csv").open()))
    assert summary["means"]["sad"] < 4.0, rows
    assert all(float(r["sad"]) < 6.0 for r in rows), rows
    for photo in real_photos.iterdir():
        alpha = read_mask(out / f"{photo.stem}_alpha.png")
        assert alpha.shape == read_mask(REFERENCE_ALPHA / f"{photo.stem}.png").shape
