"""Optimizers: a small frozen description in Python, and one in-place update kernel over the flat vectors.

The network keeps every parameter-shaped vector in one array ``flat`` of shape (2 + n_slots, n_params): row 0 the
parameters, row 1 the gradient, rows 2.. the optimizer's state (SGD's velocity; Adam's first and second moments).
Hyperparameters and the step count live in a small float64 array ``hyper`` laid out by the indices below.
"""

import math
from dataclasses import dataclass

import numpy as np

from ._jit import inline, kernel

SGD_KIND, ADAM_KIND = 0, 1
KIND, LR, BETA1, BETA2, EPS, WEIGHT_DECAY, NESTEROV, STEP = range(8)  # BETA1 is SGD's momentum


def _check(name, value, low, high=math.inf, low_open=False, high_open=True):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must be in {lo}{low}, {high}{hi}, got {value!r}")


@dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay, as ``torch.optim.SGD``."""

    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0

    def __post_init__(self):
        _check("lr", self.lr, 0, low_open=True)
        _check("momentum", self.momentum, 0, 1)
        _check("weight_decay", self.weight_decay, 0)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs a momentum > 0")

    @property
    def n_slots(self):
        return 1 if self.momentum > 0 else 0

    def hyper(self):
        return np.array([SGD_KIND, self.lr, self.momentum, 0, 0, self.weight_decay, self.nesterov, 0], np.float64)


@dataclass(frozen=True)
class Adam:
    """Adam with decoupled weight decay (AdamW when ``weight_decay > 0``), as ``torch.optim.AdamW``."""

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self):
        _check("lr", self.lr, 0, low_open=True)
        _check("beta1", self.beta1, 0, 1)
        _check("beta2", self.beta2, 0, 1)
        _check("eps", self.eps, 0, low_open=True)
        _check("weight_decay", self.weight_decay, 0)

    n_slots = 2

    def hyper(self):
        return np.array([ADAM_KIND, self.lr, self.beta1, self.beta2, self.eps, self.weight_decay, 0, 0], np.float64)


def from_hyper(hyper):
    """The optimizer described by a ``hyper`` array (used when loading a saved network)."""
    if hyper[KIND] == SGD_KIND:
        return SGD(float(hyper[LR]), float(hyper[BETA1]), bool(hyper[NESTEROV]), float(hyper[WEIGHT_DECAY]))
    if hyper[KIND] == ADAM_KIND:
        return Adam(*(float(hyper[i]) for i in (LR, BETA1, BETA2, EPS, WEIGHT_DECAY)))
    raise ValueError(f"unknown optimizer kind {hyper[KIND]!r}")


@kernel
def update(flat, hyper):
    """One optimizer step in place: parameters ``flat[0]`` from the gradient ``flat[1]`` and the state ``flat[2:]``.

    All or nothing: a first pass computes every new value and only checks that it is finite; the second writes. A
    step that would make any parameter or state value NaN or infinite changes nothing and returns False.

    Parameters
    ----------
    flat : ndarray, shape (2 + n_slots, n_params)
        Read: the gradient. Written: the parameters and the optimizer state.
    hyper : ndarray of float64, shape (8,)
        Read: the hyperparameters. Written: the step count ``hyper[STEP]``.
    """
    if not _step(flat, hyper, False):
        return False
    _step(flat, hyper, True)
    hyper[STEP] += 1
    return True


@inline
def _step(flat, hyper, write):
    """The update's arithmetic: writes the new values when ``write``, else returns whether all would be finite."""
    c = coefficients(flat.dtype.type, hyper[KIND], hyper[LR], hyper[BETA1], hyper[BETA2], hyper[EPS],
                     hyper[WEIGHT_DECAY], hyper[NESTEROV], hyper[STEP])
    if hyper[KIND] == ADAM_KIND:
        return _step_loop(flat, c, ADAM_KIND, 2, write)
    if flat.shape[0] == 3:
        return _step_loop(flat, c, SGD_KIND, 1, write)
    return _step_loop(flat, c, SGD_KIND, 0, write)


@inline
def _step_loop(flat, c, kind, n_slots, write):
    # Called with a constant kind and slot count, so each loop is branch-free and vectorises.
    T = flat.dtype.type
    s1, s2 = min(2, 1 + n_slots), 1 + n_slots  # the state rows; a missing one reads a row it then ignores
    probe = T(0)  # stays 0 unless a new value is NaN or infinite (their product with 0 is NaN)
    for k in range(flat.shape[1]):
        new, v1, v2 = new_values(kind, n_slots, c, flat[0, k], flat[1, k], flat[s1, k], flat[s2, k])
        if write:
            flat[0, k] = new
            if n_slots > 0:
                flat[s1, k] = v1
            if n_slots > 1:
                flat[s2, k] = v2
        else:
            probe += (new + v1 + v2) * T(0)
    return probe == 0


@inline
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
