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
    T = flat.dtype.type
    p, g = flat[0], flat[1]
    lr, wd = T(hyper[LR]), T(hyper[WEIGHT_DECAY])
    probe = T(0)  # stays 0 unless a new value is NaN or infinite (their product with 0 is NaN)
    if hyper[KIND] == SGD_KIND:
        if flat.shape[0] == 2:
            for k in range(p.size):
                new = p[k] - lr * (g[k] + wd * p[k])
                if write:
                    p[k] = new
                else:
                    probe += new * T(0)
            return probe == 0
        mu, nesterov, v = T(hyper[BETA1]), hyper[NESTEROV] != 0, flat[2]
        for k in range(p.size):
            gk = g[k] + wd * p[k]
            vk = mu * v[k] + gk  # v starts at zero, so the first step gives v = g as in PyTorch
            new = p[k] - lr * (gk + mu * vk if nesterov else vk)
            if write:
                p[k], v[k] = new, vk
            else:
                probe += (new + vk) * T(0)
        return probe == 0
    # AdamW in PyTorch's arithmetic: lerp for the first moment, bias corrections folded into the step and the denominator.
    b1, b2, t = hyper[BETA1], hyper[BETA2], hyper[STEP] + 1
    step = T(hyper[LR] / (1.0 - b1**t))
    root_bc2 = T(math.sqrt(1.0 - b2**t))
    eps, decay, c1, c2, b2T = T(hyper[EPS]), T(1.0 - hyper[LR] * hyper[WEIGHT_DECAY]), T(1.0 - b1), T(1.0 - b2), T(b2)
    m, v = flat[2], flat[3]
    for k in range(p.size):
        mk = m[k] + c1 * (g[k] - m[k])
        vk = b2T * v[k] + c2 * g[k] * g[k]
        new = p[k] * decay - step * mk / (np.sqrt(vk) / root_bc2 + eps)
        if write:
            p[k], m[k], v[k] = new, mk, vk
        else:
            probe += (new + mk + vk) * T(0)
    return probe == 0
