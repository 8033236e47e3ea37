"""Timing primitives shared by the runner and the peers' set-up."""

import os
import time

import numpy as np


def time_block(fn, calls, settle=0.0):
    """Seconds per call of ``fn`` over a block of ``calls`` calls, after a pause of ``settle`` seconds and one call
    not timed: the pause lets the other implementations' BLAS and OpenMP pools stop spinning and go to sleep, the
    call wakes this one's own, so the block times a loop of calls (a pool's wake-up after a pause, up to 7.5 ms on
    the 2-vCPU development VM, would otherwise be charged to each block)."""
    time.sleep(settle)
    fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def fastest_threads(use, step, rounds=5):
    """The thread count at which ``step`` runs fastest, ``use(t)`` setting it (PyTorch's ``set_num_threads``, or
    the choice of an ONNX Runtime session made with t threads): medians of paused, alternating blocks (as
    :func:`fastbp.bench.runner.measure` times them), so a count is not judged by another's spinning pool."""
    counts = range(1, (os.cpu_count() or 1) + 1)
    once = max(time_block(step, 1), 1e-6)
    calls = max(3, min(1000, int(0.05 / once)))
    times = {t: [] for t in counts}
    for _ in range(rounds):
        for t in counts:
            use(t)
            step()
            times[t].append(time_block(step, calls, settle=0.05))
    return min(counts, key=lambda t: np.median(times[t]))
