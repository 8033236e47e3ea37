"""Bring your own objective: ``backward`` (a vector-Jacobian product from dL/dP) and ``step``, sample weights, and
their kernels, against tests/reference.py and finite differences (torch.autograd: tests/test_golden.py)."""

import numpy as np
import pytest

import fastbp
from fastbp import kernels

from . import reference as ref
from .conftest import DTYPES, PAIRINGS, TOL, make_data, ref_layers

SIZES = [4, 6, 3]


def network(output, loss, dtype=np.float64, hidden="tanh", optimizer=None, sizes=SIZES, seed=2):
    return fastbp.Network(sizes, hidden=hidden, output=output, loss=loss, dtype=dtype, seed=seed,
                          optimizer=optimizer or fastbp.SGD(lr=0.1))


def loss_gradient(loss, P, Y):
    """dL/dP of a built-in loss with PyTorch's reductions (the user's side of backward)."""
    n, n_out = P.shape
    if loss == "mse":
        return 2 * (P - Y) / (n * n_out)
    if loss == "huber":
        return np.clip(P - Y, -1, 1) / (n * n_out)
    if loss == "bce":
        return (P - Y) / (P * (1 - P)) / (n * n_out)
    return -Y / P / n  # cross_entropy, one-hot Y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output, loss", PAIRINGS)
def test_backward_of_builtin_loss_equals_gradients(output, loss, dtype):
    """grad_output = dL/dP of the built-in loss gives the gradient of ``gradients`` (which takes the shortcuts
    yhat - y): every output activation, softmax through its whole Jacobian; and the reference's chain rule."""
    net = network(output, loss, dtype)
    X, Y = make_data(SIZES, 9, output, loss, dtype, seed=4)
    _, expected = net.gradients(X, Y)
    P = net.forward(X).astype(np.float64)
    G = loss_gradient(loss, P, Y.astype(np.float64))
    before = net.params.copy()
    got = net.backward(X, G)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], **TOL[dtype])
    np.testing.assert_array_equal(net.params, before)  # no update
    Ws, bs = ref_layers(net)
    zs, As = ref.forward([W.astype(np.float64) for W in Ws], [b.astype(np.float64) for b in bs], net.hidden,
                         output, X.astype(np.float64))
    dWs, dbs = ref.backpropagate(Ws, net.hidden, output, zs, As, G)
    for l in range(len(dWs)):
        np.testing.assert_allclose(got[f"{2 * l}.weight"], dWs[l], **TOL[dtype])
        np.testing.assert_allclose(got[f"{2 * l}.bias"], dbs[l], **TOL[dtype])


def custom_losses():
    """(name, output activation, L(P), dL/dP) for objectives fastbp does not know."""
    actions, advantages = np.array([0, 2, 1, 1, 0]), np.array([1.5, -0.5, 2.0, -1.0, 0.3])

    def policy_gradient(P):  # -mean(advantage * log pi(action))
        return -np.mean(advantages * np.log(P[np.arange(5), actions]))

    def policy_gradient_grad(P):
        G = np.zeros_like(P)
        G[np.arange(5), actions] = -advantages / P[np.arange(5), actions] / 5
        return G

    return [("cubes", "tanh", lambda P: np.sum(P**3), lambda P: 3 * P**2),
            ("policy_gradient", "softmax", policy_gradient, policy_gradient_grad)]


@pytest.mark.parametrize("name, output, L, dL", custom_losses(), ids=lambda v: v if isinstance(v, str) else "")
def test_backward_finite_differences(name, output, L, dL):
    """A loss fastbp does not know: the gradient of backward agrees with central differences (< 1e-6)."""
    net = network(output, "mse", sizes=[3, 5, 3])
    X = np.random.default_rng(1).normal(size=(5, 3))
    net.backward(X, dL(net.forward(X)))
    analytic, numeric, h = net.grad.copy(), np.empty(net.n_params), 1e-6
    for k in range(net.n_params):
        saved = net.params[k]
        net.params[k] = saved + h
        up = L(net.forward(X))
        net.params[k] = saved - h
        down = L(net.forward(X))
        net.params[k] = saved
        numeric[k] = (up - down) / (2 * h)
    assert np.linalg.norm(analytic - numeric) / max(np.linalg.norm(numeric), 1e-2) < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_then_step_is_train_step(dtype):
    """backward with the loss's dL/dP, then step, gives the parameters and optimizer state of train_step."""
    a, b = (network("softmax", "cross_entropy", dtype, optimizer=fastbp.Adam(lr=0.01, weight_decay=0.1))
            for _ in range(2))
    X, Y = make_data(SIZES, 8, "softmax", "cross_entropy", dtype, seed=5)
    for _ in range(3):
        a.train_step(X, Y)
        b.backward(X, loss_gradient("cross_entropy", b.forward(X).astype(np.float64), Y))
        b.step()
    np.testing.assert_allclose(b.flat[[0, 2, 3]], a.flat[[0, 2, 3]], **TOL[dtype])
    np.testing.assert_array_equal(a.hyper, b.hyper)


