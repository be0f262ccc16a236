"""P3M-Net vs BASIC: which has the lower SAD, and whether the difference is larger than the noise of the run.

A benchmark's test sets are small (12 images per split in the demo), so a difference of means can be chance. Each
comparison pairs the two methods image by image (same test image, same ground truth) and gives the mean of the
per-image differences with a 95 % bootstrap confidence interval (`paired_difference`, scipy's bootstrap). A method
is said to have the lower SAD only when the whole interval lies on its side of zero, over at least `MIN_PAIRS`
images (a percentile bootstrap of fewer images gives intervals too narrow to trust); otherwise the statement says
"within noise". The interval covers the spread over test images of one trained model per method; the spread
between training runs (seeds) comes on top of it, so the statement says how many seeds the run trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from p3m.bench.report import column_label

if TYPE_CHECKING:
    from p3m.bench.config import BenchmarkConfig

__all__ = ["CONFIDENCE", "MIN_PAIRS", "PairedDifference", "compare_p3m_basic", "paired_difference"]

CONFIDENCE = 0.95
MIN_PAIRS = 8  # below this many paired images no winner is named
RESAMPLES = 9999
SEED = 0  # the resampling is seeded: the same numbers give the same interval in every report


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``b - a`` over paired observations with its bootstrap confidence interval ``[low, high]``.

    ``verdict``: "a lower" when ``low > 0``, "b lower" when ``high < 0``, else "within noise" (also with fewer
    than `MIN_PAIRS` pairs, too few for the interval to be trusted).
    """

    n: int
    mean: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        if self.n >= MIN_PAIRS and self.low > 0:
            return "a lower"
        if self.n >= MIN_PAIRS and self.high < 0:
            return "b lower"
        return "within noise"


def paired_difference(a: np.ndarray, b: np.ndarray, *, confidence: float = CONFIDENCE) -> PairedDifference:
    """Mean of the paired differences ``b - a`` and its percentile bootstrap confidence interval.

    Parameters
    ----------
    a, b : array_like, shape (n,)
        One value per test image for each of two methods (e.g. SAD), in the same image order.
    confidence : float
        Confidence level of the two-sided interval (default 0.95).

    Returns
    -------
    PairedDifference
        ``mean`` = mean(b - a); ``low``, ``high`` = the interval from 9999 resamples of the images (scipy.stats.
        bootstrap, percentile method, seeded). With one pair the interval is that single difference; with none,
        NaN.
    """
    from scipy.stats import bootstrap  # scipy.stats loads in about a second: only when a comparison is made

    diff = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    if diff.ndim != 1:
        raise ValueError(f"expected two 1-D arrays of paired values, got shape {diff.shape}")
    if diff.size == 0:
        return PairedDifference(0, float("nan"), float("nan"), float("nan"))
    mean = float(diff.mean())
    if diff.size == 1 or np.all(diff == diff[0]):  # no spread to resample
        return PairedDifference(int(diff.size), mean, mean, mean)
    result = bootstrap(
        (diff,),
        np.mean,
        confidence_level=confidence,
        n_resamples=RESAMPLES,
        method="percentile",
        random_state=np.random.default_rng(SEED),
    )
    interval = result.confidence_interval
    return PairedDifference(int(diff.size), mean, float(interval.low), float(interval.high))


def _pick(results: list[dict[str, Any]], kind: str, setting: str, split: str) -> dict[str, Any] | None:
    found = [
        r
        for r in results
        if r["type"] == kind and r["setting"] == setting and r["split"] == split and "sad" in r["metrics"]
    ]
    return found[0] if found else None


def _paired_sads(p3m: dict[str, Any], basic: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The two methods' per-image SADs on the test images both scored (rows without them: the means alone)."""
    a, b = p3m.get("sad_per_image") or {}, basic.get("sad_per_image") or {}
    stems = sorted(set(a) & set(b))
    if not stems:
        return np.array([p3m["metrics"]["sad"]]), np.array([basic["metrics"]["sad"]])
    return np.array([a[s] for s in stems]), np.array([b[s] for s in stems])


def compare_p3m_basic(results: list[dict[str, Any]], cfg: BenchmarkConfig) -> dict[str, Any]:
    """P3M-Net vs BASIC on whole-image SAD per training setting and test set, with a sentence stating the outcome.

    ``results``: the benchmark's result rows (``type``, ``method``, ``setting``, ``split``, ``metrics``, and
    ``sad_per_image``: {stem: SAD}, without which only the means are compared and the verdict is "within noise").
    Returns {"rows": [...], "all_better": True / False / None (no comparison), "statement": str}; ``all_better``
    is True only when P3M-Net's SAD is lower on every test set by more than the confidence interval.
    """
    rows = []
    for setting in cfg.settings:
        for split in cfg.test_splits:
            p3m, basic = (
                _pick(results, "p3m-r34", setting.name, split),
                _pick(results, "basic-r34", setting.name, split),
            )
            if p3m is None or basic is None:
                continue
            diff = paired_difference(*_paired_sads(p3m, basic))
            rows.append(
                {
                    "setting": setting.name,
                    "split": split,
                    "column": column_label(setting.label, split),
                    "p3m": p3m["method"],
                    "basic": basic["method"],
                    "p3m_sad": p3m["metrics"]["sad"],
                    "basic_sad": basic["metrics"]["sad"],
                    "pairs": diff.n,
                    "difference": diff.mean,
                    "ci_low": diff.low,
                    "ci_high": diff.high,
                    "verdict": {"a lower": "P3M-Net lower", "b lower": "BASIC lower"}.get(diff.verdict, diff.verdict),
                    "p3m_better": diff.verdict == "a lower",
                }
            )
    if not rows:
        return {
            "rows": [],
            "all_better": None,
            "statement": "No P3M-Net R34 vs BASIC comparison: the benchmark does not run both.",
        }
    parts = [
        f"{r['column']} ({r['split']}, {r['pairs']} images): P3M-Net {r['p3m_sad']:.3f} vs BASIC {r['basic_sad']:.3f}, "
        f"BASIC - P3M-Net {r['difference']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]: {r['verdict']}"
        for r in rows
    ]
    how = (
        f"Whole-image SAD (lower is better); in brackets the {CONFIDENCE:.0%} bootstrap interval of the mean per-image "
        f"difference; with fewer than {MIN_PAIRS} images no winner is named. It measures the spread over these test "
        "images for one trained model per method; training another seed moves each method's SAD as well, which "
        "this interval does not include."
    )
    all_better = all(r["p3m_better"] for r in rows)
    if all_better:
        head = "P3M-Net has a lower SAD than BASIC on every test set, by more than the interval: "
    elif any(r["verdict"] == "BASIC lower" for r in rows):
        head = "P3M-Net does NOT beat BASIC: BASIC's SAD is lower by more than the interval on " + ", ".join(
            r["column"] for r in rows if r["verdict"] == "BASIC lower"
        )
        head += ". "
    else:
        head = "No winner: the difference between P3M-Net and BASIC is within noise on " + ", ".join(
            r["column"] for r in rows if r["verdict"] == "within noise"
        )
        head += ". "
    statement = head + "; ".join(parts) + ". " + how
    if not all_better:
        statement += (
            " Likely reasons, not verified: the training budget is tiny compared with the published recipe "
            "(JizhiziLi/P3M scripts/train.sh: 150 epochs at batch 8 on 9,421 images, about 176.7 k steps), the "
            "models are narrow and the test sets are small. The numbers are reported as measured, with no tuning "
            "on the test sets."
        )
    return {"rows": rows, "all_better": all_better, "statement": statement}
