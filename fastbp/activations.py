"""Activation functions, each forward beside its derivative.

Activations are chosen by small integer codes (a function passed as an argument would defeat ``cache=True``).
Where it can be, the derivative is written in terms of the activation's *output* ``a = phi(z)``, so the backward
pass needs no stored pre-activation: ``sigmoid' = a (1 - a)``, ``tanh' = 1 - a**2``, ``relu' = [a > 0]``,
``elu' = a + 1`` below 0. silu and gelu are not monotonic (two inputs share an output), so a alone does not give
theirs; theirs and softplus's are computed with the activation, from z, sharing its exponential (or erfc), and the
kernels keep them beside a for the backward pass (:func:`keeps_derivative`), which then only multiplies.
Exponentials go through :mod:`fastbp._math` (vectorisable, within an ulp of libm's); erfc and log1p are libm's.
"""

import math

import numpy as np
from numba import uint64 as U  # unsigned indices: no wraparound test, so the loops vectorise

from ._jit import helper, inline
from ._math import exp_nonpositive, exp_underflows, expm1_nonpositive

IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, SOFTMAX, ELU, SOFTPLUS, SILU, GELU, GELU_TANH = range(11)
CODES = {"identity": IDENTITY, "sigmoid": SIGMOID, "tanh": TANH, "relu": RELU, "leaky_relu": LEAKY_RELU,
         "softmax": SOFTMAX, "elu": ELU, "softplus": SOFTPLUS, "silu": SILU, "gelu": GELU, "gelu_tanh": GELU_TANH}
OUTPUT = ("relu", "leaky_relu", "tanh", "sigmoid", "identity", "softmax")
HIDDEN = OUTPUT[:-1] + ("elu", "silu", "gelu", "gelu_tanh", "softplus")  # the last five: hidden layers only
LEAKY_SLOPE = 0.01  # PyTorch's default negative_slope
SOFTPLUS_THRESHOLD = 20.0  # PyTorch's: softplus(z) = z above it, and its derivative 1
GELU_TANH_SCALE, GELU_TANH_CUBIC = math.sqrt(2 / math.pi), 0.044715  # tanh(c (z + k z^3)), PyTorch's constants


@inline
def keeps_derivative(code):
    """Whether activation ``code``'s derivative is computed with it in the forward pass and kept (softplus, silu,
    gelu, gelu_tanh), rather than computed from a in the backward pass."""
    return code >= SOFTPLUS


# Each activation and its derivative, the derivative from the output a = phi(z). Small and branch-free (selects, not
# branches), so a loop over them vectorises; the generated kernels call them by name, the span functions below by
# code. They are inlined into the loop that calls them (Numba's IR inliner): a call would keep the loop scalar. The
# span functions are called (compiled once, linked into each kernel).

@inline
def sigmoid(z):
    # From exp(-|z|) <= 1, so nothing overflows.
    T = type(z)
    e = exp_nonpositive(-abs(z))
    s = T(1) / (T(1) + e)
    return s if z >= 0 else e * s


@inline
def sigmoid_derivative(a):
    return a * (type(a)(1) - a)


@inline
def tanh(z):
    # tanh|z| = -m / (2 + m) with m = expm1(-2|z|): accurate near 0, and 1 for large |z|.
    T = type(z)
    m = expm1_nonpositive(T(-2) * abs(z))
    return np.copysign(-m / (T(2) + m), z)


@inline
def tanh_derivative(a):
    return type(a)(1) - a * a


@inline
def relu(z):
    return z if z > 0 else type(z)(0)


@inline
def relu_derivative(a):
    return type(a)(1) if a > 0 else type(a)(0)


@inline
def leaky_relu(z):
    return z if z > 0 else type(z)(LEAKY_SLOPE) * z


@inline
def leaky_relu_derivative(a):
    return type(a)(1) if a > 0 else type(a)(LEAKY_SLOPE)


@inline
def identity(z):
    return z


@inline
def elu(z):
    return z if z > 0 else expm1_nonpositive(z)


@inline
def elu_derivative(a):
    # exp(z) = a + 1 below 0: its absolute error is an ulp of 1, where the value is exp(z).
    return type(a)(1) if a > 0 else a + type(a)(1)


