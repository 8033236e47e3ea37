"""The kernels against tests/reference.py and finite differences, and with bounds checks (PyTorch's numbers:
tests/test_golden.py)."""

import os
import subprocess
import sys

import numba
import numpy as np
import pytest
import scipy.special

import fastbp
from fastbp import activations as act
from fastbp import kernels, optim

from . import reference as ref
from .conftest import (DTYPES, HIDDEN, PAIRINGS, TOL, finite_difference_error, make_data, needs_jit,
                       ref_gradients, ref_layers)

SIZES = [5, 7, 6, 4]


@needs_jit
def test_property_tests_with_bounds_checking(tmp_path):
    """The property tests again, in a process with NUMBA_BOUNDSCHECK=1 and a fresh cache (so every kernel is
    compiled with bounds checks): an out-of-bounds index would raise IndexError and fail them.

    The longest test of the suite, first in the file with the most tests, which ``pytest -n --dist loadfile``
    hands out first: it then runs beside the rest of the suite instead of after it."""
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path), "HYPOTHESIS_PROFILE": "quick"}
    tests = os.path.join(os.path.dirname(__file__), "test_properties.py")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", tests,
                             os.path.join(os.path.dirname(__file__), "test_population.py")],
                            env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(result.stdout.strip().splitlines()[-1])


