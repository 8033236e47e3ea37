"""asv suites: one class per operation, over case x implementation.

The cases and the implementations (fastbp, the plain numpy baseline, PyTorch, JAX, ONNX Runtime) live in ``fastbp.bench`` and are
shared with ``python -m fastbp bench``. A peer that is not installed raises NotImplementedError in setup, which asv
reports as skipped. ``setup`` builds and calls once per process (:func:`built`), so compilation (or the cache load)
is outside the timing and every sample times a warm step; the
learning rate is small enough that repeats of the same step never drift the weights to inf.

What fastbp runs here is what a user's steady state runs: the default mode, the network prepared (its background
build finished and its plan measured) and no build of any process left running (``fastbp.bench.wait_for_builds``);
``PopulationTrainStep``'s ``fastbp-compiled`` is the fixed compiled mode (``Population(compiled=True)``).
The regression check reads ``TrainStep.time_train_step`` and ``PopulationTrainStep.time_train_step``, fastbp's rows
but the two BLAS cases and the compiled population (not the default mode), compared statistically (:class:`_Timed`;
``make asv-check``, docs/guide/performance.md).
"""

import os
import subprocess
import sys
import time

import numpy as np

from fastbp import bench

# `make asv-quick` (CI's check that no benchmark is broken) sets FASTBP_ASV_SMOKE=1: each benchmark then runs on the
# first value of each parameter only (the xor case, one data set and dtype), in a fraction of the whole grid's time.
SMOKE = os.environ.get("FASTBP_ASV_SMOKE") == "1"


def grid(values):
    """A parameter's values: all of them, or the first alone in a smoke run."""
    return list(values)[:1] if SMOKE else list(values)


CASES = grid(bench.CASES)
IMPLS = ["fastbp", "numpy", "torch", "jax", "onnxruntime"]


_BUILT = {}


def built(impl, case, op=None):
    """``impl(case)`` in this process, made (and its ``op`` called once) the first time: asv re-runs a benchmark's
    ``setup`` before every timed call (asv_runner's isolation of set-up state, asv#966), so without this each sample
    would time the first step of a network made afresh (cold caches, new pages: the compiled population's step then
    took 85-180 us against 68-71 us in a loop, and mnist's 0.95-1.44 ms)."""
    key = (impl, case.name, op)
    if key not in _BUILT:
        made = impl(case)
        if op:
            getattr(made, op)()
        _BUILT[key] = made
    return _BUILT[key]


class _Timed:
    """asv's timing attributes for a shared, noisy machine: each parameter runs in ``rounds`` processes (alternating
    between the two commits under ``asv continuous --interleave-rounds``), each taking up to 25 samples after a
    warm-up, so a comparison weighs ~100 samples a side (asv's Mann-Whitney test, then ``--factor``) and one
    process's luck (its thread placement, a neighbour's burst) is a quarter of the figure, not all of it."""

    rounds = 4
    repeat = (10, 25, 10.0)  # at least 10 samples, at most 25, or 10 s
    timeout = 900  # a commit's first setup may compile its kernels (a background build: up to ~70 s per case)
    warmup_time = 0.3
    sample_time = 0.02


class _CaseByImpl(_Timed):
    params = (CASES, IMPLS)
    param_names = ["case", "impl"]
    op = None

    def setup(self, case, impl):
        if not hasattr(bench.IMPLS[impl], self.op):
            raise NotImplementedError(f"{impl} has no {self.op}")  # ONNX Runtime infers only
        self.impl = built(bench.IMPLS[impl], bench.CASES[case], self.op)


class TrainStep(_CaseByImpl):
    """Forward, backward and an SGD update of one batch."""

    op = "train_step"

    def time_train_step(self, case, impl):
        self.impl.train_step()


class Forward(_CaseByImpl):
    """Inference only."""

    op = "forward"

    def time_forward(self, case, impl):
        self.impl.forward()


class Gradients(_CaseByImpl):
    """Loss and gradients, no update."""

    op = "gradients"

    def time_gradients(self, case, impl):
        self.impl.gradients()


class BackwardStep(_CaseByImpl):
    """Any objective: backward from a given dL/dP (a vector-Jacobian product), then an SGD update."""

    op = "backward_step"

    def time_backward_step(self, case, impl):
        self.impl.backward_step()


