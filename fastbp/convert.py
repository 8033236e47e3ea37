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

# PyTorch's activation modules, by fastbp's name (Identity: no activation).
TORCH_ACTIVATIONS = {"relu": "ReLU", "leaky_relu": "LeakyReLU", "tanh": "Tanh", "sigmoid": "Sigmoid",
                     "softmax": "Softmax", "identity": "Identity"}
SUPPORTED_TORCH = "Linear, " + ", ".join(TORCH_ACTIVATIONS.values())


def stack(net):
    """``(layers, activations)`` of a network: copies of its (W, b), taken under its lock (a training thread never
    leaves half a step in them), and the activation after each layer."""
    with net._lock:
        layers = [(W.copy(), b.copy()) for W, b in net.layers()]
    return layers, [net.hidden] * (len(layers) - 1) + [net.output]


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
    hidden = sorted(set(activations[:-1]))
    if "softmax" in hidden:
        raise ValueError(f"{source}: softmax comes before the last layer; fastbp has softmax only as the output")
    if len(hidden) > 1:
        raise ValueError(f"{source}: the hidden layers use {' and '.join(hidden)}; a fastbp network has one hidden "
                         f"activation for all of them (activations after each layer: {activations})")
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
    net = cls(sizes, hidden=hidden[0] if hidden else "identity", output=output, **kwargs)
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

    arguments = {"leaky_relu": (act.LEAKY_SLOPE,), "softmax": (-1,)}  # the slope; the features' dim
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
            sequence.append(getattr(torch.nn, TORCH_ACTIVATIONS[name])(*arguments.get(name, ())))
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
        if name == "leaky_relu" and child.negative_slope != act.LEAKY_SLOPE:
            raise ValueError(f"{where}: fastbp's leaky_relu has slope {act.LEAKY_SLOPE}, got {child.negative_slope}")
        if name == "softmax" and child.dim not in (-1, 1, None):
            raise ValueError(f"{where}: fastbp's softmax is over the features (dim=-1 or 1), got dim={child.dim}")
        if not layers or activations[-1] != "identity":
            raise ValueError(f"{where}: an activation must follow a Linear, and only one")
        activations[-1] = name
    return network(cls, layers, activations, dtype, "the module", **kwargs)
