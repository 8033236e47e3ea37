"""fastbp.plan: the measured choice of kernels: batch classes, the candidates (each gives the reference's results),
the stored plan (never trusted when it does not fit), and the dispatch following it."""

import functools
import json
import pickle
import threading

import numba
import numpy as np
import pytest

import fastbp
from fastbp import dispatch, plan
from fastbp.kernels import build, codegen
from fastbp.kernels import compiled as compiled_kernels

from .conftest import TOL, make_data, ref_gradients

# Architectures tests/test_compiled.py compiles too (in one process, the kernels compile once).
SIGS = [codegen.signature([5, 9, 3], "relu", "softmax", "cross_entropy", np.float64),
        codegen.signature([5, 7, 6, 4], "tanh", "identity", "mse", np.float32)]


def test_batch_classes_and_candidate_names():
    assert [plan.batch_class(n) for n in (1, 2, 3, 5, 6, 64, 181, 182, 4096, 10 ** 6)] == [
        1, 2, 4, 4, 8, 64, 128, 256, 4096, 4096]
    for family in plan.FAMILIES:
        for threads in (1, 2, 16):
            assert plan.parse(plan.name(family, threads)) == (family, threads)
    for bad in ("blas", "generic x1", "compiled x", "generic x-2", "compiled 2"):
        with pytest.raises(ValueError, match="not a candidate"):
            plan.parse(bad)
    assert plan.thread_counts() == sorted(set(plan.thread_counts())) and all(
        2 <= t <= numba.config.NUMBA_NUM_THREADS for t in plan.thread_counts())


@pytest.mark.parametrize("sig", SIGS, ids=lambda sig: sig[4])
def test_every_candidate_gives_the_reference_step(sig):
    """Each kernel the plan may choose, on a batch of each class small enough (one row, a short tile, several tiles
    for the twins), makes the reference's SGD step: the choice changes rounding only."""
    sizes, hidden, output, loss, dtype = sig
    net = fastbp.Network(list(sizes), hidden=hidden, output=output, loss=loss, dtype=dtype, seed=2,
                         optimizer=fastbp.SGD(lr=0.1), compiled=False)
    start, tol = net.flat.copy(), TOL[np.dtype(dtype).type]
    pair = compiled_kernels.for_network(sig)
    tile = codegen.tile_rows(dtype)
    seen = set()
    for rows in (1, 8, 3 * tile + 5):
        X, Y = make_data(sizes, rows, output, loss, dtype, seed=rows)
        net.flat[:] = start
        want_loss, dWs, dbs = ref_gradients(net, X, Y)
        want = np.concatenate([np.concatenate([W.ravel(), b]) for W, b in zip(dWs, dbs)])
        for candidate, (kern, threads) in plan.candidates(sig, rows, pair).items():
            seen.add(candidate)
            net.flat[:] = start
            hyper = net.hyper.copy()
            loss_value = dispatch.run_with_threads(kern, (net.flat, net.spec, hyper, net.workspace(rows), X, Y),
                                                   threads)
            np.testing.assert_allclose(loss_value, want_loss, **tol, err_msg=candidate)
            np.testing.assert_allclose(net.flat[0], start[0] - 0.1 * want.astype(dtype), **tol,
                                       err_msg=candidate)
    assert seen == {plan.name(f, t) for f in plan.FAMILIES for t in (1, *plan.thread_counts())}


def test_measure_times_each_class_it_can_afford():
    sig = SIGS[0]
    measured = plan.measure(sig, compiled_kernels.for_network(sig), block_seconds=1e-4, rounds=2)
    assert sorted(measured.times) == list(plan.CLASSES)
    for rows, row in measured.times.items():
        assert set(row) == set(plan.candidates(sig, rows, compiled_kernels.for_network(sig)))
        assert all(0 < t < 1 for t in row.values())
    # A class whose step is above the budget is not timed: its batches follow the largest class timed.
    macs = 5 * 9 + 9 * 3
    small = plan.measure(sig, None, block_seconds=1e-4, rounds=1, max_work=64 * macs)
    assert sorted(small.times) == [1, 2, 4, 8, 16, 32, 64] and set(small.times[1]) == set(plan.candidates(sig, 1))
    assert small.timed_class(5000) == 64 and small.timed_class(3) == 4
    text = str(small)
    assert text.splitlines()[0].split()[-1] == "chosen" and len(text.splitlines()) == 8
    # The last column is the choice, which may be a twin of two words ("generic x2"), as noisy short blocks decide.
    assert all(line.endswith(f"us   {small.choice(int(line.split()[0]))}") for line in text.splitlines()[1:])


