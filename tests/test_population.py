"""Population: N networks in one call each, equal to N separate Networks."""

import numba
import numpy as np
import pytest

import fastbp
from fastbp import kernels

from .conftest import TOL


def data(n, rows, sizes, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, rows, sizes[0])).astype(dtype), rng.normal(size=(n, rows, sizes[-1])).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, rows", [(5, 3), (300, 1)])  # serial, and the parallel twin (300 members)
def test_population_equals_separate_networks(dtype, n, rows):
    sizes = [4, 16, 2]
    opt = fastbp.Adam(lr=0.01)
    pop = fastbp.Population(n, sizes, hidden="tanh", optimizer=opt, dtype=dtype, seed=3)
    nets = [fastbp.Network(sizes, hidden="tanh", optimizer=opt, dtype=dtype, seed=int(s)) for s in pop.member_seeds]
    np.testing.assert_array_equal(pop.params, np.stack([net.params for net in nets]))
    for step in range(4):
        X, Y = data(n, rows, sizes, dtype, seed=step)
        losses = pop.train_step(X, Y)
        for m in range(0, n, max(1, n // 7)):
            np.testing.assert_allclose(losses[m], nets[m].train_step(X[m], Y[m]), **TOL[dtype])
    P = pop.forward(X)
    for m in range(0, n, max(1, n // 7)):
        np.testing.assert_allclose(pop.params[m], nets[m].params, **TOL[dtype])
        np.testing.assert_allclose(P[m], nets[m].forward(X[m]), **TOL[dtype])
        assert pop.hypers[m, 7] == nets[m].hyper[7] == 4


def test_population_labels_and_members():
    pop = fastbp.Population(4, [3, 8, 3], output="softmax", loss="cross_entropy", seed=0)
    rng = np.random.default_rng(0)
    X, labels = rng.normal(size=(4, 6, 3)), rng.integers(0, 3, (4, 6))
    losses = pop.train_step(X, labels)
    net = pop.member(2)
    assert net.evaluate(X[2], labels[2]) < losses[2]  # the member has taken its step
    net.train_step(X[2], labels[2])
    pop.set_member(2, net)
    assert pop.flats[2].tobytes() == net.flat.tobytes() and pop.hypers[2].tobytes() == net.hyper.tobytes()
    assert pop.member(-1).params.tobytes() == pop.params[3].tobytes()


def test_params_is_a_view_for_evolution_strategies():
    pop = fastbp.Population(6, [2, 5, 1], seed=0)
    assert np.shares_memory(pop.params, pop.flats)
    X = np.ones((6, 1, 2))
    before = pop.forward(X)
    pop.params[:] += 0.1 * np.random.default_rng(0).normal(size=pop.params.shape)  # perturb in place, no copy
    assert not np.allclose(pop.forward(X), before)
    np.testing.assert_allclose(pop.forward(X)[4], pop.member(4).forward(X[4]))


def test_diverged_member_keeps_its_parameters():
    pop = fastbp.Population(3, [2, 4, 1], seed=0)
    pop.params[1] = 1e200  # its loss overflows to inf
    X, Y = data(3, 2, [2, 4, 1])
    before = pop.flats.copy()
    losses = pop.train_step(X, Y)
    assert np.isnan(losses[1]) and np.isfinite(losses[[0, 2]]).all()
    assert pop.flats[1].tobytes() == before[1].tobytes()
    assert not np.array_equal(pop.flats[0], before[0])


def test_bad_input_raises_and_changes_nothing():
    pop = fastbp.Population(3, [2, 4, 2], seed=0, optimizer=fastbp.SGD(lr=0.1, momentum=0.9))
    X, Y = data(3, 2, [2, 4, 2])
    pop.train_step(X, Y)
    nan_X = X.copy()
    nan_X[2, 1, 0] = np.nan
    cases = [((X[:2], Y), ValueError, "shape"), ((X, Y[:, :, :1]), ValueError, "shape"),
             ((X[:, :0], Y[:, :0]), ValueError, "rows >= 1"), ((X.astype(complex), Y), TypeError, "real"),
             ((nan_X, Y), ValueError, "X contains NaN"), ((X[0], Y), ValueError, "shape")]
    for args, exc, match in cases:
        flats, hypers = pop.flats.tobytes(), pop.hypers.tobytes()
        with pytest.raises(exc, match=match):
            pop.train_step(*args)
        assert pop.flats.tobytes() == flats and pop.hypers.tobytes() == hypers
    with pytest.raises(ValueError, match="X contains NaN"):
        pop.forward(nan_X)
    with pytest.raises(ValueError, match="does not fit"):
        pop.set_member(0, fastbp.Network([2, 5, 2]))
    with pytest.raises(IndexError):
        pop.member(3)
    with pytest.raises(ValueError, match="n must be"):
        fastbp.Population(0, [2, 1])
    labels = fastbp.Population(2, [2, 3], output="softmax", loss="cross_entropy", seed=0)
    flats = labels.flats.tobytes()
    with pytest.raises(ValueError, match="labels must be in"):
        labels.train_step(np.zeros((2, 1, 2)), np.array([[0], [3]]))
    assert labels.flats.tobytes() == flats


@numba.njit(cache=True)
def _simulate(flats, spec, hypers, works, X, Y, losses, steps):
    for _ in range(steps):
        kernels.population_train_step(flats, spec, hypers, works, X, Y, losses)


def test_population_kernel_from_user_njit():
    pop = fastbp.Population(4, [3, 6, 2], hidden="tanh", seed=1, optimizer=fastbp.SGD(lr=0.05))
    twin = fastbp.Population(4, [3, 6, 2], hidden="tanh", seed=1, optimizer=fastbp.SGD(lr=0.05))
    X, Y = data(4, 2, [3, 6, 2])
    losses = np.empty(4)
    _simulate(pop.flats, pop.spec, pop.hypers, pop.workspace(2), X, Y, losses, 25)
    for _ in range(25):
        twin.train_step(X, Y)
    np.testing.assert_allclose(pop.flats, twin.flats, rtol=1e-12, atol=1e-15)
