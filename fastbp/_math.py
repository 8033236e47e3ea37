"""exp and expm1 for arguments <= 0, in arithmetic that LLVM vectorises.

This machine's llvmlite has no SVML, so ``np.exp`` and ``np.tanh`` in a loop are scalar libm calls (4 to 16 ns each),
which dominate small layers. Every exponential the activations need has a non-positive argument (sigmoid and tanh
through ``exp(-|z|)``, softmax through ``exp(z - max z)``), so one routine serves them all:
``u = k ln2 + r`` with ``|r| <= ln2 / 2``, a Taylor polynomial for ``exp(r) - 1`` (degree 13 in float64, 7 in float32:
truncation below half an ulp), and ``2**k`` assembled from its exponent bits. Returning ``exp(r) - 1`` keeps expm1
accurate near 0, which tanh needs. Arguments below the smallest normal's logarithm are clamped there (the result is
then the smallest normal rather than a subnormal or 0); a NaN comes back as NaN.
"""

import numpy as np
from numba import types
from numba.extending import intrinsic, overload

from ._jit import FASTMATH
from ._jit import inline


def exp_nonpositive(u):
    """exp(u) for u <= 0 (pure-Python stand-in; the compiled one is the overload below)."""
    return np.exp(u)


def expm1_nonpositive(u):
    """expm1(u) for u <= 0 (pure-Python stand-in; the compiled one is the overload below)."""
    return np.expm1(u)


def exp_underflows(u):
    """Whether exp(u) is below its dtype's smallest normal number, where exp_nonpositive returns that number: what
    multiplies it by a large factor (silu's z exp(z)) selects 0 there instead."""
    return u < {np.float32: _LOG_TINY32}.get(type(u), _LOG_TINY64)


@intrinsic
def _float_from_bits(typingctx, bits):
    """Reinterpret an int64 (int32) as a float64 (float32): LLVM's bitcast, free and vectorisable."""
    target = {types.int64: types.float64, types.int32: types.float32}.get(bits)
    if target is None:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(target))

    return target(bits), codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c rounded once (LLVM's fma). fastmath may reassociate ordinary arithmetic, which would undo the exact
    range reduction below; it never splits an fma."""
    if not (a == b == c and a in (types.float32, types.float64)):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return a(a, b, c), codegen


_LOG2E = 1.4426950408889634
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # ln2 split: k * _LN2_HI is exact
_LN2_HI32, _LN2_LO32 = 0.693359375, -2.12194440e-4  # the same for float32 (9 significant bits in the high part)
# 1/2!, 1/3!, ..., 1/13!: the Taylor series of exp(r) - 1 after its linear term.
_F2, _F3, _F4, _F5, _F6, _F7, _F8, _F9, _F10, _F11, _F12, _F13 = (1.0 / float(np.prod(np.arange(1, m + 1)))
                                                                  for m in range(2, 14))


_LOG_TINY64, _LOG_TINY32 = -708.0, -87.0  # where the arguments are clamped: the smallest normal's logarithm, about


@inline
def _expm1_parts64(u):
    """(2**k, exp(r) - 1) with u = k ln2 + r, |r| <= ln2 / 2: exp(u) = 2**k (q + 1), expm1(u) = 2**k q + 2**k - 1."""
    v = max(u, _LOG_TINY64)
    k = np.floor(v * _LOG2E + 0.5)
    r = _fma(-k, _LN2_LO, _fma(-k, _LN2_HI, v))
    p = _F13
    p = p * r + _F12
    p = p * r + _F11
    p = p * r + _F10
    p = p * r + _F9
    p = p * r + _F8
    p = p * r + _F7
    p = p * r + _F6
    p = p * r + _F5
    p = p * r + _F4
    p = p * r + _F3
    p = p * r + _F2
    # k through int32: AVX2 converts packed floats to int32 but not to int64, and a scalar conversion would stop
    # the loop from vectorising (|k| < 1100 fits).
    return _float_from_bits((np.int64(np.int32(k)) + np.int64(1023)) << np.int64(52)), r + r * r * p


@inline
def _expm1_parts32(u):
    """As _expm1_parts64, in float32 (degree 7)."""
    T = np.float32
    v = max(u, T(_LOG_TINY32))
    k = np.floor(v * T(_LOG2E) + T(0.5))
    r = _fma(-k, T(_LN2_LO32), _fma(-k, T(_LN2_HI32), v))
    p = T(_F7)
    p = p * r + T(_F6)
    p = p * r + T(_F5)
    p = p * r + T(_F4)
    p = p * r + T(_F3)
    p = p * r + T(_F2)
    # Numba widens int32 arithmetic to int64: truncate back so the bitcast sees the 32 bits of a float32.
    # (k through int32 for the same reason as in _expm1_parts64.)
    return _float_from_bits(np.int32((np.int64(np.int32(k)) + 127) << 23)), r + r * r * p


def _exp64(u):
    scale, q = _expm1_parts64(u)
    e = _fma(scale, q, scale)
    return e if u == u else u


def _expm1_64(u):
    scale, q = _expm1_parts64(u)
    e = _fma(scale, q, scale - 1.0)  # exactly q when k = 0: no cancellation near u = 0
    return e if u == u else u


def _exp32(u):
    scale, q = _expm1_parts32(u)
    e = _fma(scale, q, scale)
    return e if u == u else u


def _expm1_32(u):
    scale, q = _expm1_parts32(u)
    e = _fma(scale, q, scale - np.float32(1))
    return e if u == u else u


@overload(exp_nonpositive, jit_options={"fastmath": FASTMATH})
def _exp_overload(u):
    return {types.float64: _exp64, types.float32: _exp32}.get(u)


@overload(expm1_nonpositive, jit_options={"fastmath": FASTMATH})
def _expm1_overload(u):
    return {types.float64: _expm1_64, types.float32: _expm1_32}.get(u)


def _underflows64(u):
    return u < _LOG_TINY64


def _underflows32(u):
    return u < np.float32(_LOG_TINY32)


@overload(exp_underflows, jit_options={"fastmath": FASTMATH})
def _underflows_overload(u):
    return {types.float64: _underflows64, types.float32: _underflows32}.get(u)
