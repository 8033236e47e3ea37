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
    return layers, make_golden.hidden_names(hidden, n - 1) + [output], inputs


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
    """Every hidden activation and mixed network x last module x dtype: the network built from the module's
    parameters and activations (the path from_torch and fastbp.onnx.load share) computes PyTorch's outputs."""
    _, activations, inputs = stack_of(key)
    net = network_of(key)
    assert (net.activations, net.dtype) == (tuple(activations), inputs["X"].dtype)
    assert net.hidden == (activations[0] if len(set(activations[:-1])) == 1 else tuple(activations[:-1]))
    assert net.loss == {"softmax": "cross_entropy", "sigmoid": "bce"}.get(activations[-1], "mse")
    close(net.forward(inputs["X"]), torch_forward(key), inputs["X"].dtype, rtol=1e-12)


def test_the_stack_checks_what_a_network_can_hold():
    rng = np.random.default_rng(0)
    W1, b1, W2, b2 = rng.normal(size=(4, 3)), np.zeros(4), rng.normal(size=(2, 4)), np.zeros(2)
    for layers, activations, words in [
            ([], [], "no dense layer"),
            ([(W1, b1), (W2, b2)], ["softmax", "identity"], "softmax comes before the last layer"),
            ([(W1, b1), (W2, b2)], ["relu", "silu"], "silu after the last layer; fastbp's output activation is one of"),
            ([(W1, b1), (W2, b2), (W2, b2)], ["relu", "relu", "identity"], "expected (n_out, 2)"),
            ([(W1, b1), (W2, b1)], ["relu", "identity"], "bias (4,)"),
            ([(W1, b1), (W2, b2[:1])], ["relu", "identity"], "bias (1,)"),
            ([(W1, b1), (W2 * np.nan, b2)], ["relu", "identity"], "NaN")]:
        with pytest.raises(ValueError, match=re.escape(words)):
            convert.network(fastbp.Network, layers, activations, np.float64, "stack")
    # An activation per hidden layer, and none (a single layer).
    net = convert.network(fastbp.Network, [(W1, b1), (np.eye(4), b1), (W2, b2)], ["relu", "tanh", "sigmoid"],
                          np.float32, "stack")
    assert (net.hidden, net.activations, net.loss, net.dtype) == (("relu", "tanh"), ("relu", "tanh", "sigmoid"), "bce",
                                                                  np.float32)
    assert convert.network(fastbp.Network, [(W1, b1)], ["identity"], np.float64, "stack").activations == ("identity",)


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
    _, hidden, output, _ = key.split("/")
    _, activations, inputs = stack_of(key)
    module = make_golden.sequential(torch, inputs, hidden, None if output == "identity" else output)
    net = fastbp.Network.from_torch(module)
    assert net.activations == tuple(activations)
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
    # Each activation as its module, with the arguments fastbp computes with.
    for module_, name in zip(module[1::2], net.activations):
        assert type(module_).__name__ == convert.TORCH_ACTIVATIONS[name]
        assert all(getattr(module_, k) == v for k, v in convert.TORCH_ARGUMENTS.get(name, {}).items())
    back = fastbp.Network.from_torch(module)
    assert np.array_equal(back.params, net.params) and (back.sizes, back.activations, back.dtype) == (
        net.sizes, net.activations, net.dtype)
    module.state_dict()["0.weight"][0, 0] += 1  # a copy: the network is not the module
    assert np.array_equal(back.params, net.params)


def test_from_torch_takes_an_activation_per_layer(torch):
    """The issue's module: ReLU after one hidden layer, Tanh after the next; GELU's two forms are two activations."""
    nn = torch.nn
    module = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 10), nn.Tanh(), nn.Linear(10, 8),
                           nn.GELU(approximate="tanh"), nn.Linear(8, 5), nn.GELU(), nn.Linear(5, 3)).double()
    net = fastbp.Network.from_torch(module)
    assert net.hidden == ("relu", "tanh", "gelu_tanh", "gelu") and net.output == "identity"
    X = np.random.default_rng(0).normal(size=(5, 6))
    with torch.no_grad():
        close(net.forward(X), module(torch.from_numpy(X)).numpy(), rtol=1e-12)
    assert [type(m).__name__ for m in net.to_torch()] == [type(m).__name__ for m in module]


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
        (nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2), nn.Linear(4, 2)),
         "leaky_relu has negative_slope=0.01, got negative_slope=0.2"),
        (nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.001), nn.Linear(4, 2)), "negative_slope=0.01"),
        (nn.Sequential(nn.Linear(3, 4), nn.ELU(alpha=0.5), nn.Linear(4, 2)), "elu has alpha=1.0, got alpha=0.5"),
        (nn.Sequential(nn.Linear(3, 4), nn.Softplus(beta=2), nn.Linear(4, 2)),
         "softplus has beta=1.0, threshold=20.0, got beta=2, threshold=20.0"),
        (nn.Sequential(nn.Linear(3, 4), nn.Softplus(threshold=10), nn.Linear(4, 2)), "got beta=1.0, threshold=10"),
        (nn.Sequential(nn.Linear(3, 4), nn.CELU(), nn.Linear(4, 2)), "GELU, Softplus, Softmax, Identity, got CELU"),
        (nn.Sequential(nn.Linear(3, 4), nn.SiLU()), "silu after the last layer"),
        (nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=0)), "dim=0"),
        (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Tanh(), nn.Linear(4, 2)), "and only one"),
        (nn.Sequential(nn.ReLU(), nn.Linear(3, 4)), "must follow a Linear"),
        (nn.Sequential(nn.Linear(3, 4).half()), "float16"),
        (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2).double()), "convert the module to one dtype"),
        (nn.Sequential(nn.Linear(3, 4).double(), nn.ReLU(), nn.Linear(4, 2)), "convert the module to one dtype"),
        (nn.Sequential(), "no dense layer"),
        (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(5, 2)), "expected (n_out, 4)"),
    ]
    for module, words in cases:
        with pytest.raises(ValueError, match=re.escape(words)):
            fastbp.Network.from_torch(module)
    with torch.no_grad():
        module = nn.Sequential(nn.Linear(3, 4))
        module[0].weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinity"):
        fastbp.Network.from_torch(module)
    with pytest.raises(TypeError, match="nn.Sequential"):
        fastbp.Network.from_torch(nn.Linear(3, 4))