def test_measure_wakes_each_candidate_and_keeps_blas_apart(monkeypatch):
    """Each block starts with a call not timed; a candidate that calls BLAS runs last in its round, after a pause for
    the twins' threads, and the next round waits for BLAS's threads (which spin ~0.1 s and slowed twins 35x)."""
    sig = codegen.signature([8, 64, 4], "relu", "identity", "mse", np.float64)
    events = []

    def fake(name):
        return lambda *args: events.append(name)

    def found(sig, rows, pair=None):
        return {"generic": (fake("generic"), 1), "compiled": (fake("compiled"), 1)}

    monkeypatch.setattr(plan, "candidates", found)
    monkeypatch.setattr(plan.time, "sleep", lambda seconds: events.append(seconds))
    monkeypatch.setattr(plan.time, "perf_counter", iter(range(10 ** 6)).__next__)  # 1 s a call: blocks of one call
    measured = plan.measure(sig, block_seconds=0.5, rounds=3, max_work=512 * (8 * 64 + 64 * 4))
    assert list(measured.times) == list(plan.CLASSES[:10])
    blas_rows = [rows for rows in measured.times if plan.uses_blas(sig, rows)]
    assert blas_rows and not plan.uses_blas(sig, 1)
    for rows in measured.times:
        # per class: two calls each to learn the block (compile, then time), then per round each candidate's
        # untimed call and its block of one call
        timing, events = events[:4], events[4:]
        assert timing == ["generic", "generic", "compiled", "compiled"]
        for r in range(3):
            if rows in blas_rows:
                round_, events = events[:6], events[6:]
                assert round_ == ["compiled"] * 2 + [plan.PLAN_SETTLE_SECONDS] + ["generic"] * 2 + [
                    plan.PLAN_BLAS_SETTLE_SECONDS], rows
            else:
                round_, events = events[:4], events[4:]
                assert sorted(round_) == ["compiled"] * 2 + ["generic"] * 2 and round_[0] == round_[1]
    assert events == []


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    return tmp_path


def _fake(best, worse=3.0):
    """A plan in which ``best`` is the fastest candidate on every class, the others more than twice as slow: a
    network does not check it (the plan's choice stands)."""
    names = [plan.name(f, t) for f in plan.FAMILIES for t in (1, *plan.thread_counts())]
    return plan.Plan({rows: {name: 1e-6 if name == best else (worse + i) * 1e-6 for i, name in enumerate(names)}
                      for rows in plan.CLASSES})


def test_a_stored_plan_that_does_not_fit_is_measured_again(cache, monkeypatch):
    sig = SIGS[0]
    stored = _fake("generic")
    plan.store(sig, stored)
    assert plan.load(sig).times == stored.times
    path = plan.path(sig)
    text = path.read_text()
    data = json.loads(text)
    broken = {
        "truncated": text[:len(text) // 2],
        "not json": "plan",
        "no times": json.dumps({"key": data["key"]}),
        "unknown candidate": json.dumps({**data, "times": {"1": {"blas": 1.0}}}),
        "negative time": json.dumps({**data, "times": {"1": {"generic": -1.0}}}),
        "not a class": json.dumps({**data, "times": {"3": {"generic": 1.0}}}),
        "another version": json.dumps({**data, "key": {**data["key"], "fastbp": "0.0"}}),
    }
    for why, content in broken.items():
        path.write_text(content)
        assert plan.load(sig) is None, why
    path.write_text(text)
    monkeypatch.setattr(plan, "cpu_model", lambda: "another CPU")
    assert plan.load(sig) is None  # the same file, read on another machine: named and keyed apart
    monkeypatch.undo()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(cache))
    monkeypatch.setattr(plan, "measure", functools.partial(plan.measure, block_seconds=1e-4, rounds=1))  # quick
    path.write_text(broken["truncated"])
    build.ensure_plan(sig, "serial", compiled_kernels.for_network(sig)[0])  # what the build does after compiling
    measured = plan.load(sig)
    assert measured is not None and "compiled" in measured.times[1] and not measured.has_twins()
    build.ensure_plan(sig, "serial", compiled_kernels.for_network(sig)[0])  # a plan that fits: kept as it is
    assert plan.load(sig).times == measured.times
    build.ensure_plan(sig, "parallel", compiled_kernels.for_network(sig)[1])  # the twins built: timed too
    assert plan.load(sig).has_twins()


