# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench asv-quick clean clear-cache

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

test: $(VENV)/.test
	$(PY) -m pytest --hypothesis-show-statistics
	$(MAKE) asv-quick

bench: $(VENV)/.test
	$(PY) -m fastbp bench

# A broken benchmark fails CI: check the suite, then run every benchmark once in this environment.
asv-quick: $(VENV)/.test
	$(VENV)/bin/asv machine --yes > /dev/null
	$(VENV)/bin/asv check --python=same
	$(VENV)/bin/asv run --python=same --quick --dry-run --show-stderr

clean: clear-cache
	rm -rf $(VENV) .asv build *.egg-info

# Numba's cache notices a change to a kernel's own file only: after editing activations.py, losses.py or _math.py,
# clear it so kernels.py's functions are compiled again.
clear-cache:
	rm -f fastbp/__pycache__/*.nbi fastbp/__pycache__/*.nbc
