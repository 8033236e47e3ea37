"""Compile (or load from the disk cache) every kernel of a network signature, for the argument types a
:class:`fastbp.Network` passes; run as a script, the background build that :mod:`fastbp.dispatch` starts.

``python -m fastbp.kernels.build SIGNATURE`` (the signature as JSON) compiles the generated kernels into the disk
cache, at a lower priority, holding a lock file beside the generated module, so that processes meeting the same new
architecture at once compile it once: the others wait for the lock, then load what the first one wrote.
"""

import json
import os
import sys

import numba
import numpy as np
from numba import types

from .._jit import cache_dir
from . import compiled

NAMES = ("train_step", "predict", "gradient", "loss", "backward")


def argument_types(sig):
    """Per kernel name, the argument types a network calls it with: C-contiguous, writeable arrays of the network's
    dtype (the boundary converts anything else), float targets, and int64 class labels for cross-entropy."""
    F = numba.from_dtype(np.dtype(sig[4]))
    F1, F2 = types.Array(F, 1, "C"), types.Array(F, 2, "C")
    I1, D1 = types.Array(types.int64, 1, "C"), types.Array(types.float64, 1, "C")
    targets = [F2] + ([types.Array(types.int64, 2, "C")] if sig[3] == "cross_entropy" else [])
    return {"train_step": [(F2, I1, D1, F1, F2, Y) for Y in targets],
            "predict": [(F2, I1, F1, F2, F2)],
            "gradient": [(F2, I1, F1, F2, Y) for Y in targets],
            "loss": [(F2, I1, F1, F2, Y) for Y in targets],
            "backward": [(F2, I1, F1, F2, F2)]}


def compile_network(sig):
    """The (serial, parallel) kernels of :func:`fastbp.kernels.compiled.for_network`, each compiled for every type
    of :func:`argument_types`: loaded from Numba's disk cache when there, else compiled (and cached)."""
    pair = compiled.for_network(sig)
    for namespace in pair:
        for name, signatures in argument_types(sig).items():
            for argtypes in signatures:
                getattr(namespace, name).compile(argtypes)
    return pair


def lock_path(sig):
    return cache_dir() / "generated" / f"fastbp_net_{compiled.key(sig)}.lock"


def main(argv):
    sig = json.loads(argv[1])
    sig = (tuple(sig[0]), *sig[1:])
    try:
        os.nice(10)  # the user's own work comes first
    except (AttributeError, OSError):
        pass
    path = lock_path(sig)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        try:
            import fcntl
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when this process dies
        except ImportError:  # no flock (Windows): two processes may compile the same kernels, each writing atomically
            pass
        compile_network(sig)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
