"""Benchmarks of p3m (results in RESULTS.md). Run each from the repository root as a module:
``.venv/bin/python -m benchmarks.bench_metrics`` (``PYTHONPATH=src python -m ...`` where p3m is not installed)."""
