"""The kernels compiled for each network: against the generic kernels and tests/reference.py, bad input, threads,
user @njit code, and the disk cache.

Every architecture here is a compilation of its own (~10-20 s), so the cases are a small covering set: every hidden
activation, every output/loss pairing (labels too), both dtypes, every optimizer.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import fastbp
from fastbp import _jit
from fastbp.kernels import codegen
from fastbp.kernels import compiled as compiled_kernels
from fastbp.optim import NO_GRAD

from .conftest import DTYPES, HIDDEN, PAIRINGS, TOL, make_data, needs_jit, ref_gradients
from .test_kernels import OPTIMIZERS
from .test_network import assert_bad_calls_change_nothing
from .test_properties import close

# (sizes, hidden, output, loss, dtype): each hidden activation and each output/loss pairing at least once; hidden
# activations one per layer too, those whose derivative reads z (kept beside a) beside those that read a.
CASES = [
    ([5, 66, 6, 4], ["softplus", "silu"], "identity", "mse", np.float32),  # 66 inputs: the register-blocked gradient
    ([5, 9, 3], "relu", "softmax", "cross_entropy", np.float64),
    ([3, 11, 2], "sigmoid", "sigmoid", "bce", np.float32),
    ([6, 10, 33, 3], ["gelu", "leaky_relu"], "tanh", "huber", np.float64),  # 33: the deltas and a tanh output, blocked
    ([4, 40, 5], "identity", "softmax", "mse", np.float64),  # 40: a softmax after register-blocked sums
    ([2, 9, 3], "gelu_tanh", "relu", "huber", np.float32),
    ([35, 17, 2], "tanh", "leaky_relu", "mse", np.float64),  # 35 inputs: the same, from the rows of X
    ([4, 6, 3], "elu", "sigmoid", "mse", np.float64),
]


def pair(sizes, hidden, output, loss, dtype, optimizer=None, seed=3):
    """The same network twice: on its compiled kernels and on the generic ones."""
    make = lambda compiled: fastbp.Network(sizes, hidden=hidden, output=output, loss=loss, dtype=dtype, seed=seed,  # noqa: E731
                                           optimizer=optimizer or fastbp.SGD(lr=0.1), compiled=compiled)
    net = make(True)
    assert net.dispatch.tier == "compiled"
    assert net.dispatch.serial_for(1) is net.dispatch.serial is not fastbp.dispatch.GENERIC
    return net, make(False)


@pytest.mark.slow
@pytest.mark.parametrize("sizes, hidden, output, loss, dtype", CASES, ids=[f"{c[1] if isinstance(c[1], str) else ','.join(c[1])}-{c[2]}-{c[3]}" for c in CASES])
def test_compiled_match_generic_and_reference(sizes, hidden, output, loss, dtype):
    net, generic = pair(sizes, hidden, output, loss, dtype)
    tile = codegen.tile_rows(dtype)
    # One row (the row-major path), one short tile, several groups of tiles (serial and the parallel twin).
    for n in (1, 5, 2 * tile + 7, 9 * tile + 3):
        for labels in ((False, True) if loss == "cross_entropy" else (False,)):
            X, Y = make_data(sizes, n, output, loss, dtype, seed=n, labels=labels)
            want_loss, dWs, dbs = ref_gradients(net, X, Y)
            loss_c, grads_c = net.gradients(X, Y)
            loss_g, grads_g = generic.gradients(X, Y)
            np.testing.assert_allclose(loss_c, want_loss, **TOL[dtype])
            np.testing.assert_allclose(loss_c, loss_g, **TOL[dtype])
            for l in range(len(dWs)):
                np.testing.assert_allclose(grads_c[f"{2 * l}.weight"], dWs[l], **TOL[dtype])
                np.testing.assert_allclose(grads_c[f"{2 * l}.bias"], dbs[l], **TOL[dtype])
                np.testing.assert_allclose(grads_c[f"{2 * l}.weight"], grads_g[f"{2 * l}.weight"], **TOL[dtype])
            np.testing.assert_allclose(net.evaluate(X, Y), loss_c, **TOL[dtype])
            np.testing.assert_allclose(net.forward(X), generic.forward(X), **TOL[dtype])
            # backward from any dL/dP (the tile and row paths' own output stage), and sample weights
            G = np.random.default_rng(n).normal(size=(n, sizes[-1])).astype(dtype)
            back_c, back_g = net.backward(X, G), generic.backward(X, G)
            w = np.random.default_rng(n).uniform(0, 2, n)
            weighted_c, weighted_g = net.gradients(X, Y, sample_weight=w), generic.gradients(X, Y, sample_weight=w)
            np.testing.assert_allclose(weighted_c[0], weighted_g[0], **TOL[dtype])
            for key in back_g:
                np.testing.assert_allclose(back_c[key], back_g[key], **TOL[dtype])
                np.testing.assert_allclose(weighted_c[1][key], weighted_g[1][key], **TOL[dtype])
            if sizes == CASES[0][0] or sizes == CASES[1][0]:  # the parallel twins agree to rounding (two cases:
                parallel = net.dispatch.compiled_pair[1]             # each twin is another compilation)
                work, Yk = net.workspace(n), (Y.reshape(-1, 1).astype(dtype) if labels else Y)  # as a network
                np.testing.assert_allclose(parallel.gradient(net.flat, net.spec, work, X, Yk), loss_c, **TOL[dtype])
                np.testing.assert_allclose(net.grad, np.concatenate([g.ravel() for g in grads_c.values()]),
                                           **TOL[dtype])
                assert parallel.backward(net.flat, net.spec, work, X, G)
                np.testing.assert_allclose(net.grad, np.concatenate([g.ravel() for g in back_g.values()]),
                                           **TOL[dtype])
                out = np.empty((n, sizes[-1]), dtype)
                assert parallel.predict(net.flat, net.spec, work, X, out)
                np.testing.assert_allclose(out, generic.forward(X), **TOL[dtype])
    # A few full train steps stay with the generic network: of one row (plain SGD, applied in the backward pass:
    # _row's fused step), class labels too, and of several tiles.
    for n, labels in ((1, False), (1, loss == "cross_entropy"), (3 * tile, False)):
        X, Y = make_data(sizes, n, output, loss, dtype, seed=n, labels=labels)
        for _ in range(3):
            np.testing.assert_allclose(net.train_step(X, Y), generic.train_step(X, Y), **TOL[dtype])
        np.testing.assert_allclose(net.params, generic.params, **TOL[dtype])


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt, ref_opt", OPTIMIZERS, ids=[repr(o) for o, _ in OPTIMIZERS])
def test_compiled_train_steps_match_generic(dtype, opt, ref_opt):
    net, generic = pair([5, 7, 6, 4], "tanh", "identity", "mse", dtype, optimizer=opt)
    for n in (1, 8):
        X, Y = make_data([5, 7, 6, 4], n, "identity", "mse", dtype, seed=n)
        for _ in range(4):
            np.testing.assert_allclose(net.train_step(X, Y), generic.train_step(X, Y), **TOL[dtype])
        np.testing.assert_allclose(net.flat, generic.flat, **TOL[dtype])
        assert net.hyper.tobytes() == generic.hyper.tobytes()


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_one_row_sgd_step_is_bounded(dtype):
    """The one-row step applies plain SGD (here with weight decay and a warm-up) in the backward pass, and only where
    a bound shows that no value the step computes can overflow; else the two-pass update takes over, with the
    generic kernels' numbers where the step is finite, and nothing changed where it is not."""
    sizes = [35, 17, 2]  # CASES' architecture: its kernels are compiled already
    module = None

    def check(opt, X, Y, bounded, refused=False):
        """``bounded``: whether _row's fused step applies (else it writes nothing); then one-row train steps
        against the generic network's, or (``refused``) a step refused with nothing changed."""
        nonlocal module
        net, generic = pair(sizes, "tanh", "leaky_relu", "mse", dtype, optimizer=opt)
        module = module or sys.modules[_jit.python_function(net.dispatch.compiled_pair[0].train_step).__module__]
        for n in (net, generic):
            n.flat[0, :sizes[1] * sizes[0]:sizes[0]] = 1 / X[0, 0]  # input 0's weights: z stays near 1
        before = net.flat.copy()
        lr, decay = dtype(opt.lr(0) if callable(opt.lr) else opt.lr), dtype(opt.weight_decay)  # the first step's
        taken = module._row(net.flat[0], net.flat[1], net.workspace(1), X, Y, False, module.ROW_SCALE, np.True_,
                            np.False_, np.True_, np.True_, lr, decay)  # fused, writing the gradient
        assert np.isfinite(taken) == bounded
        assert (net.flat.tobytes() == before.tobytes()) != bounded  # applied, or nothing written
        net.flat[:] = before
        if refused:
            with pytest.raises(FloatingPointError):
                net.train_step(X, Y)
            assert net.flat[0].tobytes() == before[0].tobytes()  # (the two-pass path leaves its gradient)
            return
        for _ in range(3):
            np.testing.assert_allclose(net.train_step(X, Y), generic.train_step(X, Y), **TOL[dtype])
        np.testing.assert_allclose(net.flat, generic.flat, **TOL[dtype])
        assert net.hyper.tobytes() == generic.hyper.tobytes()

    X, Y = make_data(sizes, 1, "leaky_relu", "mse", dtype)
    warm = fastbp.schedules.Constant(0.1, warmup=2)  # its first step's rate is 0
    check(fastbp.SGD(warm, weight_decay=0.01), X, Y, bounded=True)
    check(fastbp.SGD(0.1, clip_norm=0.01), X, Y, bounded=True)  # clipping: train_step takes the two-pass update
    huge = X.copy()
    huge[0, 0] = dtype(module.LIMIT) / 10  # its gradient d x is finite, its bound D A is above LIMIT
    check(fastbp.SGD(0.1), huge, Y, bounded=False)
    huge[0, 0] = np.finfo(dtype).max / 10  # d x overflows: the step is refused, at rate 0 too (p - 0 inf is NaN)
    check(fastbp.SGD(warm), huge, Y * 1e12, bounded=False, refused=True)
    # an output bias near the largest: the loss is not finite
    Z = Y.copy()
    Z[0, 0] = np.finfo(dtype).max / 2
    check(fastbp.SGD(0.1), X, Z, bounded=False, refused=True)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_one_row_sgd_step_without_keep_grad(dtype):
    """SGD(keep_grad=False): the fused one-row step leaves the gradient row as it was and changes nothing else
    (the same losses, parameters and step count, to rounding: LLVM may contract d x + decay p into one multiply-add
    where d x is not stored); a step it does not fuse, and gradients(), still write it."""
    sizes = [6, 10, 33, 3]  # CASES' architecture: passes of 4 units and single units (the output layer: singles)
    keep, _ = pair(sizes, ["gelu", "leaky_relu"], "tanh", "huber", dtype, optimizer=fastbp.SGD(0.1, weight_decay=0.01))
    skip, _ = pair(sizes, ["gelu", "leaky_relu"], "tanh", "huber", dtype,
                   optimizer=fastbp.SGD(0.1, weight_decay=0.01, keep_grad=False))
    skip.flat[1] = np.arange(skip.n_params)  # not a gradient
    stale = skip.flat[1].copy()
    X, Y = make_data(sizes, 1, "tanh", "huber", dtype)
    for _ in range(3):
        np.testing.assert_allclose(skip.train_step(X, Y), keep.train_step(X, Y), **TOL[dtype])
    np.testing.assert_allclose(skip.flat[0], keep.flat[0], **TOL[dtype])
    assert skip.hyper[:NO_GRAD].tobytes() == keep.hyper[:NO_GRAD].tobytes() and skip.hyper[fastbp.optim.STEP] == 3
    assert skip.flat[1].tobytes() == stale.tobytes()
    skip.gradients(X, Y), keep.gradients(X, Y)
    np.testing.assert_allclose(skip.flat, keep.flat, **TOL[dtype])
    X8, Y8 = make_data(sizes, 8, "tanh", "huber", dtype)
    skip.flat[1] = stale
    np.testing.assert_allclose(skip.train_step(X8, Y8), keep.train_step(X8, Y8), **TOL[dtype])
    np.testing.assert_allclose(skip.flat, keep.flat, **TOL[dtype])  # the two-pass step: its gradient in flat[1]
    skip.flat[1] = stale  # a hyper of the layout before keep_grad (15 entries, a user's saved array) writes it
    train_step = skip.dispatch.compiled_pair[0].train_step
    train_step(skip.flat, skip.spec, skip.hyper[:NO_GRAD].copy(), skip.workspace(1), X, Y)
    assert not np.array_equal(skip.flat[1], stale)


