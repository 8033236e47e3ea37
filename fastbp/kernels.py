"""The backpropagation kernels: plain ``@njit`` functions over the arrays a :class:`fastbp.Network` exposes.

They are public so a user's own ``@njit`` code (a simulation loop, an agent) can query and train a network with no
Python in between::

    net = fastbp.Network([4, 16, 2], ...)
    flat, spec, hyper, work = net.flat, net.spec, net.hyper, net.workspace(batch)

    @numba.njit
    def simulate(flat, spec, hyper, work, X, Y, out):
        for t in range(1000):
            fastbp.kernels.predict(flat, spec, work, X, out)         # query
            fastbp.kernels.train_step(flat, spec, hyper, work, X, Y) # learn

One sample is a batch of one row, shape (1, n_in).

The arrays
----------
flat : ndarray, shape (2 + n_slots, n_params), float32 or float64
    Row 0 the parameters, row 1 the gradient, rows 2.. the optimizer state. Layer l's weight ``W`` (shape
    (n_out, n_in), PyTorch's ``Linear.weight``) and then its bias ``b`` (n_out,) follow layer l-1's in each row.
spec : ndarray of int64
    The architecture, read only: ``[n_layers, hidden code, output code, loss code, sizes...]``.
hyper : ndarray of float64, shape (8,)
    The optimizer's hyperparameters and step count (:mod:`fastbp.optim`); the step count is written.
work : ndarray, shape (>= work_size(spec, n),), the network's dtype
    Scratch for a batch of n rows: the input copy, the activations, the output pre-activation and the deltas.
X : ndarray, shape (n, n_in); Y : ndarray, shape (n, n_out), or integer class labels of shape (n, 1)
    Read only. Non-finite values (or labels outside [0, n_out)) make a kernel return NaN (``predict`` returns False)
    before it writes anything but ``work``. ``train_step`` also returns NaN, applying nothing, when the loss or any
    updated parameter would not be finite.

The population kernels take the same arrays stacked over members: ``flats`` (N, 2 + n_slots, n_params),
``hypers`` (N, 8), ``works`` (N, w), ``X`` (N, n, n_in) and ``Y`` (N, n, n_out).

Every kernel comes in two compilations of one source. The public ones are serial, safe inside a user's ``prange``;
``PARALLEL`` holds the twins the network uses for large batches. Results do not depend on the thread count: rows are
split between threads for the forward pass and the deltas, and gradient *rows* (output units) for the weight
gradients, so no sum over the batch is ever split. Layers with enough work call BLAS through ``np.dot`` instead.
"""

import numpy as np
from numba import prange
from numba import uint64 as U  # an unsigned index skips Numba's negative-index wraparound: the loops vectorise

from . import activations as act
from . import losses
from ._jit import inline, kernel, kernel_pair
from .optim import update

N_LAYERS, HIDDEN, OUTPUT, LOSS, SIZES = range(5)  # spec layout

# A layer's products go to BLAS from this many multiply-adds (rows x n_in x n_out), with 2 or more rows and no
# dimension under BLAS_MIN_WIDTH; below, the hand loops win (measured: 8-64 and 64-64 layers cross over near 8k for
# batches of 4 to 32; a single row's outer-product gradient is faster by hand at every size). The parallel twins
# split rows between threads; the network uses them only for batches with PARALLEL_MIN_WORK multiply-adds in some
# layer and no layer on BLAS, as BLAS runs its own threads (and OpenMP's spinning workers would starve them).
BLAS_MIN_WORK = 1 << 13
BLAS_MIN_WIDTH = 4
PARALLEL_MIN_WORK = 1 << 16
CHUNK_ROWS = 64


@kernel
def n_params(spec):
    """The length of the flat parameter vector."""
    total = 0
    for l in range(spec[N_LAYERS]):
        total += spec[SIZES + l + 1] * (spec[SIZES + l] + 1)
    return total