# softplus, silu, gelu and gelu_tanh: (a, phi'(z)) from z, in one pass that shares the exponential (or erfc).

@inline
def softplus_and_derivative(z):
    """relu(z) + log1p(exp(-|z|)), log(1 + exp(z)) without overflow, and sigmoid(z); above the threshold z and 1, as
    PyTorch."""
    T = type(z)
    e = exp_nonpositive(-abs(z))
    s = T(1) / (T(1) + e)
    above = z > T(SOFTPLUS_THRESHOLD)
    return z if above else relu(z) + T(math.log1p(e)), T(1) if above else (s if z >= 0 else e * s)


# silu and gelu multiply a tail exp(-|u|) by z: where that exp would underflow (and exp_nonpositive returns the
# smallest normal number instead), the product is taken as 0.

@inline
def silu_and_derivative(z):
    """z s and s (1 + z (1 - s)), s = sigmoid(z)."""
    T = type(z)
    s = sigmoid(z)
    tail = exp_underflows(z)
    return T(0) if tail else z * s, T(0) if tail else s * (T(1) + z * (T(1) - s))


@inline
def gelu_and_derivative(z):
    """z Phi(z) and Phi(z) + z phi(z), phi the standard normal density; Phi(z) = erfc(-z / sqrt 2) / 2 keeps its
    relative accuracy in the lower tail."""
    T = type(z)
    cdf = T(0.5) * T(math.erfc(-z * T(math.sqrt(0.5))))
    u = T(-0.5) * z * z
    density = T(0) if exp_underflows(u) else z * T(1 / math.sqrt(2 * math.pi)) * exp_nonpositive(u)
    return z * cdf, cdf + density


@inline
def gelu_tanh_and_derivative(z):
    """z (1 + t) / 2 and (1 + t) / 2 + z (1 - t^2) c (1 + 3 k z^2) / 2, t = tanh(c (z + k z^3))."""
    T = type(z)
    t = tanh(T(GELU_TANH_SCALE) * (z + T(GELU_TANH_CUBIC) * z * z * z))
    half = T(0.5) * (T(1) + t)
    q = T(1) - t * t  # exactly 0 from |z| ~ 10, before z^2 can overflow: the second term is then 0, not 0 * inf
    slope = T(0.5 * GELU_TANH_SCALE) * z * q * (T(1) + T(3 * GELU_TANH_CUBIC) * z * z)
    return z * half, half + (slope if q != 0 else T(0))


@inline
def derivative(code, a):
    """phi'(z) for one element, from a = phi(z)."""
    if code == SIGMOID:
        return sigmoid_derivative(a)
    if code == TANH:
        return tanh_derivative(a)
    if code == RELU:
        return relu_derivative(a)
    if code == LEAKY_RELU:
        return leaky_relu_derivative(a)
    return type(a)(1)


# The span functions take one flat buffer and offsets rather than slices: a slice made inside a loop costs an atomic
# reference-count increment and decrement, which for small networks outweighed the arithmetic.


# The span functions take one flat buffer and offsets rather than slices: a slice made inside a loop costs an atomic
# reference-count increment and decrement, which for small networks outweighed the arithmetic.

@helper
def activate_span(code, buf, z0, a0, count, width):
    """buf[a0 + k] = phi(buf[z0 + k]) for k < count, over rows of ``width``; an activation that keeps its derivative
    (:func:`keeps_derivative`) writes phi'(z) over z.

    Softmax goes row by row, computed stably (the row maximum is subtracted first); every other activation is one
    flat loop, which LLVM can vectorise.
    """
    # In place, the loop must index with one offset: given two, LLVM's overlap test fails and it runs them scalar
    # (measured: tanh 20x slower). So apart (the output layer, whose z stays) z is copied first, and one copy of each
    # loop runs in place: every loop is compile time (the generic kernels' first compile), the copy a pass over the
    # narrow output.
    if keeps_derivative(code):
        _activate_kept(code, buf, z0, a0, count)
        return
    if a0 != z0:
        for k in range(count):
            buf[U(a0 + k)] = buf[U(z0 + k)]
    _activate_in_place(code, buf, a0, count, width)


# One loop per activation, each with a constant code: branch-free bodies that LLVM vectorises.

