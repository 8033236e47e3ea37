"""Learning-rate schedules: passed as ``lr=`` of an optimizer, computed in the update kernel from the step count.

Because the learning rate of step t is a closed form of t (read from ``hyper``), a schedule works the same from
Python, ``fit`` and a user's ``@njit`` loop, and is saved with the network. Each schedule matches one of
``torch.optim.lr_scheduler`` stepped once per optimizer step; a linear warm-up first is
``SequentialLR([LinearLR(warmup_start, 1, warmup), schedule], milestones=[warmup])``::

    fastbp.SGD(lr=fastbp.schedules.Cosine(0.1, steps=10_000, warmup=500))

:class:`ReduceOnPlateau` is the validation-driven case, for :meth:`fastbp.Network.fit`.
"""

import math
from dataclasses import dataclass, field

from ._checks import check_int, check_real
from ._jit import helper, kernel, python_function

CONSTANT, STEP_DECAY, EXPONENTIAL, COSINE = range(4)


@dataclass(frozen=True)
class Schedule:
    """The fields every schedule has: the base learning rate and an optional linear warm-up.

    Parameters
    ----------
    lr : float > 0
        The base learning rate.
    warmup : int >= 0, keyword-only
        Steps of linear warm-up before the schedule starts (its step 0 is step ``warmup``): the rate of step
        t < warmup is ``lr * (warmup_start + (1 - warmup_start) * t / warmup)``.
    warmup_start : float in [0, 1], keyword-only
        The warm-up's first factor.

    Raises
    ------
    TypeError
        If a number is not a real number.
    ValueError
        If a number is out of its range, or an integer field is not an integer.
    """

    lr: float
    warmup: int = field(default=0, kw_only=True)
    warmup_start: float = field(default=0.0, kw_only=True)
    code = CONSTANT

    def __post_init__(self):
        check_real("lr", self.lr, 0, low_open=True)
        check_int("warmup", self.warmup, 0)
        check_real("warmup_start", self.warmup_start, 0, 1, high_open=False)

    def fields(self):
        """What the update kernel reads besides lr and the warm-up.

        Returns
        -------
        fields : tuple of (int, float, float, float)
            The schedule's code, period, gamma and lr_min, in the order of ``hyper``'s entries.
        """
        return self.code, 0.0, 0.0, 0.0

    def __call__(self, step):
        """The learning rate of step ``step`` (0 for the first update), as the update kernel computes it."""
        check_int("step", step, 0)
        return learning_rate_at(*self.fields(), float(self.lr), float(step), float(self.warmup),
                                float(self.warmup_start))


class Constant(Schedule):
    """A constant rate after the warm-up (``LinearLR`` then ``ConstantLR(factor=1)``).

    Parameters
    ----------
    lr : float > 0
        The rate after the warm-up.
    warmup : int >= 0, keyword-only
        Steps of linear warm-up before the schedule starts (its step 0 is step ``warmup``): the rate of step
        t < warmup is ``lr * (warmup_start + (1 - warmup_start) * t / warmup)``.
    warmup_start : float in [0, 1], keyword-only
        The warm-up's first factor.

    Raises
    ------
    TypeError
        If a number is not a real number.
    ValueError
        If a number is out of its range, or an integer field is not an integer.
    """


@dataclass(frozen=True)
class StepDecay(Schedule):
    """``lr * gamma ** (t // step_size)``, as ``torch.optim.lr_scheduler.StepLR``.

    Parameters
    ----------
    lr : float > 0
        The rate of the first ``step_size`` steps after the warm-up.
    step_size : int >= 1
        The steps between two decays.
    gamma : float in (0, 1]
        The factor of each decay.
    warmup : int >= 0, keyword-only
        Steps of linear warm-up before the schedule starts (its step 0 is step ``warmup``): the rate of step
        t < warmup is ``lr * (warmup_start + (1 - warmup_start) * t / warmup)``.
    warmup_start : float in [0, 1], keyword-only
        The warm-up's first factor.

    Raises
    ------
    TypeError
        If a number is not a real number.
    ValueError
        If a number is out of its range, or an integer field is not an integer.
    """

    step_size: int
    gamma: float = 0.1
    code = STEP_DECAY

    def __post_init__(self):
        super().__post_init__()
        check_int("step_size", self.step_size, 1)
        check_real("gamma", self.gamma, 0, 1, low_open=True, high_open=False)

    def fields(self):
        """What the update kernel reads besides lr and the warm-up.

        Returns
        -------
        fields : tuple of (int, float, float, float)
            The schedule's code, period, gamma and lr_min, in the order of ``hyper``'s entries.
        """
        return self.code, float(self.step_size), float(self.gamma), 0.0


@dataclass(frozen=True)
class Exponential(Schedule):
    """``lr * gamma ** t``, as ``torch.optim.lr_scheduler.ExponentialLR``.

    Parameters
    ----------
    lr : float > 0
        The rate of the first step after the warm-up.
    gamma : float in (0, 1]
        The factor of every step.
    warmup : int >= 0, keyword-only
        Steps of linear warm-up before the schedule starts (its step 0 is step ``warmup``): the rate of step
        t < warmup is ``lr * (warmup_start + (1 - warmup_start) * t / warmup)``.
    warmup_start : float in [0, 1], keyword-only
        The warm-up's first factor.

    Raises
    ------
    TypeError
        If a number is not a real number.
    ValueError
        If a number is out of its range, or an integer field is not an integer.
    """

    gamma: float
    code = EXPONENTIAL

    def __post_init__(self):
        super().__post_init__()
        check_real("gamma", self.gamma, 0, 1, low_open=True, high_open=False)

    def fields(self):
        """What the update kernel reads besides lr and the warm-up.

        Returns
        -------
        fields : tuple of (int, float, float, float)
            The schedule's code, period, gamma and lr_min, in the order of ``hyper``'s entries.
        """
        return self.code, 0.0, float(self.gamma), 0.0


