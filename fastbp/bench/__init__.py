"""Benchmark cases and implementations, shared by ``python -m fastbp bench`` and the asv suite in ``benchmarks/``.

Every implementation trains the same network from the same weights on the same data: fastbp, the plain numpy
baseline (:mod:`fastbp.baseline`), and PyTorch and JAX when they are installed. ``run`` times them in one process,
alternating round by round, so drift of a shared machine hits all of them alike, and reports medians.

- :mod:`.cases`: the single-network cases and implementations;
- :mod:`.population`: the population case and implementations;
- :mod:`.runner`: the machine, the GEMM peak, the timed rounds and the report;
- :mod:`.estimators`: the ``sklearn`` case, whole fits of scikit-learn's MLPClassifier and fastbp.sklearn's;
- :mod:`.cold_start`: the ``cold-start`` case, fresh processes' import and first calls.
"""

from . import cold_start, estimators
from .cases import (CASES, IMPLS, LR, OPS, Case, FastbpImpl, FastbpNoGradImpl, JaxImpl, NjitLoopImpl, NumpyImpl,
                    TorchImpl, njit_train_loop, wait_for_builds)
from .population import POPULATION, POPULATION_IMPLS, POPULATION_OPS, PopulationCase
from .runner import (first_step_seconds, floor_seconds, gemm_peak, machine, measure, measure_rounds, memory_bandwidth,
                     plot, run, save_json)

__all__ = ["CASES", "IMPLS", "LR", "OPS", "POPULATION", "POPULATION_IMPLS", "POPULATION_OPS", "Case", "FastbpImpl",
           "FastbpNoGradImpl", "JaxImpl", "NjitLoopImpl", "NumpyImpl", "PopulationCase", "TorchImpl", "cold_start",
           "estimators", "first_step_seconds", "floor_seconds", "gemm_peak", "machine", "measure", "measure_rounds",
           "memory_bandwidth", "njit_train_loop", "plot", "run", "save_json", "wait_for_builds"]
