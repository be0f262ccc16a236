"""The PPT benchmark: every method behind one interface, a resumable runner and a paper-style report.

>>> from p3m.bench import run_benchmark
>>> result = run_benchmark("ppt-demo", "runs/bench-demo")        # a built-in recipe, a YAML path or a mapping
>>> print(result.table_markdown); print(result.report_html)

Submodules: `config` (the typed `BenchmarkConfig`), `methods` (`predict(image[, trimap]) -> alpha` for networks
and pymatting solvers), `runner`
(stages with done markers), `report` (JSON, CSV, Markdown, self-contained HTML), `published` (the paper's
numbers on P3M-10k, reference section 11).
"""

from __future__ import annotations

from p3m.bench.config import BenchmarkConfig, load_benchmark_config
from p3m.bench.methods import ClassicalMethod, Method, NetworkMethod
from p3m.bench.runner import BenchmarkResult, run_benchmark
from p3m.errors import BenchmarkConfigError

__all__ = [
    "BenchmarkConfig",
    "BenchmarkConfigError",
    "BenchmarkResult",
    "ClassicalMethod",
    "Method",
    "NetworkMethod",
    "load_benchmark_config",
    "run_benchmark",
]
