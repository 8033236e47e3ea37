"""fastbp.convert: networks to and from PyTorch's nn.Sequential, exactly, against PyTorch's numbers committed in
``tests/golden/torch.npz`` (so every run checks them) and, where PyTorch is installed, against what it computes now;
modules and stacks fastbp cannot hold are refused, naming what."""

import re
import sys

import numpy as np
import pytest

import fastbp
from fastbp import convert

from .golden import make_golden
from .test_golden import CASES, close, keys

MODULES = keys("module")


def stack_of(key):
    """The case's (layers, activations): its state_dict and the activations its key names."""
    _, hidden, output, _ = key.split("/")
    inputs = CASES[key]["in"]
    n = len(inputs["sizes"]) - 1
    layers = [(inputs[f"{2 * l}.weight"], inputs[f"{2 * l}.bias"]) for l in range(n)]
    return layers, [hidden] * (n - 1) + [output], inputs


def network_of(key, **kwargs):
    """The network built from the case's stack, as from_torch and fastbp.onnx.load build theirs."""
    layers, activations, inputs = stack_of(key)
    return convert.network(fastbp.Network, layers, activations, inputs["X"].dtype, "case", **kwargs)


@pytest.fixture(params=["file", "torch"])
def torch_forward(request):
    """The case's nn.Sequential output: from the file, or computed now (skipped where PyTorch is not installed)."""
    if request.param == "file":
        return lambda key: CASES[key]["out"]["forward"]
    torch = pytest.importorskip("torch")
    return lambda key: make_golden.compute(torch, key, CASES[key]["in"])["forward"]


@pytest.mark.parametrize("key", MODULES)
def test_a_stack_computes_what_the_sequential_does(key, torch_forward):
    """Every hidden activation x last module x dtype: the network built from the module's parameters and
    activations (the path from_torch and fastbp.onnx.load share) computes PyTorch's outputs."""
    _, activations, inputs = stack_of(key)
    net = network_of(key)
    assert (net.hidden, net.output, net.dtype) == (activations[0], activations[-1], inputs["X"].dtype)
    assert net.loss == {"softmax": "cross_entropy", "sigmoid": "bce"}.get(activations[-1], "mse")
    close(net.forward(inputs["X"]), torch_forward(key), inputs["X"].dtype, rtol=1e-12)


def test_the_stack_checks_what_a_network_can_hold():
    rng = np.random.default_rng(0)
    W1, b1, W2, b2 = rng.normal(size=(4, 3)), np.zeros(4), rng.normal(size=(2, 4)), np.zeros(2)
    for layers, activations, words in [
            ([], [], "no dense layer"),
            ([(W1, b1), (W2, b2), (W2[:, :2], b2)], ["relu", "tanh", "identity"], "relu and tanh"),
            ([(W1, b1), (W2, b2)], ["softmax", "identity"], "softmax comes before the last layer"),
            ([(W1, b1), (W2, b2), (W2, b2)], ["relu", "relu", "identity"], "expected (n_out, 2)"),
            ([(W1, b1), (W2, b1)], ["relu", "identity"], "bias (4,)"),
            ([(W1, b1), (W2, b2[:1])], ["relu", "identity"], "bias (1,)"),
            ([(W1, b1), (W2 * np.nan, b2)], ["relu", "identity"], "NaN")]:
        with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
            convert.network(fastbp.Network, layers, activations, np.float64, "stack")


def test_without_the_optional_packages_the_methods_say_what_to_install(monkeypatch):
    net = fastbp.Network([2, 3, 1])
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError, as where it is missing
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match="pip install torch"):
        net.to_torch()
    with pytest.raises(ImportError, match="pip install torch"):
        fastbp.Network.from_torch(object())
    with pytest.raises(ImportError, match=re.escape("pip install 'fastbp[onnx]'")):
        net.to_onnx()