@inline
def uses_blas(n, n_in, n_out):
    """Whether a layer of n_in -> n_out on n rows hands its products to BLAS."""
    return n >= 2 and n * n_in * n_out >= BLAS_MIN_WORK and min(n_in, n_out) >= BLAS_MIN_WIDTH


@kernel
def work_size(spec, n):
    """The length of ``work`` a batch of n rows needs."""
    L = spec[N_LAYERS]
    width = spec[SIZES] + 2 * spec[SIZES + L]  # input copy, output pre-activation, output delta
    for l in range(1, L + 1):
        width += 2 * spec[SIZES + l] if l < L else spec[SIZES + l]  # activations and deltas
    return n * width


# Offsets into the flat arrays. Layer l's weight W (n_out, n_in) and bias b (n_out) follow layer l-1's in every row
# of ``flat``. ``work`` holds, for a batch of n rows, the blocks A_0 (the input copy), A_1 .. A_L (activations),
# Z_L (the output pre-activation) and D_1 .. D_L (the deltas), each (n, width) row-major.

@inline
def _param_offset(spec, l):
    off = 0
    for k in range(l):
        off += spec[SIZES + k + 1] * (spec[SIZES + k] + 1)
    return off


@inline
def _act_offset(spec, n, l):
    col = 0
    for k in range(l):
        col += spec[SIZES + k]
    return n * col


@inline
def _z_offset(spec, n):
    return _act_offset(spec, n, spec[N_LAYERS] + 1)


@inline
def _delta_offset(spec, n, l):
    off = _z_offset(spec, n) + n * spec[SIZES + spec[N_LAYERS]]
    for k in range(1, l):
        off += n * spec[SIZES + k]
    return off


@inline
def _matrix(buf, off, rows, width):
    """The (rows, width) row-major matrix at ``buf[off:]`` as a 2-D view, for BLAS. The hand loops index ``buf``
    with unsigned offsets instead: a view made inside a loop costs an atomic reference count (a reshape ~12 ns more),
    and a signed computed index a wraparound test that stops LLVM vectorising."""
    return buf[off:off + rows * width].reshape((rows, width))


@inline
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


@inline
def _targets_ok(spec, Y):
    """False if Y holds a NaN or an infinity, or a class label outside [0, n_out)."""
    n_out = spec[SIZES + spec[N_LAYERS]]
    if Y.shape[1] != n_out:
        for i in range(Y.shape[0]):
            if not (0 <= Y[i, 0] < n_out):
                return False
        return True
    return _finite(Y)


@inline
def _finite(X):
    """False if the 2-D array X holds a NaN or an infinity (x * 0 is NaN for those; no nnan/ninf fastmath)."""
    probe = 0.0
    for i in range(X.shape[0]):
        for k in range(X.shape[1]):
            probe += X[i, k] * 0.0
    return probe == 0


@inline
def _chunks(n):
    """Rows go to threads in chunks of CHUNK_ROWS (one chunk, and no thread, for a small batch)."""
    return (n + CHUNK_ROWS - 1) // CHUNK_ROWS


@inline
def _forward(flat, spec, work, n):
    """Fill the activations for the n rows already loaded into A_0: z = W a + b, a = phi(z), layer by layer."""
    L = spec[N_LAYERS]
    p = flat[0]
    w_off, a_off = 0, 0
    for l in range(L):
        n_in, n_out = spec[SIZES + l], spec[SIZES + l + 1]
        b_off, out_off = w_off + n_out * n_in, a_off + n * n_in
        z_off = _z_offset(spec, n) if l == L - 1 else out_off  # hidden layers activate in place
        code = spec[OUTPUT] if l == L - 1 else spec[HIDDEN]
        blas = uses_blas(n, n_in, n_out)
        if blas:
            np.dot(_matrix(work, a_off, n, n_in), _matrix(p, w_off, n_out, n_in).T, _matrix(work, z_off, n, n_out))
        for c in prange(_chunks(n)):
            lo, hi = c * CHUNK_ROWS, min(n, (c + 1) * CHUNK_ROWS)
            for i in range(lo, hi):
                a, z = a_off + i * n_in, z_off + i * n_out
                for j in range(n_out):
                    if blas:
                        work[U(z + j)] += p[U(b_off + j)]
                        continue
                    w = w_off + j * n_in
                    s = p[U(b_off + j)]
                    for k in range(n_in):
                        s += p[U(w + k)] * work[U(a + k)]
                    work[U(z + j)] = s
            act.activate_span(code, work, z_off + lo * n_out, out_off + lo * n_out, (hi - lo) * n_out, n_out)
        w_off, a_off = b_off + n_out, out_off


