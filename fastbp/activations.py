"""Activation functions, each forward beside its derivative.

Activations are chosen by small integer codes (a function passed as an argument would defeat ``cache=True``).
The derivative is written in terms of the activation's *output* ``a = phi(z)``, so the backward pass needs no stored
pre-activation: ``sigmoid' = a (1 - a)``, ``tanh' = 1 - a**2``, ``relu' = [a > 0]``.
"""

import numpy as np

from ._jit import kernel

IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, SOFTMAX = range(6)
CODES = {"identity": IDENTITY, "sigmoid": SIGMOID, "tanh": TANH, "relu": RELU, "leaky_relu": LEAKY_RELU,
         "softmax": SOFTMAX}
NAMES = {code: name for name, code in CODES.items()}
HIDDEN = ("relu", "leaky_relu", "tanh", "sigmoid", "identity")
OUTPUT = HIDDEN + ("softmax",)
LEAKY_SLOPE = 0.01  # PyTorch's default negative_slope


@kernel
def activate(code, z):
    """phi(z) for one element; softmax is a row operation and is handled by :func:`activate_row`."""
    T = type(z)
    if code == SIGMOID:
        # Two branches so exp never overflows: exp(-|z|) <= 1.
        if z >= 0:
            return T(1) / (T(1) + np.exp(-z))
        e = np.exp(z)
        return e / (T(1) + e)
    if code == TANH:
        return np.tanh(z)
    if code == RELU:
        return z if z > 0 else T(0)
    if code == LEAKY_RELU:
        return z if z > 0 else T(LEAKY_SLOPE) * z
    return z


@kernel
def derivative(code, a):
    """phi'(z) for one element, from a = phi(z)."""
    T = type(a)
    if code == SIGMOID:
        return a * (T(1) - a)
    if code == TANH:
        return T(1) - a * a
    if code == RELU:
        return T(1) if a > 0 else T(0)
    if code == LEAKY_RELU:
        return T(1) if a > 0 else T(LEAKY_SLOPE)
    return T(1)


@kernel
def activate_block(code, z, a, width):
    """a = phi(z) over a block of rows of ``width``; softmax row by row, computed stably (the row maximum is
    subtracted first), everything else as one flat loop that LLVM can vectorise."""
    if code != SOFTMAX:
        for k in range(z.size):
            a[k] = activate(code, z[k])
        return
    for r in range(0, z.size, width):
        m = z[r]
        for j in range(r + 1, r + width):
            m = max(m, z[j])
        s = z.dtype.type(0)
        for j in range(r, r + width):
            a[j] = np.exp(z[j] - m)
            s += a[j]
        for j in range(r, r + width):
            a[j] /= s


@kernel
def backprop_block(code, a, d):
    """d *= phi'(z) over a block of a hidden layer's rows (never softmax), from a = phi(z)."""
    for k in range(a.size):
        d[k] *= derivative(code, a[k])


@kernel
def backprop_row(code, a, g, d):
    """d = dL/dz from g = dL/da for one row; softmax uses its Jacobian, d_j = a_j (g_j - sum_k g_k a_k)."""
    if code == SOFTMAX:
        ga = a.dtype.type(0)
        for k in range(a.size):
            ga += g[k] * a[k]
        for j in range(a.size):
            d[j] = a[j] * (g[j] - ga)
    else:
        for j in range(a.size):
            d[j] = g[j] * derivative(code, a[j])