# ---- with PyTorch ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("key", MODULES)
def test_from_torch_copies_every_module_kind_exactly(key, torch):
    _, activations, inputs = stack_of(key)
    module = make_golden.sequential(torch, inputs, activations[0], None if activations[-1] == "identity"
                                    else activations[-1])
    net = fastbp.Network.from_torch(module)
    assert np.array_equal(net.params, network_of(key).params)
    close(net.forward(inputs["X"]), CASES[key]["out"]["forward"], inputs["X"].dtype, rtol=1e-12)


@pytest.mark.parametrize("key", MODULES)
def test_to_torch_round_trips_exactly(key, torch):
    inputs = CASES[key]["in"]
    net = network_of(key, optimizer=fastbp.Adam(0.1), seed=5)
    module = net.to_torch()
    assert list(module.state_dict()) == list(net.state_dict())
    # Linear, activation, ..., Linear and the output's activation module, if it has one; softmax over the last dim
    assert len(module) == 2 * len(net.sizes[1:]) - (net.output == "identity")
    assert net.output != "softmax" or module[-1].dim == -1
    with torch.no_grad():
        close(module(torch.from_numpy(inputs["X"])).numpy(), net.forward(inputs["X"]), inputs["X"].dtype, rtol=1e-12)
    back = fastbp.Network.from_torch(module)
    assert np.array_equal(back.params, net.params) and (back.sizes, back.hidden, back.output, back.dtype) == (
        net.sizes, net.hidden, net.output, net.dtype)
    module.state_dict()["0.weight"][0, 0] += 1  # a copy: the network is not the module
    assert np.array_equal(back.params, net.params)


def test_from_torch_takes_biasless_layers_identities_and_network_arguments(torch):
    nn = torch.nn
    module = nn.Sequential(nn.Identity(), nn.Linear(3, 4, bias=False), nn.Identity(), nn.Tanh(), nn.Linear(4, 2),
                           nn.Softmax(dim=1)).double()
    net = fastbp.Network.from_torch(module, loss="mse", dtype=np.float32, optimizer=fastbp.Adam(0.01), seed=3)
    assert (net.sizes, net.hidden, net.output, net.loss, net.dtype) == ([3, 4, 2], "tanh", "softmax", "mse",
                                                                         np.float32)
    assert not net.layers()[0][1].any()
    X = np.random.default_rng(0).normal(size=(5, 3))
    with torch.no_grad():
        np.testing.assert_allclose(net.forward(X), module(torch.from_numpy(X)).numpy(), rtol=1e-5, atol=1e-6)


def test_from_torch_refuses_what_fastbp_cannot_hold(torch):
    nn = torch.nn
    cases = [
        (nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.1), nn.Linear(4, 2)), "module 1 (Dropout(p=0.1"),
        (nn.Sequential(nn.Conv1d(3, 4, 1)), "got Conv1d"),
        (nn.Sequential(nn.Sequential(nn.Linear(3, 4))), "got Sequential"),
        (nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2), nn.Linear(4, 2)), "slope 0.01"),
        (nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.001), nn.Linear(4, 2)), "slope 0.01"),
        (nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=0)), "dim=0"),
        (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)), "relu and tanh"),
        (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Tanh(), nn.Linear(4, 2)), "and only one"),
        (nn.Sequential(nn.ReLU(), nn.Linear(3, 4)), "must follow a Linear"),
        (nn.Sequential(nn.Linear(3, 4).half()), "float16"),
        (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2).double()), "convert the module to one dtype"),
        (nn.Sequential(nn.Linear(3, 4).double(), nn.ReLU(), nn.Linear(4, 2)), "convert the module to one dtype"),
        (nn.Sequential(), "no dense layer"),
        (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(5, 2)), "expected (n_out, 4)"),
    ]
    for module, words in cases:
        with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
            fastbp.Network.from_torch(module)
    with torch.no_grad():
        module = nn.Sequential(nn.Linear(3, 4))
        module[0].weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinity"):
        fastbp.Network.from_torch(module)
    with pytest.raises(TypeError, match="nn.Sequential"):
        fastbp.Network.from_torch(nn.Linear(3, 4))
