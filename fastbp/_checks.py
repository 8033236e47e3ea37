"""Argument checks shared by the classes and the training loops: each raises a ValueError or TypeError that says
what was expected and what came."""

import numbers

import numpy as np


def as_real_array(name, value, dtype):
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be a numeric array, got {type(value).__name__}: {exc}") from None
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype)


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


def check_int(what, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{what} must be an integer >= {low}, got {value!r}")
    return int(value)


def is_dtype(dtype):
    try:
        np.dtype(dtype)
        return True
    except TypeError:
        return False
