"""fastbp against PyTorch's numbers on every run: gradients of every activation x output/loss x dtype (the activations
added later and networks with an activation per hidden layer with three of the pairings), the trajectories of every
optimizer, of every schedule with and without clipping, a few Adam steps of those later activations and of the mixed
networks, ReduceLROnPlateau's rates, vector-Jacobian products of objectives fastbp does not know, and a state_dict in
an nn.Sequential.

The numbers come from ``tests/golden/torch.npz`` (written by ``tests/golden/make_golden.py``, inputs included), so
the tests run without PyTorch; where PyTorch is installed, each runs a second time against what it computes now
(``source="torch"``), and ``test_the_file_is_what_torch_computes_today`` compares the file with it case by case."""

import numpy as np
import pytest

import fastbp
from fastbp import optim, training

from .golden import make_golden
from .test_objectives import custom_losses
from .test_schedules import SCHEDULES, optimizers

FILE = np.load(make_golden.PATH)
CASES = {}
for _name in FILE.files:  # "<case key>/in/<input>" and "<case key>/out/<output>"
    for _side in ("in", "out"):
        if f"/{_side}/" in _name:
            _key, _field = _name.split(f"/{_side}/")
            CASES.setdefault(_key, {"in": {}, "out": {}})[_side][_field] = FILE[_name]
OPTIMIZERS = {"sgd": fastbp.SGD(0.05), "momentum": fastbp.SGD(0.05, momentum=0.9),
              "nesterov-decay": fastbp.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
              "adam": fastbp.Adam(0.01), "adamw": fastbp.Adam(0.01, weight_decay=0.1)}


def keys(kind):
    return [key for key in CASES if key.split("/")[0] == kind]


@pytest.fixture(params=["file", "torch"])
def numbers(request):
    """A case's PyTorch outputs: from the file, or computed now by PyTorch (skipped where it is not installed)."""
    if request.param == "file":
        return lambda key: CASES[key]["out"]
    torch = pytest.importorskip("torch")
    return lambda key: make_golden.compute(torch, key, CASES[key]["in"])


def network(key, hidden, output="identity", loss="mse", optimizer=None):
    """A network holding the case's parameters, in the dtype of its X; ``hidden`` as in the case keys (names joined
    by commas: one per hidden layer)."""
    inputs = CASES[key]["in"]
    sizes = list(inputs["sizes"])
    net = fastbp.Network(sizes, hidden=make_golden.hidden_names(hidden, len(sizes) - 2), output=output, loss=loss,
                         dtype=inputs["X"].dtype, optimizer=optimizer or fastbp.SGD(0.1), seed=0)
    net.load_state_dict({name: value for name, value in inputs.items() if "." in name})
    return net, inputs


def close(got, want, dtype=np.float64, rtol=1e-10):
    """float64 to ``rtol``; float32 to 1e-4 of the largest magnitude (both sides round in float32, in their order)."""
    if np.dtype(dtype) == np.float32:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(want).max()))
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 1e-3 * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("key", keys("autograd"))
def test_gradients_match_torch(numbers, key):
    _, hidden, output, loss, _ = key.split("/")
    net, inputs = network(key, hidden, output, loss)
    want = numbers(key)
    got_loss, grads = net.gradients(inputs["X"], inputs["Y"])
    close(got_loss, want["loss"], net.dtype)
    for name, value in grads.items():
        close(value, want[f"grad/{name}"], net.dtype)


@pytest.mark.parametrize("key", keys("optim"))
def test_optimizer_trajectories_match_torch(numbers, key):
    net, inputs = network(key, "tanh", optimizer=OPTIMIZERS[key.split("/")[1]])
    for step, want in enumerate(numbers(key)["params"]):
        net.train_step(inputs["X"], inputs["Y"])
        close(net.params, want)
    assert step == 9


