"""Property tests: random architectures, activations, losses, optimizers, dtypes and batch sizes.

The number of examples comes from the hypothesis profile (``conftest.py``: 200 per property by default,
``HYPOTHESIS_PROFILE=quick`` for fewer); ``--hypothesis-show-statistics`` (on in ``make test``) prints how many were
tried.
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import fastbp

from . import reference as ref
from .conftest import HIDDEN, PAIRINGS, finite_difference_error, make_data, ref_layers

OPTIMIZERS = {
    "sgd": (lambda: fastbp.SGD(lr=0.05), lambda: ref.SGD(0.05)),
    "momentum": (lambda: fastbp.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
                 lambda: ref.SGD(0.05, 0.9, True, 0.01)),
    "adam": (lambda: fastbp.Adam(lr=0.01, weight_decay=0.05), lambda: ref.Adam(0.01, weight_decay=0.05)),
}
# Relative tolerance per dtype, against the largest magnitude of the compared array (rounding grows with width and
# depth; entries near zero are compared on that absolute scale).
SCALE_TOL = {np.float32: 2e-4, np.float64: 1e-10}


@st.composite
def cases(draw, max_width=64, dtypes=(np.float32, np.float64)):
    n_layers = draw(st.integers(1, 5))
    sizes = draw(st.lists(st.integers(1, max_width), min_size=n_layers + 1, max_size=n_layers + 1))
    output, loss = draw(st.sampled_from(PAIRINGS))
    if output == "softmax":
        sizes[-1] = max(sizes[-1], 2)
    # One activation for every hidden layer, or one drawn per hidden layer.
    per_layer = st.lists(st.sampled_from(HIDDEN), min_size=n_layers - 1, max_size=n_layers - 1)
    hidden = draw(st.one_of(st.sampled_from(HIDDEN), per_layer))
    return dict(sizes=sizes, hidden=hidden, output=output, loss=loss,
                dtype=draw(st.sampled_from(dtypes)), batch=draw(st.integers(1, 16)), seed=draw(st.integers(0, 2**16)),
                optimizer=draw(st.sampled_from(sorted(OPTIMIZERS))))


def close(got, want, dtype):
    want = np.asarray(want, np.float64)
    np.testing.assert_allclose(got, want, rtol=SCALE_TOL[dtype], atol=SCALE_TOL[dtype] * max(1.0, np.abs(want).max()))


def build(case):
    net = fastbp.Network(case["sizes"], hidden=case["hidden"], output=case["output"], loss=case["loss"],
                         dtype=case["dtype"], seed=case["seed"], optimizer=OPTIMIZERS[case["optimizer"]][0]())
    X, Y = make_data(case["sizes"], case["batch"], case["output"], case["loss"], case["dtype"], seed=case["seed"])
    return net, X, Y


@given(cases())
def test_kernels_match_reference(case):
    net, X, Y = build(case)
    dtype = case["dtype"]
    Ws, bs = ref_layers(net)
    _, As = ref.forward(Ws, bs, case["hidden"], case["output"], X)
    close(net.forward(X), As[-1], dtype)
    want_loss, dWs, dbs = ref.gradients(Ws, bs, case["hidden"], case["output"], case["loss"], X, Y)
    loss, grads = net.gradients(X, Y)
    close(loss, want_loss, dtype)
    for l in range(len(dWs)):
        close(grads[f"{2 * l}.weight"], dWs[l], dtype)
        close(grads[f"{2 * l}.bias"], dbs[l], dtype)
    opt = OPTIMIZERS[case["optimizer"]][1]()
    for _ in range(2):
        want_loss, dWs, dbs = ref.gradients(Ws, bs, case["hidden"], case["output"], case["loss"], X, Y)
        opt.step(Ws + bs, dWs + dbs)
        close(net.train_step(X, Y), want_loss, dtype)
    for (W, b), W_ref, b_ref in zip(net.layers(), Ws, bs):
        close(W, W_ref, dtype)
        close(b, b_ref, dtype)


@given(cases(max_width=8, dtypes=(np.float64,)))
def test_finite_difference_gradients(case):
    net, X, Y = build(case)
    net.params[:] = np.random.default_rng(case["seed"]).normal(0, 0.7, net.n_params)  # biases keep z off kinks
    assert finite_difference_error(net, X, Y) < 1e-6


@given(cases())
def test_forward_invariants(case):
    net, X, _ = build(case)
    X = X * 5  # larger inputs push the activations towards their bounds
    P = net.forward(X)
    assert P.shape == (case["batch"], case["sizes"][-1]) and P.dtype == case["dtype"] and np.isfinite(P).all()
    if case["output"] == "softmax":
        assert (P >= 0).all() and (P <= 1).all()
        np.testing.assert_allclose(P.sum(axis=1), 1, rtol=SCALE_TOL[case["dtype"]] * 10)
    elif case["output"] == "sigmoid":
        assert ((P >= 0) & (P <= 1)).all()
    elif case["output"] == "tanh":
        assert (np.abs(P) <= 1).all()
    elif case["output"] == "relu":
        assert (P >= 0).all()
