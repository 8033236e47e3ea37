"""Writing ONNX graphs of networks and of the :mod:`fastbp.sklearn` estimators: below the classes whose ``to_onnx``
calls it (it does not import them), under :func:`fastbp.onnx.export`.

Each activation is one standard operator where ONNX has one that computes it: ``Relu``, ``LeakyRelu``, ``Tanh``,
``Sigmoid``, ``Softmax``, ``Elu`` (alpha 1), ``Softplus``, ``Gelu`` (float32 from opset 20; ``approximate="tanh"``
for gelu_tanh). The others are written as their formulas, as PyTorch's exporters write them: silu
``z * Sigmoid(z)``; gelu ``z * (1 + Erf(z / sqrt(2))) * 0.5`` and gelu_tanh ``0.5 * z * (1 + Tanh(sqrt(2 / pi) * (z
+ 0.044715 * z * z * z)))`` below opset 20, and in float64 at every opset (``Gelu``'s definition has float32
constants: ONNX Runtime's float64 ``Gelu(approximate="tanh")`` differs from gelu_tanh by 1e-9).

Where ONNX Runtime (to 1.32 at least) has no float64 kernel, a float64 graph uses an equivalent form it runs:
leaky_relu ``Max(z, Mul(z, 0.01))``, elu ``Where(z > 0, z, Exp(z) - 1)``, softplus ``Where(z > 20, z, Log(Exp(z) +
1))`` (PyTorch's threshold: ``Softplus`` has none, and differs from it by up to 2e-9 above 20, which float32 rounds
away). It has no float64 ``Erf`` either, and gelu has no form without one: the float64 graph of a network with gelu is
standard ONNX that ONNX Runtime does not run (a float32 network's it does).
"""

import math

import numpy as np

from .. import activations as act
from .. import convert, io

DEFAULT_OPSET = 17  # run by every ONNX Runtime since 1.13 (2022)
MIN_OPSET = 9  # from opset 9 (IR 4) the weights are initializers that need not be listed among the graph's inputs
GELU_OPSET = 20  # the first with Gelu
ACTIVATION_OPS = {"relu": "Relu", "leaky_relu": "LeakyRelu", "tanh": "Tanh", "sigmoid": "Sigmoid",
                  "softmax": "Softmax", "elu": "Elu", "softplus": "Softplus"}  # the activations that are one operator


def onnx_package():
    """The onnx package, or an ImportError naming the extra that brings it."""
    try:
        import onnx
    except ImportError:
        raise ImportError("fastbp.onnx needs the onnx package: pip install 'fastbp[onnx]'") from None
    return onnx


def write_network(net, path, opset):
    """:meth:`fastbp.Network.to_onnx`: input ``"input"``, output ``"output"``."""
    graph = _Graph(opset)
    graph.network(net, "input", "output")
    graph.outputs.append(graph.tensor("output", net.dtype, net.sizes[-1]))
    return graph.write(repr(net), path)


def write_estimator(est, path, opset):
    """:meth:`fastbp.sklearn.MLPClassifier.to_onnx` and the regressor's: skl2onnx's inputs and outputs."""
    graph = _Graph(opset)
    graph.estimator(est)
    return graph.write(f"{type(est).__name__} of {est.network_!r}", path)


