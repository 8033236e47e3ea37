"""The Network API: training end to end, state, bad input, determinism, @njit use and allocations."""

import os
import subprocess
import sys
import textwrap
import types

import numba
import numpy as np
import pytest

import fastbp
from fastbp import kernels

from .conftest import make_data, needs_jit, xor_network


def test_xor_reproduces(xor):
    """The textbook example: 2-2-1 sigmoid, bce, SGD lr 0.5, 8000 full-batch steps."""
    X, Y = xor
    net = xor_network()
    first = net.train_step(X, Y)
    for _ in range(7999):
        last = net.train_step(X, Y)
    assert last < first / 10
    np.testing.assert_array_equal(net.predict(X).ravel(), [0, 1, 1, 0])
    np.testing.assert_array_equal(net.forward(X).round().ravel(), [0, 1, 1, 0])


def digits_split():
    sklearn = pytest.importorskip("sklearn.datasets")
    from sklearn.model_selection import train_test_split

    digits = sklearn.load_digits()
    X = (digits.data / 16.0).astype(np.float64)
    return train_test_split(X, digits.target, test_size=0.25, random_state=0, stratify=digits.target)


def test_digits_accuracy():
    Xtr, Xte, ytr, yte = digits_split()
    net = fastbp.Network([64, 64, 10], hidden="relu", output="softmax", loss="cross_entropy",
                         optimizer=fastbp.Adam(lr=1e-3), seed=0)
    history = net.fit(Xtr, ytr, epochs=30, batch_size=32, validation=(Xte, yte))
    accuracy = (net.predict(Xte) == yte).mean()
    assert accuracy >= 0.95, accuracy
    assert len(history["loss"]) == 30 and history["loss"][-1] < history["loss"][0]
    assert history["val_loss"][-1] < history["val_loss"][0]


def test_fit_patience_restores_best():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(64, 3)), rng.normal(size=(64, 1))
    Xv, Yv = rng.normal(size=(16, 3)), rng.normal(size=(16, 1))  # noise: validation stops improving early
    net = fastbp.Network([3, 32, 1], hidden="tanh", optimizer=fastbp.SGD(lr=0.2), seed=0)
    history = net.fit(X, Y, epochs=200, batch_size=8, validation=(Xv, Yv), patience=3)
    assert len(history["val_loss"]) < 200
    best = int(np.argmin(history["val_loss"]))
    assert len(history["val_loss"]) == best + 4
    assert net.evaluate(Xv, Yv) == pytest.approx(history["val_loss"][best], rel=1e-12)


def test_fit_batches_and_progress(capsys):
    X, Y = make_data([3, 2], 10, "identity", "mse", np.float64)
    a = fastbp.Network([3, 2], output="identity", seed=1)
    b = fastbp.Network([3, 2], output="identity", seed=1)
    a.fit(X, Y, epochs=2, batch_size=4, shuffle=False)
    for _ in range(2):
        for start in (0, 4, 8):
            b.train_step(X[start:start + 4], Y[start:start + 4])
    np.testing.assert_array_equal(a.params, b.params)
    a.fit(X, Y, epochs=2, progress=True)
    assert "2/2" in capsys.readouterr().err


