"""Fixtures shared by the whole suite.

- ``home`` (autouse): every test gets its own empty ``$P3M_HOME`` (``tmp_path / "home"``), so no test reads
  or writes the developer's ``~/.p3m`` and no test sees another's models. A module whose server or model
  folder lives for the whole module overrides ``home`` with a module-scoped fixture of the same name.
- ``synth_dataset``: one factory per session for synthetic P3M-10k folders (``p3m.data.synth``), keyed by the
  ``SynthConfig`` fields, so modules asking for the same set share one copy. The folders are shared: read them,
  and copy one (``shutil.copytree``) before changing anything in it.
- ``real_photos``: a folder of this test's own with copies of the three real photos shipped in ``tests/data``
  (every clone has them); their reference mattes are ``tests.paths.REFERENCE_ALPHA``.
- ``shared_portraits``: the larger set of real portraits of the shared test data (``tests/paths.py``); skips where
  absent.

Markers (pyproject.toml): ``slow`` (a second or more on the shared 2-core dev machine), ``browser`` (drives chromium),
``subprocess`` (starts other programs). ``make test-fast`` leaves those three out; ``make test`` runs everything.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.paths import PORTRAITS, REAL_PHOTOS, REPO

# before any test module imports p3m: numba compiles into the checkout's cache (as the Makefile sets it), and
# matplotlib draws without a display
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".cache" / "numba"))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's ``$P3M_HOME`` (not created; the model folder is ``home / "models"``)."""
    path = tmp_path / "home"
    monkeypatch.setenv("P3M_HOME", str(path))
    return path


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``synth_dataset(**SynthConfig fields) -> root``: a synthetic P3M-10k folder, generated once per session for
    each distinct config; each root is ``<its own folder>/P3M-10k``, so writing beside it touches no other set."""
    from p3m.data.synth import SynthConfig, generate_dataset

    made: dict[str, Path] = {}

    def make(**fields) -> Path:
        config = SynthConfig(**fields)
        key = repr(config)  # every field, defaults included: equal configs draw byte-identical files
        if key not in made:
            made[key] = generate_dataset(tmp_path_factory.mktemp("synth") / "P3M-10k", config)
        return made[key]

    return make


@pytest.fixture
def real_photos(tmp_path: Path) -> Path:
    """``tmp_path / "photos"`` holding copies of the three shipped real photos (``people_*.jpg``)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in REAL_PHOTOS:
        shutil.copyfile(path, folder / path.name)
    return folder


@pytest.fixture(scope="session")
def shared_portraits() -> Path:
    """The shared real portraits folder (``image/``, ``reference_alpha/``); the test is skipped without it."""
    if not (PORTRAITS / "image").is_dir():
        pytest.skip(f"shared test data not found at {PORTRAITS}")
    return PORTRAITS