def _dispatch(sig, chosen):
    """An eager dispatch (both tiers loaded, nothing compiled until called) following the plan ``chosen``."""
    d = dispatch.Dispatch(sig, "eager", threading.Lock(), lambda serial: None)
    d.plan = _fake(chosen)
    return d


def test_the_dispatch_follows_the_plan_where_the_candidate_can_run():
    sig = SIGS[0]
    tile = codegen.tile_rows(sig[4])
    twins = plan.thread_counts()
    assert _dispatch(sig, "generic").choose(3) == (dispatch.GENERIC, None)
    d = _dispatch(sig, "compiled")
    assert d.choose(3) == (d.serial, None) and d.serial is compiled_kernels.for_network(sig)[0]
    if twins:
        d = _dispatch(sig, plan.name("compiled", twins[-1]))
        assert d.choose(4 * tile) == (d.parallel, twins[-1])
        # one tile is the serial kernel's work: the plan's next best there (the worse times rank by name order)
        assert d.choose(tile)[1] is None
        d.threads = 1  # the network's own thread count bounds the choice
        assert d.choose(4 * tile)[1] is None
        # the generic twins never take a batch on which a layer runs on BLAS (its own threads)
        wide = codegen.signature([8, 64, 4], "relu", "identity", "mse", np.float64)
        d = _dispatch(wide, plan.name("generic", twins[-1]))
        assert d.choose(1) == (dispatch.GENERIC_PARALLEL, twins[-1])
        assert fastbp.kernels.uses_blas(512, 8, 64) and d.choose(512)[0] is not dispatch.GENERIC_PARALLEL
    # no plan for weighted calls: the generic weighted kernels
    d = _dispatch(sig, "compiled")
    assert d.kernel("loss", 3, weighted=True) == (dispatch.GENERIC.weighted_loss, None)


def test_a_networks_hot_path_runs_the_planned_kernels():
    """A network whose plan prefers the generic kernels runs them from its hot path too (eager: its compiled kernels
    are loaded), bitwise as a network on the generic kernels."""
    sizes, hidden, output, loss, dtype = SIGS[0]
    make = lambda compiled: fastbp.Network(list(sizes), hidden=hidden, output=output, loss=loss, dtype=dtype,  # noqa: E731
                                           seed=4, compiled=compiled)
    net, generic = make(True), make(False)
    net.dispatch.plan = _fake("generic")
    X, Y = make_data(sizes, 6, output, loss, dtype)
    assert [net.train_step(X, Y) for _ in range(3)] == [generic.train_step(X, Y) for _ in range(3)]
    assert net._fast_step is dispatch.GENERIC.train_step and net.flat.tobytes() == generic.flat.tobytes()
    np.testing.assert_array_equal(net.forward(X), generic.forward(X))
    assert net._fast_forward_kernels is dispatch.GENERIC
    assert not hasattr(pickle.loads(pickle.dumps(net)), "_fast_step")  # remembered kernels are not state


def test_the_benchmark_report_names_the_choice():
    from fastbp.bench import runner

    net = fastbp.Network([5, 9, 3], compiled=False)
    assert runner._plan(net, 32) is None and "fixed mode" in runner._format_plan("mnist", None)
    net.dispatch.plan = _fake("compiled")
    chosen = runner._plan(net, 32)
    assert chosen["class"] == 32 and chosen["chosen"] == "compiled"
    line = runner._format_plan("policy-batch", chosen)
    assert line.startswith("plan policy-batch: compiled (class 32 rows, us per step: compiled 1.0, ")


def test_the_grid_sweeps_thread_counts():
    """``python -m fastbp.bench.grid --threads 1 2``: a row per point and count, the candidates forced within it."""
    from fastbp.bench import Case, grid

    sizes, hidden, output, loss, dtype = SIGS[1]
    case = Case("t", sizes, 3 * codegen.tile_rows(dtype), dtype, hidden, output, loss)
    rows = grid.run([case], peers=(), rounds=1, block_seconds=1e-4, settle=0, threads=(1, 2), log=lambda line: None)
    assert [r["threads"] for r in rows] == [1, 2]
    one, two = (set(r["seconds"]) - {"fastbp", "numpy"} for r in rows)
    assert one == {"generic", "compiled"} and two >= one | {"compiled x2"}
    assert all(r["chosen"] == "fixed" and r["best_candidate"] in r["seconds"] for r in rows)  # FASTBP_COMPILE=off

