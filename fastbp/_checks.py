"""Argument checks shared by the classes and the training loops: each raises a ValueError or TypeError that says
what was expected and what came."""

import math
import numbers

import numpy as np


DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # the dtypes of networks, their buffers and arithmetic


def as_real_array(name, value, dtype):
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be a numeric array, got {type(value).__name__}: {exc}") from None
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    # One layout for the kernels, C-contiguous and writeable: a read-only array (a memory map, a broadcast view)
    # would otherwise compile a variant of every kernel it reaches.
    return np.require(arr, dtype, ("C", "W"))


def nonfinite(name, arr):
    bad = np.argwhere(~np.isfinite(arr))
    return f"{name} contains NaN or infinity ({len(bad)} values, first at index {tuple(int(i) for i in bad[0])})"


def check_sizes(sizes):
    try:
        sizes = [s for s in sizes]
    except TypeError:
        raise TypeError(f"sizes must be a sequence of integers, got {type(sizes).__name__}") from None
    if len(sizes) < 2:
        raise ValueError(f"sizes needs an input and an output width (at least 2 entries), got {sizes}")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise TypeError(f"sizes must be integers, got {s!r} in {sizes}")
        if s < 1:
            raise ValueError(f"sizes must be positive, got {sizes}")
    return [int(s) for s in sizes]


def check_name(what, name, allowed):
    if not isinstance(name, str) or name not in allowed:
        raise ValueError(f"unknown {what} {name!r}; expected one of {', '.join(allowed)}")
    return name


def check_hidden(hidden, n_hidden, allowed):
    """A hidden activation for every hidden layer (a name) or for each (one name per layer): the name when they are
    all the same, the one spelling every path stores and compares, else a tuple of names."""
    if isinstance(hidden, str):
        return check_name("hidden", hidden, allowed)
    if not isinstance(hidden, (list, tuple)):
        raise TypeError(f"hidden must be an activation name or a list of names, one per hidden layer, got "
                        f"{type(hidden).__name__}")
    if len(hidden) != n_hidden:
        raise ValueError(f"hidden has {len(hidden)} names for {n_hidden} hidden layers (len(sizes) - 2); give one "
                         "name per hidden layer, or one name for them all")
    names = tuple(check_name(f"hidden[{i}]", name, allowed) for i, name in enumerate(hidden))
    return names[0] if len(set(names)) == 1 else names or "identity"


def check_int(what, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{what} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_real(name, value, low, high=math.inf, low_open=False, high_open=True):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must be in {lo}{low}, {high}{hi}, got {value!r}")


def is_dtype(dtype):
    try:
        np.dtype(dtype)
        return True
    except TypeError:
        return False


class BatchChecks:
    """The checks and conversions of a batch at a network's boundary (a mixin of :class:`fastbp.Network`, which has
    ``sizes``, ``dtype`` and ``loss``): each returns a C-contiguous array of the network's dtype or raises."""

    def _input(self, X):
        """X as a C-contiguous 2-D array of the network's dtype, checked for shape (finiteness is the kernel's)."""
        if type(X) is not np.ndarray or X.dtype != self.dtype or not (X.flags.c_contiguous and X.flags.writeable):
            X = as_real_array("X", X, self.dtype)
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"X must have shape (n, {self.sizes[0]}), got {X.shape}")
        if X.shape[0] == 0:
            raise ValueError("X is an empty batch (0 rows)")
        return X

    def _targets(self, Y, n):
        """Y as (n, n_out) in the network's dtype, or (n, 1) class labels for cross_entropy, also in the network's
        dtype (exact for any label in range: one argument type per kernel, so labels never compile a variant)."""
        n_out = self.sizes[-1]
        if type(Y) is np.ndarray and Y.dtype == self.dtype and Y.flags.c_contiguous and Y.flags.writeable \
                and Y.shape == (n, n_out):
            return Y
        Y = np.asarray(Y) if not isinstance(Y, np.ndarray) else Y
        if self.loss == "cross_entropy" and Y.ndim == 1:
            if Y.dtype.kind not in "iu":
                raise TypeError(f"class labels must be integers, got dtype {Y.dtype}")
            Y = np.require(Y, self.dtype, ("C", "W")).reshape(-1, 1)
        else:
            Y = as_real_array("Y", Y, self.dtype)
            if Y.ndim == 1 and n_out == 1:
                Y = Y.reshape(-1, 1)
            if Y.ndim != 2 or Y.shape[1] != n_out:
                raise ValueError(f"Y must have shape (n, {n_out}), got {Y.shape}")
        if Y.shape[0] != n:
            raise ValueError(f"X and Y must have the same number of rows, got {n} and {Y.shape[0]}")
        return Y

    def _weights(self, sample_weight, n):
        """sample_weight as (n,) in the network's dtype, checked: finite, non-negative, not all zero."""
        w = as_real_array("sample_weight", sample_weight, self.dtype)
        if w.shape != (n,):
            raise ValueError(f"sample_weight must have shape ({n},), one weight per row, got {w.shape}")
        if not np.isfinite(w).all():
            raise ValueError(nonfinite("sample_weight", w))
        if (w < 0).any():
            raise ValueError(f"sample_weight must be non-negative, got {w.min()} at index {int(w.argmin())}")
        if not w.any():
            raise ValueError("sample_weight is all zero: the weighted mean loss is undefined")
        return w

    def _grad_output(self, grad_output, n):
        """grad_output as (n, n_out) in the network's dtype ((n,) accepted for one output unit)."""
        G = as_real_array("grad_output", grad_output, self.dtype)
        if G.ndim == 1 and self.sizes[-1] == 1:
            G = G.reshape(-1, 1)
        if G.shape != (n, self.sizes[-1]):
            raise ValueError(f"grad_output must have shape ({n}, {self.sizes[-1]}), the shape of the output, got "
                             f"{G.shape}")
        return G

    def _check_finite(self, X, Y):
        if not np.isfinite(X).all() or not self._targets_ok(Y):
            self._diagnose(X, Y)

    def _targets_ok(self, Y):
        if Y.shape[1] != self.sizes[-1]:
            return bool(((Y >= 0) & (Y < self.sizes[-1])).all())
        return bool(np.isfinite(Y).all())

    def _diagnose(self, X, Y):
        """Raise the error that explains a NaN from a kernel (the slow path; the fast path folds it into the kernel)."""
        if not np.isfinite(X).all():
            raise ValueError(nonfinite("X", X))
        if not self._targets_ok(Y):
            if Y.shape[1] != self.sizes[-1]:
                raise ValueError(f"class labels must be in [0, {self.sizes[-1]}), got values from {Y.min()} to "
                                 f"{Y.max()}")
            raise ValueError(nonfinite("Y", Y))
        raise FloatingPointError("the step was not applied: the loss, or a parameter after the update, would not be "
                                 "finite (diverging: lower the learning rate); the parameters are unchanged")