def test_progress_without_tqdm_prints_each_epochs_losses(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # whether or not tqdm is installed: the import fails
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    X, Y = make_data([3, 2], 12, "identity", "mse", np.float64)
    fastbp.Network([3, 2], output="identity", seed=1).fit(X, Y, epochs=2)
    assert capsys.readouterr().err == ""  # no progress by default
    history = fastbp.Network([3, 2], output="identity", seed=1).fit(X[:8], Y[:8], epochs=3, batch_size=4,
                                                                   validation=(X[8:], Y[8:]), progress=True)
    assert capsys.readouterr().err.splitlines() == [
        f"epoch {e + 1}/3 loss {history['loss'][e]:.6g} val_loss {history['val_loss'][e]:.6g}" for e in range(3)]


def test_progress_with_tqdm_shows_each_epochs_losses(monkeypatch):
    class Bar:  # records what fit asks of tqdm's bar
        def __init__(self, total, unit):
            self.total, self.unit, self.updates, self.postfixes, self.closed = total, unit, 0, [], False

        def update(self, k):
            self.updates += k

        def set_postfix(self, values):
            self.postfixes.append(values)

        def close(self):
            self.closed = True

    bars = []
    auto = types.ModuleType("tqdm.auto")
    auto.tqdm = lambda **kwargs: bars.append(Bar(**kwargs)) or bars[-1]
    monkeypatch.setitem(sys.modules, "tqdm", types.ModuleType("tqdm"))
    monkeypatch.setitem(sys.modules, "tqdm.auto", auto)
    X, Y = make_data([3, 2], 12, "identity", "mse", np.float64)
    history = fastbp.Network([3, 2], output="identity", seed=1).fit(X[:8], Y[:8], epochs=3, batch_size=4,
                                                                   validation=(X[8:], Y[8:]), progress=True)
    [bar] = bars
    assert (bar.total, bar.unit, bar.updates, bar.closed) == (3, "epoch", 3, True)
    assert bar.postfixes == [{key: f"{history[key][e]:.4g}" for key in ("loss", "val_loss")} for e in range(3)]


def test_determinism_same_seed():
    X, Y = make_data([8, 16, 3], 40, "softmax", "cross_entropy", np.float32)
    nets = [fastbp.Network([8, 16, 3], output="softmax", loss="cross_entropy", dtype=np.float32, seed=7,
                           optimizer=fastbp.Adam()) for _ in range(2)]
    for net in nets:
        net.fit(X, Y, epochs=3, batch_size=8)
    assert nets[0].params.tobytes() == nets[1].params.tobytes()
    assert fastbp.Network([8, 16, 3], seed=8).params.tobytes() != nets[0].params.tobytes()


def test_thread_counts_agree():
    """The parallel kernels with 1 and 2 threads agree to rounding (here: exactly, as no batch sum is split)."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two threads")
    sizes = [3, 256, 3]
    X, Y = make_data(sizes, 512, "identity", "mse", np.float64)
    params = []
    for threads in (1, 2):
        net = fastbp.Network(sizes, hidden="tanh", seed=0, threads=threads)
        assert net.dispatch.use_parallel(512)
        for _ in range(3):
            net.train_step(X, Y)
        params.append(net.params.copy())
    np.testing.assert_allclose(params[0], params[1], rtol=1e-12, atol=1e-15)
    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS  # restored


def test_state_dict_round_trip_and_names():
    net = fastbp.Network([3, 5, 4, 2], seed=0)
    sd = net.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    assert sd["0.weight"].shape == (5, 3) and sd["4.bias"].shape == (2,)
    other = fastbp.Network([3, 5, 4, 2], seed=1)
    other.load_state_dict({k: v.tolist() for k, v in sd.items()})  # anything np.asarray takes
    assert other.params.tobytes() == net.params.tobytes()
    for bad in (sd["0.bias"].astype(complex), sd["0.bias"] > 0, sd["0.bias"].astype(str)):  # complex, bool, text
        with pytest.raises(TypeError, match="must be real numbers"):
            other.load_state_dict({**sd, "0.bias": bad})
    assert other.params.tobytes() == net.params.tobytes()


def test_state_dict_torch_round_trip(torch):
    net = fastbp.Network([3, 5, 2], hidden="tanh", seed=0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).double()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()})
    X = np.random.default_rng(0).normal(size=(4, 3))
    np.testing.assert_allclose(model(torch.from_numpy(X)).detach().numpy(), net.forward(X), rtol=1e-12)
    back = fastbp.Network([3, 5, 2], hidden="tanh", seed=5)
    back.load_state_dict(model.state_dict())
    assert back.params.tobytes() == net.params.tobytes()


def test_save_load_round_trip(tmp_path):
    X, Y = make_data([4, 6, 3], 12, "softmax", "cross_entropy", np.float32)
    net = fastbp.Network([4, 6, 3], hidden="tanh", output="softmax", loss="cross_entropy", dtype=np.float32,
                         optimizer=fastbp.Adam(lr=0.01), seed=4)
    net.fit(X, Y, epochs=2, batch_size=4)
    net.save(tmp_path / "m.npz")
    assert os.listdir(tmp_path) == ["m.npz"]
    back = fastbp.Network.load(tmp_path / "m.npz")
    assert repr(back) == repr(net)
    assert back.flat.tobytes() == net.flat.tobytes() and back.hyper.tobytes() == net.hyper.tobytes()
    assert net.train_step(X, Y) == back.train_step(X, Y)  # optimizer state travels too
    assert back.flat.tobytes() == net.flat.tobytes()


def test_optimizer_swap():
    X, Y = make_data([3, 2], 5, "identity", "mse", np.float64)
    net = fastbp.Network([3, 2], optimizer=fastbp.Adam(lr=0.1), seed=0)
    net.train_step(X, Y)
    params = net.params.copy()
    net.optimizer = fastbp.Adam(lr=0.01)  # same kind: moments and step count kept
    assert net.hyper[7] == 1 and net.flat.shape[0] == 4
    net.optimizer = fastbp.SGD(lr=0.1)
    assert net.flat.shape[0] == 2 and net.params.tobytes() == params.tobytes()


# ---- bad input: a clear error, and nothing changed ------------------------------------------------------------

def _bad_calls(tmp_path):
    X, Y = make_data([3, 4, 2], 5, "identity", "mse", np.float64)
    nan_X, inf_Y = X.copy(), Y.copy()
    nan_X[2, 1], inf_Y[0, 0] = np.nan, np.inf
    not_model = tmp_path / "junk.npz"
    not_model.write_bytes(b"not a zip file at all")
    return [
        ("train_step", (X[:, :2], Y), ValueError, "shape \\(n, 3\\)"),
        ("train_step", (X, Y[:4]), ValueError, "same number of rows"),
        ("train_step", (X[0], Y), ValueError, "shape \\(n, 3\\)"),
        ("train_step", (X.astype(complex), Y), TypeError, "real numbers"),
        ("train_step", (X.astype(str), Y), TypeError, "real numbers"),
        ("train_step", ([[1, "a", 3]], Y[:1]), TypeError, "real numbers"),
        ("train_step", (nan_X, Y), ValueError, "X contains NaN or infinity"),
        ("train_step", (X, inf_Y), ValueError, "Y contains NaN or infinity"),
        ("train_step", (X[:0], Y[:0]), ValueError, "empty batch"),
        ("train_step", (X, Y[:, :1]), ValueError, "shape \\(n, 2\\)"),
        ("gradients", (nan_X, Y), ValueError, "X contains NaN"),
        ("forward", (nan_X,), ValueError, "X contains NaN"),
        ("forward", (X, np.empty((5, 2), np.float32)), ValueError, "out must be"),
        ("evaluate", (X, inf_Y), ValueError, "Y contains NaN"),
        ("fit", (X, Y), {"epochs": 0}, ValueError, "epochs must be"),
        ("fit", (X, Y), {"batch_size": -1}, ValueError, "batch_size must be"),
        ("fit", (X, Y), {"batch_size": 0}, ValueError, "batch_size must be an integer >= 1"),
        ("fit", (X, Y), {"epochs": 1.5}, ValueError, "epochs must be an integer >= 1"),
        ("fit", (X, Y), {"patience": 0, "validation": (X, Y)}, ValueError, "patience must be an integer >= 1"),
        ("fit", (X, inf_Y), {}, ValueError, "Y contains NaN"),
        ("fit", (X, Y), {"validation": (nan_X, Y)}, ValueError, "X contains NaN"),
        ("fit", (X, Y), {"validation": X}, TypeError, "validation must be a pair"),
        ("fit", (X, Y), {"validation": (X, Y, Y)}, TypeError, "validation must be a pair"),
        ("load_state_dict", ({"0.weight": np.zeros((4, 3))},), ValueError, "missing"),
        ("load_state_dict", ({**fastbp.Network([3, 4, 2]).state_dict(), "0.bias": np.zeros(3)},), ValueError,
         "shape \\(4,\\)"),
        ("load_state_dict", ({**fastbp.Network([3, 4, 2]).state_dict(), "0.bias": np.full(4, np.nan)},),
         ValueError, "NaN"),
        ("load_state_dict", ([1, 2],), TypeError, "mapping"),
        ("load", (not_model,), ValueError, "not a readable fastbp model"),
    ]


def test_bad_input_raises_and_changes_nothing(tmp_path):
    net = fastbp.Network([3, 4, 2], hidden="tanh", optimizer=fastbp.SGD(lr=0.1, momentum=0.9), seed=0)
    assert_bad_calls_change_nothing(net, tmp_path)


def assert_bad_calls_change_nothing(net, tmp_path):
    """Every bad call on a [3, 4, 2] network raises the expected error and leaves it bitwise unchanged."""
    X, Y = make_data([3, 4, 2], 5, "identity", "mse", np.float64)
    net.train_step(X, Y)  # non-trivial optimizer state
    for call in _bad_calls(tmp_path):
        name, args = call[0], call[1]
        kwargs, exc, match = (call[2], call[3], call[4]) if len(call) == 5 else ({}, call[2], call[3])
        flat, hyper = net.flat.tobytes(), net.hyper.tobytes()
        with pytest.raises(exc, match=match):
            getattr(net, name)(*args, **kwargs)
        assert net.flat.tobytes() == flat and net.hyper.tobytes() == hyper, name


@pytest.mark.parametrize("option, value", [("validation", "given"), ("patience", 3), ("progress", True),
                                           ("on_nonfinite", "skip"), ("sample_weight", "given"),
                                           ("reduce_on_plateau", fastbp.schedules.ReduceOnPlateau())])
def test_fit_with_comm_names_each_option_it_does_not_support(option, value):
    X, Y = make_data([3, 2], 6, "identity", "mse", np.float64)
    value = {"validation": (X, Y), "sample_weight": np.ones(6)}.get(option, value) if value == "given" else value
    net = fastbp.Network([3, 2], output="identity", seed=0)
    params = net.params.tobytes()
    with pytest.raises(ValueError, match=f"^fit\\(comm=...\\) does not support {option}$"):
        net.fit(X, Y, comm=object(), **{option: value})
    assert net.params.tobytes() == params


def test_fit_accepts_the_smallest_counts():
    X, Y = make_data([3, 2], 3, "identity", "mse", np.float64)
    history = fastbp.Network([3, 2], output="identity", seed=0).fit(X, Y, epochs=1, batch_size=1, patience=1,
                                                                    validation=(X, Y))
    assert len(history["loss"]) == len(history["val_loss"]) == 1


def test_bad_labels_raise_and_change_nothing():
    net = fastbp.Network([3, 4], output="softmax", loss="cross_entropy", seed=0)
    X = np.zeros((3, 3))
    flat = net.flat.tobytes()
    for labels, exc, match in [(np.array([0, 4, 1]), ValueError, "labels must be in \\[0, 4\\)"),
                               (np.array([0, -1, 1]), ValueError, "labels must be in"),
                               (np.array([0.0, 1.0, 2.0]), TypeError, "labels must be integers")]:
        with pytest.raises(exc, match=match):
            net.train_step(X, labels)
        assert net.flat.tobytes() == flat
    # Labels reach the kernels in the network's dtype, shape (n, 1): after a labelled step, a float array of that
    # shape is not taken for labels (no hot path for labels, which would hand it to the kernel unchecked).
    net.train_step(X, np.array([0, 3, 1]))
    flat = net.flat.tobytes()
    with pytest.raises(ValueError, match="Y must have shape \\(n, 4\\), got \\(3, 1\\)"):
        net.train_step(X, np.array([[0.5], [3.0], [1.0]]))
    assert net.flat.tobytes() == flat


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"sizes": [3]}, ValueError, "at least 2"),
    ({"sizes": [3, 0, 2]}, ValueError, "positive"),
    ({"sizes": [3, 2.5]}, TypeError, "integers"),
    ({"sizes": 3}, TypeError, "sequence"),
    ({"hidden": "softmax"}, ValueError, "unknown hidden 'softmax'"),
    ({"output": "swish"}, ValueError, "unknown output"),
    ({"output": "silu"}, ValueError, "unknown output 'silu'; expected one of relu, leaky_relu, tanh, sigmoid, identi"),
    ({"sizes": [3, 4, 5, 2], "hidden": ["relu", "swish"]}, ValueError, "unknown hidden\\[1\\] 'swish'; expected one of "
     "relu, leaky_relu, tanh, sigmoid, identity, elu, silu, gelu, gelu_tanh, softplus"),
    ({"sizes": [3, 4, 5, 2], "hidden": ["relu"]}, ValueError, "hidden has 1 names for 2 hidden layers"),
    ({"sizes": [3, 4, 2], "hidden": ["relu", "tanh"]}, ValueError, "hidden has 2 names for 1 hidden layers"),
    ({"sizes": [3, 4, 2], "hidden": {"relu"}}, TypeError, "hidden must be an activation name or a list"),
    ({"sizes": [3, 4, 2], "hidden": [None]}, ValueError, "unknown hidden\\[0\\] None"),
    ({"loss": "hinge"}, ValueError, "unknown loss"),
    ({"loss": "bce", "output": "identity"}, ValueError, "sigmoid \\+ bce, softmax \\+ cross_entropy"),
    ({"loss": "cross_entropy", "output": "sigmoid"}, ValueError, "does not work with"),
    ({"sizes": [3, 1], "output": "softmax", "loss": "cross_entropy"}, ValueError, "at least 2 units"),
    ({"dtype": np.int32}, TypeError, "float32 or float64"),
    ({"dtype": "nonsense"}, TypeError, "float32 or float64"),
    ({"seed": -1}, ValueError, "seed"),
    ({"threads": 0}, ValueError, "threads"),
    ({"optimizer": "sgd"}, TypeError, "optimizer must be"),
])
def test_bad_construction(kwargs, exc, match):
    kwargs = {"sizes": [3, 2], **kwargs}
    with pytest.raises(exc, match=match):
        fastbp.Network(**kwargs)


def test_hidden_per_layer():
    """One name per hidden layer: kept as given, or as the one name when they agree (one spelling everywhere); the
    spec carries each layer's code, and He initialisation before the activations unbounded above."""
    mixed = fastbp.Network([3, 4, 5, 6, 2], hidden=("tanh", "silu", "relu"), output="sigmoid", seed=0)
    assert mixed.hidden == ("tanh", "silu", "relu") and mixed.activations == ("tanh", "silu", "relu", "sigmoid")
    codes = fastbp.activations.CODES
    assert mixed.spec.tolist() == [4, -1, codes["sigmoid"], fastbp.losses.CODES["mse"], 3, 4, 5, 6, 2,
                                   codes["tanh"], codes["silu"], codes["relu"]]
    same = fastbp.Network([3, 4, 5, 2], hidden=["elu", "elu"], seed=0)
    assert same.hidden == "elu" and same.spec.tolist() == fastbp.Network([3, 4, 5, 2], hidden="elu", seed=0).spec.tolist()
    assert repr(mixed).startswith("Network([3, 4, 5, 6, 2], hidden=('tanh', 'silu', 'relu'), output='sigmoid'")
    # Glorot uniform before tanh (|W| <= its limit), He normal before silu and relu (a normal's tails pass it)
    limits = [np.sqrt(6 / (n_in + n_out)) for n_in, n_out in [(3, 4), (4, 5), (5, 6)]]
    beyond = [np.abs(W).max() > limit for (W, _), limit in zip(mixed.layers(), limits)]
    assert beyond == [False, True, True]


def test_pickle_from_before_per_layer_activations():
    """A network pickled by a fastbp with one hidden code in its spec and no ``activations`` unpickles whole."""
    net = fastbp.Network([3, 4, 5, 2], hidden="tanh", seed=0, compiled=False)
    state = net.__getstate__()
    del state["activations"]
    state["spec"] = state["spec"][:-2]  # the spec of those versions: no hidden codes after the sizes
    old = fastbp.Network.__new__(fastbp.Network)
    old.__setstate__(state)
    assert old.activations == net.activations and old.spec.tolist() == net.spec.tolist()
    X, Y = np.ones((2, 3)), np.zeros((2, 2))
    assert old.train_step(X, Y) == net.train_step(X, Y)


def test_pickle_from_before_keep_grad():
    """A network pickled with a hyper of 15 entries (before SGD's keep_grad) unpickles with keep_grad=True and trains
    as the original, its hyper the new layout's."""
    net = fastbp.Network([3, 4, 2], hidden="tanh", optimizer=fastbp.SGD(0.1), seed=0, compiled=False)
    state = net.__getstate__()
    state["hyper"] = state["hyper"][:fastbp.optim.NO_GRAD].copy()
    old = fastbp.Network.__new__(fastbp.Network)
    old.__setstate__(state)
    assert old.hyper.shape == net.hyper.shape and old.optimizer == fastbp.SGD(0.1)
    X, Y = np.ones((1, 3)), np.zeros((1, 2))
    assert old.train_step(X, Y) == net.train_step(X, Y)
    assert old.flat.tobytes() == net.flat.tobytes()


@pytest.mark.parametrize("make, exc, match", [
    (lambda: fastbp.SGD(lr=0), ValueError, "lr must be in \\(0"),
    (lambda: fastbp.SGD(lr=-1), ValueError, "lr"),
    (lambda: fastbp.SGD(lr="1"), TypeError, "lr must be a real number"),
    (lambda: fastbp.SGD(lr=0.1, momentum=1.0), ValueError, "momentum"),
    (lambda: fastbp.SGD(lr=0.1, nesterov=True), ValueError, "nesterov"),
    (lambda: fastbp.SGD(lr=0.1, keep_grad=0), TypeError, "keep_grad must be True or False, got 0"),
    (lambda: fastbp.Adam(beta2=1.5), ValueError, "beta2"),
    (lambda: fastbp.Adam(eps=0), ValueError, "eps"),
    (lambda: fastbp.Adam(weight_decay=-0.1), ValueError, "weight_decay"),
])
def test_bad_hyperparameters(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


# ---- the kernels from a user's own @njit code ------------------------------------------------------------------

@numba.njit(cache=True)
def _user_loop(flat, spec, hyper, work, X, Y, steps):
    loss = 0.0
    for _ in range(steps):
        loss = kernels.train_step(flat, spec, hyper, work, X, Y)
    return loss


@numba.njit(parallel=True)
def _user_population(flats, spec, hypers, works, X, Y, steps):
    for m in numba.prange(flats.shape[0]):
        for _ in range(steps):
            kernels.train_step(flats[m], spec, hypers[m], works[m], X, Y)


def test_kernels_from_user_njit_serial_and_prange():
    X, Y = make_data([4, 8, 2], 6, "identity", "mse", np.float64)
    nets = [fastbp.Network([4, 8, 2], hidden="tanh", seed=s, optimizer=fastbp.SGD(lr=0.05, momentum=0.5))
            for s in range(4)]
    flats = np.stack([n.flat for n in nets])
    hypers = np.stack([n.hyper for n in nets])
    works = np.stack([n.workspace(6)[:kernels.work_size(n.spec, 6)] for n in nets])
    _user_population(flats, nets[0].spec, hypers, works, X, Y, 20)
    for m, net in enumerate(nets):
        _user_loop(net.flat, net.spec, net.hyper, net.workspace(6), X, Y, 10)
        _user_loop(net.flat, net.spec, net.hyper, net.workspace(6), X, Y, 10)
        np.testing.assert_allclose(flats[m], net.flat, rtol=1e-12, atol=1e-15)  # to rounding: another compilation
        assert hypers[m][7] == net.hyper[7] == 20


ALLOCATION_SCRIPT = textwrap.dedent("""
    import numba, numpy as np, fastbp
    from numba.core.runtime import rtsys
    from fastbp import kernels

    @numba.njit
    def loop(flat, spec, hyper, work, X, Y, out, steps):
        for _ in range(steps):
            kernels.train_step(flat, spec, hyper, work, X, Y)
            kernels.predict(flat, spec, work, X, out)

    def allocations(fn, steps):
        before = rtsys.get_allocation_stats()
        fn(steps)
        after = rtsys.get_allocation_stats()
        return after.alloc - before.alloc, (after.alloc - after.free) - (before.alloc - before.free)

    for sizes, opt, n in [([2, 2, 1], fastbp.SGD(lr=0.5), 4), ([8, 64, 64, 2], fastbp.Adam(), 32),
                          ([32, 128, 10], fastbp.SGD(lr=0.1, momentum=0.9), 64)]:  # BLAS and parallel twin
        net = fastbp.Network(sizes, hidden="tanh", output="identity", loss="mse", optimizer=opt, seed=0)
        X = np.random.default_rng(0).normal(size=(n, sizes[0])); Y = np.zeros((n, sizes[-1]))
        out = np.empty((n, sizes[-1])); work = net.workspace(n)
        user = lambda steps: loop(net.flat, net.spec, net.hyper, work, X, Y, out, steps)
        python = lambda steps: [net.train_step(X, Y) for _ in range(steps)]
        for name, fn in (("user", user), ("python", python)):
            fn(2)
            (one, kept1), (thousand, kept1000) = allocations(fn, 1), allocations(fn, 1000)
            print(name, one, thousand, kept1, kept1000)

    @numba.njit
    def objective_loop(flat, spec, hyper, work, X, Y, G, w, steps):
        for _ in range(steps):
            kernels.backward(flat, spec, work, X, G)  # any objective: dL/dP in, gradient out
            kernels.step(flat, hyper)
            kernels.weighted_train_step(flat, spec, hyper, work, X, Y, w)

    opt = fastbp.Adam(fastbp.schedules.Cosine(1e-3, steps=100, warmup=10), clip_norm=1.0)
    net = fastbp.Network([4, 32, 2], hidden="tanh", output="softmax", loss="cross_entropy", optimizer=opt, seed=0)
    X = np.random.default_rng(0).normal(size=(8, 4)); Y = np.eye(2)[np.arange(8) % 2]; G = np.ones((8, 2)) / 8
    work = net.workspace(8)
    objective = lambda steps: objective_loop(net.flat, net.spec, net.hyper, work, X, Y, G, np.ones(8), steps)
    objective(2)
    (one, kept1), (thousand, kept1000) = allocations(objective, 1), allocations(objective, 1000)
    print("user", one, thousand, kept1, kept1000)

    @numba.njit
    def population_loop(flats, spec, hypers, works, X, Y, losses, out, steps):
        for _ in range(steps):
            kernels.population_train_step(flats, spec, hypers, works, X, Y, losses)
            kernels.population_predict(flats, spec, works, X, out)

    pop = fastbp.Population(64, [4, 16, 2], hidden="tanh", seed=0)
    X = np.random.default_rng(0).normal(size=(64, 1, 4)); Y = np.zeros((64, 1, 2))
    losses, out, works = np.empty(64), np.empty((64, 1, 2)), pop.workspace(1)
    user = lambda steps: population_loop(pop.flats, pop.spec, pop.hypers, works, X, Y, losses, out, steps)
    user(2)
    (one, kept1), (thousand, kept1000) = allocations(user, 1), allocations(user, 1000)
    print("user", one, thousand, kept1, kept1000)
""")


@needs_jit
def test_no_allocation_per_step():
    """Numba runtime allocations (NUMBA_NRT_STATS=1): a user @njit loop of 1000 train+predict steps (of a network
    or a population), or of backward + step + weighted_train_step, makes as many as a loop of 1 (only the call's own
    argument wrappers); from Python, a train step makes only the MemInfo wrappers of its 6 array arguments, which
    Numba creates at any call boundary and frees on return: no buffer."""
    env = {**os.environ, "NUMBA_NRT_STATS": "1"}
    out = subprocess.run([sys.executable, "-c", ALLOCATION_SCRIPT], env=env, capture_output=True, text=True,
                         check=True).stdout
    lines = [line.split() for line in out.strip().splitlines()]
    assert len(lines) == 8, out  # three networks from a user loop and from Python, backward/step, a population
    for name, one, thousand, kept1, kept1000 in lines:
        assert kept1 == kept1000 == "0", out  # nothing outlives a call
        if name == "user":
            assert one == thousand, out
        else:
            assert int(thousand) == 1000 * int(one) and int(one) <= 6, out


def test_pickled_copy_trains_like_the_original():
    """A pickled network (without its workspace) takes the same steps as the original, through the hot path too;
    arrays unpickled read-only (joblib's memory maps) become writable copies."""
    import pickle

    net = fastbp.Network([3, 5, 2], optimizer=fastbp.Adam(), seed=0)
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    net.train_step(X, Y)
    net.predict(X)  # both hot paths armed before the copy
    state = pickle.loads(pickle.dumps(net)).__dict__
    state["flat"].setflags(write=False)
    copy = object.__new__(fastbp.Network)
    copy.__setstate__(state)
    assert copy.flat.flags.writeable
    for _ in range(3):
        assert copy.train_step(X, Y) == net.train_step(X, Y)
        np.testing.assert_array_equal(copy.predict(X), net.predict(X))
    np.testing.assert_array_equal(copy.flat, net.flat)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_buffers_kernels_are_given_start_on_a_cache_line(dtype):
    """flat and the workspace (a network's, after an optimizer change, a pickled copy's; a population's) start on
    64 bytes: where malloc put them decided whether the tiles' vector loads split cache lines (1.3x on simplechains)."""
    import pickle

    def aligned(a):
        return a.ctypes.data % 64 == 0 and a.flags.c_contiguous and a.flags.writeable

    for n in (1, 3, 300, 5000):  # small arrays come from malloc's heap, large ones from mmap (page + 16 bytes)
        net = fastbp.Network([3, 5, 2], dtype=dtype, compiled=False, seed=0)
        assert aligned(net.flat) and aligned(net.workspace(n))
        net.optimizer = fastbp.Adam()
        assert aligned(net.flat) and net.flat[2:].tobytes() == bytes(net.flat[2:].nbytes)
        copy = pickle.loads(pickle.dumps(net))
        assert aligned(copy.flat) and copy.flat.tobytes() == net.flat.tobytes()
        pop = fastbp.Population(n % 7 + 1, [3, 5, 2], dtype=dtype, seed=0)
        assert aligned(pop.flats) and aligned(pop.workspace(n))