@inline
def _output_error(spec, work, n, Y):
    """The mean loss; writes delta_L."""
    L = spec[N_LAYERS]
    n_out = spec[SIZES + L]
    z_off, a_off, d_off = _z_offset(spec, n), _act_offset(spec, n, L), _delta_offset(spec, n, L)
    loss = spec[LOSS]
    T = work.dtype.type
    scale = T(1) / T(losses.denominator(loss, n, n_out))
    total = T(0)
    for i in range(n):
        r = i * n_out
        total += losses.output_error(loss, spec[OUTPUT], work, z_off + r, a_off + r, d_off + r, n_out, Y, i, scale)
    return total * scale


@inline
def _backward(flat, spec, work, n):
    """The delta recursion and the gradient: delta_{l-1} = (delta_l W_l) * phi'(A_{l-1}), dW_l = delta_l^T A_{l-1}."""
    L = spec[N_LAYERS]
    p, g = flat[0], flat[1]
    for l in range(L - 1, -1, -1):
        n_in, n_out = spec[SIZES + l], spec[SIZES + l + 1]
        w_off = _param_offset(spec, l)
        b_off = w_off + n_out * n_in
        a_off, d_off = _act_offset(spec, n, l), _delta_offset(spec, n, l + 1)
        blas = uses_blas(n, n_in, n_out)
        if blas:
            np.dot(_matrix(work, d_off, n, n_out).T, _matrix(work, a_off, n, n_in), _matrix(g, w_off, n_out, n_in))
        # Gradient rows (output units) are split between threads: each row's sum over the batch stays whole.
        for j in prange(n_out):
            s = work[U(d_off + j)]
            for i in range(1, n):
                s += work[U(d_off + i * n_out + j)]
            g[U(b_off + j)] = s
            if blas:
                continue
            dw = w_off + j * n_in
            for i in range(n):
                d, a = work[U(d_off + i * n_out + j)], a_off + i * n_in
                if i == 0:
                    for k in range(n_in):
                        g[U(dw + k)] = d * work[U(a + k)]
                else:
                    for k in range(n_in):
                        g[U(dw + k)] += d * work[U(a + k)]
        if l == 0:
            break
        dp_off = _delta_offset(spec, n, l)
        if blas:
            np.dot(_matrix(work, d_off, n, n_out), _matrix(p, w_off, n_out, n_in), _matrix(work, dp_off, n, n_in))
        for c in prange(_chunks(n)):
            lo, hi = c * CHUNK_ROWS, min(n, (c + 1) * CHUNK_ROWS)
            for i in range(lo, hi):
                if blas:
                    break
                dp = dp_off + i * n_in
                for k in range(n_in):
                    work[U(dp + k)] = 0
                for j in range(n_out):
                    d, w = work[U(d_off + i * n_out + j)], w_off + j * n_in
                    for k in range(n_in):
                        work[U(dp + k)] += d * p[U(w + k)]
            act.backprop_span(spec[HIDDEN], work, a_off + lo * n_in, dp_off + lo * n_in, (hi - lo) * n_in)


def _predict(flat, spec, work, X, out):
    """Write the network's output for X into ``out`` (n, n_out); False, writing nothing to out, if X is not finite."""
    n = X.shape[0]
    if not _load_input(work, X):
        return False
    _forward(flat, spec, work, n)
    a_off, n_out = _act_offset(spec, n, spec[N_LAYERS]), out.shape[1]
    for i in range(n):
        for j in range(n_out):
            out[i, j] = work[a_off + i * n_out + j]
    return True


