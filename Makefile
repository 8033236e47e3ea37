# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test docs bench asv-quick asv-check mutation coverage clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.demo: $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e ".[demo]"
	touch $@

$(VENV)/.docs: $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e ".[docs]"
	touch $@

$(VENV)/.test: $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e ".[test,demo,bench,mpi,docs,onnx]"
	touch $@

demo: $(VENV)/.demo
	$(PY) -m fastbp demo

# One pytest worker per core, a test file per worker at a time (its compiled kernels stay in that process).
# OpenBLAS's threads sleep at once after a call: the tests' numpy references call BLAS between kernel calls, and
# spinning BLAS threads would make each parallel kernel after one wait ~30 ms for a core (docs/guide/performance.md).
test: $(VENV)/.test
	OPENBLAS_THREAD_TIMEOUT=4 $(PY) -m pytest -n auto --dist loadfile --hypothesis-show-statistics
	$(MAKE) asv-quick

# The documentation site, every gallery example run in full, warnings as errors (tests/test_docs.py builds it quick).
docs: $(VENV)/.docs
	$(VENV)/bin/sphinx-build -b html -W --keep-going docs docs/_build/html

bench: $(VENV)/.test
	$(PY) -m fastbp bench

# Mutation testing (not part of make test: days for every mutant): cosmic-ray per module with the tests covering it,
# resumed where the last run stopped (tests/mutation.py). MINUTES=60 stops after an hour; MODULES=fastbp/io.py narrows it.
mutation: $(VENV)/.test
	$(PY) -m pip install --quiet -e ".[mutation]"
	$(PY) -m tests.mutation $(if $(MINUTES),--minutes $(MINUTES)) $(MODULES)

# Line and branch coverage of the package, kernels included: coverage.py cannot see compiled code, so the tests run
# with NUMBA_DISABLE_JIT=1, every kernel as Python (tests/test_interpreted.py's COVERAGE_SLICE: which files, and why).
# Report in the terminal and in coverage_html/.
coverage: $(VENV)/.test
	$(PY) -m pip install --quiet -e ".[coverage]"
	rm -f .coverage
	NUMBA_DISABLE_JIT=1 HYPOTHESIS_PROFILE=quick $(PY) -m coverage run --branch --source=fastbp -m pytest -q -p no:cacheprovider $(addprefix tests/,$(shell $(PY) -c "from tests.test_interpreted import COVERAGE_SLICE; print(*COVERAGE_SLICE)"))
	$(PY) -m coverage report --show-missing
	$(PY) -m coverage html -d coverage_html

# A broken benchmark fails CI: check the suite, then run every benchmark once in this environment, on the first value
# of each parameter (FASTBP_ASV_SMOKE, benchmarks/benchmarks.py; `asv run` without it times the whole grid), on the
# generic kernels (FASTBP_COMPILE=off: no background build and plan to wait for in each benchmark's process).
asv-quick: $(VENV)/.test
	$(VENV)/bin/asv machine --yes > /dev/null
	$(VENV)/bin/asv check --python=same
	FASTBP_COMPILE=off FASTBP_ASV_SMOKE=1 $(VENV)/bin/asv run --python=same --quick --dry-run --show-stderr

# Whether `asv continuous` tells this machine's noise from a real change (benchmarks/check_noise.py: three pairs of
# commits that change no kernel, then a scratch commit ~15% slower on one case); 7-30 minutes, not in make test.
asv-check: $(VENV)/.test
	$(PY) benchmarks/check_noise.py

# The compiled kernels' cache (docs/guide/njit.md, "Compiled kernels") needs no clearing: it is keyed by every source file.
clean:
	rm -rf $(VENV) .asv .coverage coverage_html build *.egg-info docs/_build docs/generated docs/auto_examples docs/sg_execution_times.rst