class _Graph:
    """The nodes, initializers, inputs and outputs of a graph being written."""

    def __init__(self, opset):
        self.onnx = onnx = onnx_package()
        newest = onnx.defs.onnx_opset_version()
        if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
            raise TypeError(f"opset must be an integer, got {type(opset).__name__}")
        if not MIN_OPSET <= opset <= newest:
            raise ValueError(f"opset must be in [{MIN_OPSET}, {newest}] (the installed onnx's newest), got {opset}")
        self.opset = int(opset)
        self.nodes, self.initializers, self.inputs, self.outputs = [], [], [], []

    def constant(self, name, value):
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op, inputs, output, **attributes):
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=f"/{output}/{op}", **attributes))
        return output

    def tensor(self, name, dtype, *shape):
        return self.onnx.helper.make_tensor_value_info(name, self.onnx.helper.np_dtype_to_tensor_dtype(
            np.dtype(dtype)), ["batch", *shape])

    def network(self, net, x, out):
        """The layers of ``net`` from the graph's input ``x`` to the tensor ``out``."""
        self.inputs.append(self.tensor(x, net.dtype, net.sizes[0]))
        layers, activations = convert.stack(net)
        h = x
        for l, ((W, b), name) in enumerate(zip(layers, activations)):
            last = l == len(layers) - 1
            i = 2 * l  # the Linear's index in the nn.Sequential of state_dict's names; its activation's is i + 1
            z = out if last and name == "identity" else f"{i}.z"
            h = self.node("Gemm", [h, self.constant(f"{i}.weight", W), self.constant(f"{i}.bias", b)], z, transB=1)
            if name != "identity":
                h = self.activation(name, h, out if last else f"{i + 1}.a", net.dtype)
        return out

    def activation(self, name, z, a, dtype):
        """The nodes computing activation ``name`` of tensor z into tensor a (the module's docstring says which)."""
        def c(suffix, value):  # a constant in the graph's dtype
            return self.constant(f"{a}.{suffix}", np.array(value, dtype))

        def where_above(threshold, below):  # z above the threshold, else the tensor below
            above = self.node("Greater", [z, c("threshold", threshold)], f"{a}.above")
            return self.node("Where", [above, z, below], a)

        if name == "softmax":  # before opset 13, axis 1 of a 2-D input is its last
            return self.node("Softmax", [z], a, axis=-1 if self.opset >= 13 else 1)
        if name == "leaky_relu" and dtype == np.float64:
            # LeakyRelu's alpha is a float32 attribute, 0.01 only to 2e-8; max(z, 0.01 z) is the same function with
            # a float64 slope (ONNX Runtime has no float64 PRelu at most opsets).
            return self.node("Max", [z, self.node("Mul", [z, c("slope", act.LEAKY_SLOPE)], f"{a}.slope_z")], a)
        if name == "elu" and dtype == np.float64:
            return where_above(0, self.node("Sub", [self.node("Exp", [z], f"{a}.exp"), c("one", 1)], f"{a}.expm1"))
        if name == "softplus" and dtype == np.float64:
            exp_plus_1 = self.node("Add", [self.node("Exp", [z], f"{a}.exp"), c("one", 1)], f"{a}.exp_plus_1")
            return where_above(act.SOFTPLUS_THRESHOLD, self.node("Log", [exp_plus_1], f"{a}.log"))
        if name == "silu":
            return self.node("Mul", [z, self.node("Sigmoid", [z], f"{a}.sigmoid")], a)
        if name in ("gelu", "gelu_tanh") and self.opset >= GELU_OPSET and dtype == np.float32:
            return self.node("Gelu", [z], a, approximate="none" if name == "gelu" else "tanh")
        if name == "gelu":  # z Phi(z) = z (1 + erf(z / sqrt 2)) / 2
            u = self.node("Erf", [self.node("Div", [z, c("sqrt2", math.sqrt(2))], f"{a}.scaled")], f"{a}.erf")
        elif name == "gelu_tanh":  # z (1 + tanh(c (z + k z^3))) / 2
            cube = self.node("Mul", [z, self.node("Mul", [z, z], f"{a}.square")], f"{a}.cube")
            inner = self.node("Add", [z, self.node("Mul", [c("cubic", act.GELU_TANH_CUBIC), cube], f"{a}.kcube")],
                              f"{a}.inner")
            u = self.node("Tanh", [self.node("Mul", [c("scale", act.GELU_TANH_SCALE), inner], f"{a}.scaled")],
                          f"{a}.tanh")
        else:
            alpha = {"leaky_relu": act.LEAKY_SLOPE, "elu": 1.0}.get(name)
            return self.node(ACTIVATION_OPS[name], [z], a, **({} if alpha is None else {"alpha": alpha}))
        one_plus_u = self.node("Add", [u, c("one", 1)], f"{a}.one_plus")
        return self.node("Mul", [self.node("Mul", [z, one_plus_u], f"{a}.product"), c("half", 0.5)], a)

    def estimator(self, est):
        """skl2onnx's graph for scikit-learn's MLP (``zipmap=False``), from the estimator's network."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(est)
        net = est.network_
        if not hasattr(est, "classes_"):
            self.outputs.append(self.tensor(self.network(net, "X", "variable"), net.dtype, net.sizes[-1]))
            return
        if est.n_outputs_ == 1:  # binary, as predict_proba: [1 - p, p]
            p = self.network(net, "X", "p")
            one = self.constant("one", np.ones((), net.dtype))
            probabilities = self.node("Concat", [self.node("Sub", [one, p], "1-p"), p], "probabilities", axis=1)
        else:  # multiclass or multilabel: the network's outputs
            probabilities = self.network(net, "X", "probabilities")
        self.outputs.append(self.tensor(probabilities, net.dtype, max(2, net.sizes[-1])))
        classes = np.asarray(est.classes_)
        if est._label_binarizer.y_type_ == "multilabel-indicator":  # each label's probability above one half
            half = self.constant("half", np.array(0.5, net.dtype))
            self.node("Cast", [self.node("Greater", [probabilities, half], "positive")], "label",
                      to=self.onnx.TensorProto.INT64)
            self.outputs.insert(0, self.tensor("label", np.int64, len(classes)))
            return
        # classes_ as an ONNX tensor: int64, float64, bool or string (an object array of str).
        kind = {"i": np.int64, "u": np.int64, "f": np.float64, "b": np.bool_}.get(classes.dtype.kind, object)
        classes = classes.astype(kind) if kind is not object else np.array([str(c) for c in classes], object)
        index = self.node("ArgMax", [probabilities], "index", axis=1, keepdims=0)
        self.node("Gather", [self.constant("classes", classes), index], "label", axis=0)
        self.outputs.insert(0, self.tensor("label", kind))

    def write(self, doc, path):
        """The checked model, written to ``path`` (atomically) unless it is None."""
        from .. import __version__

        helper = self.onnx.helper
        graph = helper.make_graph(self.nodes, "fastbp", self.inputs, self.outputs, self.initializers)
        opsets = [helper.make_opsetid("", self.opset)]
        proto = helper.make_model(graph, opset_imports=opsets, producer_name="fastbp", producer_version=__version__,
                                  doc_string=doc, ir_version=helper.find_min_ir_version_for(opsets))
        self.onnx.checker.check_model(proto, full_check=True)
        if path is not None:
            io.write_model(path, lambda f: f.write(proto.SerializeToString()))
        return proto
