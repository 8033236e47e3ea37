"""The generic population kernels: N networks of one architecture, interleaved, each step a SIMD row over members.
"""

import numpy as np
from numba import prange
from numba import uint64 as U  # an unsigned index skips Numba's negative-index wraparound: the loops vectorise

from .. import activations as act
from .. import losses, optim
from .._jit import helper, kernel, kernel_pair
from ..config import LANES
from ..optim import update
from .layout import (LOSS, N_LAYERS, OUTPUT, SIZES, _act_offset, _delta_offset, _derivative_source, _kept_offset,
                     _param_offset, _target_offset, _z_offset, hidden_code, layer_code, work_size)

# A population interleaves its N members: flats (2 + n_slots, n_params, N), so member m's flat array is the column
# flats[:, :, m], and works (population_work_size(spec, n), N) holds every member's work the same way. Each scalar of
# the network's arithmetic becomes a contiguous row over members, which LLVM vectorises across members: the small
# loops over units stay scalar, the wide one runs in SIMD. Members go in blocks of LANES (a block's rows stay in
# cache), blocks to threads. The loops below index ``works`` flat: element e of member m is at e * N + m.

LANE_ROWS = 8  # after a network's work: the step's coefficients per member (7 rows), and a status row


@kernel
def population_work_size(spec, n):
    """The rows of ``works`` the generic population kernels need for batches of n rows.

    Parameters
    ----------
    spec : ndarray, shape (2 * n_layers + 4,), int64
        The architecture, ``[n_layers, hidden code, output code, loss code, sizes..., hidden codes...]``.
    n : int
        The rows of each member's batch.

    Returns
    -------
    rows : int
        ``work_size(spec, n)`` plus 8 rows (each member's update coefficients and status); ``works`` has shape
        (rows, N). (:meth:`fastbp.Population.workspace` makes one large enough for the compiled kernels too.)
    """
    return work_size(spec, n) + LANE_ROWS


@helper
def _load_lanes(buf, N, off, A, lo, hi):
    """Members lo..hi of A (N, rows, width) into the lane rows from ``off`` (row-major over rows and width); 0, or
    NaN if any value is NaN or infinite."""
    T = buf.dtype.type
    probe = T(0)
    for i in range(A.shape[1]):
        for k in range(A.shape[2]):
            e = (off + i * A.shape[2] + k) * N
            for m in range(lo, hi):
                x = T(A[U(m), U(i), U(k)])  # unsigned: a signed index kept this gather scalar (4x slower)
                buf[U(e + m)] = x
                probe += x * T(0)
    return probe


@helper
def _labels_ok(spec, Y):
    n_out = spec[SIZES + spec[N_LAYERS]]
    for m in range(Y.shape[0]):
        for i in range(Y.shape[1]):
            if not (0 <= Y[m, i, 0] < n_out):
                return False
    return True


@helper
def _forward_lanes(flats, spec, buf, N, n, lo, hi):
    """_forward for members lo..hi: z = W a + b, a = phi(z), each a row over members. Returns n times the sum of
    their parameters' magnitudes (summed as they are read: plain SGD's bound, ``optim.sgd_cannot_overflow``)."""
    T = buf.dtype.type
    L = spec[N_LAYERS]
    w_off, a_off = 0, 0
    total = 0.0
    for l in range(L):
        n_in, n_out = spec[SIZES + l], spec[SIZES + l + 1]
        b_off, out_off = w_off + n_out * n_in, a_off + n * n_in
        code = layer_code(spec, l)
        z_off = _z_offset(spec, n) if l == L - 1 else _kept_offset(spec, n, l + 1) if act.keeps_derivative(code) \
            else out_off
        for i in range(n):
            a, z = a_off + i * n_in, z_off + i * n_out
            for j in range(n_out):
                zj, w = (z + j) * N, w_off + j * n_in
                size = T(0)  # each row of members summed in the dtype (vectorised), the rows in float64
                for m in range(lo, hi):
                    p = flats[0, b_off + j, U(m)]
                    buf[U(zj + m)] = p
                    size += abs(p)
                total += size
                # 4 inputs per pass: one load and store of z per 4 multiply-adds
                for k in range(0, n_in - 3, 4):
                    a0, a1, a2, a3 = (a + k) * N, (a + k + 1) * N, (a + k + 2) * N, (a + k + 3) * N
                    size = T(0)
                    for m in range(lo, hi):
                        p0, p1, p2, p3 = flats[0, w + k, U(m)], flats[0, w + k + 1, U(m)], \
                            flats[0, w + k + 2, U(m)], flats[0, w + k + 3, U(m)]
                        buf[U(zj + m)] += (p0 * buf[U(a0 + m)] + p1 * buf[U(a1 + m)]) + \
                            (p2 * buf[U(a2 + m)] + p3 * buf[U(a3 + m)])
                        size += (abs(p0) + abs(p1)) + (abs(p2) + abs(p3))
                    total += size
                for k in range(n_in - n_in % 4, n_in):
                    ak = (a + k) * N
                    size = T(0)
                    for m in range(lo, hi):
                        p = flats[0, w + k, U(m)]
                        buf[U(zj + m)] += p * buf[U(ak + m)]
                        size += abs(p)
                    total += size
                if code != act.SOFTMAX:
                    act.activate_span(code, buf, zj + lo, (out_off + i * n_out + j) * N + lo, hi - lo, 1)
            if code == act.SOFTMAX:
                for m in range(lo, hi):
                    act.softmax(buf, z * N + m, (out_off + i * n_out) * N + m, n_out, N)
        w_off, a_off = b_off + n_out, out_off
    return total


