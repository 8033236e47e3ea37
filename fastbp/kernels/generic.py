"""The generic kernels for one network: loops over run-time sizes, any architecture, BLAS for large layers.

Every kernel comes in two compilations of one source. The public ones are serial, safe inside a user's ``prange``;
``PARALLEL`` holds the twins the network uses for large batches. Results do not depend on the thread count: rows are
split between threads for the forward pass and the deltas, and gradient *rows* (output units) for the weight
gradients, so no sum over the batch is ever split. Layers with enough work call BLAS through ``np.dot`` instead.
"""

import numpy as np
from numba import prange
from numba import uint64 as U  # an unsigned index skips Numba's negative-index wraparound: the loops vectorise

from .. import activations as act
from .. import losses
from .._jit import helper, inline, kernel, kernel_pair
from ..config import BLAS_MIN_WIDTH, BLAS_MIN_WORK, CHUNK_ROWS, PARALLEL_MIN_WORK  # noqa: F401 (re-exported)
from ..optim import update
from .dense import UNITS, delta_rows, gradient_rows
from .layout import (LOSS, N_LAYERS, OUTPUT, SIZES, _act_offset, _delta_offset, _derivative_source, _kept_offset,
                     _load_input, _load_targets, _matrix, _param_offset, _target_offset, _z_offset, hidden_code,
                     layer_code)


@kernel  # also called from Python (fastbp.dispatch)
def uses_blas(n, n_in, n_out):
    """Whether a layer of n_in -> n_out on n rows hands its products to BLAS.

    Parameters
    ----------
    n : int
        The batch's rows.
    n_in : int
        The layer's input width.
    n_out : int
        The layer's output width.

    Returns
    -------
    bool
        True from ``BLAS_MIN_WORK`` multiply-adds (``n * n_in * n_out``) with 2 rows or more and both widths at
        least ``BLAS_MIN_WIDTH``.
    """
    return n >= 2 and n * n_in * n_out >= BLAS_MIN_WORK and min(n_in, n_out) >= BLAS_MIN_WIDTH


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
        code = layer_code(spec, l)
        # Hidden layers activate in place, but for those that keep their derivative (into P_l, where z goes first).
        z_off = _z_offset(spec, n) if l == L - 1 else _kept_offset(spec, n, l + 1) if act.keeps_derivative(code) \
            else out_off
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


@helper
def _output_error(spec, work, n, Y, weights):
    """The mean loss of the targets loaded from Y; writes delta_L. With ``weights`` (non-empty: one per row, loaded
    by :func:`_load_weights`) the mean is weighted, ``sum_i w_i l_i / sum_i w_i``."""
    L = spec[N_LAYERS]
    n_out, width = spec[SIZES + L], Y.shape[1]
    z_off, a_off, d_off, y_off = _z_offset(spec, n), _act_offset(spec, n, L), _delta_offset(spec, n, L), \
        _target_offset(spec, n)
    loss = spec[LOSS]
    T = work.dtype.type
    weighted = weights.size > 0
    # Divide by the loss's denominator, the weights' sum times the units per row (1 for cross-entropy) if weighted.
    per_row = T(losses.denominator(loss, 1, n_out))
    scale = T(1) / (per_row * _weights_sum(weights)) if weighted else T(1) / T(losses.denominator(loss, n, n_out))
    total = T(0)
    for i in range(n):
        r = i * n_out
        w = T(weights[i]) if weighted else T(1)
        total += w * losses.output_error(loss, spec[OUTPUT], work, z_off + r, a_off + r, d_off + r,
                                         y_off + i * width, n_out, 1, width != n_out, scale * w)
    return total * scale


@helper
def _weights_sum(weights):
    total = weights.dtype.type(0)
    for i in range(weights.size):
        total += weights[i]
    return total


@helper
def _weights_ok(weights, n):
    """Whether ``weights`` has one finite, non-negative value per row and a positive sum."""
    if weights.size != n:
        return False
    probe = weights.dtype.type(0)
    for i in range(n):
        if not weights[i] >= 0:
            return False
        probe += weights[i] * 0
    return probe == 0 and _weights_sum(weights) > 0


