"""Helpers shared by the benchmark scripts (run as `python benchmarks/bench_X.py`: this folder is on sys.path)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def testdata_dir(arg: str | None) -> Path | None:
    """The shared test data folder: `arg`, else $P3M_TESTDATA, else ../shared/testdata; None when absent."""
    for candidate in (arg, os.environ.get("P3M_TESTDATA"), REPO.parent / "shared" / "testdata"):
        if candidate and (Path(candidate) / "portraits" / "reference_alpha").is_dir():
            return Path(candidate)
    return None


def rss_peak_mb() -> float:
    """Peak resident memory of this process in MiB (Linux /proc; NaN elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def reset_rss_peak() -> bool:
    """Reset the peak counter (Linux: write 5 to /proc/self/clear_refs); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
