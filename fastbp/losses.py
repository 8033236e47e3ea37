"""Loss functions, each value beside its gradient, written per sample row.

Reductions follow PyTorch's defaults so values and gradients compare one to one: ``mse``, ``huber`` and ``bce`` are
means over every element, ``cross_entropy`` is a mean over samples. Where the output activation is the loss's
canonical partner (sigmoid + bce, softmax + cross_entropy) the output error is simply ``yhat - y``, and the loss is
computed from the pre-activation ``z`` in a stable form (softplus, log-sum-exp) that cannot overflow.
"""

import numpy as np
from numba import uint64 as U  # unsigned indices: no wraparound test

from . import activations as act
from ._jit import helper, inline, kernel, python_function
from ._math import exp_nonpositive

MSE, BCE, CROSS_ENTROPY, HUBER = range(4)
CODES = {"mse": MSE, "bce": BCE, "cross_entropy": CROSS_ENTROPY, "huber": HUBER}
# The output activations each loss accepts; bce needs probabilities from a sigmoid and cross_entropy needs a softmax.
PAIRS = {"bce": ("sigmoid",), "cross_entropy": ("softmax",), "mse": act.OUTPUT, "huber": act.OUTPUT}
HUBER_DELTA = 1.0  # PyTorch's default


@inline
def denominator(loss, n, n_out):
    """The count a summed loss is divided by: samples for cross_entropy, elements otherwise."""
    return n if loss == CROSS_ENTROPY else n * n_out


@inline
def target(buf, y0, j, stride, labels):
    """The target of output unit j: buf[y0 + j * stride], or, for ``labels``, 1 where j is the class at buf[y0]."""
    if labels:
        return buf.dtype.type(1 if j == buf[U(y0)] else 0)
    return buf[U(y0 + j * stride)]


@helper
def output_error(loss, out_code, buf, z0, a0, d0, y0, n_out, stride, labels, scale):
    """One row's summed loss; writes ``scale * dL/dz`` for the row.

    Parameters
    ----------
    buf : ndarray, 1-D
        Holds the row's pre-activation from ``z0``, its output activation from ``a0``, its targets from ``y0`` (one
        class label if ``labels``) and, written, its output error (already scaled by ``scale``, 1 / the loss's
        denominator) from ``d0``: ``n_out`` units each, ``stride`` apart.
    """
    T = buf.dtype.type
    total = T(0)
    if loss == BCE:
        for j in range(n_out):
            y, z = target(buf, y0, j, stride, labels), buf[U(z0 + j * stride)]
            total += max(z, T(0)) - y * z + np.log1p(exp_nonpositive(-abs(z)))
            buf[U(d0 + j * stride)] = scale * (buf[U(a0 + j * stride)] - y)
        return total
    if loss == CROSS_ENTROPY:
        # log-sum-exp from the softmax already computed: at the row's argmax, a = 1 / sum(exp(z - max z)).
        top = 0
        for j in range(1, n_out):
            if buf[U(z0 + j * stride)] > buf[U(z0 + top * stride)]:
                top = j
        lse = buf[U(z0 + top * stride)] - np.log(buf[U(a0 + top * stride)])
        ysum = T(0)
        for j in range(n_out):
            ysum += target(buf, y0, j, stride, labels)
        for j in range(n_out):
            y = target(buf, y0, j, stride, labels)
            total += y * (lse - buf[U(z0 + j * stride)])
            buf[U(d0 + j * stride)] = scale * (buf[U(a0 + j * stride)] * ysum - y)
        return total
    # mse and huber: the row's d holds dL/da first, then the activation's backward turns it into dL/dz in place.
    for j in range(n_out):
        value, grad = unit_error(loss, buf[U(a0 + j * stride)] - target(buf, y0, j, stride, labels))
        total += value
        buf[U(d0 + j * stride)] = scale * grad
    act.backprop_row(out_code, buf, a0, d0, n_out, stride)
    return total


# output_error as a kernel of its own for the generated kernels (the losses they do not write out): disk-cached, so a
# new network's build loads it instead of compiling it again (~1 s), and called, not inlined per call site (inlined,
# its branches made compile times explode).
output_error_call = kernel(python_function(output_error))


@inline
def unit_error(loss, r):
    """mse's or huber's value and derivative dL/da for one output unit with residual r = a - y."""
    T = type(r)
    if loss == MSE:
        return r * r, T(2) * r
    if abs(r) <= T(HUBER_DELTA):
        return T(0.5) * r * r, r
    return abs(r) - T(0.5 * HUBER_DELTA), T(HUBER_DELTA) if r > 0 else T(-HUBER_DELTA)