@pytest.mark.parametrize("key", keys("train"))
def test_training_steps_match_torch(numbers, key):
    """The activations added after the first five and the mixed networks: Adam's steps on softmax + cross-entropy,
    each step's parameters (float32 to 1e-4: both sides round, and Adam's step divides by the gradient's size)."""
    _, hidden, _ = key.split("/")
    net, inputs = network(key, hidden, "softmax", "cross_entropy", fastbp.Adam(0.01))
    assert net.activations == (*make_golden.hidden_names(hidden, len(net.sizes) - 2), "softmax")
    for want in numbers(key)["params"]:
        net.train_step(inputs["X"], inputs["Y"])
        close(net.params, want, net.dtype, rtol=1e-9)
    assert net.hyper[optim.STEP] == make_golden.TRAIN_STEPS


@pytest.mark.parametrize("key", keys("schedule"))
def test_schedules_and_clipping_match_torch(numbers, key):
    _, name, kind, clip = key.split("/")
    optimizer = optimizers(SCHEDULES[name][0], float(clip) or None)[kind]
    net, inputs = network(key, "tanh", "softmax", "cross_entropy", optimizer)
    for want in numbers(key)["params"]:
        net.train_step(inputs["X"], inputs["Y"])
        close(net.params, want, rtol=1e-9)
    assert net.hyper[optim.STEP] == make_golden.SCHEDULE_STEPS


def test_reduce_on_plateau_matches_torch(numbers):
    rule = training._Plateau(fastbp.schedules.ReduceOnPlateau(**make_golden.PLATEAU))
    hyper, rates = fastbp.SGD(0.5).hyper(), []
    for loss in CASES["plateau"]["in"]["losses"]:
        rule(hyper, loss)
        rates.append(hyper[optim.LR])
    want = numbers("plateau")["rates"]
    np.testing.assert_allclose(rates, want, rtol=1e-15)
    assert len(set(want)) > 2  # the rule fired more than once


@pytest.mark.parametrize("name, output, L, dL", custom_losses(), ids=lambda v: v if isinstance(v, str) else "")
def test_backward_of_any_objective_matches_torch(numbers, name, output, L, dL):
    key = f"backward/{name}"
    net, inputs = network(key, "tanh", output)
    got = net.backward(inputs["X"], dL(net.forward(inputs["X"])))
    want = numbers(key)
    for param, value in got.items():
        close(value, want[f"grad/{param}"])


def test_state_dict_drives_an_nn_sequential(numbers):
    """fastbp's state_dict keys and layouts are nn.Sequential's: the same parameters, the same outputs."""
    net, inputs = network("sequential", "tanh")
    close(net.forward(inputs["X"]), numbers("sequential")["forward"], rtol=1e-12)


def test_the_file_is_what_torch_computes_today():
    """Every case of the file recomputed by the installed PyTorch (the file's version may differ: rounding only)."""
    torch = pytest.importorskip("torch")
    for key, case in CASES.items():
        now = make_golden.compute(torch, key, case["in"])
        assert set(now) == set(case["out"]), key
        for name, value in now.items():
            close(value, case["out"][name], value.dtype, rtol=1e-9)


def test_the_file_covers_every_case():
    """Every activation x pairing x dtype, optimizer, schedule x optimizer x clipping and objective is in the file
    (a case dropped from make_golden.py, or a file written by an older one, fails here)."""
    hidden = make_golden.HIDDEN + make_golden.MIXED
    assert set(fastbp.activations.HIDDEN) == set(make_golden.HIDDEN)  # every activation fastbp has
    assert len(keys("autograd")) == 2 * sum(len(make_golden.PAIRINGS) if h in make_golden.PAIRED else 3 for h in hidden)
    assert sorted(k.split("/")[1] for k in keys("train")) == sorted(make_golden.TRAINED * 2)
    assert sorted(k.split("/")[1] for k in keys("optim")) == sorted(OPTIMIZERS)
    assert len(keys("schedule")) == len(SCHEDULES) * 2 * 2 and set(make_golden.SCHEDULES) == set(SCHEDULES)
    assert set(CASES) == set(make_golden.cases())