@pytest.mark.slow
def test_compiled_kernels_refuse_labels_out_of_range():
    """Called directly (a user's @njit loop), the compiled kernels check class labels themselves: one out of
    range, either side, makes train_step return NaN and gradient NaN, with nothing changed."""
    net, _ = pair([5, 9, 3], "relu", "softmax", "cross_entropy", np.float64)  # CASES': compiled already
    X, work, before = np.zeros((2, 5)), net.workspace(2), net.flat.copy()
    for n in (1, 2):
        for bad in (3, -1):
            Y = np.zeros((n, 1))
            Y[-1, 0] = bad
            assert np.isnan(net.compiled.train_step(net.flat, net.spec, net.hyper, work, X[:n], Y))
            assert np.isnan(net.compiled.gradient(net.flat, net.spec, work, X[:n], Y))
            assert net.flat.tobytes() == before.tobytes()
    Y = np.array([[2.0], [0.0]])  # in range: taken
    assert np.isfinite(net.compiled.train_step(net.flat, net.spec, net.hyper, work, X, Y))


@pytest.mark.slow
@settings(max_examples=3)  # each example is a new architecture: a compilation of its own (10-30 s)
@example(sizes=[27, 3], n=131, hidden="relu", pairing=("sigmoid", "bce"), dtype=np.float32)  # 4 passes, 2 tiles + 3
@given(sizes=st.lists(st.integers(1, 32), min_size=2, max_size=4), n=st.integers(1, 300),
       hidden=st.one_of(st.sampled_from(HIDDEN), st.lists(st.sampled_from(HIDDEN), min_size=2, max_size=2)),
       pairing=st.sampled_from(PAIRINGS), dtype=st.sampled_from(DTYPES))
