"""The backpropagation kernels: plain ``@njit`` functions over the arrays a :class:`fastbp.Network` exposes.

They are public so a user's own ``@njit`` code (a simulation loop, an agent) can query and train a network with no
Python in between::

    net = fastbp.Network([4, 16, 2], ...)
    flat, spec, hyper, work = net.flat, net.spec, net.hyper, net.workspace(batch)

    @numba.njit
    def simulate(flat, spec, hyper, work, X, Y, out):
        for t in range(1000):
            fastbp.kernels.forward(flat, spec, work, X, out)
            fastbp.kernels.train_step(flat, spec, hyper, work, X, Y)

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
    Read only. Non-finite values (or labels outside [0, n_out)) make a kernel return NaN (``forward`` returns False)
    before it writes anything but ``work``.

Every kernel comes in two compilations of one source. The public ones are serial, safe inside a user's ``prange``;
``PARALLEL`` holds the twins the network uses for large batches. Results do not depend on the thread count: rows are
split between threads for the forward pass and the deltas, and gradient *rows* (output units) for the weight
gradients, so no sum over the batch is ever split. Layers with enough work call BLAS through ``np.dot`` instead.
"""

import numpy as np
from numba import prange

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


@kernel
def n_params(spec):
    """The length of the flat parameter vector."""
    total = 0
    for l in range(spec[N_LAYERS]):
        total += spec[SIZES + l + 1] * (spec[SIZES + l] + 1)
    return total


@kernel
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


@inline
def _weights(p, spec, l):
    """Layer l's (W, b) as views into the parameter (or gradient) row p."""
    off = 0
    for k in range(l):
        off += spec[SIZES + k + 1] * (spec[SIZES + k] + 1)
    n_in, n_out = spec[SIZES + l], spec[SIZES + l + 1]
    return p[off:off + n_out * n_in].reshape((n_out, n_in)), p[off + n_out * n_in:off + n_out * (n_in + 1)]


@inline
def _block(work, n, col, width):
    return work[n * col:n * (col + width)].reshape((n, width))


@inline
def _activations(spec, work, n, l):
    """A_l, shape (n, sizes[l]): A_0 is the copy of X, A_L the network's output."""
    col = 0
    for k in range(l):
        col += spec[SIZES + k]
    return _block(work, n, col, spec[SIZES + l])


@inline
def _output_z(spec, work, n):
    L = spec[N_LAYERS]
    col = 0
    for k in range(L + 1):
        col += spec[SIZES + k]
    return _block(work, n, col, spec[SIZES + L])


@inline
def _deltas(spec, work, n, l):
    """delta_l = dL/dz_l, shape (n, sizes[l]) for l = 1..L."""
    L = spec[N_LAYERS]
    col = 0
    for k in range(L + 1):
        col += spec[SIZES + k]
    col += spec[SIZES + L]
    for k in range(1, l):
        col += spec[SIZES + k]
    return _block(work, n, col, spec[SIZES + l])


@inline
def _load_input(spec, work, X):
    """Copy X into A_0 (converting dtype and layout once); False if X holds a NaN or an infinity."""
    A0 = _activations(spec, work, X.shape[0], 0)
    T = A0.dtype.type
    probe = T(0)  # stays 0 unless some x is NaN or infinite (x * 0 is NaN for those; no nnan/ninf fastmath)
    for i in range(X.shape[0]):
        for k in range(X.shape[1]):
            A0[i, k] = X[i, k]
            probe += A0[i, k] * T(0)
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
    probe = 0.0
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            probe += Y[i, j] * 0.0
    return probe == 0


@inline
def _dense_row(a, W, b, z):
    """z = W @ a + b for one row (a dot product per output, contiguous in W and a)."""
    for j in range(W.shape[0]):
        w = W[j]
        s = b[j]
        for k in range(a.size):
            s += w[k] * a[k]
        z[j] = s


@inline
def _forward(flat, spec, work, n):
    """Fill the activations for the n rows already loaded into A_0."""
    L = spec[N_LAYERS]
    p = flat[0]
    for l in range(L):
        W, b = _weights(p, spec, l)
        A_prev, A = _activations(spec, work, n, l), _activations(spec, work, n, l + 1)
        Z = _output_z(spec, work, n) if l == L - 1 else A  # hidden layers activate in place
        code = spec[OUTPUT] if l == L - 1 else spec[HIDDEN]
        blas = uses_blas(n, W.shape[1], W.shape[0])
        if blas:
            np.dot(A_prev, W.T, Z)
        for i in prange(n):
            if blas:
                for j in range(b.size):
                    Z[i, j] += b[j]
            else:
                _dense_row(A_prev[i], W, b, Z[i])
            act.activate_row(code, Z[i], A[i])


