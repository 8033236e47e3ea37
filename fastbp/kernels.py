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
    Scratch for a batch of n rows: the input copy, the activations, the output pre-activation, the deltas and the
    target copy.
X : ndarray, shape (n, n_in); Y : ndarray, shape (n, n_out), or integer class labels of shape (n, 1)
    Read only. Non-finite values (or labels outside [0, n_out)) make a kernel return NaN (``predict`` returns False)
    before it writes anything but ``work``. ``train_step`` also returns NaN, applying nothing, when the loss or any
    updated parameter would not be finite.

The population kernels take N members' arrays: ``flats`` (2 + n_slots, n_params, N), C-contiguous, member m's
``flat`` being the column ``flats[:, :, m]``; ``hypers`` (N, 8); ``works`` (population_work_size(spec, n), N); ``X``
(N, n, n_in) and ``Y`` (N, n, n_out), or labels (N, n, 1).

Every kernel comes in two compilations of one source. The public ones are serial, safe inside a user's ``prange``;
``PARALLEL`` holds the twins the network uses for large batches. Results do not depend on the thread count: rows are
split between threads for the forward pass and the deltas, and gradient *rows* (output units) for the weight
gradients, so no sum over the batch is ever split. Layers with enough work call BLAS through ``np.dot`` instead.
"""

import numpy as np
from numba import prange
from numba import uint64 as U  # an unsigned index skips Numba's negative-index wraparound: the loops vectorise

from . import activations as act
from . import losses, optim
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
    width = spec[SIZES] + 3 * spec[SIZES + L]  # input copy, output pre-activation, output delta, target copy
    for l in range(1, L + 1):
        width += 2 * spec[SIZES + l] if l < L else spec[SIZES + l]  # activations and deltas
    return n * width


# Offsets into the flat arrays. Layer l's weight W (n_out, n_in) and bias b (n_out) follow layer l-1's in every row
# of ``flat``. ``work`` holds, for a batch of n rows, the blocks A_0 (the input copy), A_1 .. A_L (activations),
# Z_L (the output pre-activation), D_1 .. D_L (the deltas) and Y (the target copy), each (n, width) row-major.

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
def _target_offset(spec, n):
    return _delta_offset(spec, n, spec[N_LAYERS]) + n * spec[SIZES + spec[N_LAYERS]]


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
    """The mean loss of the targets loaded from Y; writes delta_L."""
    L = spec[N_LAYERS]
    n_out, width = spec[SIZES + L], Y.shape[1]
    z_off, a_off, d_off, y_off = _z_offset(spec, n), _act_offset(spec, n, L), _delta_offset(spec, n, L), \
        _target_offset(spec, n)
    loss = spec[LOSS]
    T = work.dtype.type
    scale = T(1) / T(losses.denominator(loss, n, n_out))
    total = T(0)
    for i in range(n):
        r = i * n_out
        total += losses.output_error(loss, spec[OUTPUT], work, z_off + r, a_off + r, d_off + r, y_off + i * width,
                                     n_out, 1, width != n_out, scale)
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
    if not (_load_input(work, X) and _load_targets(spec, work, Y)):
        return np.nan
    _forward(flat, spec, work, n)
    return _output_error(spec, work, n, Y)


def _gradient(flat, spec, work, X, Y):
    """The mean loss; writes its gradient into ``flat[1]``. NaN, and no gradient written, for non-finite input."""
    n = X.shape[0]
    if not (_load_input(work, X) and _load_targets(spec, work, Y)):
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
    if not (_load_input(work, X) and _load_targets(spec, work, Y)):
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
# A population interleaves its N members: flats (2 + n_slots, n_params, N), so member m's flat array is the column
# flats[:, :, m], and works (population_work_size(spec, n), N) holds every member's work the same way. Each scalar of
# the network's arithmetic becomes a contiguous row over members, which LLVM vectorises across members: the small
# loops over units stay scalar, the wide one runs in SIMD. Members go in blocks of LANES (a block's rows stay in
# cache), blocks to threads. The loops below index ``works`` flat: element e of member m is at e * N + m.

LANES = 256
LANE_ROWS = 8  # after a network's work: the step's coefficients per member (7 rows), and a status row


@kernel
def population_work_size(spec, n):
    """The rows of ``works`` a population step on batches of n rows needs."""
    return work_size(spec, n) + LANE_ROWS


@inline
def _load_lanes(buf, N, off, A, lo, hi):
    """Members lo..hi of A (N, rows, width) into the lane rows from ``off`` (row-major over rows and width); 0, or
    NaN if any value is NaN or infinite."""
    T = buf.dtype.type
    probe = T(0)
    for i in range(A.shape[1]):
        for k in range(A.shape[2]):
            e = (off + i * A.shape[2] + k) * N
            for m in range(lo, hi):
                x = T(A[m, i, k])
                buf[U(e + m)] = x
                probe += x * T(0)
    return probe


@inline
def _labels_ok(spec, Y):
    n_out = spec[SIZES + spec[N_LAYERS]]
    for m in range(Y.shape[0]):
        for i in range(Y.shape[1]):
            if not (0 <= Y[m, i, 0] < n_out):
                return False
    return True


@inline
def _forward_lanes(flats, spec, buf, N, n, lo, hi):
    """_forward for members lo..hi: z = W a + b, a = phi(z), each a row over members."""
    L = spec[N_LAYERS]
    w_off, a_off = 0, 0
    for l in range(L):
        n_in, n_out = spec[SIZES + l], spec[SIZES + l + 1]
        b_off, out_off = w_off + n_out * n_in, a_off + n * n_in
        z_off = _z_offset(spec, n) if l == L - 1 else out_off
        code = spec[OUTPUT] if l == L - 1 else spec[HIDDEN]
        for i in range(n):
            a, z = a_off + i * n_in, z_off + i * n_out
            for j in range(n_out):
                zj = (z + j) * N
                for m in range(lo, hi):
                    buf[U(zj + m)] = flats[0, b_off + j, U(m)]
                for k in range(n_in):
                    w, ak = w_off + j * n_in + k, (a + k) * N
                    for m in range(lo, hi):
                        buf[U(zj + m)] += flats[0, w, U(m)] * buf[U(ak + m)]
                if code != act.SOFTMAX:
                    act.activate_span(code, buf, zj + lo, (out_off + i * n_out + j) * N + lo, hi - lo, 1)
            if code == act.SOFTMAX:
                for m in range(lo, hi):
                    act.softmax(buf, z * N + m, (out_off + i * n_out) * N + m, n_out, N)
        w_off, a_off = b_off + n_out, out_off


@inline
def _output_error_lanes(spec, buf, N, n, labels, lo, hi, out):
    """_output_error for members lo..hi: out[m] = member m's mean loss; writes delta_L."""
    L = spec[N_LAYERS]
    n_out, loss, code = spec[SIZES + L], spec[LOSS], spec[OUTPUT]
    width = 1 if labels else n_out
    z_off, a_off, d_off, y_off = _z_offset(spec, n), _act_offset(spec, n, L), _delta_offset(spec, n, L), \
        _target_offset(spec, n)
    T = buf.dtype.type
    scale = T(1) / T(losses.denominator(loss, n, n_out))
    if (loss == losses.MSE or loss == losses.HUBER) and code != act.SOFTMAX:
        # Unit by unit, each a row over members (vectorised): out accumulates the members' sums.
        for m in range(lo, hi):
            out[m] = 0
        for e in range(n * n_out):
            a, d, y = (a_off + e) * N, (d_off + e) * N, (y_off + e) * N
            for m in range(lo, hi):
                value, grad = losses.unit_error(loss, buf[U(a + m)] - buf[U(y + m)])
                out[m] += value
                buf[U(d + m)] = scale * grad
            act.backprop_span(code, buf, a + lo, d + lo, hi - lo)
        for m in range(lo, hi):
            out[m] *= scale
        return
    for m in range(lo, hi):
        total = T(0)
        for i in range(n):
            r = i * n_out
            total += losses.output_error(loss, code, buf, (z_off + r) * N + m, (a_off + r) * N + m,
                                         (d_off + r) * N + m, (y_off + i * width) * N + m, n_out, N, labels, scale)
        out[m] = total * scale