class _Population(_Timed):
    """1024 networks of 4-16-2, one row each: fastbp.Population (generic and compiled kernels) against numpy batched
    matmuls, a loop of single-network calls, torch.baddbmm and jax.vmap."""

    params = ["fastbp", "fastbp-compiled", "numpy", "loop", "torch", "jax"]
    param_names = ["impl"]
    op = None

    def setup(self, impl):
        self.impl = built(bench.POPULATION_IMPLS[impl], bench.POPULATION, self.op)


class PopulationTrainStep(_Population):
    op = "train_step"

    def time_train_step(self, impl):
        self.impl.train_step()


class PopulationForward(_Population):
    op = "forward"

    def time_forward(self, impl):
        self.impl.forward()


class TrainStepNoGrad(_Timed):
    """fastbp's train step from Python with ``SGD(keep_grad=False)``, on the cases where that changes the kernel's
    work (one row: the compiled step then writes no gradient)."""

    params = grid(name for name, case in bench.CASES.items() if case.batch == 1)
    param_names = ["case"]

    def setup(self, case):
        self.impl = built(bench.FastbpNoGradImpl, bench.CASES[case], "train_step")

    def time_train_step(self, case):
        self.impl.train_step()


class TrainStepNjitLoop:
    """fastbp's train step from inside a user's @njit loop (no Python per step): time per 1000 steps."""

    params = ["xor", "policy-online"]
    param_names = ["case"]

    def setup(self, case):
        self.loop = built(bench.NjitLoopImpl, bench.CASES[case])  # its constructor runs the loop once

    def time_train_step_1000(self, case):
        self.loop.train_step()


class Throughput:
    """fastbp's train step in GFLOP/s (2 per multiply-add of the forward, gradient and delta products)."""

    params = CASES
    param_names = ["case"]
    unit = "GFLOP/s"

    def setup(self, case):
        self.case = bench.CASES[case]
        self.impl = bench.FastbpImpl(self.case)
        self.impl.train_step()

    def track_train_step_gflops(self, case):
        times = []
        for _ in range(5):
            start = time.perf_counter()
            self.impl.train_step()
            times.append(time.perf_counter() - start)
        return self.case.flops("train_step") / np.median(times) / 1e9

    track_train_step_gflops.unit = "GFLOP/s"


class Relative:
    """What survives a noisy machine: fastbp's train step timed against the numpy baseline's alternating inside one
    benchmark (as ``python -m fastbp bench`` times them), so drift between commits, or between two halves of a run,
    hits both alike. The ``time_`` suites' absolute times move with the machine (the numpy baseline's own by 1.2-2x
    between two runs here); these ratios are what to compare across sessions and machines.

    - ``track_relative_to_numpy``: fastbp's seconds per numpy's (lower is better; 0.25 is 4x numpy);
    - ``track_relative_to_floor``: fastbp's seconds over the least any step can take (:func:`fastbp.bench.
      floor_seconds`: its FLOPs at this machine's GEMM peak or its bytes at its memory bandwidth, measured once per
      process; lower is better, 1 is the floor).

    Each returns one ratio per alternating round, in the form asv's own ``time_`` benchmarks hand their samples over
    (``{"samples": [...], "number": 1}``): asv then keeps the samples, shows the median with its spread, and tests a
    change between commits as it tests times (Mann-Whitney, then ``--factor``) instead of comparing two bare
    numbers. All 7 come from one process per commit (asv runs a ``track_`` benchmark in one process: ``rounds`` is a
    ``time_`` attribute), so a process's luck moves them together: not judged by ``make asv-check``.
    """

    params = (CASES + [bench.POPULATION.name],)
    param_names = ["case"]
    timeout = 600

    def setup(self, case):
        if case == bench.POPULATION.name:
            self.case = bench.POPULATION
            self.impls = [built(bench.POPULATION_IMPLS[name], self.case) for name in ("fastbp-compiled", "numpy")]
        else:
            self.case = bench.CASES[case]
            self.impls = [built(bench.IMPLS[name], self.case) for name in ("fastbp", "numpy")]

    def _fastbp_and_numpy(self):
        """Seconds per step of fastbp and of numpy, one pair per round, each pair timed side by side."""
        rounds, block = (1, 0.005) if SMOKE else (7, 0.05)
        times = bench.measure_rounds(self.case, "train_step", self.impls, rounds, block, settle=0.05)
        return times[self.impls[0].name], times["numpy"]

    def track_relative_to_numpy(self, case):
        fastbp, numpy = self._fastbp_and_numpy()
        return {"samples": [f / n for f, n in zip(fastbp, numpy)], "number": 1}

    track_relative_to_numpy.unit = "x numpy's time"

    def track_relative_to_floor(self, case):
        peak = bench.gemm_peak(self.case.dtype, n=512 if SMOKE else 2048)
        floor = bench.floor_seconds(self.case, "train_step", peak, bench.memory_bandwidth(16 if SMOKE else 256))
        return {"samples": [f / floor for f in self._fastbp_and_numpy()[0]], "number": 1}

    track_relative_to_floor.unit = "x the floor"


