"""Writing ONNX graphs of networks and of the :mod:`fastbp.sklearn` estimators: below the classes whose ``to_onnx``
calls it (it does not import them), under :func:`fastbp.onnx.export`."""

import numpy as np

from .. import activations as act
from .. import convert, io

DEFAULT_OPSET = 17  # run by every ONNX Runtime since 1.13 (2022)
MIN_OPSET = 9  # from opset 9 (IR 4) the weights are initializers that need not be listed among the graph's inputs
ACTIVATION_OPS = {"relu": "Relu", "leaky_relu": "LeakyRelu", "tanh": "Tanh", "sigmoid": "Sigmoid",
                  "softmax": "Softmax"}


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
        if name == "softmax":  # before opset 13, axis 1 of a 2-D input is its last
            return self.node("Softmax", [z], a, axis=-1 if self.opset >= 13 else 1)
        if name == "leaky_relu" and dtype == np.float64:
            # LeakyRelu's alpha is a float32 attribute, 0.01 only to 2e-8; max(z, 0.01 z) is the same function with
            # a float64 slope (ONNX Runtime has no float64 PRelu at most opsets).
            slope = self.constant(f"{a}.slope", np.array(act.LEAKY_SLOPE))
            return self.node("Max", [z, self.node("Mul", [z, slope], f"{a}.slope_z")], a)
        attributes = {"alpha": act.LEAKY_SLOPE} if name == "leaky_relu" else {}
        return self.node(ACTIVATION_OPS[name], [z], a, **attributes)

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
