# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench asv-quick clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.demo: $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e ".[demo]"
	touch $@

$(VENV)/.test: $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e ".[test,demo,bench,mpi]"
	touch $@

demo: $(VENV)/.demo
	$(PY) -m fastbp demo

# One pytest worker per core, a test file per worker at a time (its compiled kernels stay in that process).
test: $(VENV)/.test
	$(PY) -m pytest -n auto --dist loadfile --hypothesis-show-statistics
	$(MAKE) asv-quick

bench: $(VENV)/.test
	$(PY) -m fastbp bench

# A broken benchmark fails CI: check the suite, then run every benchmark once in this environment.
asv-quick: $(VENV)/.test
	$(VENV)/bin/asv machine --yes > /dev/null
	$(VENV)/bin/asv check --python=same
	$(VENV)/bin/asv run --python=same --quick --dry-run --show-stderr

# The compiled kernels' cache (README, "Compiled kernels") needs no clearing: it is keyed by every source file.
clean:
	rm -rf $(VENV) .asv build *.egg-info