def test_compiled_random_architectures(sizes, n, hidden, pairing, dtype):
    """Any widths (layers of up to four passes of the chunked sums), batches leaving a partial tile, every
    activation (one for all hidden layers, or one each), output/loss pairing and dtype: against the reference and
    the generic kernels, and a train step."""
    output, loss = pairing
    hidden = hidden if isinstance(hidden, str) else hidden[:len(sizes) - 2]
    assume(output != "softmax" or sizes[-1] >= 2)
    net, generic = pair(sizes, hidden, output, loss, dtype)
    X, Y = make_data(sizes, n, output, loss, dtype, seed=n)
    want_loss, dWs, dbs = ref_gradients(net, X, Y)
    got_loss, grads = net.gradients(X, Y)
    close(got_loss, want_loss, dtype)
    for l in range(len(dWs)):
        close(grads[f"{2 * l}.weight"], dWs[l], dtype)
        close(grads[f"{2 * l}.bias"], dbs[l], dtype)
    close(net.forward(X), generic.forward(X), dtype)
    close(net.train_step(X, Y), generic.train_step(X, Y), dtype)
    close(net.params, generic.params, dtype)


def test_large_layers_stay_generic():
    net = fastbp.Network([784, 256, 10], compiled=True)
    assert net.dispatch.tier == "generic" and net.dispatch.serial is fastbp.dispatch.GENERIC
    assert not compiled_kernels.eligible(net.sizes)
    assert compiled_kernels.eligible([8, 64, 64, 2])


