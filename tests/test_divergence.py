"""A step that would give a non-finite loss or parameter is never applied; fit's policies; threads."""

import copy
import pickle
import threading

import numpy as np
import pytest

import fastbp

from .conftest import make_data

X, Y = make_data([3, 8, 2], 16, "identity", "mse", np.float64)


def state(net):
    """Parameters, optimizer state and step count: what a refused step leaves as it was (the gradient row is
    scratch and holds the refused step's gradient)."""
    return np.delete(net.flat, 1, axis=0).tobytes() + net.hyper.tobytes()


@pytest.mark.parametrize("optimizer", [fastbp.SGD(lr=1e300), fastbp.SGD(lr=1e300, momentum=0.9),
                                       fastbp.Adam(lr=1e300)], ids=["sgd", "momentum", "adam"])
def test_diverging_steps_are_not_applied(optimizer):
    """Train with an absurd learning rate until a step is refused: the parameters stay those before it, finite."""
    net = fastbp.Network([3, 8, 2], hidden="tanh", optimizer=optimizer, seed=0)
    for _ in range(20):
        before = state(net)
        try:
            net.train_step(X, Y)
        except FloatingPointError as exc:
            assert "not applied" in str(exc)
            break
    else:
        pytest.fail("the learning rate did not diverge")
    assert state(net) == before
    assert np.isfinite(net.flat).all()


def test_update_overflow_with_finite_loss_is_refused():
    net = fastbp.Network([3, 8, 2], hidden="tanh", optimizer=fastbp.SGD(lr=1e308), seed=0)
    loss, _ = net.gradients(X, 100 * Y)
    assert np.isfinite(loss) and np.abs(net.grad).max() > 2  # the loss is fine; lr * gradient overflows
    before = state(net)
    with pytest.raises(FloatingPointError, match="not applied"):
        net.train_step(X, 100 * Y)
    assert state(net) == before


def test_fit_policies():
    def fresh():
        return fastbp.Network([3, 8, 2], hidden="tanh", optimizer=fastbp.SGD(lr=1e308), seed=0)

    net = fresh()
    before = state(net)
    Y_far = 1e4 * Y  # every batch's gradient times lr overflows
    with pytest.raises(FloatingPointError, match="epoch 0, samples 0:4"):
        net.fit(X, Y_far, epochs=3, batch_size=4, shuffle=False)
    assert state(net) == before
    history = net.fit(X, Y_far, epochs=3, batch_size=4, on_nonfinite="stop")
    assert history["stopped"] and history["nonfinite_steps"] == 1 and len(history["loss"]) == 1
    assert state(net) == before
    history = net.fit(X, Y_far, epochs=3, batch_size=4, on_nonfinite="skip")
    assert not history["stopped"] and history["nonfinite_steps"] == 12 and np.isnan(history["loss"]).all()
    assert state(net) == before
    with pytest.raises(ValueError, match="on_nonfinite"):
        net.fit(X, Y_far, on_nonfinite="ignore")


def test_skip_keeps_training_the_good_batches():
    Xb = X.copy()
    net = fastbp.Network([3, 8, 2], hidden="tanh", optimizer=fastbp.SGD(lr=0.1), seed=0)
    good = net.params.copy()
    net.params[:] = 1e200  # every batch's loss now overflows ...
    history = net.fit(Xb, Y, epochs=1, batch_size=4, shuffle=False, on_nonfinite="skip")
    assert history["nonfinite_steps"] == 4 and (net.params == 1e200).all()
    net.params[:] = good  # ... and with them repaired, the same fit trains
    history = net.fit(Xb, Y, epochs=5, batch_size=4, on_nonfinite="skip")
    assert history["nonfinite_steps"] == 0 and history["loss"][-1] < history["loss"][0]


def test_one_network_from_two_threads_serialises():
    """Calls on one network from two threads run one at a time: the result equals the same steps in sequence."""
    shared = fastbp.Network([3, 8, 2], hidden="tanh", optimizer=fastbp.SGD(lr=0.01), seed=0)
    alone = copy.deepcopy(shared)

    def work():
        for _ in range(2000):
            shared.train_step(X, Y)
            shared.forward(X)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for _ in range(4000):
        alone.train_step(X, Y)
    np.testing.assert_array_equal(shared.flat, alone.flat)  # identical steps, so the order does not matter
    assert shared.hyper[7] == 4000


def test_two_networks_in_two_threads():
    nets = [fastbp.Network([3, 8, 2], hidden="tanh", optimizer=fastbp.Adam(lr=0.01), seed=s) for s in (0, 1)]
    twins = [copy.deepcopy(n) for n in nets]
    threads = [threading.Thread(target=lambda n=n: [n.train_step(X, Y) for _ in range(3000)]) for n in nets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for net, twin in zip(nets, twins):
        for _ in range(3000):
            twin.train_step(X, Y)
        np.testing.assert_array_equal(net.flat, twin.flat)


def test_copy_and_pickle():
    net = fastbp.Network([3, 4, 2], seed=0)
    for other in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert other.flat.tobytes() == net.flat.tobytes()
        other.train_step(X, Y)
        assert other.flat.tobytes() != net.flat.tobytes()
