"""Compile (or load from the disk cache) the kernels of a network signature, for the argument types a
:class:`fastbp.Network` passes.

:func:`main` is the background build that :mod:`fastbp.dispatch` runs in a child process: it compiles one phase of
the generated kernels (the serial ones, or their parallel twins) into the disk cache, at a lower priority, holding a
lock file beside the generated module, so that processes meeting the same new architecture at once compile it once:
the others wait for the lock, then load what the first one wrote. A marker file beside it says the phase finished,
so later processes take those kernels from the cache from their first call. Before it, the build times the
candidate kernels and stores the plan (:mod:`fastbp.plan`).
"""

import json
import os

import numba
import numpy as np
from numba import types

from .. import plan
from .._jit import cache_dir
from . import codegen, compiled

def argument_types(sig):
    """Per kernel name, the argument types a network calls it with (one signature each): C-contiguous, writeable
    arrays of the network's dtype (the boundary converts anything else, class labels included)."""
    F = numba.from_dtype(np.dtype(sig[4]))
    F1, F2 = types.Array(F, 1, "C"), types.Array(F, 2, "C")
    I1, D1 = types.Array(types.int64, 1, "C"), types.Array(types.float64, 1, "C")
    return {"train_step": (F2, I1, D1, F1, F2, F2), "predict": (F2, I1, F1, F2, F2), "gradient": (F2, I1, F1, F2, F2),
            "loss": (F2, I1, F1, F2, F2), "backward": (F2, I1, F1, F2, F2)}


PHASES = ("serial", "parallel")  # built apart: most networks never meet a batch that runs the parallel twins


def compile_network(sig, phase):
    """The serial (``phase`` "serial") or parallel ("parallel") kernels of
    :func:`fastbp.kernels.compiled.for_network`, each compiled for every type of :func:`argument_types`: loaded from
    Numba's disk cache when there, else compiled (and cached)."""
    namespace = compiled.for_network(sig)[PHASES.index(phase)]
    for name, argtypes in argument_types(sig).items():
        getattr(namespace, name).compile(argtypes)
    return namespace


def _path(sig, suffix):
    return cache_dir() / "generated" / f"fastbp_net_{compiled.key(sig)}{suffix}"


def is_built(sig, phase):
    """Whether a build of ``sig``'s ``phase`` finished into the disk cache (a process then takes those kernels from
    it at once)."""
    return _path(sig, f".{phase}.built").exists()


def ensure_plan(sig, phase, namespace):
    """After a build of ``phase`` (``namespace``, its kernels): time every candidate side by side (the compiled twins
    too once built) and store the plan (:mod:`fastbp.plan`), unless a stored plan for this machine has timed them
    all already."""
    stored = plan.load(sig)
    if stored is None or (phase == "parallel" and not stored.has_twins()):
        serial = namespace if phase == "serial" else compile_network(sig, "serial")
        parallel = namespace if phase == "parallel" else (compile_network(sig, "parallel")
                                                           if is_built(sig, "parallel") else None)
        plan.store(sig, plan.measure(sig, (serial, parallel)))


def encode(sig):
    """A signature as the build child's command line carries it (JSON)."""
    return json.dumps([list(sig[0]), *sig[1:]])


def decode(text):
    """The signature :func:`encode` wrote: equal to it, tuples and all (a cache key is its repr)."""
    return codegen.signature(*json.loads(text))


def main(argv):
    """Build ``argv[2]``'s kernels of the signature ``argv[1]`` (JSON) into the disk cache; 0 when done."""
    sig, phase = decode(argv[1]), argv[2]
    try:
        os.nice(10)  # the user's own work comes first
    except (AttributeError, OSError):
        pass
    path = _path(sig, ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        try:
            import fcntl
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when this process dies
        except ImportError:  # no flock (Windows): two processes may compile the same kernels, each writing atomically
            pass
        ensure_plan(sig, phase, compile_network(sig, phase))
        _path(sig, f".{phase}.built").touch()  # after every kernel is in the cache (each file written atomically)
    return 0