@pytest.mark.slow
def test_compiled_bad_input_raises_and_changes_nothing(tmp_path):
    net, _ = pair([3, 4, 2], "tanh", "identity", "mse", np.float64, optimizer=fastbp.SGD(lr=0.1, momentum=0.9))
    assert_bad_calls_change_nothing(net, tmp_path)
    X, Y = make_data([3, 4, 2], 5, "identity", "mse", np.float64)
    # The hot path (a batch like the last one) with a NaN: the kernel refuses it, the error names it.
    bad = X.copy()
    bad[1, 1] = np.nan
    flat = net.flat.tobytes()
    with pytest.raises(ValueError, match="X contains NaN"):
        net.train_step(bad, Y)
    assert net.flat.tobytes() == flat
    # Arrays of the wrong shapes, or a work array too small, are refused by the kernel itself, not overrun.
    kern, work = net.compiled, net.workspace(5)
    assert np.isnan(kern.train_step(net.flat, net.spec, net.hyper, np.empty(3), X, Y))
    assert np.isnan(kern.train_step(net.flat, net.spec, net.hyper, work, np.ascontiguousarray(X[:, :2]), Y))
    assert np.isnan(kern.train_step(net.flat[:, :5].copy(), net.spec, net.hyper, work, X, Y))
    assert np.isnan(kern.gradient(net.flat, net.spec, work, X, Y[:4]))
    assert not kern.predict(net.flat, net.spec, work, X, np.empty((5, 3)))
    # A step that would overflow is not applied.
    net.optimizer = fastbp.SGD(lr=1e308, momentum=0.9)
    params, state, step = net.params.tobytes(), net.flat[2:].tobytes(), net.hyper[7]
    with pytest.raises(FloatingPointError):
        net.train_step(X, Y * 1e6)  # a finite loss, but lr * gradient overflows
    # Parameters, optimizer state and step count as they were (row 1 holds the refused step's gradient).
    assert net.params.tobytes() == params and net.flat[2:].tobytes() == state and net.hyper[7] == step