@inline
def _activate_in_place(code, buf, a0, count, width):
    if code == SIGMOID:
        for k in range(count):
            buf[U(a0 + k)] = sigmoid(buf[U(a0 + k)])
    elif code == TANH:
        for k in range(count):
            buf[U(a0 + k)] = tanh(buf[U(a0 + k)])
    elif code == RELU:
        for k in range(count):
            buf[U(a0 + k)] = relu(buf[U(a0 + k)])
    elif code == LEAKY_RELU:
        for k in range(count):
            buf[U(a0 + k)] = leaky_relu(buf[U(a0 + k)])
    elif code == ELU:
        for k in range(count):
            buf[U(a0 + k)] = elu(buf[U(a0 + k)])
    elif code == SOFTMAX:
        for r in range(0, count, width):
            softmax(buf, a0 + r, a0 + r, width, 1)


@inline
def _activate_kept(code, buf, z0, a0, count):
    if code == SOFTPLUS:
        for k in range(count):
            buf[U(a0 + k)], buf[U(z0 + k)] = softplus_and_derivative(buf[U(z0 + k)])
    elif code == SILU:
        for k in range(count):
            buf[U(a0 + k)], buf[U(z0 + k)] = silu_and_derivative(buf[U(z0 + k)])
    elif code == GELU:
        for k in range(count):
            buf[U(a0 + k)], buf[U(z0 + k)] = gelu_and_derivative(buf[U(z0 + k)])
    else:
        for k in range(count):
            buf[U(a0 + k)], buf[U(z0 + k)] = gelu_tanh_and_derivative(buf[U(z0 + k)])


@helper
def softmax(buf, z0, a0, width, stride):
    """One row's softmax, computed stably (the row maximum is subtracted first); its units are ``stride`` apart."""
    m = buf[U(z0)]
    for j in range(1, width):
        m = max(m, buf[U(z0 + j * stride)])
    s = buf.dtype.type(0)
    for j in range(width):
        e = exp_nonpositive(buf[U(z0 + j * stride)] - m)
        buf[U(a0 + j * stride)] = e
        s += e
    for j in range(width):
        buf[U(a0 + j * stride)] /= s


@helper
def backprop_span(code, buf, a0, d0, count):
    """buf[d0 + k] *= phi'(z) for k < count, from the activations a = phi(z) at buf[a0:] (not softmax); for the
    activations that keep their derivative (:func:`keeps_derivative`), phi'(z) itself is at buf[a0:]."""
    if code == SIGMOID:
        for k in range(count):
            buf[U(d0 + k)] *= sigmoid_derivative(buf[U(a0 + k)])
    elif code == TANH:
        for k in range(count):
            buf[U(d0 + k)] *= tanh_derivative(buf[U(a0 + k)])
    elif code == RELU:
        for k in range(count):
            buf[U(d0 + k)] *= relu_derivative(buf[U(a0 + k)])
    elif code == LEAKY_RELU:
        for k in range(count):
            buf[U(d0 + k)] *= leaky_relu_derivative(buf[U(a0 + k)])
    elif code == ELU:
        for k in range(count):
            buf[U(d0 + k)] *= elu_derivative(buf[U(a0 + k)])
    elif keeps_derivative(code):
        for k in range(count):
            buf[U(d0 + k)] *= buf[U(a0 + k)]


@helper
def backprop_row(code, buf, a0, d0, width, stride):
    """Turn dL/da, held at buf[d0], buf[d0 + stride], ... (``width`` units), into dL/dz in place for one row, from
    the activations at buf[a0:] laid out alike; softmax uses its Jacobian, d_j = a_j (g_j - sum_k g_k a_k)."""
    if code == SOFTMAX:
        ga = buf.dtype.type(0)
        for k in range(width):
            ga += buf[U(d0 + k * stride)] * buf[U(a0 + k * stride)]
        for j in range(width):
            buf[U(d0 + j * stride)] = buf[U(a0 + j * stride)] * (buf[U(d0 + j * stride)] - ga)
    elif code != IDENTITY:
        for j in range(width):
            buf[U(d0 + j * stride)] *= derivative(code, buf[U(a0 + j * stride)])
