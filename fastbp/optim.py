"""Optimizers: a small frozen description in Python, and one in-place update kernel over the flat vectors.

The network keeps every parameter-shaped vector in one array ``flat`` of shape (2 + n_slots, n_params): row 0 the
parameters, row 1 the gradient, rows 2.. the optimizer's state (SGD's velocity; Adam's first and second moments).
Hyperparameters, the step count, the gradient clipping norm and the learning-rate schedule (:mod:`fastbp.schedules`)
live in a small float64 array ``hyper`` laid out by the indices below, so the update kernel computes the step's
learning rate and clipping itself: the same from Python, ``fit`` and a user's ``@njit`` code.
"""

import math
from dataclasses import dataclass

import numpy as np

from . import schedules
from ._checks import check_real
from ._jit import helper, inline, kernel

SGD_KIND, ADAM_KIND = 0, 1
KIND, LR, BETA1, BETA2, EPS, WEIGHT_DECAY, NESTEROV, STEP = range(8)  # BETA1 is SGD's momentum
CLIP_NORM = 8  # the global L2 norm the gradient is clipped to; 0 for none
SCHEDULE, PERIOD, GAMMA, LR_MIN, WARMUP, WARMUP_START = range(9, 15)  # the schedule (LR holds its base rate)
NO_GRAD = 15  # 1: a train step need not leave its gradient in flat[1] (SGD's keep_grad=False)
HYPER_SIZE = 16
CLIP_EPS = 1e-6  # added to the norm before dividing, as torch.nn.utils.clip_grad_norm_


def _check_common(opt):
    """The checks of the fields SGD and Adam share: lr (a number or a schedule), weight decay, clip_norm."""
    if not isinstance(opt.lr, schedules.Schedule):
        check_real("lr", opt.lr, 0, low_open=True)
    check_real("weight_decay", opt.weight_decay, 0)
    if opt.clip_norm is not None:
        check_real("clip_norm", opt.clip_norm, 0, low_open=True)


def _hyper(opt, kind, beta1, beta2, eps, nesterov):
    """The ``hyper`` array of an optimizer."""
    hyper = np.zeros(HYPER_SIZE, np.float64)
    hyper[[KIND, BETA1, BETA2, EPS, WEIGHT_DECAY, NESTEROV]] = kind, beta1, beta2, eps, opt.weight_decay, nesterov
    hyper[CLIP_NORM] = 0.0 if opt.clip_norm is None else opt.clip_norm
    lr = opt.lr
    if isinstance(lr, schedules.Schedule):
        hyper[[SCHEDULE, PERIOD, GAMMA, LR_MIN]] = lr.fields()
        hyper[[WARMUP, WARMUP_START]] = lr.warmup, lr.warmup_start
        lr = lr.lr
    hyper[LR] = lr
    return hyper


@dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay, as ``torch.optim.SGD``.

    A frozen description: a network turns it into its ``hyper`` array and state rows (:meth:`hyper`,
    :attr:`n_slots`), and the update kernel :func:`fastbp.optim.update` does the arithmetic.

    Parameters
    ----------
    lr : float > 0 or fastbp.schedules.Schedule
        The learning rate, or a schedule of it (:mod:`fastbp.schedules`), computed in the update kernel from the
        step count.
    momentum : float in [0, 1)
        The velocity ``v = momentum * v + g`` (PyTorch's form, ``v = g`` at the first step); 0 for plain SGD, which
        keeps no state row.
    nesterov : bool
        Nesterov momentum, ``p -= lr * (g + momentum * v)``; needs ``momentum > 0``.
    weight_decay : float >= 0
        L2 penalty added to the gradient, ``g + weight_decay * p``, before the momentum.
    clip_norm : float > 0 or None
        Scale the gradient so its global L2 norm is at most this before the update, as
        ``torch.nn.utils.clip_grad_norm_`` (the gradient row itself is left as computed). None: no clipping.
    keep_grad : bool
        True (the default): every train step leaves its gradient in the network's ``grad`` (``flat[1]``), as
        :meth:`~fastbp.Network.gradients` does. False: a train step may leave ``grad`` stale, which lets the
        compiled one-row step of plain SGD apply the update without writing the gradient (measured from ``@njit``
        on an 8-64-64-2 float64 network, whose parameters and gradient together overflow the L1 cache: 1.6 us a
        step against 2.5).
        ``gradients`` and ``backward`` write ``grad`` either way.

    Raises
    ------
    TypeError
        If a number is not a real number (or ``lr`` neither a number nor a schedule), or ``keep_grad`` not a bool.
    ValueError
        If a number is out of its range, or ``nesterov`` is True with ``momentum`` 0.
    """

    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    clip_norm: float = None
    keep_grad: bool = True

    def __post_init__(self):
        _check_common(self)
        check_real("momentum", self.momentum, 0, 1)
        if not isinstance(self.keep_grad, (bool, np.bool_)):
            raise TypeError(f"keep_grad must be True or False, got {self.keep_grad!r}")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs a momentum > 0")

    @property
    def n_slots(self):
        """The optimizer's state rows in a network's ``flat`` (int): 1, the velocity, with momentum; else 0."""
        return 1 if self.momentum > 0 else 0

    def hyper(self):
        """The ``hyper`` array the update kernel reads.

        Returns
        -------
        hyper : ndarray, shape (HYPER_SIZE,), float64
            A new array, laid out by the indices of :mod:`fastbp.optim`, with the step count 0.
        """
        hyper = _hyper(self, SGD_KIND, self.momentum, 0, 0, self.nesterov)
        hyper[NO_GRAD] = not self.keep_grad
        return hyper


@dataclass(frozen=True)
class Adam:
    """Adam with decoupled weight decay (AdamW when ``weight_decay > 0``), as ``torch.optim.AdamW``.

    Parameters
    ----------
    lr : float > 0 or fastbp.schedules.Schedule
        The learning rate, or a schedule of it, as :class:`SGD`'s.
    beta1 : float in [0, 1)
        The decay rate of the first moment (the gradient's running mean).
    beta2 : float in [0, 1)
        The decay rate of the second moment (the squared gradient's running mean).
    eps : float > 0
        Added to the bias-corrected square root of the second moment, as PyTorch.
    weight_decay : float >= 0
        Decoupled decay: each step first multiplies the parameters by ``1 - lr * weight_decay``.
    clip_norm : float > 0 or None
        As :class:`SGD`'s.

    Raises
    ------
    TypeError
        If a number is not a real number (or ``lr`` neither a number nor a schedule).
    ValueError
        If a number is out of its range.
    """

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    clip_norm: float = None

    def __post_init__(self):
        _check_common(self)
        check_real("beta1", self.beta1, 0, 1)
        check_real("beta2", self.beta2, 0, 1)
        check_real("eps", self.eps, 0, low_open=True)

    n_slots = 2  #: The optimizer's state rows in a network's ``flat`` (int): the first and second moments.

    def hyper(self):
        """The ``hyper`` array the update kernel reads.

        Returns
        -------
        hyper : ndarray, shape (HYPER_SIZE,), float64
            A new array, laid out by the indices of :mod:`fastbp.optim`, with the step count 0.
        """
        return _hyper(self, ADAM_KIND, self.beta1, self.beta2, self.eps, False)


def from_hyper(hyper):
    """The optimizer described by a ``hyper`` array (used when loading a saved network)."""
    h = np.zeros(HYPER_SIZE)
    h[:len(hyper)] = hyper  # older files hold the first 8 entries (before clipping) or 15 (before keep_grad)
    lr = schedules.from_fields(h[SCHEDULE], h[LR], h[PERIOD], h[GAMMA], h[LR_MIN], h[WARMUP], h[WARMUP_START])
    clip_norm = float(h[CLIP_NORM]) if h[CLIP_NORM] > 0 else None
    if h[NO_GRAD] not in (0, 1):
        raise ValueError(f"keep_grad's field must be 0 or 1, got {h[NO_GRAD]!r}")
    if h[KIND] == SGD_KIND:
        return SGD(lr, float(h[BETA1]), bool(h[NESTEROV]), float(h[WEIGHT_DECAY]), clip_norm, not h[NO_GRAD])
    if h[KIND] == ADAM_KIND:
        return Adam(lr, *(float(h[i]) for i in (BETA1, BETA2, EPS, WEIGHT_DECAY)), clip_norm)
    raise ValueError(f"unknown optimizer kind {h[KIND]!r}")


@kernel
def update(flat, hyper):
    """One optimizer step in place: parameters ``flat[0]`` from the gradient ``flat[1]`` and the state ``flat[2:]``.

    All or nothing: a first pass computes every new value and only checks that it is finite; the second writes. A
    step that would make any parameter or state value NaN or infinite changes nothing and returns False.

    The gradient is first scaled to the global L2 norm ``hyper[CLIP_NORM]`` when that is set and exceeded, and the
    step's learning rate comes from the schedule in ``hyper`` at step ``hyper[STEP]``.

    Parameters
    ----------
    flat : ndarray, shape (2 + n_slots, n_params), float32 or float64
        Read: the gradient ``flat[1]`` (left as it is, unclipped). Written: the parameters ``flat[0]`` and the
        optimizer state ``flat[2:]`` (SGD's velocity when ``n_slots`` is 1, Adam's two moments when it is 2).
    hyper : ndarray, shape (HYPER_SIZE,), float64
        Read: the kind, hyperparameters, clipping norm and schedule (the indices of :mod:`fastbp.optim`). Written:
        the step count ``hyper[STEP]``, incremented when the step is applied.

    Returns
    -------
    ok : bool
        True if the step was applied; False, changing nothing, if some new value would not be finite.
    """
    scale = clip_scale(flat, hyper[CLIP_NORM])
    if not _step(flat, hyper, scale, False):
        return False
    _step(flat, hyper, scale, True)
    hyper[STEP] += 1
    return True


@helper
def sgd_cannot_overflow(lr, decay, params_size, grad_size):
    """Whether a plain SGD step (:func:`plain_sgd`) with the rate ``lr`` and weight decay ``decay``, in the
    parameters' dtype as the step uses them (:func:`sgd_coefficients`), cannot make a value NaN or infinite, given
    ``params_size`` and ``grad_size`` at least the largest magnitude of a parameter and of a gradient value.

    A kernel takes such bounds as it reads the parameters and writes the gradient, where they are in registers
    anyway: a sum of magnitudes, in any precision, is at least the largest (rounding is monotone). Then
    :func:`update`'s checking pass, which reads every parameter and gradient once more, can be skipped. True when
    4 (params_size + lr (grad_size + |decay| params_size)) is a finite number of the dtype: every new value
    ``p - lr (g + decay p)`` is then finite too (the factor 4 covers the step's rounding). False for a bound that is
    NaN, infinite or too large, which decides nothing: :func:`update` then checks the step.
    """
    T = type(lr)
    bound = T(4.0 * (params_size + np.float64(lr) * (grad_size + abs(np.float64(decay)) * params_size)))
    return bound * 0 == 0  # x * 0 is NaN for an infinity (and reassociation folds x - x to 0)


@helper
def plain_sgd(flat, hyper):
    """Whether the coming step is SGD with no momentum and no clipping: each new parameter then depends on its own
    gradient alone, so a kernel may apply the step as it computes the gradient (the compiled one-row step,
    :mod:`fastbp.kernels.codegen`), with the rate and decay of :func:`sgd_coefficients`."""
    return hyper[KIND] == SGD_KIND and flat.shape[0] == 2 and hyper[CLIP_NORM] <= 0


@helper
def writes_grad(hyper):
    """Whether a train step must leave its gradient in ``flat[1]``: SGD's ``keep_grad``, and True for a ``hyper`` of
    an older layout, before the field (15 entries)."""
    return hyper.shape[0] <= NO_GRAD or hyper[NO_GRAD] == 0


@helper
def sgd_coefficients(flat, hyper):
    """(learning rate, weight decay) of the coming SGD step in the parameters' dtype, as :func:`update` uses them."""
    c = coefficients(flat.dtype.type, hyper[KIND], learning_rate(hyper), hyper[BETA1], hyper[BETA2], hyper[EPS],
                     hyper[WEIGHT_DECAY], hyper[NESTEROV], hyper[STEP])
    return c[0], c[1]


@helper
def clip_scale(flat, clip_norm):
    """The factor the gradient ``flat[1]`` is multiplied by in this step: ``clip_norm / (norm + CLIP_EPS)`` when
    that is below 1, else 1 (and 1 with no clipping, ``clip_norm == 0``). The norm is summed in float64."""
    T = flat.dtype.type
    if clip_norm <= 0:
        return T(1)
    total = 0.0
    for k in range(flat.shape[1]):
        g = np.float64(flat[1, k])
        total += g * g
    coef = clip_norm / (math.sqrt(total) + CLIP_EPS)
    return T(coef) if coef < 1.0 else T(1)  # NaN for a non-finite gradient: the step is then refused


@helper
def learning_rate(hyper):
    """The learning rate of the coming step: ``hyper[LR]`` through the schedule, at step ``hyper[STEP]``."""
    return schedules.learning_rate(hyper[SCHEDULE], hyper[PERIOD], hyper[GAMMA], hyper[LR_MIN], hyper[LR],
                                   hyper[STEP], hyper[WARMUP], hyper[WARMUP_START])


@helper
def _step(flat, hyper, scale, write):
    """The update's arithmetic: writes the new values when ``write``, else returns whether all would be finite."""
    c = coefficients(flat.dtype.type, hyper[KIND], learning_rate(hyper), hyper[BETA1], hyper[BETA2], hyper[EPS],
                     hyper[WEIGHT_DECAY], hyper[NESTEROV], hyper[STEP])
    if hyper[KIND] == ADAM_KIND:
        return _step_loop(flat, c, scale, ADAM_KIND, 2, write)
    if flat.shape[0] == 3:
        return _step_loop(flat, c, scale, SGD_KIND, 1, write)
    return _step_loop(flat, c, scale, SGD_KIND, 0, write)


@helper
def _step_loop(flat, c, scale, kind, n_slots, write):
    # Called with a constant kind and slot count, so each loop is branch-free and vectorises. The gradient is
    # multiplied by the clipping factor ``scale`` (exactly 1 without clipping, which changes nothing).
    T = flat.dtype.type
    s1, s2 = min(2, 1 + n_slots), 1 + n_slots  # the state rows; a missing one reads a row it then ignores
    probe = T(0)  # stays 0 unless a new value is NaN or infinite (their product with 0 is NaN)
    for k in range(flat.shape[1]):
        new, v1, v2 = new_values(kind, n_slots, c, flat[0, k], scale * flat[1, k], flat[s1, k], flat[s2, k])
        if write:
            flat[0, k] = new
            if n_slots > 0:
                flat[s1, k] = v1
            if n_slots > 1:
                flat[s2, k] = v2
        else:
            probe += (new + v1 + v2) * T(0)
    return probe == 0


@helper
def coefficients(T, kind, lr, beta1, beta2, eps, weight_decay, nesterov, step):
    """The constants of one step, in the parameters' dtype T, from a ``hyper`` array's values.

    SGD: (lr, weight decay, momentum, nesterov). AdamW in PyTorch's arithmetic: (lr / the first bias correction,
    the square root of the second, eps, 1 - lr * weight decay, 1 - beta1, 1 - beta2, beta2).
    """
    if kind == SGD_KIND:
        return T(lr), T(weight_decay), T(beta1), T(nesterov), T(0), T(0), T(0)
    t = step + 1
    return (T(lr / (1.0 - beta1**t)), T(math.sqrt(1.0 - beta2**t)), T(eps), T(1.0 - lr * weight_decay),
            T(1.0 - beta1), T(1.0 - beta2), T(beta2))


@inline
def new_values(kind, n_slots, c, p, g, v1, v2):
    """One parameter's new value and state (v1, v2) from its gradient g, with the step's ``coefficients`` c."""
    if kind == SGD_KIND:
        lr, decay, mu, nesterov = c[0], c[1], c[2], c[3]
        g = g + decay * p
        if n_slots == 0:
            return p - lr * g, v1, v2
        v = mu * v1 + g  # v starts at zero, so the first step gives v = g as in PyTorch
        return p - lr * (g + mu * v if nesterov != 0 else v), v, v2
    step, root_bc2, eps, decay, c1, c2, b2 = c
    m = v1 + c1 * (g - v1)  # lerp, as PyTorch
    v = b2 * v2 + c2 * g * g
    return p * decay - step * m / (np.sqrt(v) / root_bc2 + eps), m, v
