"""The population kernels compiled for one architecture (pop.compiled) against the generic population kernels."""

import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastbp
from fastbp import kernels
from fastbp.config import GROUPS
from fastbp.kernels import codegen_population

from .conftest import TOL, needs_jit
from .test_population import ARCHITECTURES, OPTIMIZERS, arch_id, targets


def twins(n, sizes, hidden="tanh", output="identity", loss="mse", optimizer=None, dtype=np.float64, seed=5):
    """(generic, compiled) populations with the same members."""
    return [fastbp.Population(n, sizes, hidden=hidden, output=output, loss=loss, optimizer=optimizer, dtype=dtype,
                              seed=seed, compiled=compiled) for compiled in (False, True)]


def assert_same_state(generic, compiled, tol):
    np.testing.assert_allclose(compiled.flats, generic.flats, **tol)  # parameters, gradient and optimizer state
    np.testing.assert_array_equal(compiled.hypers, generic.hypers)


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=arch_id)
def test_compiled_population_equals_generic(arch):
    """Every activation and loss (labels too), every optimizer, several rows per member, a partial block."""
    sizes, hidden, output, loss, kind = arch
    n, rows = 7, 3
    rng = np.random.default_rng(1)
    for opt in OPTIMIZERS:
        generic, compiled = twins(n, sizes, hidden, output, loss, opt)
        assert compiled._kernels is compiled.compiled and generic._kernels is fastbp.population.GENERIC
        for _ in range(3):
            X, Y = rng.normal(size=(n, rows, sizes[0])), targets(kind, rng, (n, rows, sizes[-1]))
            np.testing.assert_allclose(compiled.train_step(X, Y), generic.train_step(X, Y), rtol=1e-12)
        assert_same_state(generic, compiled, dict(rtol=1e-12, atol=1e-15))
        np.testing.assert_allclose(compiled.forward(X), generic.forward(X), rtol=1e-12)


@pytest.mark.parametrize("opt", OPTIMIZERS, ids=["sgd", "nesterov", "adamw"])
def test_compiled_population_blocks_and_own_hyperparameters(opt):
    """float32: 300 members are two full blocks of 128 and a partial one; then members with their own learning
    rate and step count (each lane its own update coefficients)."""
    n, sizes = 300, [4, 16, 2]
    generic, compiled = twins(n, sizes, optimizer=opt, dtype=np.float32)
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(n, 2, 4)).astype(np.float32), rng.normal(size=(n, 2, 2)).astype(np.float32)
    for pop in (generic, compiled):
        pop.train_step(X, Y)
        pop.hypers[::7, 1] *= 3  # another learning rate
        pop.hypers[::5, 7] += 2  # another step count
    for _ in range(3):
        X, Y = rng.normal(size=(n, 2, 4)).astype(np.float32), rng.normal(size=(n, 2, 2)).astype(np.float32)
        np.testing.assert_allclose(compiled.train_step(X, Y), generic.train_step(X, Y), **TOL[np.float32])
    assert_same_state(generic, compiled, TOL[np.float32])
    np.testing.assert_allclose(compiled.forward(X), generic.forward(X), **TOL[np.float32])


def test_compiled_population_bad_input_and_failed_members():
    generic, compiled = twins(3, [2, 4, 2], optimizer=fastbp.SGD(lr=0.1, momentum=0.9))
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(3, 2, 2)), rng.normal(size=(3, 2, 2))
    generic.train_step(X, Y), compiled.train_step(X, Y)
    nan_X = X.copy()
    nan_X[2, 1, 0] = np.nan
    for args, exc, match in [((X[:2], Y), ValueError, "shape"), ((nan_X, Y), ValueError, "X contains NaN"),
                             ((X, Y * np.inf), ValueError, "Y contains")]:
        flats, hypers = compiled.flats.tobytes(), compiled.hypers.tobytes()
        with pytest.raises(exc, match=match):
            compiled.train_step(*args)
        assert compiled.flats.tobytes() == flats and compiled.hypers.tobytes() == hypers
    # The kernel itself refuses other shapes, a workspace too small and labels out of range, touching nothing.
    kern, works, out = compiled.compiled.train_step, compiled.workspace(2), np.empty(3)
    flats = compiled.flats.tobytes()
    assert not kern(compiled.flats, compiled.spec, compiled.hypers, works[:1], X, Y, out)
    assert not kern(compiled.flats, compiled.spec, compiled.hypers, works, X[:, :, :1].copy(), Y, out)
    adam = compiled.hypers.copy()
    adam[:, 0] = 1  # Adam's kind, but the state rows of SGD with momentum
    assert not kern(compiled.flats, compiled.spec, adam, works, X, Y, out)
    assert compiled.flats.tobytes() == flats
    # A member whose loss overflows keeps its parameters and state; the others step, as with the generic kernels.
    for pop in (generic, compiled):
        pop.params[1] = 1e200
        losses = pop.train_step(X, Y)
        assert np.isnan(losses[1]) and np.isfinite(losses[[0, 2]]).all() and pop.hypers[1, 7] == pop.hypers[0, 7] - 1
    kept = [0, *range(2, compiled.flats.shape[0])]
    np.testing.assert_array_equal(compiled.flats[kept][:, :, 1], generic.flats[kept][:, :, 1])