@pytest.mark.slow
def test_compiled_threads_agree_and_same_seed_same_run():
    tile = codegen.tile_rows(np.float32)
    X, Y = make_data([5, 7, 6, 4], 16 * tile, "identity", "mse", np.float32)
    runs = []
    for threads in (1, 2, 2):
        net = fastbp.Network([5, 7, 6, 4], hidden="tanh", dtype=np.float32, seed=1, threads=threads,
                             optimizer=fastbp.Adam(lr=1e-2), compiled=True)
        assert net.dispatch.use_parallel(X.shape[0])
        for _ in range(5):
            net.train_step(X, Y)
        runs.append(net.flat.copy())
    np.testing.assert_allclose(runs[0], runs[1], **TOL[np.float32])
    assert runs[1].tobytes() == runs[2].tobytes()
    # The groups do not depend on the thread count: bitwise the same even for 1 and 2 threads.
    assert runs[0].tobytes() == runs[1].tobytes()


USER_SCRIPT = textwrap.dedent("""
    import sys
    import numba, numpy as np, fastbp
    from numba.core.runtime import rtsys

    net = fastbp.Network([4, 16, 2], hidden="tanh", output="identity", loss="mse",
                         optimizer=fastbp.SGD(lr=0.05, momentum=0.5), seed=0)
    train_step, predict = net.compiled.train_step, net.compiled.predict
    backward, step = net.compiled.backward, net.compiled.step

    @numba.njit(cache=True)
    def loop(flat, spec, hyper, work, X, Y, out, steps):
        loss = 0.0
        for _ in range(steps):
            loss = train_step(flat, spec, hyper, work, X, Y)
            predict(flat, spec, work, X, out)
            backward(flat, spec, work, X, Y)  # Y as dL/dP: any objective
            step(flat, hyper)
        return loss

    @numba.njit(parallel=True)
    def many(flats, spec, hypers, works, X, Y, steps):
        for m in numba.prange(flats.shape[0]):
            for _ in range(steps):
                train_step(flats[m], spec, hypers[m], works[m], X, Y)

    def allocations(fn, steps):
        before = rtsys.get_allocation_stats()
        fn(steps)
        after = rtsys.get_allocation_stats()
        return after.alloc - before.alloc

    for n in (1, 40, 300):
        X = np.random.default_rng(n).normal(size=(n, 4)); Y = np.zeros((n, 2)); out = np.empty((n, 2))
        work = net.workspace(n)
        user = lambda steps: loop(net.flat, net.spec, net.hyper, work, X, Y, out, steps)
        user(2)
        print("alloc", n, allocations(user, 1), allocations(user, 1000))
    net.optimizer = fastbp.SGD(lr=0.05)  # plain SGD: one row's step applies it in the backward pass
    X = np.ones((1, 4)); Y = np.zeros((1, 2)); out = np.empty((1, 2)); work = net.workspace(1)
    user = lambda steps: loop(net.flat, net.spec, net.hyper, work, X, Y, out, steps)
    user(2)
    print("alloc", "1-plain", allocations(user, 1), allocations(user, 1000))
    X = np.random.default_rng(0).normal(size=(6, 4)); Y = np.zeros((6, 2))
    flats = np.stack([net.flat.copy() for _ in range(4)]); hypers = np.stack([net.hyper.copy() for _ in range(4)])
    works = np.stack([net.workspace(6).copy() for _ in range(4)])
    many(flats, net.spec, hypers, works, X, Y, 10)
    for _ in range(10):
        train_step(net.flat, net.spec, net.hyper, net.workspace(6), X, Y)
    print("prange", all(np.allclose(flats[m], net.flat, rtol=1e-12) for m in range(4)))
""")


