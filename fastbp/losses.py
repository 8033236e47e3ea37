"""Loss functions, each value beside its gradient, written per sample row.

Reductions follow PyTorch's defaults so values and gradients compare one to one: ``mse``, ``huber`` and ``bce`` are
means over every element, ``cross_entropy`` is a mean over samples. Where the output activation is the loss's
canonical partner (sigmoid + bce, softmax + cross_entropy) the output error is simply ``yhat - y``, and the loss is
computed from the pre-activation ``z`` in a stable form (softplus, log-sum-exp) that cannot overflow.
"""

import numpy as np
from numba import uint64 as U  # unsigned indices: no wraparound test

from . import activations as act
from ._jit import inline, kernel
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
def target(Y, i, j, n_out):
    """y[i, j]; a target array of one column for a wider output holds integer class labels."""
    if Y.shape[1] != n_out:
        return 1.0 if j == Y[i, 0] else 0.0
    return Y[i, j]


@inline
def output_error(loss, out_code, buf, z0, a0, d0, n_out, Y, i, scale):
    """Row i's summed loss; writes ``scale * dL/dz`` for the row.

    Parameters
    ----------
    buf : ndarray, 1-D
        Holds the row's pre-activation at ``z0``, its output activation at ``a0`` and, written, its output error
        (already scaled by ``scale``, 1 / the loss's denominator) at ``d0``; each ``n_out`` long.
    Y : ndarray, shape (n, n_out), or integer labels of shape (n, 1)
    """
    T = buf.dtype.type
    total = T(0)
    if loss == BCE:
        for j in range(n_out):
            y, z = T(target(Y, i, j, n_out)), buf[U(z0 + j)]
            total += max(z, T(0)) - y * z + np.log1p(exp_nonpositive(-abs(z)))
            buf[U(d0 + j)] = scale * (buf[U(a0 + j)] - y)
        return total
    if loss == CROSS_ENTROPY:
        # log-sum-exp from the softmax already computed: at the row's argmax, a = 1 / sum(exp(z - max z)).
        top = 0
        for j in range(1, n_out):
            if buf[U(z0 + j)] > buf[U(z0 + top)]:
                top = j
        lse = buf[U(z0 + top)] - np.log(buf[U(a0 + top)])
        ysum = T(0)
        for j in range(n_out):
            ysum += T(target(Y, i, j, n_out))
        for j in range(n_out):
            y = T(target(Y, i, j, n_out))
            total += y * (lse - buf[U(z0 + j)])
            buf[U(d0 + j)] = scale * (buf[U(a0 + j)] * ysum - y)
        return total
    # mse and huber: the row's d holds dL/da first, then the activation's backward turns it into dL/dz in place.
    for j in range(n_out):
        r = buf[U(a0 + j)] - T(target(Y, i, j, n_out))
        if loss == MSE:
            total += r * r
            buf[U(d0 + j)] = scale * T(2) * r
        elif abs(r) <= T(HUBER_DELTA):
            total += T(0.5) * r * r
            buf[U(d0 + j)] = scale * r
        else:
            total += abs(r) - T(0.5 * HUBER_DELTA)
            buf[U(d0 + j)] = scale * (T(HUBER_DELTA) if r > 0 else T(-HUBER_DELTA))
    act.backprop_row(out_code, buf, a0, d0, n_out)
    return total