@dataclass(frozen=True)
class Cosine(Schedule):
    """``lr_min + (lr - lr_min) (1 + cos(pi t / steps)) / 2`` for t <= steps, then ``lr_min``: PyTorch's
    ``CosineAnnealingLR(T_max=steps, eta_min=lr_min)`` up to ``steps`` (PyTorch's then rises again; this one stays at
    ``lr_min``, as optax's ``cosine_decay_schedule``).

    Parameters
    ----------
    lr : float > 0
        The rate at the first step after the warm-up.
    steps : int >= 1
        The steps from ``lr`` down to ``lr_min`` (after the warm-up).
    lr_min : float in [0, lr]
        The final rate.
    warmup : int >= 0, keyword-only
        Steps of linear warm-up before the schedule starts (its step 0 is step ``warmup``): the rate of step
        t < warmup is ``lr * (warmup_start + (1 - warmup_start) * t / warmup)``.
    warmup_start : float in [0, 1], keyword-only
        The warm-up's first factor.

    Raises
    ------
    TypeError
        If a number is not a real number.
    ValueError
        If a number is out of its range, or an integer field is not an integer.
    """

    steps: int
    lr_min: float = 0.0
    code = COSINE

    def __post_init__(self):
        super().__post_init__()
        check_int("steps", self.steps, 1)
        check_real("lr_min", self.lr_min, 0, self.lr, high_open=False)

    def fields(self):
        """What the update kernel reads besides lr and the warm-up.

        Returns
        -------
        fields : tuple of (int, float, float, float)
            The schedule's code, period, gamma and lr_min, in the order of ``hyper``'s entries.
        """
        return self.code, float(self.steps), 0.0, float(self.lr_min)


KINDS = {CONSTANT: Constant, STEP_DECAY: StepDecay, EXPONENTIAL: Exponential, COSINE: Cosine}


def from_fields(code, lr, period, gamma, lr_min, warmup, warmup_start):
    """The schedule a ``hyper`` array describes (for loading), or the plain float lr when it is constant."""
    warm = dict(warmup=int(warmup), warmup_start=float(warmup_start))
    if code == CONSTANT:
        return float(lr) if warmup == 0 else Constant(float(lr), **warm)
    if code == STEP_DECAY:
        return StepDecay(float(lr), int(period), float(gamma), **warm)
    if code == EXPONENTIAL:
        return Exponential(float(lr), float(gamma), **warm)
    if code == COSINE:
        return Cosine(float(lr), int(period), float(lr_min), **warm)
    raise ValueError(f"unknown schedule code {code!r}")


@helper
def learning_rate(code, period, gamma, lr_min, lr, step, warmup, warmup_start):
    """The learning rate of update ``step`` (0-based, a float) from the schedule's fields, in float64."""
    if step < warmup:
        return lr * (warmup_start + (1.0 - warmup_start) * step / warmup)
    t = step - warmup
    if code == STEP_DECAY:
        return lr * gamma ** math.floor(t / period)
    if code == EXPONENTIAL:
        return lr * gamma**t
    if code == COSINE:
        return lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * min(t, period) / period))
    return lr


learning_rate_at = kernel(python_function(learning_rate))


@dataclass(frozen=True)
class ReduceOnPlateau:
    """Multiply the learning rate by ``factor`` when the monitored loss (validation loss, else training loss) has
    not improved for more than ``patience`` epochs, as ``torch.optim.lr_scheduler.ReduceLROnPlateau`` in mode
    ``min`` with a relative threshold: an epoch improves when its loss < best * (1 - threshold). For
    ``Network.fit(reduce_on_plateau=...)``; the reduced base rate is kept in the network's ``hyper`` (so it is saved)
    and scales any schedule.

    Parameters
    ----------
    factor : float in (0, 1)
        The factor each reduction multiplies the base learning rate by.
    patience : int >= 0
        The epochs without improvement tolerated: the rate is reduced at the next one (when more than
        ``patience`` epochs in a row have not improved), and the count starts again.
    threshold : float in [0, 1)
        The relative improvement that counts: an epoch improves when its loss < best * (1 - threshold).
    cooldown : int >= 0
        Epochs after a reduction during which epochs without improvement are not counted.
    min_lr : float >= 0
        A reduction never takes the rate below this: it becomes ``max(lr * factor, min_lr)``.

    Raises
    ------
    TypeError
        If a number is not a real number.
    ValueError
        If a number is out of its range, or an integer field is not an integer.
    """

    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    cooldown: int = 0
    min_lr: float = 0.0

    def __post_init__(self):
        check_real("factor", self.factor, 0, 1, low_open=True)
        check_int("patience", self.patience, 0)
        check_real("threshold", self.threshold, 0, 1)
        check_int("cooldown", self.cooldown, 0)
        check_real("min_lr", self.min_lr, 0)


__all__ = ["Constant", "StepDecay", "Exponential", "Cosine", "ReduceOnPlateau", "Schedule"]
