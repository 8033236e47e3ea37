"""fastbp.dispatch: the compile modes, the background tier and its swap, failed builds, and what it reports."""

import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
import types

import numba
import numpy as np
import pytest

import fastbp
from fastbp import builder, dispatch, plan
from fastbp.kernels import codegen
from fastbp.kernels import compiled as compiled_kernels

from .conftest import make_data

# One small architecture of its own, so the compiled kernels these tests build are few and shared between them.
SIZES, HIDDEN, OUTPUT, LOSS = [3, 5, 4], "tanh", "softmax", "cross_entropy"


def _network(compiled, seed=0, sizes=SIZES):
    return fastbp.Network(sizes, hidden=HIDDEN, output=OUTPUT, loss=LOSS, optimizer=fastbp.Adam(lr=1e-2),
                          seed=seed, compiled=compiled)


def fix_plan(sig, family="compiled"):
    """Store a plan for ``sig`` in which ``family`` is the faster on every batch class, and the twins faster than
    their serial kernels: the background build keeps a stored plan, so the test knows what it chooses (in
    microseconds: too short for a network to observe, so the plan's choice stands)."""
    names = [plan.name(f, t) for f in plan.FAMILIES for t in (1, *plan.thread_counts())]
    times = {name: (1e-6 if plan.parse(name)[0] == family else 1e-5) / plan.parse(name)[1] for name in names}
    plan.store(sig, plan.Plan({rows: dict(times) for rows in plan.CLASSES}))


def _signature(sizes=SIZES, hidden=HIDDEN, output=OUTPUT, loss=LOSS):
    return codegen.signature(sizes, hidden, output, loss, np.float64)


def _train(net, steps=5):
    X, Y = make_data(SIZES, 12, OUTPUT, LOSS, np.float64, labels=True)
    return [net.train_step(X, Y) for _ in range(steps)]


def test_modes_from_arguments_and_environment(monkeypatch):
    monkeypatch.delenv(dispatch.ENVIRONMENT, raising=False)
    assert dispatch.mode(True, "background") == "eager" and dispatch.mode(np.bool_(False), "eager") == "off"
    assert dispatch.mode(None, "background") == "background" and dispatch.mode("off", "eager") == "off"
    monkeypatch.setenv(dispatch.ENVIRONMENT, "eager")
    assert dispatch.mode(None, "off") == "eager" and dispatch.mode(False, "off") == "off"
    monkeypatch.setenv(dispatch.ENVIRONMENT, "later")
    with pytest.raises(ValueError, match="FASTBP_COMPILE must be one of eager, background, off, got 'later'"):
        fastbp.Network([2, 1])
    with pytest.raises(ValueError, match="compiled must be True, False, None or one of"):
        fastbp.Network([2, 1], compiled="sometimes")
    with pytest.raises(TypeError, match="got 1.5"):
        fastbp.Network([2, 1], compiled=1.5)


def test_off_and_eager_never_swap():
    off, eager = _network(False), _network(True)
    _train(off), _train(eager)
    assert (off.dispatch.mode, off.dispatch.tier, off.dispatch.build) == ("off", "generic", "none")
    assert (eager.dispatch.mode, eager.dispatch.tier, eager.dispatch.build) == ("eager", "compiled", "none")
    wide = fastbp.Network([200, 100, 1], compiled=True)  # too wide for the fixed rule's compiled kernels: no build
    assert (wide.dispatch.tier, wide.dispatch.build, wide.plan) == ("generic", "none", None)
    wide.prepare()
    assert wide.dispatch.tier == "generic"
    assert off.plan is None and eager.plan is None  # the fixed modes plan nothing