@needs_jit
@pytest.mark.slow
def test_user_njit_loops_allocate_nothing_and_cache(tmp_path):
    """From a user's @njit(cache=True) function (run twice: compiled, then loaded from both caches) and from
    inside a prange: as many Numba runtime allocations for 1000 steps as for 1."""
    script = tmp_path / "user.py"
    script.write_text(USER_SCRIPT)
    env = {**os.environ, "NUMBA_NRT_STATS": "1", "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    for _ in range(2):
        out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        lines = [line.split() for line in out.stdout.strip().splitlines()]
        allocs = [line for line in lines if line[0] == "alloc"]
        assert len(allocs) == 4 and all(one == thousand for _, _, one, thousand in allocs), out.stdout
        assert ["prange", "True"] in lines, out.stdout


# ---- the disk cache ---------------------------------------------------------------------------------------------

CACHE_SCRIPT = textwrap.dedent("""
    import numpy as np, fastbp
    net = fastbp.Network([3, 5, 2], hidden="sigmoid", output="identity", loss="mse", seed=0, compiled=True)
    X = np.linspace(-1, 1, 12).reshape(4, 3); Y = np.ones((4, 2))
    print(repr(net.train_step(X, Y)), net.compiled.source)
""")


def _run(script, cache, *args):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.mark.slow
def test_cache_two_processes_then_corrupt_files(tmp_path):
    cache = tmp_path / "cache"
    procs = [_run(CACHE_SCRIPT, cache) for _ in range(2)]  # one new architecture, compiled by two at once
    outs = [p.communicate(timeout=900) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    (loss1, source), (loss2, _) = (out.split() for out, _ in outs)
    assert loss1 == loss2
    files = sorted(p for p in cache.rglob("*") if p.is_file())
    assert not [p for p in files if ".tmp" in p.name], files  # no temporary file left behind
    assert source.startswith(str(cache / "fastbp" / "generated"))
    # Truncate the generated module and every Numba cache file: rewritten and recompiled, the same result.
    for p in files:
        if p.suffix in (".py", ".nbi", ".nbc"):
            p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    out, err = _run(CACHE_SCRIPT, cache).communicate(timeout=900)
    assert out.split()[0] == loss1, err


PARALLEL_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, fastbp
    net = fastbp.Network([3, 5, 2], hidden="tanh", output="identity", loss="mse", seed=0, compiled=True)
    X = np.linspace(-1, 1, 3 * 20000).reshape(-1, 3); Y = np.ones((20000, 2))
    assert net.dispatch.use_parallel(len(X))
    print(repr(getattr(net, sys.argv[1])(X, Y)))
""")


@pytest.mark.slow
def test_cache_parallel_kernels_across_processes(tmp_path):
    """Each process compiles what the cache lacks: the parallel train step, compiled against a parallel callee from
    the cache, is then loaded by a third process, which must start Numba's thread pool itself (numba#4807: the
    cached callee's initialiser is lost; this crashed with a jump to address 0)."""
    cache = tmp_path / "cache"
    losses = []
    for op in ("evaluate", "train_step", "train_step"):
        proc = _run(PARALLEL_SCRIPT, cache, op)
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, (op, proc.returncode, err)
        losses.append(out)
    assert losses[1] == losses[2]


@needs_jit
def test_cache_key_follows_every_source(monkeypatch):
    sig = codegen.signature([3, 5, 2], "tanh", "identity", "mse", np.float64)
    key = compiled_kernels.key(sig)
    assert compiled_kernels.key(codegen.signature([3, 5, 3], "tanh", "identity", "mse", np.float64)) != key
    assert compiled_kernels.key(codegen.signature([3, 5, 2], "tanh", "identity", "mse", np.float32)) != key
    serial, parallel = compiled_kernels.for_network(sig)  # the twins run the generated _run and _run_parallel
    assert not serial.train_step.py_func.__globals__["_run"].targetoptions["parallel"]
    assert parallel.train_step.py_func.__globals__["_run_parallel"].targetoptions["parallel"]
    # An edit to any fastbp source file changes the hash the key and Numba's stamp are made from.
    monkeypatch.setattr(_jit, "source_hash", lambda: "an edited helper")
    monkeypatch.setattr(compiled_kernels, "source_hash", lambda: "an edited helper")
    assert compiled_kernels.key(sig) != key
    locator = _jit._Locator(fastbp.kernels.generic._train_step, fastbp.kernels.generic.__file__)
    assert locator.get_source_stamp().startswith("an edited helper")


def test_the_cache_key_covers_the_files_kernels_compile_from(tmp_path):
    sources = {str(path) for path in _jit.compiled_sources()}
    assert {"_jit.py", "_math.py", "activations.py", "losses.py", "optim.py", "schedules.py", "config.py",
            "kernels/generic.py", "kernels/dense.py", "kernels/layout.py", "kernels/population.py",
            "kernels/estimator.py"} <= sources
    assert not {"network.py", "io.py", "sklearn.py", "training.py", "kernels/compiled.py"} & sources
    # A host module that starts using a decorator joins them, and so does a module a kernel file starts importing
    # from, relative (parenthesised, commented) or absolute.
    package = tmp_path / "fastbp"
    shutil.copytree(_jit.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "training.py").write_text("from fastbp._jit import helper\n" + (package / "training.py").read_text())
    with open(package / "kernels" / "layout.py", "a") as f:
        f.write("from ..io import (\n    save,  # a comment, sklearn\n)\n")
    sources = {str(path) for path in _jit.compiled_sources(package)}
    assert {"training.py", "io.py"} <= sources and "sklearn.py" not in sources


def test_cache_dir_follows_numba(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert _jit.cache_dir() == tmp_path / "fastbp"
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _jit.cache_dir() == tmp_path / "xdg" / "fastbp"


@pytest.fixture
def own_family(monkeypatch, tmp_path):
    """A family of generated modules of its own (no real module of the suite's), in an empty cache: the signature
    and the module name ``compiled.load(sig, "test")`` gives, removed from sys.modules afterwards."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    sig = codegen.signature([3, 7, 2], "tanh", "identity", "mse", np.float64)
    name = f"fastbp_test_{compiled_kernels.key(sig)}"
    yield sig, name
    sys.modules.pop(name, None)


def test_a_generated_module_that_fails_to_run_is_not_kept(monkeypatch, own_family):
    """A generated module whose text raises as it runs: the error reaches the caller and the module is not left
    half-made in sys.modules, so the next load runs the (mended) text afresh."""
    sig, name = own_family
    monkeypatch.setitem(compiled_kernels.GENERATORS, "test", lambda sig, name: "raise RuntimeError('generated')\n")
    with pytest.raises(RuntimeError, match="generated"):
        compiled_kernels.load(sig, "test")
    assert name not in sys.modules
    monkeypatch.setitem(compiled_kernels.GENERATORS, "test", lambda sig, name: "VALUE = 1\n")
    assert compiled_kernels.load(sig, "test").VALUE == 1


def test_a_generated_module_runs_when_its_folder_is_cleared_meanwhile(monkeypatch, own_family):
    """`fastbp cache --clear` removing the cache folder while a module is written: its text runs all the same."""
    sig, _ = own_family
    monkeypatch.setitem(compiled_kernels.GENERATORS, "test", lambda sig, name: "VALUE = 2\n")

    def cleared(path, write, prefix, suffix):
        raise FileNotFoundError(path)

    monkeypatch.setattr(compiled_kernels.io, "write_atomically", cleared)
    assert compiled_kernels.load(sig, "test").VALUE == 2


def test_work_size_is_the_generated_work_size():
    """codegen.work_size, by which a Network sizes ``work``, is the generated module's own work_size (which its
    kernels check ``work`` against) on one row, on a tile's rows and either side of it, and on many tiles."""
    for dtype in DTYPES:
        sig = codegen.signature([4, 32, 16, 4], "tanh", "identity", "mse", dtype)
        generated = {}
        exec(compile(codegen.source(sig, "fastbp_net_example"), "generated", "exec"), generated)
        tile = codegen.tile_rows(dtype)
        for n in (1, 2, tile - 1, tile, tile + 1, 5 * tile):
            assert codegen.work_size(sig, n) == _jit.python_function(generated["work_size"])(n), (dtype, n)


def test_an_identity_layer_copies_its_sums_unless_in_place():
    """The generated activation of an identity layer whose sums and activations are apart (the output's Z and A_L)
    copies one into the other, whichever block comes first; only in place does it emit nothing."""
    for z, a in (("t + 10", "t + 20"), ("t + 20", "t + 10")):
        assert codegen._Network.activate("identity", z, a, 4, "  ") == [
            "  for i in range(4):", f"      buf[U({a} + i)] = act.identity(buf[U({z} + i)])"]
    assert codegen._Network.activate("identity", "t + 10", "t + 10", 4, "  ") == []


def test_generated_source_is_plain_python():
    sig = codegen.signature([4, 32, 16, 4], "tanh", "identity", "mse", np.float32)
    text = codegen.source(sig, "fastbp_net_example")
    compile(text, "generated", "exec")  # valid Python
    assert "def train_step(flat, spec, hyper, work, X, Y):" in text and "numba" in text
    assert max(len(line) for line in text.splitlines()) < 400
    # Threads in the parallel twins' loops only (the entry points call them): a serial kernel must stay safe inside
    # a user's own prange loop. Read from the text, so the interpreted mutation sample checks it too.
    lines = text.splitlines()
    options = {line.split("(")[0][4:]: lines[i - 1] for i, line in enumerate(lines) if line.startswith("def ")
               and lines[i - 1].startswith("@kernel(parallel=")}
    assert options == {"_run": "@kernel(parallel=False)", "_run_parallel": "@kernel(parallel=True)",
                       "_predict": "@kernel(parallel=False)", "_predict_parallel": "@kernel(parallel=True)"}
    for name in options:  # and their loops over groups: prange in the parallel twin, range in the serial one
        body = text.split(f"def {name}(")[1].split("\n@")[0]
        assert ("prange(" in body) == name.endswith("_parallel"), name