def test_step_errors_and_all_or_nothing():
    net = network("identity", "mse")
    with pytest.raises(RuntimeError, match="no gradient"):
        net.step()
    X = np.ones((2, 4))
    net.backward(X, np.full((2, 3), 1e308))  # the bias gradient sums to infinity: no update survives it
    before, hyper = net.flat.copy(), net.hyper.copy()
    with pytest.raises(FloatingPointError, match="not applied"):
        net.step()
    np.testing.assert_array_equal(net.flat, before)
    np.testing.assert_array_equal(net.hyper, hyper)


@pytest.mark.parametrize("bad, exc, match", [
    (np.ones((3, 3)), ValueError, r"grad_output must have shape \(2, 3\)"),
    (np.ones((2, 2)), ValueError, r"grad_output must have shape \(2, 3\)"),
    (np.array([[1, 2, np.nan], [0, 0, 0]]), ValueError, "grad_output contains NaN"),
    (np.array([[1, 2, np.inf], [0, 0, 0]]), ValueError, "grad_output contains NaN or infinity"),
    (np.array([["a", "b", "c"], ["a", "b", "c"]]), TypeError, "grad_output must hold real numbers"),
    (np.ones((2, 3), bool), TypeError, "grad_output must hold real numbers"),
])
def test_bad_grad_output_raises_and_changes_nothing(bad, exc, match):
    net = network("identity", "mse")
    X = np.ones((2, 4))
    net.gradients(X, np.zeros((2, 3)))
    before = net.flat.copy()
    with pytest.raises(exc, match=match):
        net.backward(X, bad)
    np.testing.assert_array_equal(net.flat, before)  # not even the gradient row
    with pytest.raises(ValueError, match="X contains NaN"):
        net.backward(np.full((2, 4), np.nan), np.ones((2, 3)))
    np.testing.assert_array_equal(net.flat, before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_kernel_from_njit(dtype):
    """kernels.backward and kernels.step from the user's own @njit code; False, touching nothing, for bad input."""
    import numba

    @numba.njit
    def learn(flat, spec, hyper, work, X, G, steps):
        for _ in range(steps):
            if not fastbp.kernels.backward(flat, spec, work, X, G):
                return False
            if not fastbp.kernels.step(flat, hyper):
                return False
        return True

    net, twin = network("sigmoid", "bce", dtype), network("sigmoid", "bce", dtype)
    X = np.random.default_rng(3).normal(size=(4, 4)).astype(dtype)
    G = np.random.default_rng(4).normal(size=(4, 3)).astype(dtype)
    assert learn(net.flat, net.spec, net.hyper, net.workspace(4), X, G, 3)
    for _ in range(3):
        twin.backward(X, G)
        twin.step()
    np.testing.assert_array_equal(net.flat, twin.flat)
    before = net.flat.copy()
    bad = G.copy()
    bad[1, 1] = np.nan
    assert not learn(net.flat, net.spec, net.hyper, net.workspace(4), X, bad, 1)
    assert not kernels.backward(net.flat, net.spec, net.workspace(4), X, G[:, :2])  # wrong width
    np.testing.assert_array_equal(net.flat, before)


# ---- sample weights ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output, loss", [("sigmoid", "bce"), ("softmax", "cross_entropy"), ("tanh", "mse"),
                                          ("identity", "huber"), ("softmax", "mse")])
def test_weights_against_reference_and_repeated_rows(output, loss, dtype):
    """The weighted loss and gradient equal the reference's sum_i w_i l_i / sum_i w_i, and integer weights equal
    repeating each row that many times (a weight 0 drops the row)."""
    net = network(output, loss, dtype)
    X, Y = make_data(SIZES, 6, output, loss, dtype, seed=7)
    w = np.array([2, 0, 1, 3, 1, 1])
    loss_w, grads_w = net.gradients(X, Y, sample_weight=w)
    loss_r, grads_r = net.gradients(np.repeat(X, w, axis=0), np.repeat(Y, w, axis=0))
    assert loss_w == pytest.approx(loss_r, rel=TOL[dtype]["rtol"])
    for key in grads_w:
        np.testing.assert_allclose(grads_w[key], grads_r[key], **TOL[dtype])
    Ws, bs = ref_layers(net)
    value, dWs, dbs = ref.gradients(Ws, bs, net.hidden, output, loss, X, Y, sample_weight=w)
    assert loss_w == pytest.approx(value, rel=TOL[dtype]["rtol"])
    for l in range(len(dWs)):
        np.testing.assert_allclose(grads_w[f"{2 * l}.weight"], dWs[l], **TOL[dtype])
    assert net.evaluate(X, Y, sample_weight=w) == pytest.approx(loss_r, rel=TOL[dtype]["rtol"])


