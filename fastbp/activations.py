"""Activation functions, each forward beside its derivative.

Activations are chosen by small integer codes (a function passed as an argument would defeat ``cache=True``).
The derivative is written in terms of the activation's *output* ``a = phi(z)``, so the backward pass needs no stored
pre-activation: ``sigmoid' = a (1 - a)``, ``tanh' = 1 - a**2``, ``relu' = [a > 0]``.
"""

import numpy as np
from numba import uint64 as U  # unsigned indices: no wraparound test, so the loops vectorise

from ._jit import inline, kernel

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


# The span functions take one flat buffer and offsets rather than slices: a slice made inside a loop costs an atomic
# reference-count increment and decrement, which for small networks outweighed the arithmetic.

@inline
def activate_span(code, buf, z0, a0, count, width):
    """buf[a0 + k] = phi(buf[z0 + k]) for k < count, over rows of ``width``.

    Softmax goes row by row, computed stably (the row maximum is subtracted first); every other activation is one
    flat loop, which LLVM can vectorise.
    """
    if code != SOFTMAX:
        for k in range(count):
            buf[U(a0 + k)] = activate(code, buf[U(z0 + k)])
        return
    for r in range(0, count, width):
        z, a = z0 + r, a0 + r
        m = buf[U(z)]
        for j in range(1, width):
            m = max(m, buf[U(z + j)])
        s = buf.dtype.type(0)
        for j in range(width):
            e = np.exp(buf[U(z + j)] - m)
            buf[U(a + j)] = e
            s += e
        for j in range(width):
            buf[U(a + j)] /= s


@inline
def backprop_span(code, buf, a0, d0, count):
    """buf[d0 + k] *= phi'(z) for k < count, from the activations a = phi(z) at buf[a0:] (not softmax)."""
    for k in range(count):
        buf[U(d0 + k)] *= derivative(code, buf[U(a0 + k)])


@inline
def backprop_row(code, buf, a0, d0, width):
    """Turn dL/da, held at buf[d0:d0 + width], into dL/dz in place for one row; softmax uses its Jacobian,
    d_j = a_j (g_j - sum_k g_k a_k)."""
    if code != SOFTMAX:
        backprop_span(code, buf, a0, d0, width)
        return
    ga = buf.dtype.type(0)
    for k in range(width):
        ga += buf[U(d0 + k)] * buf[U(a0 + k)]
    for j in range(width):
        buf[U(d0 + j)] = buf[U(a0 + j)] * (buf[U(d0 + j)] - ga)