def test_compiled_population_labels_out_of_range():
    pop = fastbp.Population(2, [2, 3], output="softmax", loss="cross_entropy", seed=0, compiled=True)
    flats = pop.flats.tobytes()
    with pytest.raises(ValueError, match="labels must be in"):
        pop.train_step(np.zeros((2, 1, 2)), np.array([[0], [3]]))
    assert pop.flats.tobytes() == flats
    assert not pop.compiled.train_step(pop.flats, pop.spec, pop.hypers, pop.workspace(1), np.zeros((2, 1, 2)),
                                       np.array([[[0]], [[3]]]), np.empty(2))
    assert pop.flats.tobytes() == flats


def test_work_rows_is_the_generated_work_size():
    """The rows Population allocates (codegen_population.work_rows) are those the generated kernels ask for, for
    populations of under one block, whole blocks and more blocks than groups (runs as Python too)."""
    pop = fastbp.Population(2, [3, 6, 2], seed=0, compiled=True)
    lanes = codegen_population._Population(*pop._signature).lanes  # the generated kernels' block of members
    for N in (5, lanes - 1, lanes, lanes + 1, 2 * lanes, (GROUPS + 2) * lanes):
        assert pop.compiled.work_size(1, N) == codegen_population.work_rows(pop._signature, 1, N), N


@needs_jit
def test_compiled_population_work_size():
    pop = fastbp.Population(5, [3, 6, 2], seed=0, compiled=True)
    assert pop.compiled.work_size(4, 5) == codegen_population.work_rows(pop._signature, 4, 5)
    assert pop.workspace(4).shape[0] >= max(pop.compiled.work_size(4, 5), kernels.population_work_size(pop.spec, 4))
    assert "def train_step(flats, spec, hypers, works, X, Y, out):" in pathlib.Path(pop.compiled.source).read_text()
    serial, parallel = pop._compiled()  # the twin for large populations runs its member loop on threads
    for name in ("train_step", "predict"):
        assert not getattr(serial, name).targetoptions["parallel"] and getattr(parallel, name).targetoptions["parallel"]
    with pytest.raises(TypeError, match="compiled must be"):
        fastbp.Population(2, [2, 1], compiled="yes")


@pytest.mark.slow
def test_compiled_population_threads_agree():
    """The parallel twin deals blocks to fixed groups: 1 and 2 threads give bitwise the same run."""
    n, sizes = 4 * 1024, [4, 16, 2]
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(n, 1, 4)).astype(np.float32), rng.normal(size=(n, 1, 2)).astype(np.float32)
    runs = []
    for threads in (1, 2):
        pop = fastbp.Population(n, sizes, hidden="tanh", optimizer=fastbp.SGD(lr=0.05), dtype=np.float32, seed=0,
                                threads=threads, compiled=True)
        for _ in range(3):
            pop.train_step(X, Y)
        runs.append((pop.flats.copy(), pop.forward(X)))
    assert runs[0][0].tobytes() == runs[1][0].tobytes() and runs[0][1].tobytes() == runs[1][1].tobytes()


USER_SCRIPT = textwrap.dedent("""
    import numba, numpy as np, fastbp
    from numba.core.runtime import rtsys

    pop = fastbp.Population(300, [4, 16, 2], hidden="tanh", optimizer=fastbp.Adam(lr=1e-3), dtype=np.float32,
                            seed=0)
    train_step, predict = pop.compiled.train_step, pop.compiled.predict

    @numba.njit(cache=True)
    def loop(flats, spec, hypers, works, X, Y, losses, out, steps):
        for _ in range(steps):
            train_step(flats, spec, hypers, works, X, Y, losses)
            predict(flats, spec, works, X, out)

    X = np.random.default_rng(0).normal(size=(300, 2, 4)).astype(np.float32); Y = np.zeros((300, 2, 2), np.float32)
    losses, out, works = np.empty(300, np.float32), np.empty((300, 2, 2), np.float32), pop.workspace(2)
    run = lambda steps: loop(pop.flats, pop.spec, pop.hypers, works, X, Y, losses, out, steps)
    run(2)
    counts = []
    for steps in (1, 500):
        before = rtsys.get_allocation_stats().alloc
        run(steps)
        counts.append(rtsys.get_allocation_stats().alloc - before)
    print("alloc", *counts, pop.hypers[0, 7])
""")


@needs_jit
@pytest.mark.slow
def test_user_njit_population_loop_allocates_nothing(tmp_path):
    script = tmp_path / "user.py"
    script.write_text(USER_SCRIPT)
    env = {**os.environ, "NUMBA_NRT_STATS": "1", "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    _, one, many, steps = out.stdout.split()
    assert one == many and float(steps) == 503, out.stdout
