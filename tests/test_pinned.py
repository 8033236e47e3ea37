"""Documented values pinned against independent computations: what ``seed`` decides (the initialisation rule and the
shuffles, drawn from ``numpy.random.default_rng(seed)`` in the documented order), every entry of ``fit``'s history
(a short last batch, sample weights, validation; ``lr`` is pinned in test_schedules.py and test_golden.py), and every
constructor argument and attribute after ``save``/``load`` and a pickle round trip. The expected values come from
tests/reference.py and numpy, never from fastbp's own kernels."""

import pickle

import numpy as np
import pytest

import fastbp

from . import reference as ref

SIZES, HIDDEN, OUTPUT, LOSS = [3, 5, 4, 2], "tanh", "identity", "mse"


def initial_layers(sizes, hidden, output, seed):
    """The documented initialisation, drawn afresh: layer by layer, W of shape (fan_out, fan_in), Glorot uniform
    before sigmoid/tanh/identity/softmax and He normal before relu-like activations; zero biases. Returns the
    generator too: the shuffles continue from it."""
    rng = np.random.default_rng(seed)
    Ws, bs = [], []
    for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        following = output if l == len(sizes) - 2 else hidden
        if following in ("relu", "leaky_relu"):
            Ws.append(rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_out, fan_in)))
        else:
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            Ws.append(rng.uniform(-limit, limit, (fan_out, fan_in)))
        bs.append(np.zeros(fan_out))
    return Ws, bs, rng


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, SIZES[0])), rng.normal(size=(n, SIZES[-1])), rng.uniform(0.2, 2.0, n)


@pytest.mark.parametrize("hidden, output", [("tanh", "identity"), ("relu", "softmax"), ("leaky_relu", "sigmoid")])
def test_seed_decides_the_initialisation_by_the_documented_rule(hidden, output):
    loss = {"identity": "mse", "softmax": "cross_entropy", "sigmoid": "bce"}[output]
    net = fastbp.Network(SIZES, hidden=hidden, output=output, loss=loss, seed=11)
    Ws, bs, _ = initial_layers(SIZES, hidden, output, 11)
    for (W, b), W_want, b_want in zip(net.layers(), Ws, bs):
        np.testing.assert_array_equal(W, W_want)
        np.testing.assert_array_equal(b, b_want)


@pytest.mark.parametrize("weighted", [False, True, "zero batches"])
def test_fit_history_is_the_reference_loop(weighted):
    """11 rows in batches of 4 (the last one 3 rows), shuffled by the seed's generator after the initialisation,
    SGD with momentum: ``loss`` is each epoch's mean over its samples (each step's batch loss weighted by its rows,
    or by its weight sum), before each step; ``val_loss`` the validation loss after the epoch. A batch whose weights
    are all zero is skipped (no step), and the epoch goes on."""
    n, batch, epochs, lr, momentum = 11, 4, 3, 0.05, 0.9
    X, Y, w = data(n)
    if weighted == "zero batches":
        w[np.arange(n) % 4 != 0] = 0.0  # three rows of weight: some shuffled batches have none
    Xv, Yv, _ = data(5, seed=1)
    net = fastbp.Network(SIZES, hidden=HIDDEN, output=OUTPUT, loss=LOSS, seed=5,
                         optimizer=fastbp.SGD(lr=lr, momentum=momentum))
    history = net.fit(X, Y, epochs=epochs, batch_size=batch, validation=(Xv, Yv),
                      sample_weight=w if weighted else None)

    Ws, bs, rng = initial_layers(SIZES, HIDDEN, OUTPUT, 5)
    opt = ref.SGD(lr, momentum=momentum)
    want_loss, want_val, skipped_before_a_step = [], [], 0
    for _ in range(epochs):
        order = rng.permutation(n)
        total = mass = 0.0
        for start in range(0, n, batch):
            rows = order[start:start + batch]
            weights = w[rows] if weighted else None
            if weighted and weights.sum() == 0:
                skipped_before_a_step += start + batch < n
                continue
            value, dWs, dbs = ref.gradients(Ws, bs, HIDDEN, OUTPUT, LOSS, X[rows], Y[rows], sample_weight=weights)
            step_mass = weights.sum() if weighted else len(rows)
            total, mass = total + value * step_mass, mass + step_mass
            opt.step(Ws + bs, dWs + dbs)
        want_loss.append(total / mass)
        want_val.append(ref.gradients(Ws, bs, HIDDEN, OUTPUT, LOSS, Xv, Yv)[0])
    assert skipped_before_a_step > 0 if weighted == "zero batches" else skipped_before_a_step == 0
    assert set(history) == {"loss", "val_loss", "nonfinite_steps", "stopped"}
    np.testing.assert_allclose(history["loss"], want_loss, rtol=1e-12)
    np.testing.assert_allclose(history["val_loss"], want_val, rtol=1e-12)
    assert history["nonfinite_steps"] == 0 and history["stopped"] is False
    for (W, b), W_want, b_want in zip(net.layers(), Ws, bs):
        np.testing.assert_allclose(W, W_want, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(b, b_want, rtol=1e-12, atol=1e-14)


def constructor_arguments(net):
    return (net.sizes, net.hidden, net.output, net.loss, net.dtype, net.seed, net.threads, repr(net.optimizer))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_load_and_pickle_keep_every_argument_and_attribute(tmp_path, dtype):
    schedule = fastbp.schedules.Cosine(0.01, steps=7, lr_min=1e-4, warmup=2)
    net = fastbp.Network([4, 6, 3], hidden="leaky_relu", output="softmax", loss="cross_entropy", dtype=dtype,
                         seed=9, threads=1, optimizer=fastbp.Adam(lr=schedule, weight_decay=0.01, clip_norm=2.0))
    X = np.random.default_rng(0).normal(size=(8, 4))
    net.fit(X, np.arange(8) % 3, epochs=2, batch_size=3)
    path = tmp_path / "net.npz"
    net.save(path)
    fresh = fastbp.Network([4, 6, 3], hidden="leaky_relu", output="softmax", loss="cross_entropy", dtype=dtype, seed=9)
    for copy, generator in ((fastbp.Network.load(path), fresh._rng), (pickle.loads(pickle.dumps(net)), net._rng)):
        got, want = constructor_arguments(copy), constructor_arguments(net)
        # threads is a property of the running process, not of the model: a file does not keep it
        assert got[:6] == want[:6] and got[7] == want[7]
        assert copy.n_params == net.n_params == 4 * 6 + 6 + 6 * 3 + 3
        assert copy.flat.tobytes() == net.flat.tobytes() and copy.hyper.tobytes() == net.hyper.tobytes()
        assert copy.spec.tobytes() == net.spec.tobytes() and copy.flat.dtype == dtype
        assert copy.hyper[fastbp.optim.STEP] == 2 * 3  # 8 rows in batches of 3, two epochs
        np.testing.assert_array_equal(copy.forward(X), net.forward(X))
        # The shuffles: a pickle goes on where the network was; a file restarts them from the seed, as a new
        # network of that seed would (the file keeps the model, not the generator).
        assert copy._rng.bit_generator.state == generator.bit_generator.state
