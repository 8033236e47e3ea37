"""scikit-learn's MLP arithmetic over a network's ``flat``, for :mod:`fastbp.sklearn`.

The data term's gradient comes from the usual kernels (``gradient`` and its weighted twin) into ``flat[1]``; these
kernels turn it into scikit-learn's: rescaled to its loss's normalisation, plus its L2 term ``alpha * W / n`` on the
weights only (never the biases), then stepped with scikit-learn's SGD (a velocity ``v = momentum * v - lr * g``) or its
Adam (epsilon added outside the bias correction, as in Kingma and Ba's section 2 and ``sklearn.neural_network``).
Their state lives in ``flat[2:]``: the velocity, or Adam's two moments.
"""

import math

import numpy as np

from .._jit import kernel
from .layout import N_LAYERS, SIZES

SGD, ADAM = 0, 1
KIND, LR, MOMENTUM, NESTEROV, BETA1, BETA2, EPS, STEP = range(8)  # the ``opt`` array's fields
OPT_SIZE = 8


@kernel
def penalize(flat, spec, grad_scale, l2):
    """``flat[1] = grad_scale * flat[1] + l2 * W`` on every weight, ``grad_scale * flat[1]`` on every bias.

    Returns the sum of the squared weights (the L2 term's ``||W||^2``), summed in float64.
    """
    T = flat.dtype.type
    scale, c = T(grad_scale), T(l2)
    total = 0.0
    off = 0
    for l in range(spec[N_LAYERS]):
        n_in, n_out = spec[SIZES + l], spec[SIZES + l + 1]
        # Slices, so each loop counts up from 0: LLVM then drops the negative-index test and vectorises.
        W, gW = flat[0, off:off + n_in * n_out], flat[1, off:off + n_in * n_out]
        for k in range(W.size):
            total += np.float64(W[k]) * np.float64(W[k])
            gW[k] = scale * gW[k] + c * W[k]
        gb = flat[1, off + n_in * n_out:off + n_out * (n_in + 1)]
        for k in range(gb.size):
            gb[k] = scale * gb[k]
        off += n_out * (n_in + 1)
    return total


@kernel
def update(flat, spec, opt, grad_scale, l2):
    """:func:`penalize`, then one step of scikit-learn's SGD or Adam in place; returns ``||W||^2`` before the step.

    Parameters
    ----------
    flat : ndarray, shape (2 + n_slots, n_params)
        Parameters, the data term's gradient (rewritten as the penalised one), and the state: SGD's velocity
        (``n_slots`` 1; none for SGD without momentum) or Adam's first and second moments (2).
    opt : ndarray of float64, shape (OPT_SIZE,)
        ``KIND`` (SGD or ADAM), ``LR`` (SGD's current rate, Adam's ``learning_rate_init``), ``MOMENTUM``,
        ``NESTEROV``, ``BETA1``, ``BETA2``, ``EPS`` and Adam's step count ``STEP``, which is incremented.
    """
    total = penalize(flat, spec, grad_scale, l2)
    T = flat.dtype.type
    p, g = flat[0], flat[1]
    if opt[KIND] == ADAM:
        opt[STEP] += 1
        t = opt[STEP]
        lr = T(opt[LR] * math.sqrt(1.0 - opt[BETA2] ** t) / (1.0 - opt[BETA1] ** t))
        b1, b2, c1, c2, eps = T(opt[BETA1]), T(opt[BETA2]), T(1.0 - opt[BETA1]), T(1.0 - opt[BETA2]), T(opt[EPS])
        m, v = flat[2], flat[3]
        for k in range(p.size):
            m[k] = b1 * m[k] + c1 * g[k]
            v[k] = b2 * v[k] + c2 * (g[k] * g[k])
            p[k] += -lr * m[k] / (np.sqrt(v[k]) + eps)
        return total
    lr, mu = T(opt[LR]), T(opt[MOMENTUM])
    if flat.shape[0] == 2:  # no momentum: no velocity row
        for k in range(p.size):
            p[k] += -lr * g[k]
        return total
    velocity = flat[2]
    if opt[NESTEROV] != 0:
        for k in range(p.size):
            velocity[k] = mu * velocity[k] - lr * g[k]
            p[k] += mu * velocity[k] - lr * g[k]
    else:
        for k in range(p.size):
            velocity[k] = mu * velocity[k] - lr * g[k]
            p[k] += velocity[k]
    return total
