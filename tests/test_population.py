"""Population: N networks in one call each, equal to N separate Networks."""

import dataclasses

import numba
import numpy as np
import pytest

import fastbp
from fastbp import config
from fastbp import population as population_module
from fastbp import kernels
from fastbp.kernels import layout
from fastbp.kernels import population as lanes

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


ARCHITECTURES = [  # (sizes, hidden, output, loss, targets): every activation and loss, 2-4 layers, one per layer
    ([3, 8, 4, 1], ["relu", "softplus"], "sigmoid", "bce", "binary"),
    ([3, 8, 3], "leaky_relu", "softmax", "cross_entropy", "labels"),
    ([3, 8, 3], "sigmoid", "softmax", "cross_entropy", "one-hot"),
    ([3, 6, 5, 4, 2], ["tanh", "silu", "gelu"], "identity", "huber", "real"),
    ([3, 6, 5, 4, 2], ["elu", "identity", "gelu_tanh"], "softmax", "mse", "real"),  # softmax: the row-wise error
]


def arch_id(arch):
    hidden = arch[1] if isinstance(arch[1], str) else ",".join(arch[1])
    return "-".join([hidden, *arch[2:4]])


OPTIMIZERS = [fastbp.SGD(lr=0.1), fastbp.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
              fastbp.Adam(lr=0.01, weight_decay=0.1)]