class Memory:
    """Peak resident memory of 20 train steps after setup; peakmem_reference (empty) is the baseline to subtract."""

    params = (CASES, ["fastbp", "numpy"])
    param_names = ["case", "impl"]

    def setup(self, case, impl):
        self.impl = bench.IMPLS[impl](bench.CASES[case])

    def peakmem_reference(self, case, impl):
        pass

    def peakmem_train_20_steps(self, case, impl):
        for _ in range(20):
            self.impl.train_step()


_FIRST_STEP = """
import numpy as np
import fastbp
net = fastbp.Network([2, 2, 1], hidden="sigmoid", output="sigmoid", loss="bce", optimizer=fastbp.SGD(lr=0.5), seed=1)
net.train_step(np.zeros((4, 2)), np.zeros((4, 1)))
"""


class ImportAndFirstStep:
    """A fresh interpreter's ``import fastbp`` plus its first train step: with the Numba cache warm (loads) and
    cold (compiles)."""

    def setup(self):
        subprocess.run([sys.executable, "-c", _FIRST_STEP], check=True)  # fills the cache for the warm case

    def timeraw_import_first_step_warm_cache(self):
        return _FIRST_STEP

    def timeraw_import_first_step_cold_cache(self):
        return "import os, tempfile\nos.environ['NUMBA_CACHE_DIR'] = tempfile.mkdtemp()\n" + _FIRST_STEP

    timeraw_import_first_step_cold_cache.timeout = 300


_FIRST_FIT = """
import warnings
from sklearn.datasets import load_digits
from {module} import MLPClassifier
X, y = load_digits(return_X_y=True)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    MLPClassifier(hidden_layer_sizes=(70,), max_iter=60, random_state=0).fit(X[:1300] / 16, y[:1300]).score(
        X[1300:] / 16, y[1300:])
"""


class EstimatorFirstFit:
    """A fresh interpreter's imports, first fit and first score of an MLPClassifier on the digits, fastbp.sklearn's
    beside scikit-learn's (``python -m fastbp bench --cases cold-start`` splits the figure)."""

    params = ["fastbp", "sklearn"]
    param_names = ["impl"]
    timeout = 300

    def setup(self, impl):
        try:
            import sklearn  # noqa: F401
        except ImportError:
            raise NotImplementedError("scikit-learn is not installed (pip install 'fastbp[sklearn]')") from None
        self.code = _FIRST_FIT.format(module="fastbp.sklearn" if impl == "fastbp" else "sklearn.neural_network")
        subprocess.run([sys.executable, "-c", self.code], check=True)  # a machine where fastbp has run

    def timeraw_first_fit_and_score(self, impl):
        return self.code


class SklearnFit:
    """A whole fit of scikit-learn's MLPClassifier and fastbp.sklearn's with the same parameters
    (``fastbp.bench.estimators``), and its held-out accuracy."""

    params = (grid(bench.estimators.SETS), grid(["float32", "float64"]), list(bench.estimators.IMPLS))
    param_names = ["set", "dtype", "impl"]
    timeout = 300

    def setup(self, name, dtype, impl):
        try:
            self.data = bench.estimators.data(name, dtype)
        except ImportError:
            raise NotImplementedError("scikit-learn is not installed (pip install 'fastbp[sklearn]')") from None
        if impl == "fastbp":  # the kernels' compilation or cache load, outside the timing
            bench.estimators.fit(impl, name, self.data[0][:450], self.data[2][:450])

    def time_fit(self, name, dtype, impl):
        bench.estimators.fit(impl, name, self.data[0], self.data[2])

    def track_accuracy(self, name, dtype, impl):
        _, est = bench.estimators.fit(impl, name, self.data[0], self.data[2])
        return est.score(self.data[1], self.data[3])
