"""The arrays' layout, shared by every kernel: the ``spec`` fields, offsets into ``flat`` and ``work``, and the loading
of a batch into ``work`` (converted once, checked for finiteness on the way)."""

import numpy as np
from numba import uint64 as U  # an unsigned index skips Numba's negative-index wraparound: the loops vectorise

from .. import activations as act
from .._jit import helper, inline, kernel

# spec layout: [n_layers, hidden code, output code, loss code, sizes (n_layers + 1)..., hidden codes (n_layers - 1)...]
# The hidden codes give each hidden layer's activation; spec[HIDDEN] is their common code, or MIXED if they differ.
N_LAYERS, HIDDEN, OUTPUT, LOSS, SIZES = range(5)
MIXED = -1
ALIGNMENT = 64  # bytes: a cache line, and one AVX-512 vector


def aligned_empty(shape, dtype):
    """``np.empty(shape, dtype)`` whose data starts on a cache line: the buffers the kernels are given.

    The compiled kernels' tiles are whole vectors at fixed offsets from the start of ``work``, so where that start
    falls decides whether every vector load splits two cache lines. malloc's 16-byte alignment made that a lottery
    per process (measured: the simplechains train step 1.3x slower at 6 of the 8 offsets)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)  # a view: it keeps raw alive


@kernel
def n_params(spec):
    """The length of the flat parameter vector: ``n_out * (n_in + 1)`` summed over the layers.

    Parameters
    ----------
    spec : ndarray, shape (2 * n_layers + 4,), int64
        The architecture, ``[n_layers, hidden code, output code, loss code, sizes..., hidden codes...]``.

    Returns
    -------
    n_params : int
        The number of columns of ``flat``.
    """
    total = 0
    for l in range(spec[N_LAYERS]):
        total += spec[SIZES + l + 1] * (spec[SIZES + l] + 1)
    return total


@kernel
def work_size(spec, n):
    """The length of ``work`` the generic kernels need for a batch of n rows.

    Parameters
    ----------
    spec : ndarray, shape (2 * n_layers + 4,), int64
        The architecture, ``[n_layers, hidden code, output code, loss code, sizes..., hidden codes...]``.
    n : int
        The batch's rows.

    Returns
    -------
    size : int
        ``n`` times the units of the input copy, the activations, the output pre-activation, the deltas and the
        target copy. (:meth:`fastbp.Network.workspace` makes one large enough for the compiled kernels too.)
    """
    L = spec[N_LAYERS]
    width = spec[SIZES] + 3 * spec[SIZES + L]  # input copy, output pre-activation, output delta, target copy
    for l in range(1, L + 1):
        width += 2 * spec[SIZES + l] if l < L else spec[SIZES + l]  # activations and deltas
    for l in range(1, L):
        if act.keeps_derivative(hidden_code(spec, l)):
            width += spec[SIZES + l]  # the derivatives kept from the forward pass
    return n * width


# Offsets into the flat arrays. Layer l's weight W (n_out, n_in) and bias b (n_out) follow layer l-1's in every row
# of ``flat``. ``work`` holds, for a batch of n rows, the blocks A_0 (the input copy), A_1 .. A_L (activations),
# Z_L (the output pre-activation), D_1 .. D_L (the deltas), Y (the target copy) and, for each hidden A_l whose
# activation keeps its derivative (act.keeps_derivative), P_l: first its pre-activations z, then phi'(z); each
# (n, width) row-major.

@inline  # an index: a call of its own costs a compile
def hidden_code(spec, l):
    """The activation code of the hidden activations A_l, 1 <= l < n_layers."""
    return spec[SIZES + spec[N_LAYERS] + l]


@inline
def layer_code(spec, l):
    """The activation code after layer l, 0 <= l < n_layers (the output's after the last)."""
    return spec[OUTPUT] if l == spec[N_LAYERS] - 1 else hidden_code(spec, l + 1)


@helper
def _param_offset(spec, l):
    off = 0
    for k in range(l):
        off += spec[SIZES + k + 1] * (spec[SIZES + k] + 1)
    return off


@helper
def _act_offset(spec, n, l):
    col = 0
    for k in range(l):
        col += spec[SIZES + k]
    return n * col


@helper
def _z_offset(spec, n):
    return _act_offset(spec, n, spec[N_LAYERS] + 1)


@helper
def _delta_offset(spec, n, l):
    off = _z_offset(spec, n) + n * spec[SIZES + spec[N_LAYERS]]
    for k in range(1, l):
        off += n * spec[SIZES + k]
    return off


@helper
def _target_offset(spec, n):
    return _delta_offset(spec, n, spec[N_LAYERS]) + n * spec[SIZES + spec[N_LAYERS]]


@helper
def _kept_offset(spec, n, l):
    """P_l, the pre-activations of the hidden A_l and then their derivatives (only where act.keeps_derivative)."""
    off = _target_offset(spec, n) + n * spec[SIZES + spec[N_LAYERS]]
    for k in range(1, l):
        if act.keeps_derivative(hidden_code(spec, k)):
            off += n * spec[SIZES + k]
    return off


@inline
def _derivative_source(spec, n, l):
    """Where the backward pass finds phi' of the hidden A_l: P_l for the activations that keep it, else A_l."""
    return _kept_offset(spec, n, l) if act.keeps_derivative(hidden_code(spec, l)) else _act_offset(spec, n, l)


@helper
def _matrix(buf, off, rows, width):
    """The (rows, width) row-major matrix at ``buf[off:]`` as a 2-D view, for BLAS. The hand loops index ``buf``
    with unsigned offsets instead: a view made inside a loop costs an atomic reference count (a reshape ~12 ns more),
    and a signed computed index a wraparound test that stops LLVM vectorising."""
    return buf[off:off + rows * width].reshape((rows, width))


@helper
def _load_input(work, X):
    """Copy X into A_0 (converting dtype and layout once); False if X holds a NaN or an infinity."""
    T = work.dtype.type
    n_in = X.shape[1]
    probe = T(0)  # stays 0 unless some x is NaN or infinite (x * 0 is NaN for those; no nnan/ninf fastmath)
    for i in range(X.shape[0]):
        for k in range(n_in):
            x = T(X[i, k])
            work[U(i * n_in + k)] = x
            probe += x * T(0)
    return probe == 0


@helper
def _load_targets(spec, work, Y):
    """Copy Y into the target block; False if Y holds a NaN or an infinity, or a class label outside [0, n_out)."""
    T = work.dtype.type
    n, width = Y.shape
    y_off = _target_offset(spec, n)
    n_out = spec[SIZES + spec[N_LAYERS]]
    if width != n_out:  # class labels
        for i in range(n):
            if not (0 <= Y[i, 0] < n_out):
                return False
            work[U(y_off + i)] = T(Y[i, 0])
        return True
    probe = T(0)
    for i in range(n):
        for j in range(width):
            y = T(Y[i, j])
            work[U(y_off + i * width + j)] = y
            probe += y * T(0)
    return probe == 0



@helper
def inputs_ok(X, Y, n_out):
    """Whether X (and Y, unless None) are finite and any class labels (Y of width 1 for n_out > 1) in range."""
    probe = 0.0  # x * 0 is NaN for a NaN or an infinity (no nnan/ninf fastmath)
    for i in range(X.shape[0]):
        for k in range(X.shape[1]):
            probe += X[i, k] * 0.0
    if Y is None:
        return probe == 0
    if Y.shape[1] != n_out:
        for i in range(Y.shape[0]):
            if not (0 <= Y[i, 0] < n_out):
                return False
        return probe == 0
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            probe += Y[i, j] * 0.0
    return probe == 0
