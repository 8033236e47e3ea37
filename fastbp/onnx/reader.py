"""Reading ONNX graphs of dense layers, whoever wrote them, into the stack :mod:`fastbp.convert` builds a network from
(under :func:`fastbp.onnx.load`).

An activation is one operator (``Relu``, ``Gelu``, ...) or a formula of several: silu ``z * Sigmoid(z)``, gelu's
``Erf`` and ``Tanh`` forms, the ``Where(z > threshold, z, ...)`` forms of elu and softplus, leaky_relu's ``Max(z,
Mul(z, slope))``. A formula is read by comparing it with fastbp's list of them (:func:`_forms`): written out in terms
of the one tensor it takes, products and sums in any order and grouping, its constants exactly the graph dtype's
values; any other formula is refused.
"""

import collections
import math
import os

import numpy as np

from .. import activations as act
from .. import convert
from .writer import ACTIVATION_OPS, onnx_package

FAMILY = ("Gemm, or MatMul + Add, with Relu, LeakyRelu (or PRelu, or Max(z, Mul(z, slope)): slope 0.01), Tanh, "
          "Sigmoid, Elu (alpha 1), Softplus, Gelu (or z * (1 + Erf(z / sqrt(2))) * 0.5, or its Tanh form), "
          "z * Sigmoid(z), Softmax (last) or Identity after each, from one (batch, features) float input to one float "
          "output")
# The operators of the formulas fastbp reads as activations (_forms).
FORMULA_OPS = {"Mul", "Add", "Sub", "Div", "Pow", "Erf", "Tanh", "Sigmoid", "Exp", "Log", "Softplus", "Where",
               "Greater", "Less"}


def read(source):
    """The stack of layers an ONNX graph computes: ``(layers, activations, dtype)`` as :mod:`fastbp.convert` takes
    them (:func:`fastbp.onnx.load` says which graphs), or a ValueError naming the node fastbp does not read."""
    onnx = onnx_package()
    model = _read(onnx, source)
    graph = model.graph
    index = _Index(onnx, graph)
    initializers = index.initializers
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ValueError(f"the graph has {len(inputs)} inputs {[i.name for i in inputs]}; fastbp reads {FAMILY}")
    floats = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64}
    x = inputs[0]
    x_type = x.type.tensor_type
    if x.type.WhichOneof("value") != "tensor_type" or x_type.elem_type not in floats or \
            x_type.HasField("shape") and len(x_type.shape.dim) != 2:
        raise ValueError(f"the graph's input {x.name!r} is not a float32 or float64 tensor of shape (batch, "
                         f"features): {onnx.helper.printable_value_info(x)}")
    outputs = [o.name for o in graph.output if o.type.WhichOneof("value") == "tensor_type"
               and o.type.tensor_type.elem_type in (*floats, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)]
    # skl2onnx's ZipMap output: the probabilities as a list of {class: p}, from the float tensor it takes.
    names = {o.name for o in graph.output}
    outputs += [n.input[0] for n in graph.node if n.op_type == "ZipMap" and n.output[0] in names]
    if len(outputs) != 1:
        raise ValueError(f"the graph has {len(outputs)} float outputs {outputs}; fastbp reads {FAMILY}")
    chain = _chain(index, x.name, outputs[0])
    layers, activations, dtype = _stack(onnx, chain, index, np.dtype(floats[x_type.elem_type]))
    return layers, activations, dtype


class _Index:
    """A graph's look-ups: the node producing each tensor, the initializers, the single values an activation's formula
    may use (initializers and ``Constant`` nodes: PyTorch's TorchScript exporter writes the latter) and how many
    times each tensor is used."""

    def __init__(self, onnx, graph):
        self.producers = {out: node for node in graph.node for out in node.output}
        self.initializers = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        constants = {n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                     if n.op_type == "Constant" and [a.name for a in n.attribute] == ["value"]}
        self.constants = {k: v for k, v in (constants | self.initializers).items() if v.size == 1}
        self.uses = collections.Counter([t for n in graph.node for t in n.input] + [o.name for o in graph.output])