def network(sizes, hidden, output, loss, dtype, optimizer=None, seed=3):
    return fastbp.Network(sizes, hidden=hidden, output=output, loss=loss, dtype=dtype, seed=seed,
                          optimizer=optimizer or fastbp.SGD(lr=0.1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("output, loss", PAIRINGS)
def test_forward_and_gradient_match_reference(dtype, hidden, output, loss):
    net = network(SIZES, hidden, output, loss, dtype)
    X, Y = make_data(SIZES, 9, output, loss, dtype)
    _, As = ref.forward(*ref_layers(net), hidden, output, X)
    np.testing.assert_allclose(net.forward(X), As[-1], **TOL[dtype])

    want_loss, dWs, dbs = ref_gradients(net, X, Y)
    got_loss, grads = net.gradients(X, Y)
    np.testing.assert_allclose(got_loss, want_loss, **TOL[dtype])
    for l in range(len(dWs)):
        np.testing.assert_allclose(grads[f"{2 * l}.weight"], dWs[l], **TOL[dtype])
        np.testing.assert_allclose(grads[f"{2 * l}.bias"], dbs[l], **TOL[dtype])
    assert grads["0.weight"].dtype == dtype and net.forward(X).dtype == dtype


SMOOTH = [name for name in HIDDEN if name != "identity"]


def whole_range(dtype):
    """0 and +-10**e for every e the dtype holds, and the range where exp's scaling 2**k leaves the exponent field
    (|z| of 44-90 in float32, 350-720 in float64)."""
    magnitudes = np.concatenate([10.0 ** np.arange(-30, np.finfo(dtype).maxexp * np.log10(2)),
                                 np.linspace(40, 100, 31), np.linspace(300, 800, 51)])
    return np.concatenate([[0.0], magnitudes, -magnitudes]).astype(dtype)


def activation_and_derivative(name, z):
    """(a, phi'(z)) as the kernels compute them, each element through the compiled function: the activation, then
    its derivative from a; or both at once from z, for those that keep their derivative."""
    if act.keeps_derivative(act.CODES[name]):
        both = [getattr(act, f"{name}_and_derivative")(value) for value in z]
        return np.array([a for a, _ in both], z.dtype), np.array([d for _, d in both], z.dtype)
    a = np.array([getattr(act, name)(value) for value in z], z.dtype)  # Numba returns Python floats
    return a, np.array([getattr(act, f"{name}_derivative")(value) for value in a], z.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", SMOOTH)
def test_each_activation_is_right_over_the_whole_range(dtype, name):
    """The compiled elementwise function over :func:`whole_range`: within 8 ulps of the float64 reference, or within
    twice the smallest normal number of it (exp's argument is clamped where exp underflows; silu and gelu multiply
    that tail by z, so there the bound is |z| times as large). gelu's reference, scipy's erfc, is itself 16 ulps off
    at z = -10 (libm's, which fastbp calls, is right there to the last bit, by mpmath): 32 ulps for it."""
    finfo = np.finfo(dtype)
    ulps = 32 if name == "gelu" else 8
    z = whole_range(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        want = ref.activation(name, z.astype(np.float64))
    got = activation_and_derivative(name, z)[0]
    wrong = ~(np.abs(got - want) <= ulps * finfo.eps * np.abs(want) + 2 * finfo.tiny * np.maximum(1, np.abs(z)))
    assert not wrong.any(), list(zip(z[wrong], got[wrong], want[wrong]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", SMOOTH)
def test_each_derivative_is_right_over_the_whole_range(dtype, name):
    """phi' as the kernels compute it (from a = phi(z), or with phi from z) over :func:`whole_range`,
    finite everywhere: within 8 ulps of the textbook's in float64, or 4 ulps of 1 (a derivative from a rounds
    through a: tanh's 1 - a**2 where a is 1 to the last bits)."""
    finfo = np.finfo(dtype)
    z = whole_range(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        want = ref.derivative(name, z.astype(np.float64))
    got = activation_and_derivative(name, z)[1]
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=8 * finfo.eps, atol=4 * finfo.eps)


@pytest.mark.parametrize("dtype, big", [(np.float32, 60.0), (np.float64, 500.0)])
def test_cross_entropy_on_logits_whose_softmax_underflows(dtype, big):
    """Rows whose largest logit sits at each position, with units whose probability underflows to 0 (labelled too):
    the loss is log-sum-exp minus the label's logit, finite, as scipy's logsumexp gives it in float64."""
    z = np.array([[2, -2, 0, 0.2], [-2, 2, 0.2, 0], [0, 0.2, -2, 2], [0.2, 0, 2, -2]]) * big
    labels = np.array([1, 1, 0, 3])  # a probability of 0, one near 1, 0 again, another near 0
    net = fastbp.Network([4, 4], output="softmax", loss="cross_entropy", dtype=dtype, seed=0)
    net.load_state_dict({"0.weight": np.eye(4), "0.bias": np.zeros(4)})  # logits = X
    want = np.mean(scipy.special.logsumexp(z, axis=1) - z[np.arange(4), labels])
    np.testing.assert_allclose(net.evaluate(z.astype(dtype), labels), want, rtol=1e-6 if dtype == np.float32 else 1e-12)


@numba.njit
def _backprop_row(code, buf, a0, d0, width, stride):
    act.backprop_row(code, buf, a0, d0, width, stride)


@pytest.mark.parametrize("name", ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax"])
def test_backprop_row_at_every_stride(name):
    """dL/dz from dL/da for one row of 4 units held 1 apart (a network's rows) or 3 apart (the compiled kernels'
    tiles, rows interleaved): the reference's, whatever the stride, and nothing else in the buffer touched."""
    rng = np.random.default_rng(0)
    z, g = rng.normal(size=(1, 4)), rng.normal(size=(1, 4))
    want = ref.activation_backward(name, z, g)[0]
    for stride in (1, 3):
        buf = rng.normal(size=40)
        a0, d0 = 2, 3 + 4 * stride
        buf[a0:a0 + 4 * stride:stride], buf[d0:d0 + 4 * stride:stride] = ref.activation(name, z)[0], g[0]
        before = buf.copy()
        _backprop_row(act.CODES[name], buf, a0, d0, 4, stride)
        np.testing.assert_allclose(buf[d0:d0 + 4 * stride:stride], want, rtol=1e-12)
        others = np.ones(40, bool)
        others[d0:d0 + 4 * stride:stride] = False
        assert buf[others].tobytes() == before[others].tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden, output", [(hidden, "identity") for hidden in HIDDEN] +
                         [("identity", output) for output in ("sigmoid", "tanh", "softmax")])
def test_activations_saturate_without_overflow(dtype, hidden, output):
    """Pre-activations of +-1e4 (exp overflows far below that) and a tiny one: finite, and the reference's values
    (+-1 or 0 and 1 where an activation saturates)."""
    net = network([2, 3, 3], hidden, output, "mse", dtype)
    X = np.array([[1e4, -1e4], [-1e4, 1e4], [1e-30, 0.0]], dtype)
    with np.errstate(over="ignore"):  # the reference's exp overflows to inf, harmlessly
        _, As = ref.forward(*ref_layers(net), hidden, output, X)
    out = net.forward(X)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, As[-1], **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes, n, path", [
    ([64, 256, 96, 10], 128, "blas"),  # every layer on BLAS, serial kernels
    ([3, 200, 3], 512, "parallel"),  # skinny layers stay in the hand loops; the batch takes the parallel twin
])
def test_blas_and_parallel_paths_match_reference(dtype, sizes, n, path):
    net = network(sizes, "tanh", "softmax", "cross_entropy", dtype)
    layers = list(zip(sizes[:-1], sizes[1:]))
    assert all(kernels.uses_blas(n, a, b) for a, b in layers) == (path == "blas")
    assert net.dispatch.use_parallel(n) == (path == "parallel")
    X, Y = make_data(sizes, n, "softmax", "cross_entropy", dtype)
    want_loss, dWs, dbs = ref_gradients(net, X, Y)
    loss, grads = net.gradients(X, Y)
    np.testing.assert_allclose(loss, want_loss, **TOL[dtype])
    for l in range(len(layers)):
        np.testing.assert_allclose(grads[f"{2 * l}.weight"], dWs[l], **TOL[dtype])
        np.testing.assert_allclose(grads[f"{2 * l}.bias"], dbs[l], **TOL[dtype])
    # The other compilation of the same source agrees to rounding (LLVM may fuse multiply-adds differently in each).
    other = kernels.PARALLEL[kernels.gradient] if path == "blas" else kernels.gradient
    np.testing.assert_allclose(other(net.flat, net.spec, net.workspace(n), X, Y), loss, **TOL[dtype])
    np.testing.assert_allclose(net.grad, np.concatenate([g.ravel() for g in grads.values()]), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_labels_equal_one_hot(dtype):
    net = network(SIZES, "relu", "softmax", "cross_entropy", dtype)
    X, labels = make_data(SIZES, 9, "softmax", "cross_entropy", dtype, labels=True)
    loss1, g1 = net.gradients(X, labels)
    loss2, g2 = net.gradients(X, np.eye(SIZES[-1], dtype=dtype)[labels])
    np.testing.assert_allclose(loss1, loss2, **TOL[dtype])
    for key in g1:
        np.testing.assert_allclose(g1[key], g2[key], **TOL[dtype])


# Each fastbp optimizer beside the arguments of its reference twin (a fresh, stateless one per test).
OPTIMIZERS = [
    (fastbp.SGD(lr=0.1), (ref.SGD, 0.1)),
    (fastbp.SGD(lr=0.05, momentum=0.9), (ref.SGD, 0.05, 0.9)),
    (fastbp.SGD(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01), (ref.SGD, 0.05, 0.8, True, 0.01)),
    (fastbp.Adam(lr=0.01), (ref.Adam, 0.01)),
    (fastbp.Adam(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1), (ref.Adam, 0.01, 0.8, 0.99, 1e-6, 0.1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt, ref_opt", OPTIMIZERS, ids=[repr(o) for o, _ in OPTIMIZERS])
def test_train_steps_match_reference(dtype, opt, ref_opt):
    net = network(SIZES, "tanh", "identity", "mse", dtype, optimizer=opt)
    X, Y = make_data(SIZES, 8, "identity", "mse", dtype)
    Ws, bs = ref_layers(net)
    ref_opt = ref_opt[0](*ref_opt[1:])
    for step in range(5):
        want_loss, dWs, dbs = ref.gradients(Ws, bs, "tanh", "identity", "mse", X, Y)
        ref_opt.step(Ws + bs, dWs + dbs)
        np.testing.assert_allclose(net.train_step(X, Y), want_loss, **TOL[dtype])
    # The parameters, and the state rows as documented (@njit users read them): SGD's velocity in flat[2] when it
    # has momentum, Adam's first and second moments in flat[2] and flat[3], nothing after them.
    state = ([ref_opt.v] if ref_opt.momentum else []) if isinstance(ref_opt, ref.SGD) else [ref_opt.m, ref_opt.v]
    assert net.flat.shape[0] == 2 + len(state) == 2 + opt.n_slots
    L = len(net.sizes) - 1
    for row, values in [(0, Ws + bs), *enumerate(state, start=2)]:
        for (W, b), W_ref, b_ref in zip(net.layers(row), values[:L], values[L:]):
            np.testing.assert_allclose(W, W_ref, **TOL[dtype])
            np.testing.assert_allclose(b, b_ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_clip_norm_above_the_gradient_norm_changes_nothing(dtype):
    """Clipping scales the gradient by exactly 1 when its norm is below clip_norm: bitwise the steps of no clipping
    (tests/test_golden.py checks the clipped steps against PyTorch)."""
    X, Y = make_data(SIZES, 8, "identity", "mse", dtype)
    plain, clipped = (network(SIZES, "tanh", "identity", "mse", dtype, optimizer=opt)
                      for opt in (fastbp.SGD(lr=0.1), fastbp.SGD(lr=0.1, clip_norm=1e6)))
    for _ in range(3):
        assert plain.train_step(X, Y) == clipped.train_step(X, Y)
    assert plain.flat[0].tobytes() == clipped.flat[0].tobytes()


def test_uses_blas_at_its_documented_bounds():
    """BLAS from BLAS_MIN_WORK multiply-adds, with 2 rows or more and both widths at least BLAS_MIN_WIDTH."""
    work, width = kernels.BLAS_MIN_WORK, kernels.BLAS_MIN_WIDTH
    assert kernels.uses_blas(2, width, work // (2 * width)) and not kernels.uses_blas(2, width, work // (2 * width) - 1)
    assert not kernels.uses_blas(1, work, work) and kernels.uses_blas(2, work, work)
    assert not kernels.uses_blas(work, width - 1, work) and not kernels.uses_blas(work, work, width - 1)


@numba.njit
def _plain_sgd(flat, hyper):
    return optim.plain_sgd(flat, hyper), optim.sgd_coefficients(flat, hyper)


@pytest.mark.parametrize("dtype", DTYPES)
def test_plain_sgd_is_told_apart(dtype):
    """optim.plain_sgd, which lets the compiled one-row step apply SGD in its backward pass: true for SGD with no
    momentum and no clipping only, whatever the parameter count (a network of 2 parameters as of 2 optimizer rows),
    and sgd_coefficients gives the step's rate and weight decay."""
    for sizes in ([1, 1], [2, 3, 1]):
        for opt, plain in ((fastbp.SGD(lr=0.25, weight_decay=0.125), True), (fastbp.SGD(lr=0.25, momentum=0.5), False),
                           (fastbp.SGD(lr=0.25, clip_norm=1.0), False), (fastbp.Adam(lr=0.25), False)):
            net = fastbp.Network(sizes, optimizer=opt, dtype=dtype)
            taken, (lr, decay) = _plain_sgd(net.flat, net.hyper)
            assert taken == plain, (sizes, opt)
            if plain:
                assert (lr, decay) == (0.25, 0.125)


@numba.njit
def _sgd_cannot_overflow(flat, hyper, params_size, grad_size):
    lr, decay = optim.sgd_coefficients(flat, hyper)
    return optim.sgd_cannot_overflow(lr, decay, params_size, grad_size)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_cannot_overflow_only_where_update_applies(dtype):
    """optim.sgd_cannot_overflow, which lets the population apply plain SGD without update's checking pass: given
    the sums of |parameters| and |gradient|, true for an ordinary step, and never for a step that update refuses,
    each made to overflow by one term of p - lr (g + decay p) alone (so that a bound missing a term says true):
    lr g, lr decay p, and a rate or a weight decay beyond the dtype's range (whose step is inf * 0 = NaN even where
    the gradient is 0); false, too, for sums that are NaN or infinite."""
    top = float(np.finfo(dtype).max)
    net = fastbp.Network([3, 4, 2], optimizer=fastbp.SGD(lr=0.25, weight_decay=3.0), dtype=dtype)
    net.flat[1] = np.random.default_rng(0).normal(size=net.n_params)
    big_g, big_p, no_g = (net.flat.copy() for _ in range(3))
    big_g[1, 0] = top / 64  # 128 g = 2 top
    big_p[0, 0] = top / 64  # 32 (3 p) = 1.5 top
    no_g[1] = 0
    cases = [("ordinary", net.flat, 0.25, 3.0, True), ("lr g", big_g, 128.0, 3.0, False),
             ("lr decay p", big_p, 32.0, 3.0, False)]
    if dtype == np.float32:  # (a float64 hyper holds no number beyond float64's range)
        cases += [("a rate beyond the dtype", no_g, 1e39, 0.0, False), ("a decay beyond it", no_g, 0.25, 1e39, False)]
    for name, flat, lr, decay, applies in cases:
        hyper = net.hyper.copy()
        hyper[[optim.LR, optim.WEIGHT_DECAY]] = lr, decay
        sizes = np.abs(flat[0].astype(np.float64)).sum(), np.abs(flat[1].astype(np.float64)).sum()
        with np.errstate(over="ignore", invalid="ignore"):
            assert optim.update(flat.copy(), hyper.copy()) == applies, name
        assert _sgd_cannot_overflow(flat, hyper, *sizes) == applies, name
        for bad in ((np.nan, sizes[1]), (sizes[0], np.inf)):
            assert not _sgd_cannot_overflow(flat, hyper, *bad), name


@pytest.mark.parametrize("seed", range(6))
def test_finite_difference_gradients(seed):
    """Central differences in float64 over random architectures and every pairing (relative error < 1e-6)."""
    rng = np.random.default_rng(seed)
    sizes = [int(s) for s in rng.integers(1, 7, rng.integers(2, 6))]
    for output, loss in PAIRINGS:
        if output == "softmax" and sizes[-1] < 2:
            continue
        hidden = HIDDEN[rng.integers(len(HIDDEN))]
        net = network(sizes, hidden, output, loss, np.float64, seed=seed)
        net.params[:] = rng.normal(0, 0.7, net.n_params)  # non-zero biases keep every z off relu's kink at 0
        X, Y = make_data(sizes, 5, output, loss, np.float64, seed=seed)
        err = finite_difference_error(net, X, Y)
        assert err < 1e-6, (sizes, hidden, output, loss, err)


@pytest.mark.parametrize("output, loss", PAIRINGS)
def test_output_error_reads_units_a_stride_apart(output, loss):
    """losses.output_error on a row stored feature-major (units ``stride`` apart, as the compiled tile path stores
    them) gives the loss and deltas it gives on the same row stored contiguously."""
    rng = np.random.default_rng(0)
    n_out, stride = 3, 4
    z, a = rng.normal(size=n_out), rng.uniform(0.1, 0.9, n_out)
    y = np.array([2.0]) if loss == "cross_entropy" else rng.uniform(0, 1, n_out)
    labels = y.size == 1
    code, out_code = fastbp.losses.CODES[loss], act.CODES[output]
    rows = {}
    for s in (1, stride):
        buf = np.full(4 * n_out * s, np.nan)
        z0, a0, d0, y0 = 0, n_out * s, 2 * n_out * s, 3 * n_out * s
        buf[z0:z0 + n_out * s:s], buf[a0:a0 + n_out * s:s], buf[y0:y0 + y.size * s:s] = z, a, y
        total = fastbp.losses.output_error_call(code, out_code, buf, z0, a0, d0, y0, n_out, s, labels, 0.5)
        rows[s] = total, buf[d0:d0 + n_out * s:s]
    assert np.isfinite(rows[1][0]) and np.all(np.isfinite(rows[1][1]))
    assert rows[stride][0] == rows[1][0]
    np.testing.assert_array_equal(rows[stride][1], rows[1][1])