@helper
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
            out[U(m)] = 0
        for e in range(n * n_out):
            a, d, y = (a_off + e) * N, (d_off + e) * N, (y_off + e) * N
            for m in range(lo, hi):
                value, grad = losses.unit_error(loss, buf[U(a + m)] - buf[U(y + m)])
                out[U(m)] += value
                buf[U(d + m)] = scale * grad
            act.backprop_span(code, buf, a + lo, d + lo, hi - lo)
        for m in range(lo, hi):
            out[U(m)] *= scale
        return
    for m in range(lo, hi):
        total = T(0)
        for i in range(n):
            r = i * n_out
            total += losses.output_error(loss, code, buf, (z_off + r) * N + m, (a_off + r) * N + m,
                                         (d_off + r) * N + m, (y_off + i * width) * N + m, n_out, N, labels, scale)
        out[U(m)] = total * scale


@helper
def _backward_lanes(flats, spec, buf, N, n, lo, hi):
    """_backward for members lo..hi: the deltas and the gradient ``flats[1]``, each a row over members. Returns a
    bound on the sum of their gradient's magnitudes (the sum of every partial sum written: each row's last is its
    value)."""
    T = buf.dtype.type
    L = spec[N_LAYERS]
    total = 0.0
    for l in range(L - 1, -1, -1):
        n_in, n_out = spec[SIZES + l], spec[SIZES + l + 1]
        w_off = _param_offset(spec, l)
        b_off = w_off + n_out * n_in
        a_off, d_off = _act_offset(spec, n, l), _delta_offset(spec, n, l + 1)
        for j in range(n_out):
            for i in range(n):
                d = (d_off + i * n_out + j) * N
                size = T(0)  # as _forward_lanes' sums
                for m in range(lo, hi):
                    g = (flats[1, b_off + j, U(m)] if i > 0 else T(0)) + buf[U(d + m)]
                    flats[1, b_off + j, U(m)] = g
                    size += abs(g)
                total += size
                for k in range(n_in):
                    w, a = w_off + j * n_in + k, (a_off + i * n_in + k) * N
                    size = T(0)
                    for m in range(lo, hi):
                        g = (flats[1, w, U(m)] if i > 0 else T(0)) + buf[U(d + m)] * buf[U(a + m)]
                        flats[1, w, U(m)] = g
                        size += abs(g)
                    total += size
        if l == 0:
            break
        dp_off, s_off = _delta_offset(spec, n, l), _derivative_source(spec, n, l)
        for i in range(n):
            for k in range(n_in):
                dp = (dp_off + i * n_in + k) * N
                for m in range(lo, hi):
                    buf[U(dp + m)] = 0
                for j in range(n_out):
                    d, w = (d_off + i * n_out + j) * N, w_off + j * n_in + k
                    for m in range(lo, hi):
                        buf[U(dp + m)] += buf[U(d + m)] * flats[0, w, U(m)]
                act.backprop_span(hidden_code(spec, l), buf, (s_off + i * n_in + k) * N + lo, dp + lo, hi - lo)
    return total