@helper
def _output_gradient(spec, work, n):
    """delta_L from dL/dP loaded into the target block: through the output activation's Jacobian (softmax's whole,
    d_j = a_j (g_j - sum_k g_k a_k); the others' diagonal, phi'(z_j))."""
    L = spec[N_LAYERS]
    n_out = spec[SIZES + L]
    a_off, d_off, y_off = _act_offset(spec, n, L), _delta_offset(spec, n, L), _target_offset(spec, n)
    for k in range(n * n_out):
        work[U(d_off + k)] = work[U(y_off + k)]
    for i in range(n):
        act.backprop_row(spec[OUTPUT], work, a_off + i * n_out, d_off + i * n_out, n_out, 1)


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
        # Gradient rows (output units) are split between threads: each row's sum over the batch stays whole. A small
        # batch's rows go UNITS to a call (a call per unit costs more than its products); a large one's one per call,
        # so that even a layer of a few units spreads over the threads.
        units = UNITS if n < CHUNK_ROWS else 1
        for c in prange((n_out + units - 1) // units):
            lo = c * units
            gradient_rows(g, w_off, b_off, work, d_off, a_off, n, n_in, n_out, lo, min(n_out, lo + units), not blas)
        if l == 0:
            break
        dp_off = _delta_offset(spec, n, l)
        if blas:
            np.dot(_matrix(work, d_off, n, n_out), _matrix(p, w_off, n_out, n_in), _matrix(work, dp_off, n, n_in))
        for c in prange(_chunks(n)):
            lo, hi = c * CHUNK_ROWS, min(n, (c + 1) * CHUNK_ROWS)
            if not blas:
                delta_rows(p, w_off, work, d_off, dp_off, lo, hi, n_in, n_out)
            act.backprop_span(hidden_code(spec, l), work, _derivative_source(spec, n, l) + lo * n_in, dp_off + lo * n_in,
                              (hi - lo) * n_in)


def _predict(flat, spec, work, X, out):
    """Write the network's output activations for X into ``out``.

    Parameters
    ----------
    flat : ndarray, shape (2 + n_slots, n_params), float32 or float64
        Read only: the parameters ``flat[0]``.
    spec : ndarray, shape (2 * n_layers + 4,), int64
        The architecture, ``[n_layers, hidden code, output code, loss code, sizes..., hidden codes...]``; read only.
    work : ndarray, shape (>= work_size(spec, n),), flat's dtype
        Scratch, overwritten; its length is not checked.
    X : ndarray, shape (n, n_in), float or integer
        The batch, read only; converted to ``work``'s dtype as it is read.
    out : ndarray, shape (n, n_out), float
        Written (usually in flat's dtype). Its shape is not checked: it must be exactly (n, n_out).

    Returns
    -------
    ok : bool
        False, writing nothing to ``out``, if X holds a NaN or an infinity; else True.
    """
    n = X.shape[0]
    if not _load_input(work, X):
        return False
    _forward(flat, spec, work, n)
    a_off, n_out = _act_offset(spec, n, spec[N_LAYERS]), out.shape[1]
    for i in range(n):
        for j in range(n_out):
            out[i, j] = work[a_off + i * n_out + j]
    return True


@helper
def _checked_load(spec, work, X, Y, sample_weight):
    """Load X and Y; whether they (and the weights, unless empty) are fit to use."""
    if not (_load_input(work, X) and _load_targets(spec, work, Y)):
        return False
    return sample_weight.size == 0 or _weights_ok(sample_weight, X.shape[0])


@inline
def _loss_of(flat, spec, work, X, Y, sample_weight):
    if not _checked_load(spec, work, X, Y, sample_weight):
        return np.nan
    _forward(flat, spec, work, X.shape[0])
    return _output_error(spec, work, X.shape[0], Y, sample_weight)


@inline
def _gradient_of(flat, spec, work, X, Y, sample_weight):
    n = X.shape[0]
    if not _checked_load(spec, work, X, Y, sample_weight):
        return np.nan
    _forward(flat, spec, work, n)
    loss = _output_error(spec, work, n, Y, sample_weight)
    _backward(flat, spec, work, n)
    return loss


@inline
def _train_step_of(flat, spec, hyper, work, X, Y, sample_weight):
    n = X.shape[0]
    if not _checked_load(spec, work, X, Y, sample_weight):
        return np.nan
    _forward(flat, spec, work, n)
    loss = _output_error(spec, work, n, Y, sample_weight)
    if not np.isfinite(loss):
        return np.nan
    _backward(flat, spec, work, n)
    return loss if update(flat, hyper) else np.nan


# The kernels. The unweighted ones pass an empty weight array (a view of work: no allocation).

def _loss(flat, spec, work, X, Y):
    """The mean loss of the batch, with no gradient and no update.

    Parameters
    ----------
    flat : ndarray, shape (2 + n_slots, n_params), float32 or float64
        Read only: the parameters ``flat[0]``.
    spec : ndarray, shape (2 * n_layers + 4,), int64
        The architecture, ``[n_layers, hidden code, output code, loss code, sizes..., hidden codes...]``; read only.
    work : ndarray, shape (>= work_size(spec, n),), flat's dtype
        Scratch, overwritten; its length is not checked.
    X : ndarray, shape (n, n_in), float or integer
        The batch, read only; converted to ``work``'s dtype as it is read.
    Y : ndarray, shape (n, n_out), float, or shape (n, 1), integer
        The targets, read only: values, or (for n_out > 1) class labels in [0, n_out), read as one-hot rows.

    Returns
    -------
    loss : float64
        The mean loss of the batch (over every element for ``mse``, ``huber`` and ``bce``, over rows for
        ``cross_entropy``); NaN if X or Y holds a NaN or an infinity or a label is out of range.
    """
    return _loss_of(flat, spec, work, X, Y, work[:0])


def _weighted_loss(flat, spec, work, X, Y, sample_weight):
    """:func:`loss` weighted per row, with no gradient and no update.

    Parameters
    ----------
    flat : ndarray, shape (2 + n_slots, n_params), float32 or float64
        Read only: the parameters ``flat[0]``.
    spec : ndarray, shape (2 * n_layers + 4,), int64
        The architecture, ``[n_layers, hidden code, output code, loss code, sizes..., hidden codes...]``; read only.
    work : ndarray, shape (>= work_size(spec, n),), flat's dtype
        Scratch, overwritten; its length is not checked.
    X : ndarray, shape (n, n_in), float or integer
        The batch, read only; converted to ``work``'s dtype as it is read.
    Y : ndarray, shape (n, n_out), float, or shape (n, 1), integer
        The targets, read only: values, or (for n_out > 1) class labels in [0, n_out), read as one-hot rows.
    sample_weight : ndarray, shape (n,), float
        One weight per row, read only: finite, non-negative and not all zero, else the kernel returns NaN.

    Returns
    -------
    loss : float64
        The weighted mean loss ``sum_i w_i l_i / sum_i w_i``, ``l_i`` row i's loss (its mean over the units for
        ``mse``, ``huber`` and ``bce``); NaN for input as :func:`loss`'s, or for weights that are negative,
        non-finite, all zero or not one per row.
    """
    return _loss_of(flat, spec, work, X, Y, sample_weight)


def _gradient(flat, spec, work, X, Y):
    """The mean loss and its gradient with respect to the parameters, written into ``flat[1]``; no update.

    Parameters
    ----------
    flat : ndarray, shape (2 + n_slots, n_params), float32 or float64
        Read: the parameters ``flat[0]``. Written: the gradient ``flat[1]``.
    spec : ndarray, shape (2 * n_layers + 4,), int64
        The architecture, ``[n_layers, hidden code, output code, loss code, sizes..., hidden codes...]``; read only.
    work : ndarray, shape (>= work_size(spec, n),), flat's dtype
        Scratch, overwritten; its length is not checked.
    X : ndarray, shape (n, n_in), float or integer
        The batch, read only; converted to ``work``'s dtype as it is read.
    Y : ndarray, shape (n, n_out), float, or shape (n, 1), integer
        The targets, read only: values, or (for n_out > 1) class labels in [0, n_out), read as one-hot rows.

    Returns
    -------
    loss : float64
        The mean loss of the batch (over every element for ``mse``, ``huber`` and ``bce``, over rows for
        ``cross_entropy``); NaN, writing no gradient, if X or Y holds a NaN or an infinity or a label is out of range.
    """
    return _gradient_of(flat, spec, work, X, Y, work[:0])


def _weighted_gradient(flat, spec, work, X, Y, sample_weight):
    """:func:`gradient` with the loss weighted per row, ``sum_i w_i l_i / sum_i w_i``; no update.

    Parameters
    ----------
    flat : ndarray, shape (2 + n_slots, n_params), float32 or float64
        Read: the parameters ``flat[0]``. Written: the gradient ``flat[1]``.
    spec : ndarray, shape (2 * n_layers + 4,), int64
        The architecture, ``[n_layers, hidden code, output code, loss code, sizes..., hidden codes...]``; read only.
    work : ndarray, shape (>= work_size(spec, n),), flat's dtype
        Scratch, overwritten; its length is not checked.
    X : ndarray, shape (n, n_in), float or integer
        The batch, read only; converted to ``work``'s dtype as it is read.
    Y : ndarray, shape (n, n_out), float, or shape (n, 1), integer
        The targets, read only: values, or (for n_out > 1) class labels in [0, n_out), read as one-hot rows.
    sample_weight : ndarray, shape (n,), float
        One weight per row, read only: finite, non-negative and not all zero, else the kernel returns NaN.

    Returns
    -------
    loss : float64
        The weighted mean loss, as :func:`weighted_loss`; NaN, writing no gradient, for bad input or weights (as
        :func:`weighted_loss`).
    """
    return _gradient_of(flat, spec, work, X, Y, sample_weight)


def _train_step(flat, spec, hyper, work, X, Y):
    """Forward, backward and one optimizer update in place.

    Returns NaN and leaves the parameters, optimizer state and step count as they were if X or Y is not finite, if
    the loss is not, or if the update would make any parameter or state value non-finite.

    Parameters
    ----------
    flat : ndarray, shape (2 + n_slots, n_params), float32 or float64
        Read and written: the parameters ``flat[0]``, the gradient ``flat[1]`` and the optimizer state ``flat[2:]``.
    spec : ndarray, shape (2 * n_layers + 4,), int64
        The architecture, ``[n_layers, hidden code, output code, loss code, sizes..., hidden codes...]``; read only.
    hyper : ndarray, shape (fastbp.optim.HYPER_SIZE,), float64
        The optimizer's hyperparameters, schedule and clipping norm (:mod:`fastbp.optim`). Written: the step count
        ``hyper[fastbp.optim.STEP]``, incremented when the update is applied.
    work : ndarray, shape (>= work_size(spec, n),), flat's dtype
        Scratch, overwritten; its length is not checked.
    X : ndarray, shape (n, n_in), float or integer
        The batch, read only; converted to ``work``'s dtype as it is read.
    Y : ndarray, shape (n, n_out), float, or shape (n, 1), integer
        The targets, read only: values, or (for n_out > 1) class labels in [0, n_out), read as one-hot rows.

    Returns
    -------
    loss : float64
        The mean loss of the batch (over every element for ``mse``, ``huber`` and ``bce``, over rows for
        ``cross_entropy``) before the update; NaN when nothing was applied (see above).
    """
    return _train_step_of(flat, spec, hyper, work, X, Y, work[:0])


def _weighted_train_step(flat, spec, hyper, work, X, Y, sample_weight):
    """:func:`train_step` with the loss weighted per row, ``sum_i w_i l_i / sum_i w_i``.

    Returns NaN, applying nothing, for bad weights (as :func:`weighted_loss`) and in every case :func:`train_step`
    does.

    Parameters
    ----------
    flat : ndarray, shape (2 + n_slots, n_params), float32 or float64
        Read and written: the parameters ``flat[0]``, the gradient ``flat[1]`` and the optimizer state ``flat[2:]``.
    spec : ndarray, shape (2 * n_layers + 4,), int64
        The architecture, ``[n_layers, hidden code, output code, loss code, sizes..., hidden codes...]``; read only.
    hyper : ndarray, shape (fastbp.optim.HYPER_SIZE,), float64
        The optimizer's hyperparameters, schedule and clipping norm (:mod:`fastbp.optim`). Written: the step count
        ``hyper[fastbp.optim.STEP]``, incremented when the update is applied.
    work : ndarray, shape (>= work_size(spec, n),), flat's dtype
        Scratch, overwritten; its length is not checked.
    X : ndarray, shape (n, n_in), float or integer
        The batch, read only; converted to ``work``'s dtype as it is read.
    Y : ndarray, shape (n, n_out), float, or shape (n, 1), integer
        The targets, read only: values, or (for n_out > 1) class labels in [0, n_out), read as one-hot rows.
    sample_weight : ndarray, shape (n,), float
        One weight per row, read only: finite, non-negative and not all zero, else the kernel returns NaN.

    Returns
    -------
    loss : float64
        The weighted mean loss before the update, as :func:`weighted_loss`; NaN when nothing was applied.
    """
    return _train_step_of(flat, spec, hyper, work, X, Y, sample_weight)


def _backward_output(flat, spec, work, X, grad_output):
    """Backpropagate a gradient of any loss: a forward pass on X, then the delta recursion from ``grad_output``,
    dL/dP for the output activations P, through the output activation's Jacobian (softmax's whole), into the
    gradient ``flat[1]``. No update (:func:`step` applies it).

    Parameters
    ----------
    flat : ndarray, shape (2 + n_slots, n_params), float32 or float64
        Read: the parameters ``flat[0]``. Written: the gradient ``flat[1]``.
    spec : ndarray, shape (2 * n_layers + 4,), int64
        The architecture, ``[n_layers, hidden code, output code, loss code, sizes..., hidden codes...]``; read only.
    work : ndarray, shape (>= work_size(spec, n),), flat's dtype
        Scratch, overwritten; its length is not checked.
    X : ndarray, shape (n, n_in), float or integer
        The batch, read only; converted to ``work``'s dtype as it is read.
    grad_output : ndarray, shape (n, n_out), float
        dL/dP for the user's loss L (for a mean over rows, already divided by n); read only, converted to
        ``work``'s dtype as it is read.

    Returns
    -------
    ok : bool
        False, writing no gradient, if ``grad_output`` is not (n, n_out) or X or ``grad_output`` holds a NaN or an
        infinity; else True.
    """
    n = X.shape[0]
    if grad_output.shape[0] != n or grad_output.shape[1] != spec[SIZES + spec[N_LAYERS]]:
        return False
    if not (_load_input(work, X) and _load_targets(spec, work, grad_output)):
        return False
    _forward(flat, spec, work, n)
    _output_gradient(spec, work, n)
    _backward(flat, spec, work, n)
    return True


predict, _predict_parallel = kernel_pair(_predict)
loss, _loss_parallel = kernel_pair(_loss)
gradient, _gradient_parallel = kernel_pair(_gradient)
train_step, _train_step_parallel = kernel_pair(_train_step)
weighted_loss, _weighted_loss_parallel = kernel_pair(_weighted_loss)
weighted_gradient, _weighted_gradient_parallel = kernel_pair(_weighted_gradient)
weighted_train_step, _weighted_train_step_parallel = kernel_pair(_weighted_train_step)
backward, _backward_parallel = kernel_pair(_backward_output)
step = update  # the optimizer update alone (after backward): False, applying nothing, if a value would not be finite
PARALLEL = {predict: _predict_parallel, loss: _loss_parallel, gradient: _gradient_parallel,
            train_step: _train_step_parallel, weighted_loss: _weighted_loss_parallel,
            weighted_gradient: _weighted_gradient_parallel, weighted_train_step: _weighted_train_step_parallel,
            backward: _backward_parallel}