@inline
def _backward_lanes(flats, spec, buf, N, n, lo, hi):
    """_backward for members lo..hi: the deltas and the gradient ``flats[1]``, each a row over members."""
    T = buf.dtype.type
    L = spec[N_LAYERS]
    for l in range(L - 1, -1, -1):
        n_in, n_out = spec[SIZES + l], spec[SIZES + l + 1]
        w_off = _param_offset(spec, l)
        b_off = w_off + n_out * n_in
        a_off, d_off = _act_offset(spec, n, l), _delta_offset(spec, n, l + 1)
        for j in range(n_out):
            for i in range(n):
                d = (d_off + i * n_out + j) * N
                for m in range(lo, hi):
                    g = flats[1, b_off + j, U(m)] if i > 0 else T(0)
                    flats[1, b_off + j, U(m)] = g + buf[U(d + m)]
                for k in range(n_in):
                    w, a = w_off + j * n_in + k, (a_off + i * n_in + k) * N
                    for m in range(lo, hi):
                        g = flats[1, w, U(m)] if i > 0 else T(0)
                        flats[1, w, U(m)] = g + buf[U(d + m)] * buf[U(a + m)]
        if l == 0:
            break
        dp_off = _delta_offset(spec, n, l)
        for i in range(n):
            for k in range(n_in):
                dp = (dp_off + i * n_in + k) * N
                for m in range(lo, hi):
                    buf[U(dp + m)] = 0
                for j in range(n_out):
                    d, w = (d_off + i * n_out + j) * N, w_off + j * n_in + k
                    for m in range(lo, hi):
                        buf[U(dp + m)] += buf[U(d + m)] * flats[0, w, U(m)]
                act.backprop_span(spec[HIDDEN], buf, (a_off + i * n_in + k) * N + lo, dp + lo, hi - lo)


