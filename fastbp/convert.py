"""Networks to and from other frameworks' descriptions of the same thing: a stack of dense layers, each followed by an
activation. PyTorch's ``nn.Sequential`` lives here; ONNX graphs (:mod:`fastbp.onnx`) go through the same two
functions, :func:`stack` and :func:`network`, so every format meets the same checks.

This module sits below the classes that call it (:class:`fastbp.Network`'s ``to_torch`` and ``from_torch``, and
:mod:`fastbp.onnx`): it is handed the class to build. A stack is ``(layers, activations)``: ``layers[l] = (W, b)``
with W of shape (n_out, n_in), PyTorch's layout, and ``activations[l]`` the fastbp name of the activation after layer
l (``"identity"`` where there is none).
"""

import numpy as np

from . import activations as act
from ._checks import DTYPES

# PyTorch's activation modules, by fastbp's name (Identity: no activation), and the arguments fastbp computes with:
# to_torch passes them, from_torch refuses a module with others (softmax: any dim over the features).
TORCH_ACTIVATIONS = {"relu": "ReLU", "leaky_relu": "LeakyReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "elu": "ELU",
                     "silu": "SiLU", "gelu": "GELU", "gelu_tanh": "GELU", "softplus": "Softplus", "softmax": "Softmax",
                     "identity": "Identity"}
TORCH_ARGUMENTS = {"leaky_relu": dict(negative_slope=act.LEAKY_SLOPE), "elu": dict(alpha=1.0),
                   "gelu": dict(approximate="none"), "gelu_tanh": dict(approximate="tanh"),
                   "softplus": dict(beta=1.0, threshold=act.SOFTPLUS_THRESHOLD), "softmax": dict(dim=-1)}
SUPPORTED_TORCH = "Linear, " + ", ".join(dict.fromkeys(TORCH_ACTIVATIONS.values()))


def stack(net):
    """``(layers, activations)`` of a network: copies of its (W, b), taken under its lock (a training thread never
    leaves half a step in them), and the activation after each layer."""
    with net._lock:
        layers = [(W.copy(), b.copy()) for W, b in net.layers()]
    return layers, list(net.activations)


def network(cls, layers, activations, default_dtype, source, **kwargs):
    """A ``cls`` computing a stack, or a ``ValueError`` naming ``source`` and what does not fit.

    Parameters
    ----------
    cls : type
        :class:`fastbp.Network` or a subclass.
    layers : list of (ndarray, ndarray)
        ``(W, b)`` per layer, W of shape (n_out, n_in), b of shape (n_out,); copied.
    activations : list of str
        fastbp's name of the activation after each layer (``"identity"`` for none).
    default_dtype : numpy.dtype
        The network's dtype, unless ``kwargs`` gives one.
    source : str
        Names what is converted, for the messages.
    **kwargs
        Passed to :class:`fastbp.Network` (``loss``, ``optimizer``, ``dtype``, ``seed``, ``threads``, ``compiled``).
        ``loss`` defaults to the one that goes with the output: ``cross_entropy`` after softmax, ``bce`` after
        sigmoid, ``mse`` otherwise.
    """
    if not layers:
        raise ValueError(f"{source} has no dense layer")
    if "softmax" in activations[:-1]:
        raise ValueError(f"{source}: softmax comes before the last layer; fastbp has softmax only as the output")
    if activations[-1] not in act.OUTPUT:
        raise ValueError(f"{source}: {activations[-1]} after the last layer; fastbp's output activation is one of "
                         f"{', '.join(act.OUTPUT)} ({activations[-1]} is for hidden layers)")
    sizes = [layers[0][0].shape[1]]
    for l, (W, b) in enumerate(layers):
        if W.ndim != 2 or W.shape[1] != sizes[-1] or b.shape != (W.shape[0],):
            raise ValueError(f"{source}: layer {l} has weight {W.shape} and bias {b.shape}; expected "
                             f"(n_out, {sizes[-1]}) and (n_out,)")
        if not (np.isfinite(W).all() and np.isfinite(b).all()):
            raise ValueError(f"{source}: layer {l}'s parameters contain NaN or infinity")
        sizes.append(W.shape[0])
    output = activations[-1]
    kwargs.setdefault("loss", {"softmax": "cross_entropy", "sigmoid": "bce"}.get(output, "mse"))
    kwargs.setdefault("dtype", default_dtype)
    net = cls(sizes, hidden=list(activations[:-1]), output=output, **kwargs)
    for (W, b), (W_in, b_in) in zip(net.layers(), layers):
        W[:], b[:] = W_in, b_in
    return net


