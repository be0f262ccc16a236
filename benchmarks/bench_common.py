"""Helpers shared by the benchmarks (run from the repository root as `python -m benchmarks.bench_X`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.paths import SHARED_TESTDATA


def testdata_dir(arg: str | None) -> Path | None:
    """The shared test data folder: `arg`, else the tests' one (`tests.paths.SHARED_TESTDATA`: $P3M_TESTDATA); None when
    absent."""
    for candidate in (arg, SHARED_TESTDATA):
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


def print_report(report: dict[str, Any], json_path: str | None) -> int:
    """Print a benchmark's report as JSON, and write it to `json_path` when given; returns the exit code 0."""
    print(json.dumps(report, indent=2))
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n")
    return 0