@inline
def _update_lanes(flats, hypers, buf, N, c_row, status, lo, hi):
    """optim.update for members lo..hi, all or nothing per member: the members with ``buf[status]`` 0 (a finite
    loss) whose new values would all be finite are updated and keep 0; the others are left as they were."""
    T = flats.dtype.type
    for m in range(lo, hi):
        c = optim.coefficients(T, hypers[m, optim.KIND], hypers[m, optim.LR], hypers[m, optim.BETA1],
                               hypers[m, optim.BETA2], hypers[m, optim.EPS], hypers[m, optim.WEIGHT_DECAY],
                               hypers[m, optim.NESTEROV], hypers[m, optim.STEP])
        for r in range(7):
            buf[U((c_row + r) * N + m)] = c[r]
    kind = hypers[lo, optim.KIND]  # one optimizer kind per population
    _update_lanes_pass(flats, kind, buf, N, c_row, status, lo, hi, False)
    _update_lanes_pass(flats, kind, buf, N, c_row, status, lo, hi, True)
    for m in range(lo, hi):
        if buf[U(status * N + m)] == 0:
            hypers[m, optim.STEP] += 1


@inline
def _update_lanes_pass(flats, kind, buf, N, c_row, status, lo, hi, write):
    """Writes the new values of the members with status 0 when ``write``, else makes the status of those whose new
    values would not all be finite NaN."""
    if kind == optim.ADAM_KIND:
        _update_lanes_loop(flats, buf, N, c_row, status, lo, hi, optim.ADAM_KIND, 2, write)
    elif flats.shape[0] == 3:
        _update_lanes_loop(flats, buf, N, c_row, status, lo, hi, optim.SGD_KIND, 1, write)
    else:
        _update_lanes_loop(flats, buf, N, c_row, status, lo, hi, optim.SGD_KIND, 0, write)


@inline
def _update_lanes_loop(flats, buf, N, c_row, status, lo, hi, kind, n_slots, write):
    # Called with a constant kind and slot count, as optim's loop, so that each loop is branch-free and vectorises.
    T = flats.dtype.type
    s1, s2 = min(2, 1 + n_slots), 1 + n_slots
    for e in range(flats.shape[1]):
        for m in range(lo, hi):
            c = (buf[U(c_row * N + m)], buf[U((c_row + 1) * N + m)], buf[U((c_row + 2) * N + m)],
                 buf[U((c_row + 3) * N + m)], buf[U((c_row + 4) * N + m)], buf[U((c_row + 5) * N + m)],
                 buf[U((c_row + 6) * N + m)])
            p, v1, v2 = flats[0, e, U(m)], flats[s1, e, U(m)], flats[s2, e, U(m)]
            new, new1, new2 = optim.new_values(kind, n_slots, c, p, flats[1, e, U(m)], v1, v2)
            if not write:
                buf[U(status * N + m)] += (new + new1 + new2) * T(0)
                continue
            keep = buf[U(status * N + m)] == 0
            flats[0, e, U(m)] = new if keep else p
            if n_slots > 0:
                flats[s1, e, U(m)] = new1 if keep else v1
            if n_slots > 1:
                flats[s2, e, U(m)] = new2 if keep else v2


@inline
def _blocks(N):
    return (N + LANES - 1) // LANES


