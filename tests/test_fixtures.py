"""The suite's own fixtures (conftest.py): every test gets its own P3M_HOME; synthetic sets are shared by config."""

from __future__ import annotations

import os
from pathlib import Path

from p3m.data.synth import META_FILE
from p3m.models import store as model_store


def test_every_test_has_its_own_empty_p3m_home(home: Path, tmp_path: Path) -> None:
    assert os.environ["P3M_HOME"] == str(home) == str(tmp_path / "home")
    assert model_store.model_home() == home / "models"
    assert not home.exists()  # nothing is created until a test writes a model


def test_synth_dataset_is_made_once_per_config(synth_dataset) -> None:
    small = {"n_train": 1, "n_test_p": 1, "n_test_np": 0, "size": (32, 32), "seed": 1}
    root = synth_dataset(**small)
    assert root.name == "P3M-10k" and {p.name for p in root.iterdir()} == {META_FILE, "train", "validation"}
    written = (root / META_FILE).stat().st_mtime_ns
    assert synth_dataset(**small) == root  # the same config: the same folder, not drawn again
    assert (root / META_FILE).stat().st_mtime_ns == written
    other = synth_dataset(**{**small, "seed": 2})
    assert other != root and other.parent != root.parent  # each set in a folder of its own


def test_mattes_alike_allows_rounding_and_one_snapped_pixel_only() -> None:
    import numpy as np

    from tests.alike import mattes_differ

    a = np.linspace(0, 1, 200 * 200).reshape(200, 200)
    assert not mattes_differ(a, a + 1e-5)
    snapped = a.copy()
    snapped[0, 0] += 0.05  # one pixel at the snap of `clean`: alike
    assert not mattes_differ(a, snapped)
    beyond = a.copy()
    beyond[0, 0] += 0.06  # one pixel beyond the snap
    assert "max difference" in mattes_differ(a, beyond)
    many = a.copy()
    many[:2, :] += 0.01  # 400 pixels of 40,000 beyond one 8-bit level
    assert "share" in mattes_differ(a, many)
