"""Activation functions, each forward beside its derivative.

Activations are chosen by small integer codes (a function passed as an argument would defeat ``cache=True``).
Where it can be, the derivative is written in terms of the activation's *output* ``a = phi(z)``, so the backward
pass needs no stored pre-activation: ``sigmoid' = a (1 - a)``, ``tanh' = 1 - a**2``, ``relu' = [a > 0]``,
``elu' = a + 1`` below 0, ``softplus' = 1 - exp(-a)``. silu and gelu are not monotonic (two inputs share an output),
so theirs is written in terms of ``z``: the kernels keep z beside a for those layers (:func:`from_input`).
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
def from_input(code):
    """Whether the derivative of activation ``code`` is computed from z (silu, gelu, gelu_tanh) rather than a."""
    return code >= SILU


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


@inline
def softplus(z):
    # max(z, 0) + log1p(exp(-|z|)): log(1 + exp(z)) without overflow; z itself above the threshold, as PyTorch.
    T = type(z)
    s = max(z, T(0)) + T(math.log1p(exp_nonpositive(-abs(z))))
    return z if z > T(SOFTPLUS_THRESHOLD) else s


@inline
def softplus_derivative(a):
    # sigmoid(z) = 1 - exp(-a) = -expm1(-a), accurate where a is tiny (z very negative) too.
    T = type(a)
    return T(1) if a > T(SOFTPLUS_THRESHOLD) else -expm1_nonpositive(-a)


# silu and gelu multiply a tail exp(-|u|) by z: where that exp would underflow (and exp_nonpositive returns the
# smallest normal number instead), the product is taken as 0.

@inline
def silu(z):
    return type(z)(0) if exp_underflows(z) else z * sigmoid(z)


@inline
def silu_derivative(z):
    """From z: s (1 + z (1 - s)), s = sigmoid(z)."""
    T = type(z)
    s = sigmoid(z)
    return T(0) if exp_underflows(z) else s * (T(1) + z * (T(1) - s))


@inline
def gelu(z):
    # z Phi(z) with Phi(z) = erfc(-z / sqrt 2) / 2: erfc keeps Phi's relative accuracy in the lower tail.
    T = type(z)
    return T(0.5) * z * T(math.erfc(-z * T(math.sqrt(0.5))))


@inline
def gelu_derivative(z):
    """From z: Phi(z) + z phi(z), phi the standard normal density."""
    T = type(z)
    u = T(-0.5) * z * z
    density = T(0) if exp_underflows(u) else z * T(1 / math.sqrt(2 * math.pi)) * exp_nonpositive(u)
    return T(0.5) * T(math.erfc(-z * T(math.sqrt(0.5)))) + density


@inline
def gelu_tanh(z):
    T = type(z)
    return T(0.5) * z * (T(1) + tanh(T(GELU_TANH_SCALE) * (z + T(GELU_TANH_CUBIC) * z * z * z)))


@inline
def gelu_tanh_derivative(z):
    """From z: (1 + t) / 2 + z (1 - t^2) c (1 + 3 k z^2) / 2 with t = tanh(c (z + k z^3))."""
    T = type(z)
    t = tanh(T(GELU_TANH_SCALE) * (z + T(GELU_TANH_CUBIC) * z * z * z))
    q = T(1) - t * t  # exactly 0 from |z| ~ 10, before z^2 can overflow: the second term is then 0, not 0 * inf
    slope = T(0.5 * GELU_TANH_SCALE) * z * q * (T(1) + T(3 * GELU_TANH_CUBIC) * z * z)
    return T(0.5) * (T(1) + t) + (slope if q != 0 else T(0))


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

@helper
def activate_span(code, buf, z0, a0, count, width):
    """buf[a0 + k] = phi(buf[z0 + k]) for k < count, over rows of ``width``.

    Softmax goes row by row, computed stably (the row maximum is subtracted first); every other activation is one
    flat loop, which LLVM can vectorise.
    """
    # In place, the loop must index with one offset: given two, LLVM's overlap test fails and it runs them scalar
    # (measured: tanh 20x slower). So _activate_span is inlined, the first copy reading z0 alone.
    if a0 == z0:
        _activate_span(code, buf, z0, z0, count, width)
    else:
        _activate_span(code, buf, z0, a0, count, width)


@inline
def _activate_span(code, buf, z0, a0, count, width):
    # One loop per activation, each with a constant code: branch-free bodies that LLVM vectorises.
    if code == SIGMOID:
        for k in range(count):
            buf[U(a0 + k)] = sigmoid(buf[U(z0 + k)])
    elif code == TANH:
        for k in range(count):
            buf[U(a0 + k)] = tanh(buf[U(z0 + k)])
    elif code == RELU:
        for k in range(count):
            buf[U(a0 + k)] = relu(buf[U(z0 + k)])
    elif code == LEAKY_RELU:
        for k in range(count):
            buf[U(a0 + k)] = leaky_relu(buf[U(z0 + k)])
    elif code == IDENTITY:
        if a0 != z0:
            for k in range(count):
                buf[U(a0 + k)] = buf[U(z0 + k)]
    elif code == ELU:
        for k in range(count):
            buf[U(a0 + k)] = elu(buf[U(z0 + k)])
    elif code == SOFTPLUS:
        for k in range(count):
            buf[U(a0 + k)] = softplus(buf[U(z0 + k)])
    elif code == SILU:
        for k in range(count):
            buf[U(a0 + k)] = silu(buf[U(z0 + k)])
    elif code == GELU:
        for k in range(count):
            buf[U(a0 + k)] = gelu(buf[U(z0 + k)])
    elif code == GELU_TANH:
        for k in range(count):
            buf[U(a0 + k)] = gelu_tanh(buf[U(z0 + k)])
    else:
        for r in range(0, count, width):
            softmax(buf, z0 + r, a0 + r, width, 1)


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
    activations :func:`from_input`, from the pre-activations z at buf[a0:]."""
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
    elif code == SOFTPLUS:
        for k in range(count):
            buf[U(d0 + k)] *= softplus_derivative(buf[U(a0 + k)])
    elif code == SILU:
        for k in range(count):
            buf[U(d0 + k)] *= silu_derivative(buf[U(a0 + k)])
    elif code == GELU:
        for k in range(count):
            buf[U(d0 + k)] *= gelu_derivative(buf[U(a0 + k)])
    elif code == GELU_TANH:
        for k in range(count):
            buf[U(d0 + k)] *= gelu_tanh_derivative(buf[U(a0 + k)])


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
