"""fastbp under ``NUMBA_DISABLE_JIT=1``, Numba's debugging mode: every kernel runs as Python, for pdb and print.

Numba reads the variable once, at import, so each check runs in a fresh interpreter."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
# What the slice test runs as Python: the kernels against the reference and finite differences, the objectives and
# schedules, in float64 (about 30 s; float32 too, and more, in make coverage).
INTERPRETED_SLICE = ["test_kernels.py", "test_objectives.py", "test_schedules.py"]
SLICE_FILTER = "not float32"
# What make coverage runs so (about 9 minutes): the slice, populations, the property tests, PyTorch's stored numbers,
# the compiled kernels and populations (their generated modules run as Python too), the Network class, and of the
# estimators the step-for-step comparison with scikit-learn (its L2 term, SGD and Adam kernels: about a minute).
# Left out: the files that test the compiler's work (dispatch, plans, observers, caches, builds), the subprocess-heavy
# ones (examples, docs, MPI, the estimators' other checks) and the fuzzing (7 minutes as Python).
COVERAGE_SLICE = INTERPRETED_SLICE + ["test_population.py", "test_properties.py", "test_golden.py", "test_compiled.py",
                                      "test_population_compiled.py", "test_network.py",
                                      "test_sklearn.py::test_training_matches_sklearn_step_for_step"]

# Every public path a user's debugging session meets, the results printed as JSON: networks in each mode, a user's
# own loop over net.compiled's and fastbp.kernels' train steps, populations, the estimators, fit, distributed. The
# architectures are those tests/test_dispatch.py and test_population_compiled.py compile, whose kernels the compiled
# run may then find cached.
SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    import numba, numpy as np, fastbp
    from fastbp import kernels
    from fastbp.sklearn import MLPClassifier, MLPRegressor
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 4, 40)
    out = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for compiled in (None, True, False):
            net = fastbp.Network([3, 5, 4], hidden="tanh", output="softmax", loss="cross_entropy", seed=0,
                                 compiled=compiled, optimizer=fastbp.Adam(lr=1e-2))
            out[f"mode {compiled}"] = net.dispatch.mode
            out[f"train {compiled}"] = [float(net.train_step(X, y)) for _ in range(3)]
            out[f"forward {compiled}"] = net.forward(X).tolist()
    out["warnings"] = [str(w.message) for w in caught if "NUMBA_DISABLE_JIT" in str(w.message)]

    @numba.njit
    def loop(step, flat, spec, hyper, work, X, Y, losses):  # the user's own loop: plain Python under the variable
        for i in range(len(losses)):
            losses[i] = step(flat, spec, hyper, work, X, Y)
        return losses

    make = lambda: fastbp.Network([3, 5, 4], hidden="tanh", output="softmax", loss="cross_entropy", seed=1)
    Y = y.astype(np.float64).reshape(-1, 1)
    for name, step in (("net.compiled", lambda net: net.compiled.train_step), ("kernels", lambda net: kernels.train_step)):
        net = make()
        out[f"{name} loop"] = loop(step(net), net.flat, net.spec, net.hyper, net.workspace(40), X, Y,
                                   np.zeros(3)).tolist()
    Xp, Yp = rng.normal(size=(5, 8, 3)), rng.normal(size=(5, 8, 2))
    for compiled in (False, True):
        pop = fastbp.Population(5, [3, 6, 2], seed=0, compiled=compiled)
        out[f"population {compiled}"] = [float(v) for v in pop.train_step(Xp, Yp)]
    out["classifier"] = MLPClassifier(hidden_layer_sizes=(7,), max_iter=5, random_state=0).fit(X, y).predict_proba(
        X).tolist()
    out["regressor"] = MLPRegressor(hidden_layer_sizes=(7,), max_iter=5, random_state=0).fit(X, X[:, 0]).predict(
        X).tolist()
    out["fit"] = [float(v) for v in make().fit(X, y, epochs=2, batch_size=16, shuffle=False)["loss"]]
    try:  # one rank (MPI's singleton start), class labels
        from mpi4py import MPI
        import fastbp.distributed
    except ImportError:
        pass
    else:
        net = make()
        out["distributed"] = [float(fastbp.distributed.train_step(net, X, y, MPI.COMM_WORLD))] + \
            fastbp.distributed.fit(net, X, y, MPI.COMM_WORLD, epochs=2, batch_size=16, seed=0)["loss"]
    out["jobs"] = len(fastbp.builder.BUILDER._jobs)
    print(json.dumps(out))
""")


def _run(disable_jit):
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1" if disable_jit else "0"}
    if disable_jit:
        env.pop("FASTBP_COMPILE")  # the default mode, as a user has it (the compiled run keeps the suite's "off": a
                                   # background build would outlive the test)
    out = subprocess.run([sys.executable, "-W", "default", "-c", SCRIPT], env=env, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_every_public_path_runs_as_python_under_numba_disable_jit_with_the_compiled_results():
    """Under NUMBA_DISABLE_JIT=1 fastbp imports, every path runs and gives the compiled run's numbers to rounding;
    the default mode runs the generic kernels with no background build (in a process whose FASTBP_COMPILE is unset),
    and says so once."""
    interpreted, compiled = _run(True), _run(False)
    assert interpreted["mode None"] == "off"
    assert [interpreted[f"mode {c}"] for c in ("True", "False")] == ["eager", "off"]
    assert interpreted["jobs"] == 0
    assert len(interpreted["warnings"]) == 1 and not compiled["warnings"]
    for name, value in compiled.items():
        if name.startswith(("mode", "warnings", "jobs")):
            continue
        np.testing.assert_allclose(interpreted[name], value, rtol=1e-9, atol=1e-12, err_msg=name)


def test_a_slice_of_the_suite_passes_under_numba_disable_jit():
    """The kernels against the reference (every activation, loss and optimizer), the objectives and schedules, and
    the bad-input contract, run as Python (``make coverage`` runs more: COVERAGE_SLICE)."""
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "HYPOTHESIS_PROFILE": "quick"}
    tests = [os.path.join(HERE, name) for name in INTERPRETED_SLICE]
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-k", SLICE_FILTER,
                          *tests], env=env,
                         capture_output=True, text=True, timeout=1200, cwd=os.path.dirname(HERE))
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-2000:]