def targets(kind, rng, shape):
    if kind == "binary":
        return rng.integers(0, 2, shape).astype(float)
    if kind == "labels":
        return rng.integers(0, shape[-1], shape[:-1])
    if kind == "one-hot":
        return np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])]
    return 3 * rng.normal(size=shape)  # large enough for huber's linear part


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=arch_id)
@pytest.mark.parametrize("opt", OPTIMIZERS, ids=["sgd", "nesterov", "adamw"])
def test_every_architecture_and_optimizer_equals_separate_networks(arch, opt):
    sizes, hidden, output, loss, kind = arch
    n, rows = 7, 3
    pop = fastbp.Population(n, sizes, hidden=hidden, output=output, loss=loss, optimizer=opt, seed=5)
    nets = [pop.member(m) for m in range(n)]
    rng = np.random.default_rng(1)
    for _ in range(3):
        X, Y = rng.normal(size=(n, rows, sizes[0])), targets(kind, rng, (n, rows, sizes[-1]))
        losses = pop.train_step(X, Y)
        np.testing.assert_allclose(losses, [net.train_step(x, y) for net, x, y in zip(nets, X, Y)], rtol=1e-12)
    np.testing.assert_allclose(pop.params, np.stack([net.params for net in nets]), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(pop.flats[2:], np.stack([net.flat[2:] for net in nets], axis=-1), rtol=1e-12,
                               atol=1e-15)
    np.testing.assert_allclose(pop.forward(X), np.stack([net.forward(x) for net, x in zip(nets, X)]), rtol=1e-12)


@pytest.mark.parametrize("opt", OPTIMIZERS, ids=["sgd", "nesterov", "adamw"])
def test_members_with_their_own_hyperparameters(opt):
    """Members that differ in learning rate and step count are updated member by member, each with its own."""
    n = 300  # two blocks of members
    pop = fastbp.Population(n, [4, 16, 2], hidden="tanh", optimizer=opt, seed=2)
    rng = np.random.default_rng(0)
    for m in (0, 17, 299):
        net = pop.member(m)
        net.optimizer = dataclasses.replace(opt, lr=opt.lr * (m + 2))
        net.train_step(rng.normal(size=(2, 4)), rng.normal(size=(2, 2)))  # one step ahead, another lr
        pop.set_member(m, net)
    nets = [pop.member(m) for m in range(n)]
    for _ in range(3):
        X, Y = rng.normal(size=(n, 2, 4)), rng.normal(size=(n, 2, 2))
        losses = pop.train_step(X, Y)
        np.testing.assert_allclose(losses, [net.train_step(x, y) for net, x, y in zip(nets, X, Y)], rtol=1e-12)
    np.testing.assert_allclose(pop.params, np.stack([net.params for net in nets]), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(pop.hypers, np.stack([net.hyper for net in nets]))


def test_member_whose_update_overflows_keeps_its_parameters():
    """A finite loss whose update would overflow: that member alone keeps everything; the others step."""
    pop = fastbp.Population(3, [2, 4, 2], hidden="tanh", optimizer=fastbp.SGD(lr=1e38), dtype=np.float32, seed=0)
    X = np.random.default_rng(0).normal(size=(3, 2, 2)).astype(np.float32)
    X[0] = 0
    Y = 10 * np.ones((3, 2, 2), np.float32)
    Y[0] = pop.forward(X)[0]  # member 0's error, so its gradient, is zero: its update is finite
    before = pop.flats.copy()
    losses = pop.train_step(X, Y)
    assert losses[0] == 0 and np.isnan(losses[1:]).all()
    kept = [0, *range(2, pop.flats.shape[0])]  # parameters and optimizer state (row 1, the gradient, is scratch)
    assert pop.flats[kept][:, :, 1:].tobytes() == before[kept][:, :, 1:].tobytes()
    np.testing.assert_array_equal(pop.hypers[:, 7], [1, 0, 0])
    with pytest.raises(FloatingPointError):
        fastbp.Population(3, [2, 4, 2], hidden="tanh", optimizer=fastbp.SGD(lr=1e38), dtype=np.float32,
                          seed=0).member(1).train_step(X[1], Y[1])


def test_population_labels_and_members():
    pop = fastbp.Population(4, [3, 8, 3], output="softmax", loss="cross_entropy", seed=0)
    rng = np.random.default_rng(0)
    X, labels = rng.normal(size=(4, 6, 3)), rng.integers(0, 3, (4, 6))
    losses = pop.train_step(X, labels)
    net = pop.member(2)
    assert net.evaluate(X[2], labels[2]) < losses[2]  # the member has taken its step
    net.train_step(X[2], labels[2])
    pop.set_member(2, net)
    assert pop.flats[:, :, 2].tobytes() == net.flat.tobytes() and pop.hypers[2].tobytes() == net.hyper.tobytes()
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
    kept = [0, *range(2, pop.flats.shape[0])]  # parameters and optimizer state (row 1, the gradient, is scratch)
    assert pop.flats[kept][:, :, 1].tobytes() == before[kept][:, :, 1].tobytes() and pop.hypers[1, 7] == 0
    assert not np.array_equal(pop.flats[0, :, 0], before[0, :, 0]) and pop.hypers[0, 7] == 1


@pytest.mark.parametrize("N", [config.LANES, config.LANES + 1])  # a whole block; and one member more
def test_kernel_with_its_own_work_size_and_a_member_whose_loss_alone_overflows(N):
    """population_train_step called directly, as from a user's @njit loop, with exactly population_work_size rows
    (the member-by-member update's coefficient and status rows are the last 8), and one member whose loss overflows
    while its update stays finite: that member alone keeps everything and gets NaN."""
    sizes, rows = [2, 3, 1], 2
    pop, twin = (fastbp.Population(N, sizes, hidden="tanh", seed=0) for _ in range(2))
    for p in (pop, twin):
        p.params[5, -1] = 1e200  # the output bias: the loss is inf, the gradients and the new values finite
    X, Y = data(N, rows, sizes)
    guarded, out = np.zeros((kernels.population_work_size(pop.spec, rows) + 1, N)), np.empty(N)
    guarded[-1] = np.nan  # a row past the end, which the kernel must not touch
    works = guarded[:-1]
    before, hypers = pop.flats.copy(), pop.hypers.copy()
    nets = {m: pop.member(m) for m in (4, N - 1)}  # member by member in the first block; the last (N > LANES) at once
    assert not kernels.population_train_step(pop.flats, pop.spec, pop.hypers[1:], works, X, Y, out)
    assert pop.flats.tobytes() == before.tobytes() and pop.hypers.tobytes() == hypers.tobytes()
    assert kernels.population_train_step(pop.flats, pop.spec, pop.hypers, works, X, Y, out)
    assert np.isnan(guarded[-1]).all()
    np.testing.assert_array_equal(out, twin.train_step(X, Y))
    assert np.isnan(out[5]) and np.isfinite(np.delete(out, 5)).all()
    kept = [0, *range(2, pop.flats.shape[0])]
    assert pop.flats[kept][:, :, 5].tobytes() == before[kept][:, :, 5].tobytes() and pop.hypers[5, 7] == 0
    for m, net in nets.items():  # taken their step, once, the last member too
        np.testing.assert_allclose(out[m], net.train_step(X[m], Y[m]), rtol=1e-12)
        assert pop.hypers[m, 7] == 1
        np.testing.assert_allclose(pop.flats[0, :, m], net.flat[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(pop.flats, twin.flats)


def test_each_block_steps_at_its_own_rate():
    """Plain SGD updates block by block, each member's step count counted as its block is done: a later block's rate
    (a schedule of the step count) is still its members' own, not the step after (the last member, in a block of
    its own, against its Network)."""
    N, sizes = config.LANES + 1, [2, 3, 1]
    pop = fastbp.Population(N, sizes, hidden="tanh", optimizer=fastbp.SGD(lr=fastbp.schedules.Exponential(0.5, gamma=0.1)),
                            seed=0)
    nets = {m: pop.member(m) for m in (0, N - 1)}
    for step in range(2):
        X, Y = data(N, 2, sizes, seed=step)
        losses = pop.train_step(X, Y)
        for m, net in nets.items():
            np.testing.assert_allclose(losses[m], net.train_step(X[m], Y[m]), rtol=1e-12)
    for m, net in nets.items():
        np.testing.assert_allclose(pop.params[m], net.params, rtol=1e-12, atol=1e-15)
        assert pop.hypers[m, 7] == net.hyper[7] == 2


@numba.njit
def _one_block(flats, spec, works, X, Y, lo, hi, out):
    N, n, buf = X.shape[0], X.shape[1], works.reshape(works.size)
    lanes._load_lanes(buf, N, 0, X, lo, hi)
    lanes._load_lanes(buf, N, layout._target_offset(spec, n), Y, lo, hi)
    params_size = lanes._forward_lanes(flats, spec, buf, N, n, lo, hi)
    lanes._output_error_lanes(spec, buf, N, n, False, lo, hi, out)
    return params_size, lanes._backward_lanes(flats, spec, buf, N, n, lo, hi)


def test_a_block_touches_only_its_members():
    """The blocks of members run on threads side by side: the pass of block lo..hi writes only members lo..hi's
    columns of works, of the gradient and of out (the middle block of three, and the last one, short)."""
    N, sizes, rows = 2 * config.LANES + 7, [2, 4, 3, 2], 2
    pop = fastbp.Population(N, sizes, hidden="tanh", seed=0)
    X, Y = data(N, rows, sizes)
    rng = np.random.default_rng(1)
    for lo, hi in ((config.LANES, 2 * config.LANES), (2 * config.LANES, N)):
        works, flats, out = rng.normal(size=(kernels.population_work_size(pop.spec, rows), N)), pop.flats.copy(), \
            rng.normal(size=N)
        before = works.copy(), out.copy()
        _one_block(flats, pop.spec, works, X, Y, lo, hi, out)
        others = np.r_[0:lo, hi:N]
        assert works[:, others].tobytes() == before[0][:, others].tobytes()
        assert flats[:, :, others].tobytes() == pop.flats[:, :, others].tobytes()
        assert out[others].tobytes() == before[1][others].tobytes()
        assert not np.array_equal(out[lo:hi], before[1][lo:hi])
        assert not np.array_equal(flats[1, :, lo:hi], pop.flats[1, :, lo:hi])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 3])
def test_a_block_bounds_its_update(dtype, rows):
    """The sums the block's passes return, which let plain SGD skip its checking pass (optim.sgd_cannot_overflow):
    rows times the sum of the block's |parameters| (every weight and bias, read once per row), and at least the sum
    of its |gradient| (exactly it on one row)."""
    N, sizes = 2 * config.LANES + 7, [3, 5, 4, 2]
    pop = fastbp.Population(N, sizes, hidden="tanh", dtype=dtype, seed=0)
    X, Y = data(N, rows, sizes, dtype)
    lo, hi = config.LANES, N
    works, flats = np.empty((kernels.population_work_size(pop.spec, rows), N), dtype), pop.flats.copy()
    params_size, grad_size = _one_block(flats, pop.spec, works, X, Y, lo, hi, np.empty(N))
    tol = {"rtol": 1e-5 if dtype == np.float32 else 1e-12}
    np.testing.assert_allclose(params_size, rows * np.abs(flats[0, :, lo:hi].astype(np.float64)).sum(), **tol)
    grad = np.abs(flats[1, :, lo:hi].astype(np.float64)).sum()
    if rows == 1:
        np.testing.assert_allclose(grad_size, grad, **tol)
    else:
        assert grad_size >= grad * (1 - tol["rtol"])


def test_bad_input_raises_and_changes_nothing():
    pop = fastbp.Population(3, [2, 4, 2], seed=0, optimizer=fastbp.SGD(lr=0.1, momentum=0.9))
    X, Y = data(3, 2, [2, 4, 2])
    pop.train_step(X, Y)
    nan_X = X.copy()
    nan_X[2, 1, 0] = np.nan
    more = np.concatenate([X, X[:1]])  # a member too many
    cases = [((X[:2], Y), ValueError, "shape"), ((X, Y[:, :, :1]), ValueError, "Y must have shape \\(3, 2, 2\\)"),
             ((more, np.concatenate([Y, Y[:1]])), ValueError, "X must have shape \\(3, rows >= 1, 2\\)"),
             ((X[:, :0], Y[:, :0]), ValueError, "rows >= 1"), ((X.astype(complex), Y), TypeError, "real"),
             ((nan_X, Y), ValueError, "X contains NaN"), ((X[0], Y), ValueError, "shape")]
    for args, exc, match in cases:
        flats, hypers = pop.flats.tobytes(), pop.hypers.tobytes()
        with pytest.raises(exc, match=match):
            pop.train_step(*args)
        assert pop.flats.tobytes() == flats and pop.hypers.tobytes() == hypers
    with pytest.raises(ValueError, match="X contains NaN"):
        pop.forward(nan_X)
    same = dict(sizes=[2, 4, 2], optimizer=fastbp.SGD(lr=0.1, momentum=0.9))  # the member's state rows
    for change in (dict(sizes=[2, 5, 2]), dict(sizes=[2, 3, 2]), dict(hidden="tanh"), dict(hidden="identity"),
                   dict(dtype=np.float32), dict(optimizer=fastbp.SGD(lr=0.1))):  # each field above and below
        with pytest.raises(ValueError, match="does not fit"):
            pop.set_member(0, fastbp.Network(**{**same, **change}))
    pop.set_member(0, fastbp.Network(**same, seed=5))  # and the same architecture fits
    with pytest.raises(ValueError, match="does not fit"):  # more state rows than the members' (momentum)
        fastbp.Population(2, [2, 4, 2]).set_member(0, fastbp.Network(**same))
    read_only = np.empty((3, 2, 2))
    read_only.flags.writeable = False
    for out in (np.empty((3, 2, 2), np.float32), np.empty((3, 2, 3)), [[[0.0] * 2] * 2] * 3,
                np.empty((3, 2, 4))[:, :, ::2], read_only):
        with pytest.raises(ValueError, match="out must be a writeable C-contiguous float64 array of shape"):
            pop.forward(X, out=out)
    for index in (3, -4, 1.0, True):
        with pytest.raises(IndexError, match="member index must be an integer in \\[-3, 3\\)"):
            pop.member(index)
    with pytest.raises(ValueError, match="n must be"):
        fastbp.Population(0, [2, 1])
    with pytest.raises(ValueError, match="Y must have shape \\(2, 1, 1\\)"):  # n_out, not n_in
        fastbp.Population(2, [3, 1]).train_step(np.zeros((2, 1, 3)), np.zeros((2, 1, 3)))
    labels = fastbp.Population(2, [2, 3], output="softmax", loss="cross_entropy", seed=0)
    flats = labels.flats.tobytes()
    with pytest.raises(ValueError, match="labels must be in"):
        labels.train_step(np.zeros((2, 1, 2)), np.array([[0], [3]]))
    assert labels.flats.tobytes() == flats


def test_train_step_hot_path_checks_what_it_skips(monkeypatch):
    """After a checked step, arrays of the same shapes and dtype go straight to the kernel: its results are the
    checked path's (a twin fed lists, which never takes it), its bad values still raise and change nothing, and
    arrays it cannot pass as they are (another dtype, not C-contiguous, class labels) still take the checked path."""
    pop, twin = (fastbp.Population(3, [2, 4, 2], hidden="tanh", seed=0) for _ in range(2))
    rng = np.random.default_rng(1)
    for step in range(3):
        X, Y = data(3, 2, [2, 4, 2], seed=step)
        X = X if step != 2 else np.asfortranarray(X)
        np.testing.assert_array_equal(pop.train_step(X, Y), twin.train_step(X.tolist(), Y.tolist()))
    assert pop.flats.tobytes() == twin.flats.tobytes() and pop.hypers.tobytes() == twin.hypers.tobytes()
    with monkeypatch.context() as patch:  # the hot path taken: no check of the checked path runs
        patch.setattr(pop, "_inputs", None)
        X, Y = data(3, 2, [2, 4, 2], seed=3)
        np.testing.assert_array_equal(pop.train_step(X, Y), twin.train_step(X.tolist(), Y.tolist()))
    for name, value in (("X", np.nan), ("Y", np.inf)):
        X, Y = data(3, 2, [2, 4, 2])
        (X if name == "X" else Y)[1, 1, 0] = value
        flats, hypers = pop.flats.tobytes(), pop.hypers.tobytes()
        with pytest.raises(ValueError, match=f"{name} contains"):
            pop.train_step(X, Y)
        assert pop.flats.tobytes() == flats and pop.hypers.tobytes() == hypers
    X, Y = data(3, 2, [2, 4, 2], np.float32)
    np.testing.assert_array_equal(pop.train_step(X, Y), twin.train_step(X.tolist(), Y.tolist()))
    labels = fastbp.Population(3, [2, 3], output="softmax", loss="cross_entropy", seed=0)
    X = rng.normal(size=(3, 2, 2))
    labels.train_step(X, rng.integers(0, 3, size=(3, 2)))
    with pytest.raises(ValueError, match="Y must have shape \\(3, 2, 3\\)"):  # labels as floats, not one-hot
        labels.train_step(X, np.zeros((3, 2, 1)))


@pytest.mark.parametrize("op", ["forward", "train_step"])
def test_large_populations_take_the_parallel_kernels(monkeypatch, op):
    """The thresholds of fastbp.config: above PARALLEL_PREDICT_MEMBERS (forward) or PARALLEL_TRAIN_MEMBERS
    (train_step) members the parallel twin runs, on the population's threads; at or below it the serial kernel."""
    calls = []
    monkeypatch.setattr(population_module, "run_with_threads",
                        lambda kern, args, threads: calls.append((kern, threads)) or True)
    limit = {"forward": config.PARALLEL_PREDICT_MEMBERS, "train_step": config.PARALLEL_TRAIN_MEMBERS}[op]
    name = {"forward": "predict", "train_step": "train_step"}[op]
    for n in (limit, limit + 1):
        pop = fastbp.Population(n, [2, 1], seed=0, threads=1)
        X, Y = data(n, 1, [2, 1])
        getattr(pop, op)(*((X,) if op == "forward" else (X, Y)))
        kernels_used, threads = (pop._kernels_parallel, 1) if n > limit else (pop._kernels, None)
        assert calls[-1] == (getattr(kernels_used, name), threads)
        assert pop._kernels_parallel is not pop._kernels


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
