"""The one place that owns Numba's decorator options, so kernels never repeat them."""

import types

from numba import njit

# fastmath without nnan/ninf: reassociation lets LLVM vectorise the dot products, while a NaN or an infinity still
# propagates and can be seen (stumpy's config.STUMPY_FASTMATH_FLAGS does the same).
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

_OPTIONS = dict(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)


def kernel(fn=None, *, parallel=False):
    """Compile ``fn`` with the project's options; ``parallel=True`` turns its ``prange`` loops into threads."""
    if fn is None:
        return lambda f: kernel(f, parallel=parallel)
    return njit(parallel=parallel, **_OPTIONS)(fn)


def inline(fn):
    """A helper inlined into its caller at Numba IR level, so its ``prange`` loops become the caller's parfors."""
    return njit(inline="always", **_OPTIONS)(fn)


def kernel_pair(fn):
    """``fn`` compiled twice from one source: serial (``prange`` runs as ``range``) and parallel.

    The serial one is safe inside a user's own ``prange`` loop (no nested parallel launch); the parallel one is for
    batches large enough to repay a thread launch. The copy gets its own name so each has its own cache entry.
    """
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_parallel", fn.__defaults__, fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + "_parallel"
    twin.__doc__ = fn.__doc__
    return kernel(fn), kernel(twin, parallel=True)
