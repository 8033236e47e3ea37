"""ONNX in and out (the extra ``fastbp[onnx]``): :func:`export` writes a network, a population's member or a fitted
:mod:`fastbp.sklearn` estimator as an ONNX graph that ONNX Runtime runs to rounding of :meth:`fastbp.Network.forward`;
:func:`load` reads a dense network back from a graph of that family, whoever wrote it (fastbp, PyTorch's
``torch.onnx.export``, skl2onnx, a Keras-style MatMul + Add); :func:`register_skl2onnx` lets skl2onnx convert
scikit-learn pipelines that hold fastbp's estimators.

The graphs use the default ONNX domain only: one ``Gemm`` per layer (``transB=1``: the weights in PyTorch's
(n_out, n_in) layout, named like :meth:`fastbp.Network.state_dict`) and its activation after it, one standard operator
or the formula PyTorch's exporters write where ONNX has none (:mod:`fastbp.onnx.writer` lists them), the batch
dimension dynamic. :mod:`fastbp.onnx.writer` writes them and :mod:`fastbp.onnx.reader` reads them, into the checked
stack of layers of :mod:`fastbp.convert`; both sit below the classes, and this module, the public face, above them.
"""

import sys

from .. import convert
from ..network import Network
from . import reader, writer
from .writer import DEFAULT_OPSET, MIN_OPSET

__all__ = ["export", "load", "register_skl2onnx", "DEFAULT_OPSET", "MIN_OPSET"]


def export(model, path=None, opset=DEFAULT_OPSET):
    """An ONNX model computing ``model``'s outputs.

    Parameters
    ----------
    model : fastbp.Network or fastbp.sklearn.MLPClassifier or fastbp.sklearn.MLPRegressor
        Read only. A network's graph has input ``"input"`` of shape (batch, n_in) and output ``"output"`` of shape
        (batch, n_out), in the network's dtype, equal to :meth:`~fastbp.Network.forward` (a population's member:
        ``export(pop.member(m))``). A fitted estimator's graph has skl2onnx's input and outputs for scikit-learn's
        MLP with ``options={"zipmap": False}``: input ``"X"``; for the classifier ``"label"`` (``predict``: shape
        (batch,), or (batch, n_labels) of int64 for multilabel targets; the dtype of ``classes_``, as ``predict``'s:
        int64, float64, bool or string, where skl2onnx gives int64 for bool and float classes) and
        ``"probabilities"`` (``predict_proba``); for the regressor ``"variable"``, shape (batch, n_outputs).
        Each activation is its standard operator (``Relu``, ``LeakyRelu``, ``Tanh``, ``Sigmoid``, ``Softmax``,
        ``Elu``, ``Softplus``, ``Gelu`` from opset 20) or a formula (silu ``z * Sigmoid(z)``; gelu and gelu_tanh
        below opset 20; in float64, the forms ONNX Runtime has kernels for: see :mod:`fastbp.onnx.writer`). ONNX
        Runtime has no float64 ``Erf``: it does not run the float64 graph of a network with gelu.
    path : str, os.PathLike or None
        Where to write the model (atomically: a crash leaves the previous file); None writes nothing.
    opset : int
        The ONNX operator set, from :data:`MIN_OPSET` to the installed onnx package's newest; default
        :data:`DEFAULT_OPSET`.

    Returns
    -------
    model : onnx.ModelProto
        Checked with ``onnx.checker.check_model(full_check=True)``.

    Raises
    ------
    TypeError
        If ``model`` is none of the above, or ``opset`` is not an integer.
    ValueError
        If ``opset`` is out of range.
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    """
    if isinstance(model, Network):
        return writer.write_network(model, path, opset)
    estimators = sys.modules.get("fastbp.sklearn")  # an estimator exists only once fastbp.sklearn is imported
    if estimators is not None and isinstance(model, estimators._BaseMLP):
        return writer.write_estimator(model, path, opset)
    raise TypeError(f"expected a fastbp.Network or a fastbp.sklearn estimator, got {type(model).__name__}")