@inline
def _output_error(spec, work, n, Y):
    """The mean loss; writes delta_L."""
    L = spec[N_LAYERS]
    Z, A, D = _output_z(spec, work, n), _activations(spec, work, n, L), _deltas(spec, work, n, L)
    loss, out_code = spec[LOSS], spec[OUTPUT]
    T = A.dtype.type
    scale = T(1) / T(losses.denominator(loss, n, A.shape[1]))
    total = T(0)
    for i in range(n):
        total += losses.output_error(loss, out_code, Z[i], A[i], Y, i, D[i], scale)
    return total * scale


@inline
def _backward(flat, spec, work, n):
    """The delta recursion and the gradient: delta_{l-1} = (delta_l W_l) * phi'(A_{l-1}), dW_l = delta_l^T A_{l-1}."""
    L = spec[N_LAYERS]
    p, g = flat[0], flat[1]
    hidden = spec[HIDDEN]
    for l in range(L - 1, -1, -1):
        W, _ = _weights(p, spec, l)
        dW, db = _weights(g, spec, l)
        A_prev, D = _activations(spec, work, n, l), _deltas(spec, work, n, l + 1)
        n_out, n_in = W.shape
        blas = uses_blas(n, n_in, n_out)
        if blas:
            np.dot(D.T, A_prev, dW)
        # Gradient rows (output units) are split between threads: each row's sum over the batch stays whole.
        for j in prange(n_out):
            s = D[0, j]
            for i in range(1, n):
                s += D[i, j]
            db[j] = s
            if not blas:
                dw = dW[j]
                for k in range(n_in):
                    dw[k] = D[0, j] * A_prev[0, k]
                for i in range(1, n):
                    d, a = D[i, j], A_prev[i]
                    for k in range(n_in):
                        dw[k] += d * a[k]
        if l == 0:
            break
        D_prev = _deltas(spec, work, n, l)
        if blas:
            np.dot(D, W, D_prev)
        for i in prange(n):
            d_prev, a_prev = D_prev[i], A_prev[i]
            if not blas:
                for k in range(n_in):
                    d_prev[k] = 0
                for j in range(n_out):
                    d, w = D[i, j], W[j]
                    for k in range(n_in):
                        d_prev[k] += d * w[k]
            for k in range(n_in):
                d_prev[k] *= act.derivative(hidden, a_prev[k])


def _predict(flat, spec, work, X, out):
    """Write the network's output for X into ``out`` (n, n_out); False, writing nothing to out, if X is not finite."""
    n = X.shape[0]
    if not _load_input(spec, work, X):
        return False
    _forward(flat, spec, work, n)
    A = _activations(spec, work, n, spec[N_LAYERS])
    for i in range(n):
        for j in range(A.shape[1]):
            out[i, j] = A[i, j]
    return True


def _loss(flat, spec, work, X, Y):
    """The mean loss of the batch, with no gradient; NaN for non-finite input."""
    n = X.shape[0]
    if not (_load_input(spec, work, X) and _targets_ok(spec, Y)):
        return np.nan
    _forward(flat, spec, work, n)
    return _output_error(spec, work, n, Y)


def _gradient(flat, spec, work, X, Y):
    """The mean loss; writes its gradient into ``flat[1]``. NaN, and no gradient written, for non-finite input."""
    n = X.shape[0]
    if not (_load_input(spec, work, X) and _targets_ok(spec, Y)):
        return np.nan
    _forward(flat, spec, work, n)
    loss = _output_error(spec, work, n, Y)
    _backward(flat, spec, work, n)
    return loss


def _train_step(flat, spec, hyper, work, X, Y):
    """Forward, backward and one optimizer update in place; returns the mean loss before the update.

    Returns NaN and leaves the parameters, optimizer state and step count as they were if X or Y is not finite or
    the loss is not.
    """
    n = X.shape[0]
    if not (_load_input(spec, work, X) and _targets_ok(spec, Y)):
        return np.nan
    _forward(flat, spec, work, n)
    loss = _output_error(spec, work, n, Y)
    if not np.isfinite(loss):
        return np.nan
    _backward(flat, spec, work, n)
    update(flat, hyper)
    return loss


predict, _predict_parallel = kernel_pair(_predict)
loss, _loss_parallel = kernel_pair(_loss)
gradient, _gradient_parallel = kernel_pair(_gradient)
train_step, _train_step_parallel = kernel_pair(_train_step)
PARALLEL = {predict: _predict_parallel, loss: _loss_parallel, gradient: _gradient_parallel,
            train_step: _train_step_parallel}