def test_weighted_train_step_and_fit_equal_repeated_rows():
    X, Y = make_data(SIZES, 6, "softmax", "cross_entropy", np.float64, seed=8, labels=True)
    w = np.array([1, 2, 0, 1, 3, 1])
    a, b = (network("softmax", "cross_entropy", optimizer=fastbp.Adam(0.01)) for _ in range(2))
    for _ in range(3):
        loss_a = a.train_step(X, Y, sample_weight=w)
        loss_b = b.train_step(np.repeat(X, w, axis=0), np.repeat(Y, w, axis=0))
        assert loss_a == pytest.approx(loss_b, rel=1e-12)
    np.testing.assert_allclose(a.flat, b.flat, rtol=1e-10, atol=1e-12)
    ones, plain = network("softmax", "cross_entropy"), network("softmax", "cross_entropy")
    h1 = ones.fit(X, Y, epochs=3, batch_size=4, sample_weight=np.full(6, 2.5))
    h2 = plain.fit(X, Y, epochs=3, batch_size=4)
    np.testing.assert_allclose(ones.params, plain.params, rtol=1e-12)  # a constant weight changes nothing
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-12)
    zero = network("softmax", "cross_entropy")
    before = zero.params.copy()
    zero.fit(X, Y, epochs=2, batch_size=2, shuffle=False, sample_weight=[0, 0, 0, 0, 0, 1.0])
    changed = network("softmax", "cross_entropy")
    changed.train_step(X[4:], Y[4:], sample_weight=[0, 1])
    changed.train_step(X[4:], Y[4:], sample_weight=[0, 1])
    np.testing.assert_array_equal(zero.params, changed.params)  # zero-weight batches are skipped
    assert not np.array_equal(before, zero.params)


@pytest.mark.parametrize("w, match", [
    (np.ones(5), r"sample_weight must have shape \(6,\)"),
    (np.ones((6, 1)), r"sample_weight must have shape \(6,\)"),
    (np.array([1, 1, -1, 1, 1, 1.0]), "non-negative"),
    (np.array([1, 1, np.nan, 1, 1, 1]), "sample_weight contains NaN"),
    (np.array([1, 1, np.inf, 1, 1, 1]), "sample_weight contains NaN or infinity"),
    (np.zeros(6), "all zero"),
])
def test_bad_weights_raise_and_change_nothing(w, match):
    net = network("sigmoid", "bce", optimizer=fastbp.SGD(0.1, momentum=0.9))
    X, Y = make_data(SIZES, 6, "sigmoid", "bce", np.float64)
    net.train_step(X, Y)
    flat, hyper = net.flat.copy(), net.hyper.copy()
    for call in (lambda: net.train_step(X, Y, sample_weight=w), lambda: net.gradients(X, Y, sample_weight=w),
                 lambda: net.evaluate(X, Y, sample_weight=w), lambda: net.fit(X, Y, sample_weight=w)):
        with pytest.raises(ValueError, match=match):
            call()
        np.testing.assert_array_equal(net.flat, flat)
        np.testing.assert_array_equal(net.hyper, hyper)


def test_weighted_kernels_refuse_bad_weights():
    """From @njit: the weighted kernels return NaN and touch nothing for weights the Network would refuse."""
    net = network("identity", "mse")
    X, Y = make_data(SIZES, 3, "identity", "mse", np.float64)
    flat, work = net.flat.copy(), net.workspace(3)
    for w in (np.zeros(3), np.array([1.0, -1, 1]), np.array([1.0, np.nan, 1]), np.ones(2)):
        assert np.isnan(kernels.weighted_train_step(net.flat, net.spec, net.hyper, work, X, Y, w))
        assert np.isnan(kernels.weighted_gradient(net.flat, net.spec, work, X, Y, w))
        assert np.isnan(kernels.weighted_loss(net.flat, net.spec, work, X, Y, w))
    np.testing.assert_array_equal(net.flat, flat)
    assert kernels.weighted_loss(net.flat, net.spec, work, X, Y, np.ones(3)) == net.evaluate(X, Y)