@helper
def _update_lanes(flats, hypers, buf, N, c_row, status, lo, hi):
    """optim.update for members lo..hi, all or nothing per member: the members with ``buf[status]`` 0 (a finite
    loss) whose new values would all be finite are updated and keep 0; the others are left as they were."""
    T = flats.dtype.type
    for m in range(lo, hi):
        c = optim.coefficients(T, hypers[m, optim.KIND], optim.learning_rate(hypers[m]),
                               hypers[m, optim.BETA1], hypers[m, optim.BETA2], hypers[m, optim.EPS],
                               hypers[m, optim.WEIGHT_DECAY], hypers[m, optim.NESTEROV], hypers[m, optim.STEP])
        for r in range(7):
            buf[U((c_row + r) * N + m)] = c[r]
    kind = hypers[lo, optim.KIND]  # one optimizer kind per population
    _update_lanes_pass(flats, kind, buf, N, c_row, status, lo, hi, False)
    _update_lanes_pass(flats, kind, buf, N, c_row, status, lo, hi, True)
    for m in range(lo, hi):
        if buf[U(status * N + m)] == 0:
            hypers[m, optim.STEP] += 1


@helper
def _update_lanes_pass(flats, kind, buf, N, c_row, status, lo, hi, write):
    """Writes the new values of the members with status 0 when ``write``, else makes the status of those whose new
    values would not all be finite NaN."""
    if kind == optim.ADAM_KIND:
        _update_lanes_loop(flats, buf, N, c_row, status, lo, hi, optim.ADAM_KIND, 2, write)
    elif flats.shape[0] == 3:
        _update_lanes_loop(flats, buf, N, c_row, status, lo, hi, optim.SGD_KIND, 1, write)
    else:
        _update_lanes_loop(flats, buf, N, c_row, status, lo, hi, optim.SGD_KIND, 0, write)


@helper
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


@helper
def _blocks(N):
    return (N + LANES - 1) // LANES


def _population_train_step(flats, spec, hypers, works, X, Y, out):
    """One train step for every member on its own batch, each member's update all or nothing.

    Every input is loaded and checked before any member is touched. When every member has the same ``hypers`` row,
    plain SGD updates each block of members right after its backward pass, in one pass where its losses are finite
    and the sums of its parameters' and gradient's magnitudes bound the step (``optim.sgd_cannot_overflow``); other
    optimizers update all members as one vector when every loss is finite. What is left goes member by member, each
    with its own learning rate and step count.

    Parameters
    ----------
    flats : ndarray, shape (2 + n_slots, n_params, N), float32 or float64, C-contiguous
        Member m's ``flat`` is the column ``flats[:, :, m]``. Read and written: the parameters, the gradients and
        the optimizer states.
    spec : ndarray, shape (2 * n_layers + 4,), int64
        The architecture all members share, ``[n_layers, hidden code, output code, loss code, sizes..., hidden codes...]``; read
        only.
    hypers : ndarray, shape (N, fastbp.optim.HYPER_SIZE), float64
        Each member's ``hyper`` (:mod:`fastbp.optim`), one optimizer kind for all; schedules apply per member, and
        ``CLIP_NORM`` has no effect (the population kernels do not clip). Written: the step counts of the members
        updated.
    works : ndarray, shape (>= population_work_size(spec, n), N), flats' dtype, C-contiguous
        Scratch, overwritten; its size is not checked.
    X : ndarray, shape (N, n, n_in), float or integer
        Member m's batch is ``X[m]``; read only, converted to ``works``' dtype as it is read.
    Y : ndarray, shape (N, n, n_out), float, or shape (N, n, 1), integer
        The targets, read only: values, or (for n_out > 1) class labels in [0, n_out).
    out : ndarray, shape (N,), float64
        Written: each member's mean loss before its update. A member whose loss is not finite, or whose update
        would not be, gets NaN and keeps its parameters, optimizer state and step count.

    Returns
    -------
    ok : bool
        False, touching nothing but ``works``, if any X or Y holds a NaN or an infinity or a label is out of range,
        or if ``hypers`` is not (N, HYPER_SIZE); else True.
    """
    N, n = X.shape[0], X.shape[1]
    if hypers.shape[0] != N or hypers.shape[1] != optim.HYPER_SIZE:
        return False
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
    same = same_hypers(hypers)
    plain = same and optim.plain_sgd(flats, hypers[0])
    updated = 0
    for b in prange(_blocks(N)):
        lo, hi = b * LANES, min(N, (b + 1) * LANES)
        params_size = _forward_lanes(flats, spec, buf, N, n, lo, hi)
        _output_error_lanes(spec, buf, N, n, labels, lo, hi, out)
        grad_size = _backward_lanes(flats, spec, buf, N, n, lo, hi)
        # Plain SGD updates a block as soon as its gradient is written, while it is in this core's cache.
        done = plain and _sgd_lanes(flats, hypers, out, lo, hi, params_size, grad_size)
        buf[U(status * N + lo)] = done  # read below: the blocks left to update member by member
        updated += done
    if updated == _blocks(N):
        return True
    if not plain and same and _finite_losses(out) and _update_together(flats, hypers):
        return True
    for b in prange(_blocks(N)):  # member by member: each all or nothing
        lo, hi = b * LANES, min(N, (b + 1) * LANES)
        if buf[U(status * N + lo)] != 0:
            continue
        for m in range(lo, hi):
            buf[U(status * N + m)] = out[m] * 0  # 0, or NaN for a loss that is not finite
        _update_lanes(flats, hypers, buf, N, c_row, status, lo, hi)
        for m in range(lo, hi):
            if buf[U(status * N + m)] != 0:
                out[m] = np.nan
    return True