@pytest.fixture
def fresh_cache(monkeypatch, tmp_path):
    """A cache directory of the test's own for the compiled kernels, so a background build really runs (the generic
    kernels, located when fastbp was imported, stay where they are), with a plan for the tests' architecture that
    chooses its compiled kernels."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    fix_plan(_signature())
    return tmp_path


def test_background_starts_generic_then_swaps_to_the_compiled_kernels(fresh_cache):
    """A background network trains on the generic kernels at once and ends on the compiled ones; from prepare() on
    it is bitwise the eager network, and before that it follows the generic one to rounding."""
    net, generic = _network("background"), _network(False)
    assert (net.dispatch.mode, net.dispatch.tier, net.dispatch.build) == ("background", "generic", "running")
    early = _train(net)
    np.testing.assert_allclose(early, _train(generic), rtol=1e-12)
    assert net.prepare() is net
    assert (net.dispatch.tier, net.dispatch.build) == ("compiled", "done")
    assert (net.dispatch.parallel_tier, net.dispatch.parallel_build) == ("compiled", "done")  # built by prepare()
    assert net.dispatch.serial_for(1) is net.dispatch.serial is net.dispatch.compiled_pair[0]
    eager = _network(True)
    eager.params[:] = net.params
    eager.flat[2:] = net.flat[2:]
    eager.hyper[:] = net.hyper
    assert _train(net) == _train(eager)
    np.testing.assert_array_equal(net.flat, eager.flat)
    # A second network of the signature finds the build done: compiled from its first call.
    again = _network("background", seed=1)
    assert (again.dispatch.tier, again.dispatch.build) == ("compiled", "done")


def test_a_large_batch_runs_the_compiled_serial_kernels_until_the_parallel_twins_are_built(fresh_cache):
    """The twins are built when a batch first needs them; meanwhile the serial compiled kernels run it, bitwise as
    the twins do. (An architecture of its own: twins built earlier in the process would swap in at once.)"""
    sizes = [3, 6, 4]
    fix_plan(_signature(sizes))
    net, eager = _network("background", sizes=sizes), _network(True, sizes=sizes)
    builder.BUILDER.wait((net._signature, "serial"))
    assert net.dispatch.tier == "compiled" and net.dispatch.parallel_build == "none"
    X, Y = make_data(sizes, 5000, OUTPUT, LOSS, np.float64, labels=True)
    assert eager.dispatch.use_parallel(len(X))
    assert net.dispatch.kernel("train_step", len(X)) == (net.dispatch.serial.train_step, None)
    assert net.dispatch.parallel_build in ("running", "done")
    losses = [net.train_step(X, Y)]
    other = _network("background", seed=1, sizes=sizes)
    net.prepare()
    assert net.dispatch.kernel("train_step", len(X)) == (net.dispatch.parallel.train_step, numba.get_num_threads())
    losses.append(net.train_step(X, Y))
    assert losses == [eager.train_step(X, Y) for _ in range(2)]
    np.testing.assert_array_equal(net.flat, eager.flat)
    # A network made before the twins were built takes them from its first large batch on.
    assert other.dispatch.parallel_build == "none"
    assert other.dispatch.kernel("train_step", len(X)) == (other.dispatch.parallel.train_step, numba.get_num_threads())


def test_a_network_asking_for_twins_another_already_built_takes_them_inside_its_call(fresh_cache):
    """The twins of a signature were built for one network; a second, made before, asks for them from inside a call
    (holding its lock): it takes them there, without waiting for its own lock (this deadlocked)."""
    first, second = _network("background"), _network("background", seed=1)
    first.prepare()
    builder.BUILDER.wait((second._signature, "serial"))
    X, Y = make_data(SIZES, 5000, OUTPUT, LOSS, np.float64, labels=True)
    assert second.dispatch.parallel_tier == "generic" and second.dispatch.tier == "compiled"
    call = threading.Thread(target=second.train_step, args=(X, Y), daemon=True)
    call.start()
    call.join(timeout=120)
    assert not call.is_alive()
    assert (second.dispatch.parallel_tier, second.dispatch.parallel_build) == ("compiled", "done")
    assert second.dispatch.kernel("train_step", len(X)) == (second.dispatch.parallel.train_step,
                                                             numba.get_num_threads())


def test_prepare_compiles_in_process_for_mode_off():
    net = _network(False)
    net.prepare()
    assert net.dispatch.tier == "compiled" and net.compiled is net.dispatch.serial


def test_a_pickled_network_keeps_its_mode_and_trains(fresh_cache):
    net = _network("background")
    copy = pickle.loads(pickle.dumps(net))
    assert copy.dispatch.mode == "background" and copy.dispatch is not net.dispatch
    np.testing.assert_allclose(_train(copy.prepare()), _train(net.prepare()), rtol=1e-12)


def test_a_failed_build_warns_once_and_leaves_the_generic_kernels(monkeypatch, tmp_path):
    """An unwritable cache directory (here a file where the directory should be): the child fails, the network
    warns and goes on with the generic kernels, unchanged in what it computes."""
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(blocked))
    sizes = [3, 6, 2]  # a signature no other test builds in the background
    with pytest.warns(RuntimeWarning, match="could not be built in the background") as record:
        net = fastbp.Network(sizes, compiled="background", seed=0)
        builder.BUILDER.wait((net._signature, "serial"))
    assert len(record) == 1
    assert (net.dispatch.tier, net.dispatch.build) == ("generic", "failed")
    twin = fastbp.Network(sizes, compiled=False, seed=0)
    X, Y = make_data(sizes, 8, "identity", "mse", np.float64)
    assert [net.train_step(X, Y) for _ in range(3)] == [twin.train_step(X, Y) for _ in range(3)]
    np.testing.assert_array_equal(net.flat, twin.flat)


def test_a_killed_build_warns_and_a_later_network_tries_again(monkeypatch, fresh_cache):
    """A build process that dies (here killed by a signal, as the kernel's OOM killer would) leaves the generic
    kernels and a warning naming the exit; the next network of the signature starts a new build."""
    monkeypatch.setattr(builder, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    sizes = [3, 6, 3]
    with pytest.warns(RuntimeWarning, match="exit status -9"):
        net = fastbp.Network(sizes, compiled="background", seed=0)
        builder.BUILDER.wait((net._signature, "serial"))
    assert (net.dispatch.tier, net.dispatch.build) == ("generic", "failed")
    X, Y = make_data(sizes, 8, "identity", "mse", np.float64)
    assert np.isfinite(net.train_step(X, Y))
    monkeypatch.undo()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(fresh_cache))
    fix_plan(_signature(sizes, "relu", "identity", "mse"))
    again = fastbp.Network(sizes, compiled="background", seed=0)
    assert again.dispatch.build in ("running", "done")
    builder.BUILDER.wait((again._signature, "serial"))
    assert (again.dispatch.tier, again.dispatch.build) == ("compiled", "done")


SCRIPT = textwrap.dedent("""
    import numpy as np, fastbp
    net = fastbp.Network([3, 7, 3], hidden="relu", output="softmax", loss="cross_entropy", seed=0,
                         compiled="background")
    X = np.linspace(-1, 1, 30).reshape(10, 3); y = np.arange(10) % 3
    tier = net.dispatch.tier
    net.prepare()
    print(tier, net.dispatch.tier, repr(net.train_step(X, y)))
""")


@pytest.mark.slow
def test_processes_meeting_a_new_architecture_at_once_all_finish(fresh_cache):
    """Two processes start the same background build together: one compiles (the other waits on its lock file),
    both end on the compiled kernels with the same numbers; a third, later, runs them from its first call."""
    def run(count):
        procs = [subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(count)]
        outs = [proc.communicate(timeout=600) for proc in procs]
        assert [proc.returncode for proc in procs] == [0] * count, outs
        return [out.split() for out, _ in outs]

    fix_plan(_signature([3, 7, 3], "relu", "softmax", "cross_entropy"))
    first, second = run(2)
    assert first[0:2] == second[0:2] == ["generic", "compiled"]
    later, = run(1)
    assert later[0:2] == ["compiled", "compiled"]
    assert first[2] == second[2] == later[2]  # the same numbers whichever process compiled
    markers = sorted(path.name.split(".", 1)[1] for path in (fresh_cache / "fastbp" / "generated").glob("*.built"))
    assert markers == ["parallel.built", "serial.built"]  # one signature: each phase built once


def test_warm_covers_every_generic_kernel_signature_a_network_calls(monkeypatch):
    """warm() compiles what a network's calls (float targets, labels, weights, serial and parallel, every method)
    would otherwise compile: the argument types of every generic kernel call are in its list, also for read-only and
    Fortran-ordered input (converted at the boundary). The kernels are stand-ins that record their argument types,
    so nothing compiles."""
    listed = {(kernel.__name__, tuple(argtypes)) for kernel, argtypes in dispatch.generic_signatures("float32")}
    called = set()

    def recorder(kernel):
        def record(*args):
            called.add((kernel.__name__, tuple(numba.typeof(a) for a in args)))
            return True if kernel.__name__.lstrip("_").startswith(("predict", "backward")) else 0.5
        return record

    for name in ("GENERIC", "GENERIC_PARALLEL"):
        stand_ins = {k: recorder(v) for k, v in vars(getattr(dispatch, name)).items()}
        monkeypatch.setattr(dispatch, name, types.SimpleNamespace(**stand_ins))
    net = fastbp.Network([2, 16, 3], output="softmax", loss="cross_entropy", dtype=np.float32, compiled=False)
    X, Y = make_data([2, 16, 3], 4000, "softmax", "cross_entropy", np.float32, labels=True)
    assert net.dispatch.use_parallel(4000) and not net.dispatch.use_parallel(4)
    for rows in (4, 4000):
        net.train_step(X[:rows], Y[:rows]), net.train_step(X[:rows], np.eye(3, dtype=np.float32)[Y[:rows]])
        for method in (net.train_step, net.evaluate, net.gradients):
            method(X[:rows], Y[:rows], sample_weight=np.ones(rows))
        net.forward(X[:rows]), net.evaluate(X[:rows], Y[:rows]), net.gradients(X[:rows], Y[:rows])
        net.backward(X[:rows], np.ones((rows, 3)))
    frozen = np.asfortranarray(X[:4])
    frozen.flags.writeable = False
    net.train_step(frozen, Y[:4]), net.forward(frozen), net.evaluate(frozen, np.eye(3, dtype=np.float32)[Y[:4]])
    assert len({name for name, _ in called}) == len(listed)  # every kernel, serial and parallel, weighted or not
    assert called <= listed


GRID_SCRIPT = textwrap.dedent("""
    import warnings, numpy as np
    from sklearn.model_selection import GridSearchCV
    from fastbp.kernels import compiled
    from fastbp.sklearn import MLPClassifier
    X = np.linspace(-1, 1, 270).reshape(90, 3); y = np.arange(90) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search = GridSearchCV(MLPClassifier(hidden_layer_sizes=(6,), max_iter=5, random_state=0),
                              {"alpha": [1e-4, 1e-2]}, cv=2, n_jobs=2).fit(X, y)
    net = search.best_estimator_.network_
    print(net.dispatch.mode, search.best_score_, compiled.key(net._signature))
""")


@pytest.mark.slow
def test_joblib_workers_meeting_a_new_architecture_all_finish():
    """GridSearchCV(n_jobs=2): two joblib worker processes meet one architecture whose kernels are not built, in the
    background mode (the default outside this suite); the search finishes, one build finishes (after the script
    may have ended: it completes in its own process) and leaves no temporary file. The workers share this suite's
    cache, so its generic kernels load."""
    signature = codegen.signature([3, 6, 3], "relu", "softmax", "cross_entropy", np.float64)
    generated = fastbp._jit.cache_dir() / "generated"
    for path in generated.glob(f"fastbp_net_{compiled_kernels.key(signature)}.*"):
        path.unlink()  # its markers, lock and module: the build starts afresh (Numba's own cache may still hold it)
    # More build slots than the rest of the suite takes (test_builder's sweep holds two for ~2 minutes under xdist):
    # a build still waiting for a slot when the script ends is dropped, by design, and none would be left to check.
    env = {**os.environ, dispatch.ENVIRONMENT: "background", "FASTBP_BUILDS": "4"}
    out = subprocess.run([sys.executable, "-c", GRID_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    mode, score, key = out.stdout.split()
    assert mode == "background" and 0 <= float(score) <= 1 and key == compiled_kernels.key(signature)
    deadline = time.monotonic() + 300  # the build started; it ends within a few builds' time on a loaded machine
    while not (generated / f"fastbp_net_{key}.serial.built").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(path.name.split(".", 1)[1] for path in generated.glob(f"fastbp_net_{key}.*")) == [
        "lock", "py", "serial.built"]


def test_more_threads_than_cores_stay_correct():
    """NUMBA_NUM_THREADS=8 on this 2-core machine: the plan's candidates run at 2, 4 and 8 threads, a network may take
    up to 8 (not 9), and every thread count gives the serial kernels' results bitwise (groups of rows, not threads,
    decide the sums), for the compiled and the generic twins and a population's blocks of members."""
    script = textwrap.dedent("""
        import numba, numpy as np, fastbp
        from fastbp import plan
        from fastbp.kernels import codegen
        from fastbp.kernels import compiled as compiled_kernels
        assert numba.config.NUMBA_NUM_THREADS == 8 and plan.thread_counts() == [2, 4, 8]
        sig = codegen.signature([3, 5, 4], "tanh", "softmax", "cross_entropy", np.float64)
        rows = 3 * codegen.tile_rows(np.float64) + 5
        found = plan.candidates(sig, rows, compiled_kernels.for_network(sig))
        assert {"compiled x2", "compiled x4", "compiled x8"} <= set(found), found
        rng = np.random.default_rng(0)
        X, Y = rng.normal(size=(rows, 3)), np.eye(4)[rng.integers(0, 4, rows)]
        results = {}
        for threads in (1, 2, 3, 8):
            for compiled in (True, False):
                net = fastbp.Network([3, 5, 4], hidden="tanh", output="softmax", loss="cross_entropy", seed=0,
                                     threads=threads, compiled=compiled)
                losses = [net.train_step(X, Y) for _ in range(3)]
                results.setdefault(compiled, []).append((losses, net.flat.tobytes()))
        for compiled, runs in results.items():
            assert all(run == runs[0] for run in runs), compiled
        try:
            fastbp.Network([3, 5, 4], threads=9)
        except ValueError as e:
            assert "[1, 8]" in str(e)
        else:
            raise AssertionError("threads=9 accepted")
        Xp, Yp = rng.normal(size=(2048 + 3, 1, 3)), rng.normal(size=(2048 + 3, 1, 4))
        pops = [fastbp.Population(2048 + 3, [3, 5, 4], hidden="tanh", seed=0, threads=t) for t in (1, 8)]
        for pop in pops:
            pop.train_step(Xp, Yp)
        assert pops[0].flats.tobytes() == pops[1].flats.tobytes()
        print("ok")
    """)
    env = dict(os.environ, NUMBA_NUM_THREADS="8")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert out.stdout.strip() == "ok", out.stderr
