# `make demo` and `make test` do all set-up on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export NUMBA_CACHE_DIR := $(CURDIR)/.cache/numba
export MPLBACKEND := Agg

.PHONY: setup demo test test-fast lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned to the local CPU wheel: pyproject's torch>=2.13 is then met and pip never pulls a
	# multi-GB CUDA build. Then p3m with every optional part (all), the face recogniser of `p3m audit` (audit),
	# the test tools and the linters.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all,audit,test,dev]'
	# the closed-form solver and the colour sampler of the built-in portrait-cf route are numba code: compiled once
	# here and cached beside their sources, so that a user's first `p3m matte` does not wait for them
	env -u NUMBA_CACHE_DIR $(BIN)/python -c "from p3m.infer import band_sampling, closed_form, multilevel; band_sampling.warm_up(); closed_form.warm_up(); multilevel.warm_up()"
	touch $(STAMP)

demo: setup
	$(BIN)/p3m demo

test: setup
	$(BIN)/python -m pytest -q

# the developer loop: every test but those marked slow, browser or subprocess (`make test` runs them all); on the
# 2-core dev machine: 57 s wall when quiet (2026-12-06), 69-84 s with other jobs on it
test-fast: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow and not browser and not subprocess"

# ruff (rules in pyproject.toml), ruff's formatter, mypy (settings in pyproject.toml), no import circles in src/p3m
# (each check runs and reports; the target fails if any of them failed)
lint: setup
	@failed=0; \
	$(BIN)/ruff check src tests benchmarks tools || failed=1; \
	$(BIN)/ruff format --check src tests benchmarks tools || failed=1; \
	$(BIN)/mypy || failed=1; \
	$(BIN)/python tools/check_imports.py || failed=1; \
	exit $$failed

bench: setup
	$(BIN)/python -m benchmarks.bench_metrics

clean:
	rm -rf $(VENV) .cache build *.egg-info src/*.egg-info