@helper
def same_hypers(hypers):
    """Whether every row of ``hypers`` equals the first: each value against the one a row before, in one flat loop
    that LLVM vectorises (a loop per row, returning at the first difference, took 5x as long on 1024 rows)."""
    width, flat = hypers.shape[1], np.ascontiguousarray(hypers).reshape(hypers.size)  # C already: no copy
    differ = False
    for e in range(width, flat.size):
        differ |= flat[U(e)] != flat[U(e - width)]
    return not differ


@helper
def _finite_losses(out):
    probe = 0.0  # x * 0 is NaN for a NaN or an infinity (no nnan/ninf fastmath)
    for m in range(out.shape[0]):
        probe += out[m] * 0.0
    return probe == 0


@helper
def _sgd_lanes(flats, hypers, out, lo, hi, params_size, grad_size):
    """Plain SGD (every member's ``hypers`` row the same) for members lo..hi in one pass, when their losses are
    finite and the sums of their parameters' and gradient's magnitudes show that no new value can overflow
    (:func:`fastbp.optim.sgd_cannot_overflow`); else False, changing nothing."""
    # This block's own row: the blocks before it have already counted their step.
    lr, decay = optim.sgd_coefficients(flats, hypers[lo])
    if not (_finite_losses(out[lo:hi]) and optim.sgd_cannot_overflow(lr, decay, params_size, grad_size)):
        return False
    for e in range(flats.shape[1]):
        for m in range(lo, hi):
            p = flats[0, e, U(m)]
            flats[0, e, U(m)] = p - lr * (flats[1, e, U(m)] + decay * p)  # optim.new_values' plain SGD
    for m in range(lo, hi):
        hypers[m, optim.STEP] += 1
    return True


@helper
def _update_together(flats, hypers):
    """When every member has the same hyperparameters and step count, their update is one network's update over all
    their values at once (fast, with no per-member coefficients). False, changing nothing, if some new value would
    not be finite; the members then update one by one."""
    if hypers[0, optim.CLIP_NORM] != 0:  # update would clip the population's gradients as one: not per member
        return False
    if not update(flats.reshape((flats.shape[0], flats.shape[1] * flats.shape[2])), hypers[0]):
        return False
    for m in range(1, hypers.shape[0]):
        hypers[m, optim.STEP] += 1
    return True


def _population_predict(flats, spec, works, X, out):
    """Every member's output activations on its own batch, into ``out``.

    Parameters
    ----------
    flats : ndarray, shape (2 + n_slots, n_params, N), float32 or float64, C-contiguous
        Read only: the parameters ``flats[0]``, member m's in column m.
    spec : ndarray, shape (2 * n_layers + 4,), int64
        The architecture all members share, ``[n_layers, hidden code, output code, loss code, sizes..., hidden codes...]``; read
        only.
    works : ndarray, shape (>= population_work_size(spec, n), N), flats' dtype, C-contiguous
        Scratch, overwritten; its size is not checked.
    X : ndarray, shape (N, n, n_in), float or integer
        Member m's batch is ``X[m]``; read only, converted to ``works``' dtype as it is read.
    out : ndarray, shape (N, n, n_out), float
        Written (usually in flats' dtype): ``out[m]`` is member m's output. Its shape is not checked.

    Returns
    -------
    ok : bool
        False, writing nothing to ``out``, if X holds a NaN or an infinity; else True.
    """
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
                    out[U(m), U(i), U(j)] = buf[U(e + m)]
    return True


population_train_step, _population_train_step_parallel = kernel_pair(_population_train_step)
population_predict, _population_predict_parallel = kernel_pair(_population_predict)
PARALLEL = {population_train_step: _population_train_step_parallel,
            population_predict: _population_predict_parallel}