def check_dtype(dtype, source):
    dtype = np.dtype(dtype)
    if dtype not in DTYPES:
        raise ValueError(f"{source} computes in {dtype}; fastbp networks are float32 or float64")
    return dtype


# ---- PyTorch ---------------------------------------------------------------------------------------------------

def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("to_torch and from_torch need PyTorch (https://pytorch.org: pip install torch)") from None
    return torch


def to_torch(net):
    """:meth:`fastbp.Network.to_torch`."""
    torch = _torch()

    layers, activations = stack(net)
    sequence = []
    for l, ((W, b), name) in enumerate(zip(layers, activations)):
        linear = torch.nn.Linear(W.shape[1], W.shape[0], dtype=getattr(torch, net.dtype.name))
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W))
            linear.bias.copy_(torch.from_numpy(b))
        sequence.append(linear)
        # An Identity between Linears keeps the indices of state_dict's keys: 0, 2, 4, ...
        if l < len(layers) - 1 or name != "identity":
            sequence.append(getattr(torch.nn, TORCH_ACTIVATIONS[name])(**TORCH_ARGUMENTS.get(name, {})))
    return torch.nn.Sequential(*sequence)


def from_torch(cls, module, **kwargs):
    """:meth:`fastbp.Network.from_torch`."""
    torch = _torch()

    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"expected a torch.nn.Sequential of {SUPPORTED_TORCH}, got {type(module).__name__}")
    # Exact classes: a subclass may compute something else.
    names = {getattr(torch.nn, kind): name for name, kind in TORCH_ACTIVATIONS.items()}
    layers, activations, dtype = [], [], None
    for i, child in enumerate(module):
        kind = type(child).__name__
        where = f"module {i} ({child!r})"
        if type(child) is torch.nn.Linear:
            W = child.weight.detach().cpu().numpy()
            dtype = check_dtype(W.dtype, where) if dtype is None else dtype
            if W.dtype != dtype:
                raise ValueError(f"{where} is {W.dtype}, the layers before it {dtype}; convert the module to one dtype")
            b = np.zeros(W.shape[0], W.dtype) if child.bias is None else child.bias.detach().cpu().numpy()
            layers.append((W.copy(), b.copy()))
            activations.append("identity")
            continue
        name = names.get(type(child))
        if name is None:
            raise ValueError(f"{where}: fastbp takes an nn.Sequential of {SUPPORTED_TORCH}, got {kind}")
        if name == "identity":
            continue
        if name == "softmax" and child.dim not in (-1, 1, None):
            raise ValueError(f"{where}: fastbp's softmax is over the features (dim=-1 or 1), got dim={child.dim}")
        if name.startswith("gelu"):  # one module, two fastbp activations
            name = "gelu_tanh" if child.approximate == "tanh" else "gelu"
        fixed = {k: v for k, v in TORCH_ARGUMENTS.get(name, {}).items() if k != "dim"}
        got = {k: getattr(child, k) for k in fixed}
        if got != fixed:
            raise ValueError(f"{where}: fastbp's {name} has {_listed(fixed)}, got {_listed(got)}")
        if not layers or activations[-1] != "identity":
            raise ValueError(f"{where}: an activation must follow a Linear, and only one")
        activations[-1] = name
    return network(cls, layers, activations, dtype, "the module", **kwargs)


def _listed(arguments):
    return ", ".join(f"{k}={v!r}" for k, v in arguments.items())