def _read(onnx, source):
    if isinstance(source, onnx.ModelProto):
        model = source
    else:
        try:
            model = onnx.load_from_string(bytes(source)) if isinstance(source, (bytes, bytearray)) else \
                onnx.load(source if hasattr(source, "read") else os.fspath(source))
        except (FileNotFoundError, IsADirectoryError, PermissionError, TypeError):
            raise
        except Exception as exc:  # protobuf's DecodeError and the like
            raise ValueError(f"{source!s:.100} is not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    try:
        onnx.checker.check_model(model)  # not full_check: skl2onnx's multilabel graphs declare a wrong label shape
    except Exception as exc:
        raise ValueError(f"not a valid ONNX model: {exc}") from None
    return model


def _chain(index, x, y):
    """The nodes from tensor x to tensor y, in order, each taking one computed tensor, the one before it (a formula
    of one tensor counts as its last node)."""
    chain, tensor = [], y
    while tensor != x:
        node = index.producers.get(tensor)
        if node is None:
            raise ValueError(f"the graph's output {y!r} does not depend on its input; fastbp reads {FAMILY}")
        computed = [t for t in node.input if t and t not in index.initializers]
        if node.domain not in ("", "ai.onnx"):
            raise ValueError(f"{_name(node)} is of the domain {node.domain!r}; fastbp reads {FAMILY}")
        merged = _binary_tail(node, index) or _leaky_max(node, index) or _formula_input(node, index)
        if merged is not None:
            computed = [merged]
        elif len(computed) != 1:
            raise ValueError(f"{_name(node)} takes {len(computed)} computed tensors {computed}: fastbp reads one "
                             f"chain of layers whose weights are initializers, {FAMILY}")
        chain.append(node)
        tensor = computed[0]
    return chain[::-1]


def _binary_tail(node, index):
    """p, if node is skl2onnx's binary probabilities ``Concat(Sub(1, p), p)``; else None."""
    initializers = index.initializers
    if node.op_type != "Concat" or len(node.input) != 2 or node.input[0] not in index.producers or \
            _attributes(node)["axis"] not in (1, -1):
        return None
    sub, p = index.producers[node.input[0]], node.input[1]
    if sub.op_type == "Sub" and list(sub.input[1:]) == [p] and sub.input[0] in initializers \
            and np.all(initializers[sub.input[0]] == 1) and initializers[sub.input[0]].size == 1:
        return p
    return None


def _leaky_max(node, index):
    """z, if node is ``Max(z, Mul(z, c))`` (either order) with a single value c: leaky_relu of slope c < 1."""
    if node.op_type != "Max" or len(node.input) != 2:
        return None
    for z, m in (node.input, node.input[::-1]):
        mul = index.producers.get(m)
        if mul is not None and mul.op_type == "Mul" and z in mul.input:
            c = [index.initializers.get(t) for t in mul.input if t != z]
            if len(c) == 1 and c[0] is not None and c[0].size == 1:
                return z
    return None


def _slope(node, index):
    """The slope of a leaky_relu node: LeakyRelu's alpha, PRelu's slope or Max(z, Mul(z, c))'s c."""
    producers, initializers = index.producers, index.initializers
    if node.op_type == "LeakyRelu":
        return _attributes(node).get("alpha", 0.01)
    if node.op_type == "PRelu":
        slope = initializers.get(node.input[1])
    else:
        mul = [producers[t] for t in node.input if t in producers and producers[t].op_type == "Mul"][0]
        slope = [initializers[t] for t in mul.input if t in initializers][0]
    return slope.item() if slope is not None and slope.size == 1 else slope


def _name(node):
    return f"node {node.name or node.output[0]!r} ({node.op_type})"


def _attributes(node):
    from onnx.helper import get_attribute_value

    return {a.name: get_attribute_value(a) for a in node.attribute}


def _stack(onnx, chain, index, dtype):
    """(layers, activations, dtype) of a chain of nodes; ValueError at the first node fastbp does not read."""
    layers, activations, open_matmul = [], [], False
    for node in chain:
        op, attributes, where = node.op_type, _attributes(node), _name(node)
        weights = [index.initializers[t] for t in node.input if t in index.initializers]
        for w in weights:
            if w.dtype.kind == "f" and w.dtype != dtype:
                raise ValueError(f"{where} has a {w.dtype} initializer in a {dtype} graph; fastbp computes in one "
                                 "dtype")
        after_matmul, open_matmul = open_matmul, op == "MatMul"
        if op == "Identity" or op == "Concat":  # Concat: the binary tail, read below
            continue
        if op == "Cast" and not layers:
            dtype = convert.check_dtype(onnx.helper.tensor_dtype_to_np_dtype(attributes["to"]), where)
        elif op in ("Gemm", "MatMul"):
            if node.input[0] in index.initializers or op == "Gemm" and attributes.get("transA", 0):
                raise ValueError(f"{where} multiplies the weights from the left; fastbp reads x W (+ b)")
            W = weights[0]
            if W.ndim != 2:
                raise ValueError(f"{where}'s weight has shape {W.shape}; fastbp reads 2-D weights")
            if op == "Gemm":
                W = (W if attributes.get("transB", 0) else W.T) * dtype.type(attributes.get("alpha", 1.0))
                bias = weights[1] * dtype.type(attributes.get("beta", 1.0)) if len(weights) > 1 else None
            else:
                W, bias = W.T, None
            layers.append((W, np.zeros(W.shape[0], dtype)))
            activations.append("identity")
            if bias is not None:
                layers[-1] = (W, _bias(bias, W.shape[0], where))
        elif op == "Add" and after_matmul:
            layers[-1] = (layers[-1][0], _bias(weights[0], layers[-1][0].shape[0], where))
        elif op in ("Relu", "LeakyRelu", "PRelu", "Max", "Tanh", "Sigmoid", "Softmax", "Elu", "Softplus", "Gelu", "Mul",
                    "Where"):
            name = _activation(node, index, dtype)
            if not layers or activations[-1] != "identity":
                raise ValueError(f"{where} does not follow a dense layer; fastbp reads {FAMILY}")
            activations[-1] = name
        elif op == "Reshape" and node is chain[-1] and layers:  # skl2onnx's regressor: to (batch, n_out) again
            n_out = layers[-1][0].shape[0]
            if len(weights) != 1 or list(weights[0]) not in ([-1, n_out], [0, n_out]):
                raise ValueError(f"{where} reshapes the (batch, {n_out}) output to {weights and list(weights[0])}; "
                                 f"fastbp reads a last Reshape only to (-1, {n_out})")
        else:
            raise ValueError(f"fastbp does not read {where}; it reads {FAMILY}")
    if chain and chain[-1].op_type == "Concat":  # [1 - p, p] of a sigmoid p: softmax of [0, z]
        (W, b), name = layers[-1], activations[-1]
        if name != "sigmoid" or W.shape[0] != 1:
            raise ValueError(f"{_name(chain[-1])}: [1 - p, p] of a {name} output of {W.shape[0]} units; fastbp "
                             "reads it after a sigmoid output of 1 unit")
        layers[-1] = (np.concatenate([np.zeros_like(W), W]), np.concatenate([np.zeros_like(b), b]))
        activations[-1] = "softmax"
    return layers, activations, dtype


def _bias(b, n_out, where):
    if b.shape not in ((n_out,), (1, n_out)):
        raise ValueError(f"{where}'s bias has shape {b.shape}; fastbp reads ({n_out},) or (1, {n_out})")
    return b.reshape(n_out)


def _activation(node, index, dtype):
    """fastbp's name of an activation node (a formula's last), or a ValueError if its slope, alpha or axis is not
    fastbp's, or the formula none fastbp reads."""
    op, attributes = node.op_type, _attributes(node)
    if op in ("LeakyRelu", "PRelu", "Max"):
        slope = _slope(node, index)
        # LeakyRelu's alpha is a float32 attribute whatever the graph's dtype; a slope tensor has the graph's.
        if np.size(slope) != 1 or slope != (np.float32 if op == "LeakyRelu" else dtype.type)(act.LEAKY_SLOPE):
            raise ValueError(f"{_name(node)}: fastbp's leaky_relu has slope {act.LEAKY_SLOPE}, the graph's is {slope}")
        return "leaky_relu"
    axis = attributes.get("axis", 1)
    if op == "Softmax" and axis not in (-1, 1):  # either is the last axis of a 2-D input
        raise ValueError(f"{_name(node)} is over axis {axis}; fastbp's softmax is over the features")
    if op == "Elu" and attributes.get("alpha", 1.0) != 1.0:
        raise ValueError(f"{_name(node)}: fastbp's elu has alpha 1.0, the graph's is {attributes['alpha']}")
    if op == "Gelu":  # approximate: "none" or "tanh", as bytes
        return "gelu_tanh" if attributes.get("approximate") == b"tanh" else "gelu"
    if op in ("Mul", "Where"):
        formula, z = _formula(node, index), _formula_input(node, index)
        names = [name for name, forms in _forms(dtype.type, ("leaf", z)).items() if formula in forms]
        if not names:
            raise ValueError(f"fastbp does not read {_name(node)}: it ends no formula of an activation fastbp "
                             f"computes (in {dtype}); it reads {FAMILY}")
        return names[0]
    return {v: k for k, v in ACTIVATION_OPS.items()}[op]


# ---- formulas --------------------------------------------------------------------------------------------------

def _formula(node, index):
    """What node computes, written out as a tuple: ``("leaf", tensor)`` for a tensor that is not the result of a
    formula operator used once (the tensor the formula takes), ``("const", value, dtype)`` for a single value,
    ``(op, *arguments)`` else, products and sums flattened and sorted (so ``Mul(z, Mul(0.5, u))`` is
    ``Mul(Mul(z, u), 0.5)``), ``Pow(x, 3)`` a product of three x and ``Less(a, b)`` ``Greater(b, a)``."""
    def term(t):
        if t in index.constants:
            value = index.constants[t]
            return "const", float(value.item()), value.dtype.str
        producer = index.producers.get(t)
        if producer is None or producer.op_type not in FORMULA_OPS or index.uses[t] != 1:
            return "leaf", t
        return _formula(producer, index)

    return _canonical(node.op_type, [term(t) for t in node.input])


def _canonical(op, arguments):
    """``(op, *arguments)`` in the canonical form of :func:`_formula`."""
    if op == "Less":
        op, arguments = "Greater", arguments[::-1]
    if op == "Pow" and arguments[1][0] == "const" and arguments[1][1] in (2.0, 3.0):
        op, arguments = "Mul", [arguments[0]] * int(arguments[1][1])
    if op in ("Mul", "Add"):
        flat = [term for a in arguments for term in (a[1] if a[0] == op else (a,))]
        return op, tuple(sorted(flat, key=repr))
    return (op, *arguments)


def _leaves(formula):
    """The set of ("leaf", tensor) in a formula."""
    if formula[0] == "leaf":
        return {formula}
    parts = formula[1] if formula[0] in ("Mul", "Add") else formula[1:]
    return set().union(*(_leaves(part) for part in parts if isinstance(part, tuple)))


def _formula_input(node, index):
    """z, if node may end a formula of the one tensor z (whether an activation's is told by :func:`_activation`)."""
    if node.op_type not in ("Mul", "Where"):
        return None
    leaves = _leaves(_formula(node, index))
    return leaves.pop()[1] if len(leaves) == 1 else None


def _forms(T, z):
    """The formulas fastbp reads as activations of the leaf z, by name, their constants of dtype T: fastbp's writer's
    and PyTorch's exporters' (TorchScript and torch.export) forms."""
    def c(value):
        return "const", float(T(value)), np.dtype(T).str

    def f(op, *arguments):
        return _canonical(op, arguments)

    def half_z(u):  # z (1 + u) / 2
        return f("Mul", z, c(0.5), f("Add", u, c(1)))

    def above(threshold, below):  # z above the threshold, else below
        return f("Where", f("Greater", z, c(threshold)), z, below)

    cubic = f("Add", z, f("Mul", c(act.GELU_TANH_CUBIC), z, z, z))
    return {"silu": [f("Mul", z, f("Sigmoid", z))],
            "gelu": [half_z(f("Erf", f("Div", z, c(math.sqrt(2)))))],
            "gelu_tanh": [half_z(f("Tanh", f("Mul", c(act.GELU_TANH_SCALE), cubic)))],
            "elu": [above(0, f("Sub", f("Exp", z), c(1)))],
            "softplus": [above(act.SOFTPLUS_THRESHOLD, f("Softplus", z)),
                         above(act.SOFTPLUS_THRESHOLD, f("Log", f("Add", f("Exp", z), c(1))))]}