def load(source, **kwargs):
    """A :class:`fastbp.Network` computing an ONNX graph of dense layers.

    The graph must be one chain from its one input, of shape (batch, features), to its one float output: per
    layer a ``Gemm`` (``transA=0``, any ``transB``, ``alpha`` and ``beta``, the bias optional) or a ``MatMul``
    with an optional ``Add`` of the bias, each followed by at most one activation, its own after each layer:
    ``Relu``, ``LeakyRelu``, ``PRelu`` or ``Max(z, Mul(z, c))`` (fastbp's float64 form; slope 0.01, a single
    value), ``Tanh``, ``Sigmoid``, ``Elu`` (alpha 1) or ``Where(z > 0, z, Exp(z) - 1)``, ``Softplus``,
    ``Where(z > 20, z, Softplus(z))`` or ``Where(z > 20, z, Log(Exp(z) + 1))``, ``Gelu`` (either ``approximate``)
    or its formulas ``z * (1 + Erf(z / sqrt(2))) * 0.5`` and ``0.5 * z * (1 + Tanh(sqrt(2 / pi) * (z + 0.044715 *
    z^3)))``, silu ``z * Sigmoid(z)``, ``Softmax`` (over the features, after the last layer only). A formula may
    order and group its products and sums in any way (``z^3`` as ``Pow`` or products), its constants initializers
    or ``Constant`` nodes of exactly the graph dtype's values; any other is refused. ``Identity`` nodes, a ``Cast``
    of the input, and a final ``Reshape`` to (batch, n_out) change nothing and are passed over; every weight and
    bias is an initializer.
    Outputs that are not float tensors (skl2onnx's ``label``, its ZipMap's probabilities) are left out: the network
    computes the float output. skl2onnx's binary classifier, whose probabilities are ``[1 - p, p]``, becomes a
    network with a 2-unit softmax output computing them.

    Parameters
    ----------
    source : str, os.PathLike, binary file object, bytes or onnx.ModelProto
        The model.
    **kwargs
        Passed to :class:`fastbp.Network`: ``loss`` (default: ``cross_entropy`` after a softmax, ``bce`` after a
        sigmoid, ``mse`` otherwise), ``optimizer``, ``dtype`` (default: the graph's, after a ``Cast`` of the
        input), ``seed``, ``threads``, ``compiled``.

    Returns
    -------
    net : fastbp.Network
        Its ``forward`` equals the graph's float output to rounding, but for a float64 graph's ``LeakyRelu``:
        fastbp takes its float32 ``alpha`` as 0.01 (PyTorch's slope), where ONNX Runtime would compute with the
        float32 value (0.01 to 2e-8); and its ``Softplus`` node: fastbp's softplus is z above 20, as PyTorch's,
        where ``Softplus`` adds log(1 + exp(-z)), 2e-9 at most (float32 rounds that away).

    Raises
    ------
    ValueError
        If ``source`` is not a readable, valid ONNX model, or the graph is not of the family above: the message
        names the node and what fastbp reads. Nothing is built.
    FileNotFoundError
        If there is no such file.
    """
    layers, activations, dtype = reader.read(source)
    return convert.network(Network, layers, activations, dtype, "the ONNX graph", **kwargs)


def register_skl2onnx():
    """Register :mod:`fastbp.sklearn`'s estimators with skl2onnx, under its converters for scikit-learn's MLP, so
    ``skl2onnx.to_onnx`` converts pipelines that hold them (each estimator alone: :func:`export`).

    Raises
    ------
    ImportError
        If skl2onnx is not installed.
    """
    from skl2onnx import update_registered_converter
    from skl2onnx.operator_converters.multilayer_perceptron import (convert_sklearn_mlp_classifier,
                                                                    convert_sklearn_mlp_regressor)
    from skl2onnx.shape_calculators.linear_classifier import calculate_linear_classifier_output_shapes
    from skl2onnx.shape_calculators.linear_regressor import calculate_linear_regressor_output_shapes

    from .. import sklearn

    update_registered_converter(sklearn.MLPClassifier, "FastbpMLPClassifier", calculate_linear_classifier_output_shapes,
                                convert_sklearn_mlp_classifier,
                                options={"zipmap": [True, False, "columns"], "nocl": [True, False],
                                         "output_class_labels": [False, True]})
    update_registered_converter(sklearn.MLPRegressor, "FastbpMLPRegressor", calculate_linear_regressor_output_shapes,
                                convert_sklearn_mlp_regressor)