def _loss(flat, spec, work, X, Y):
    """The mean loss of the batch, with no gradient; NaN for non-finite input."""
    n = X.shape[0]
    if not (_load_input(work, X) and _targets_ok(spec, Y)):
        return np.nan
    _forward(flat, spec, work, n)
    return _output_error(spec, work, n, Y)


def _gradient(flat, spec, work, X, Y):
    """The mean loss; writes its gradient into ``flat[1]``. NaN, and no gradient written, for non-finite input."""
    n = X.shape[0]
    if not (_load_input(work, X) and _targets_ok(spec, Y)):
        return np.nan
    _forward(flat, spec, work, n)
    loss = _output_error(spec, work, n, Y)
    _backward(flat, spec, work, n)
    return loss


def _train_step(flat, spec, hyper, work, X, Y):
    """Forward, backward and one optimizer update in place; returns the mean loss before the update.

    Returns NaN and leaves the parameters, optimizer state and step count as they were if X or Y is not finite, if
    the loss is not, or if the update would make any parameter or state value non-finite.
    """
    n = X.shape[0]
    if not (_load_input(work, X) and _targets_ok(spec, Y)):
        return np.nan
    _forward(flat, spec, work, n)
    loss = _output_error(spec, work, n, Y)
    if not np.isfinite(loss):
        return np.nan
    _backward(flat, spec, work, n)
    return loss if update(flat, hyper) else np.nan


predict, _predict_parallel = kernel_pair(_predict)
loss, _loss_parallel = kernel_pair(_loss)
gradient, _gradient_parallel = kernel_pair(_gradient)
train_step, _train_step_parallel = kernel_pair(_train_step)
PARALLEL = {predict: _predict_parallel, loss: _loss_parallel, gradient: _gradient_parallel,
            train_step: _train_step_parallel}


# ---- many networks of one architecture ----------------------------------------------------------------------------
# A population stores its members' flat arrays stacked: flats (N, 2 + n_slots, n_params), hypers (N, 8), works (N, w),
# so member m is exactly a network's (flats[m], hypers[m], works[m]) and the kernels above serve it unchanged.

@inline
def _members_ok(spec, X, Y):
    """The whole population's input is checked before any member is touched: bad input changes nothing."""
    for m in range(X.shape[0]):
        if not (_finite(X[m]) and _targets_ok(spec, Y[m])):
            return False
    return True


def _population_train_step(flats, spec, hypers, works, X, Y, out):
    """One train step for every member on its own batch: ``out[m]`` = member m's loss before its update.

    Parameters
    ----------
    flats : ndarray, shape (N, 2 + n_slots, n_params)
    hypers : ndarray of float64, shape (N, 8)
    works : ndarray, shape (N, >= work_size(spec, n))
    X : ndarray, shape (N, n, n_in); Y : ndarray, shape (N, n, n_out), or labels (N, n, 1)
    out : ndarray, shape (N,)
        Written. A member whose loss is not finite gets NaN and keeps its parameters.

    Returns False, touching nothing, if any X or Y is not finite or a label is out of range.
    """
    if not _members_ok(spec, X, Y):
        return False
    for m in prange(flats.shape[0]):
        out[m] = train_step(flats[m], spec, hypers[m], works[m], X[m], Y[m])
    return True


def _population_predict(flats, spec, works, X, out):
    """Every member's output on its own batch: X (N, n, n_in) -> out (N, n, n_out). False if X is not finite."""
    for m in range(X.shape[0]):
        if not _finite(X[m]):
            return False
    for m in prange(flats.shape[0]):
        predict(flats[m], spec, works[m], X[m], out[m])
    return True


population_train_step, _population_train_step_parallel = kernel_pair(_population_train_step)
population_predict, _population_predict_parallel = kernel_pair(_population_predict)
PARALLEL.update({population_train_step: _population_train_step_parallel,
                 population_predict: _population_predict_parallel})