def _population_train_step(flats, spec, hypers, works, X, Y, out):
    """One train step for every member on its own batch: ``out[m]`` = member m's loss before its update.

    Parameters
    ----------
    flats : ndarray, shape (2 + n_slots, n_params, N)
        Member m's flat array is ``flats[:, :, m]``.
    hypers : ndarray of float64, shape (N, 8)
    works : ndarray, shape (>= population_work_size(spec, n), N)
    X : ndarray, shape (N, n, n_in); Y : ndarray, shape (N, n, n_out), or labels (N, n, 1)
    out : ndarray, shape (N,)
        Written. A member whose loss is not finite, or whose update would not be, gets NaN and keeps its
        parameters, optimizer state and step count.

    Returns False, touching nothing, if any X or Y is not finite or a label is out of range.
    """
    N, n = X.shape[0], X.shape[1]
    buf = works.reshape(works.size)
    labels = Y.shape[2] != spec[SIZES + spec[N_LAYERS]]
    c_row = work_size(spec, n)
    status = c_row + 7
    probe = 0.0  # the whole population's input is loaded and checked before any member is touched
    for b in prange(_blocks(N)):
        lo, hi = b * LANES, min(N, (b + 1) * LANES)
        probe += _load_lanes(buf, N, 0, X, lo, hi) + _load_lanes(buf, N, _target_offset(spec, n), Y, lo, hi)
    if probe != 0 or (labels and not _labels_ok(spec, Y)):
        return False
    for b in prange(_blocks(N)):
        lo, hi = b * LANES, min(N, (b + 1) * LANES)
        _forward_lanes(flats, spec, buf, N, n, lo, hi)
        _output_error_lanes(spec, buf, N, n, labels, lo, hi, out)
        _backward_lanes(flats, spec, buf, N, n, lo, hi)
    if _same_hypers(hypers) and _finite_losses(out) and _update_together(flats, hypers):
        return True
    for b in prange(_blocks(N)):  # member by member: each all or nothing
        lo, hi = b * LANES, min(N, (b + 1) * LANES)
        for m in range(lo, hi):
            buf[U(status * N + m)] = out[m] * 0  # 0, or NaN for a loss that is not finite
        _update_lanes(flats, hypers, buf, N, c_row, status, lo, hi)
        for m in range(lo, hi):
            if buf[U(status * N + m)] != 0:
                out[m] = np.nan
    return True


@inline
def _same_hypers(hypers):
    for m in range(1, hypers.shape[0]):
        for r in range(hypers.shape[1]):
            if hypers[m, r] != hypers[0, r]:
                return False
    return True


@inline
def _finite_losses(out):
    probe = 0.0  # x * 0 is NaN for a NaN or an infinity (no nnan/ninf fastmath)
    for m in range(out.shape[0]):
        probe += out[m] * 0.0
    return probe == 0


@inline
def _update_together(flats, hypers):
    """When every member has the same hyperparameters and step count, their update is one network's update over all
    their values at once (the common case: fast, with no per-member coefficients). False, changing nothing, if some
    new value would not be finite; the members then update one by one."""
    if not update(flats.reshape((flats.shape[0], flats.shape[1] * flats.shape[2])), hypers[0]):
        return False
    for m in range(1, hypers.shape[0]):
        hypers[m, optim.STEP] += 1
    return True


def _population_predict(flats, spec, works, X, out):
    """Every member's output on its own batch: X (N, n, n_in) -> out (N, n, n_out). False if X is not finite."""
    N, n = X.shape[0], X.shape[1]
    buf = works.reshape(works.size)
    a_off, n_out = _act_offset(spec, n, spec[N_LAYERS]), out.shape[2]
    probe = 0.0
    for b in prange(_blocks(N)):
        lo, hi = b * LANES, min(N, (b + 1) * LANES)
        probe += _load_lanes(buf, N, 0, X, lo, hi)
    if probe != 0:
        return False
    for b in prange(_blocks(N)):
        lo, hi = b * LANES, min(N, (b + 1) * LANES)
        _forward_lanes(flats, spec, buf, N, n, lo, hi)
        for i in range(n):
            for j in range(n_out):
                e = (a_off + i * n_out + j) * N
                for m in range(lo, hi):
                    out[m, i, j] = buf[U(e + m)]
    return True


population_train_step, _population_train_step_parallel = kernel_pair(_population_train_step)
population_predict, _population_predict_parallel = kernel_pair(_population_predict)
PARALLEL.update({population_train_step: _population_train_step_parallel,
                 population_predict: _population_predict_parallel})
