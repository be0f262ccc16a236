"""Where the tests find their data: each path is written once, here.

``REAL_PHOTOS``: three real photographs shipped with the tests (P3M-10k demo photos, MIT; see tests/data/README.md)
and ``REFERENCE_ALPHA``, their reference mattes (same stems): the real-photo path runs in any clone.

``SHARED_TESTDATA``: the 12 real portraits with reference mattes (``portraits/image/*.jpg``,
``portraits/reference_alpha/*.png``) in a ``shared/testdata`` folder beside the checkout, or wherever
``$P3M_TESTDATA`` points. It is not part of the repository: tests that need it skip where it is absent
(the ``shared_portraits`` fixture of conftest.py, or a check of their own).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"  # small files shipped with the tests
REAL_PHOTOS = tuple(TEST_DATA / f"people_{name}.jpg" for name in ("cap", "profile", "walking"))
REFERENCE_ALPHA = TEST_DATA / "reference_alpha"  # <stem>.png for each of REAL_PHOTOS
SHARED_TESTDATA = Path(os.environ.get("P3M_TESTDATA") or REPO.parent / "shared" / "testdata")
PORTRAITS = SHARED_TESTDATA / "portraits"
ARTIFACTS = REPO / "test-artifacts"  # screenshots and other files kept for a person to look at
CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium, driven by Playwright in the browser tests
