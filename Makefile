# `make demo` and `make test` do all set-up on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export NUMBA_CACHE_DIR := $(CURDIR)/.cache/numba
export MPLBACKEND := Agg

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned to the local CPU wheel: pyproject's torch>=2.13 is then met and pip never pulls a
	# multi-GB CUDA build. Then p3m with every optional part (all), the test tools and the linters.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all,test,dev]'
	# the closed-form solver of the built-in portrait-cf route is numba code: compiled once here and cached beside
	# its sources, so that a user's first `p3m matte` does not wait for it
	env -u NUMBA_CACHE_DIR $(BIN)/python -c "from p3m.infer.closed_form import warm_up; warm_up()"
	touch $(STAMP)

demo: setup
	$(BIN)/p3m demo

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/bench_metrics.py

clean:
	rm -rf $(VENV) .cache build *.egg-info src/*.egg-info
