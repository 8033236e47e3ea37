"""ONNX in and out (the extra ``fastbp[onnx]``): :func:`export` writes a network, a population's member or a fitted
:mod:`fastbp.sklearn` estimator as an ONNX graph that ONNX Runtime runs to rounding of :meth:`fastbp.Network.forward`;
:func:`load` reads a dense network back from a graph of that family, whoever wrote it (fastbp, PyTorch's
``torch.onnx.export``, skl2onnx, a Keras-style MatMul + Add); :func:`register_skl2onnx` lets skl2onnx convert
scikit-learn pipelines that hold fastbp's estimators.

The graphs use the default ONNX domain only: one ``Gemm`` per layer (``transB=1``: the weights in PyTorch's
(n_out, n_in) layout, named like :meth:`fastbp.Network.state_dict`) and one activation node after it, the batch
dimension dynamic. Writing is :mod:`fastbp.onnx.writer`, reading :mod:`fastbp.onnx.reader`; both go through
:mod:`fastbp.convert`'s checked stack of layers.
"""

from .reader import load
from .writer import DEFAULT_OPSET, MIN_OPSET, export, register_skl2onnx

__all__ = ["export", "load", "register_skl2onnx", "DEFAULT_OPSET", "MIN_OPSET"]
