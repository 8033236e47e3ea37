"""Which kernels a network runs, and when that changes: the one owner of the choice.

A network's methods run either the generic kernels of :mod:`fastbp.kernels`, which every architecture shares (so
they are compiled once per machine and dtype and load from the disk cache after that), or the kernels compiled for
its own signature (:mod:`fastbp.kernels.compiled`), faster on small layers but a compile of their own. Tiers, as JIT
runtimes have them (HotSpot, V8): with the ``background`` mode, the default, a network starts on the generic kernels
at once while a separate process compiles its own into the disk cache; this process then loads them on a thread of
its own and swaps them in between two calls. The modes, from ``Network(compiled=...)`` or the environment variable
``FASTBP_COMPILE`` when ``compiled`` is None:

- ``"background"`` (None's default): as above. A swap can change results in their last bits (the two families sum
  in different orders), so a seeded run is bitwise repeatable only under the two modes below.
- ``"eager"`` (``compiled=True``): the network's own kernels from the first call, compiled then if not cached.
- ``"off"`` (``compiled=False``): the generic kernels only.

Networks with a layer of more than ``MAX_LAYER_WEIGHTS`` weights run the generic kernels (BLAS) in every mode.

A background build is one child process at a time per process (a queue), at a lower priority, holding a lock file
so that processes meeting the same new architecture at once compile it once. If it fails (no writable cache, a
crash, a time-out), the network stays on the generic kernels and one warning says why. A build under way when the
script ends finishes in its own process, so the next run finds the kernels cached; builds not started are dropped.
"""

import json
import os
import queue
import subprocess
import sys
import threading
import types
import warnings
import weakref

import numpy as np

from . import kernels
from ._jit import PACKAGE
from .kernels import build, codegen
from .kernels import compiled as compiled_kernels

MODES = ("eager", "background", "off")
ENVIRONMENT = "FASTBP_COMPILE"
BUILD_TIMEOUT = 900  # seconds a background build may take before it is ended (a large network compiles in ~1 min)
KERNELS = ("predict", "loss", "gradient", "train_step", "backward")
WEIGHTED = ("weighted_loss", "weighted_gradient", "weighted_train_step")  # generic only: compiled networks use these
GENERIC = types.SimpleNamespace(**{name: getattr(kernels, name) for name in KERNELS + WEIGHTED})
GENERIC_PARALLEL = types.SimpleNamespace(**{name: kernels.PARALLEL[getattr(kernels, name)]
                                            for name in KERNELS + WEIGHTED})


def mode(compiled, default):
    """The compile mode of ``Network(compiled=...)``: True is ``"eager"``, False ``"off"``, a mode name itself, and
    None ``$FASTBP_COMPILE`` if set, else ``default``."""
    if compiled is None:
        compiled = os.environ.get(ENVIRONMENT) or default
        if isinstance(compiled, str) and compiled not in MODES:
            raise ValueError(f"{ENVIRONMENT} must be one of {', '.join(MODES)}, got {compiled!r}")
    if isinstance(compiled, (bool, np.bool_)):
        return "eager" if compiled else "off"
    if not isinstance(compiled, str):
        raise TypeError(f"compiled must be True, False, None or one of {', '.join(map(repr, MODES))}, got "
                        f"{compiled!r}")
    if compiled not in MODES:
        raise ValueError(f"compiled must be True, False, None or one of {', '.join(map(repr, MODES))}, got "
                         f"{compiled!r}")
    return compiled


class Dispatch:
    """The kernels of one network: which family runs (``tier``), serial or parallel for a batch, and the swap.

    Parameters
    ----------
    signature : tuple
        The network's ``(sizes, hidden, output, loss, dtype name)`` (:func:`fastbp.kernels.codegen.signature`).
    mode : str
        ``"eager"``, ``"background"`` or ``"off"``, as :func:`mode` returns it.
    lock : threading.Lock
        The network's lock, held while the tier changes.
    on_swap : callable
        Called with the new serial kernels, under ``lock``, when the tier changes.

    Attributes
    ----------
    mode : str
        ``"eager"``, ``"background"`` or ``"off"`` (see the module's docstring).
    tier : str
        ``"generic"`` or ``"compiled"``: the family the network's methods call now.
    build : str
        The background build's state: ``"none"`` (no build: another mode, or a network too wide for compiled
        kernels), ``"running"`` (queued or compiling), ``"done"`` or ``"failed"``.
    serial, parallel : types.SimpleNamespace
        The kernels of the current tier (``train_step``, ``predict``, ``gradient``, ``loss``, ``backward``).
    """

    def __init__(self, signature, mode, lock, on_swap):
        self.mode, self.signature = mode, signature
        sizes = signature[0]
        self.eligible = compiled_kernels.eligible(sizes)
        self._widest = max(a * b for a, b in zip(sizes[:-1], sizes[1:]))  # multiply-adds per row, largest layer
        self._tile = codegen.tile_rows(signature[4])
        self._lock, self._on_swap = lock, on_swap
        self.tier, self.build, self.compiled_pair = "generic", "none", None
        self.serial, self.parallel = GENERIC, GENERIC_PARALLEL
        if self.eligible and mode == "eager":
            self._use(compiled_kernels.for_network(signature))
        elif self.eligible and mode == "background":
            self.build = "running"
            BUILDER.submit(signature, self)

    def _use(self, pair):
        self.compiled_pair = pair
        self.serial, self.parallel = pair
        self.tier = "compiled"

    def arrive(self, pair, error):
        """Take the background build's result, from the builder's thread: swapped in under the network's lock, so
        no call is ever half on one tier.

        Parameters
        ----------
        pair : tuple of types.SimpleNamespace or None
            The (serial, parallel) compiled kernels, loaded; None if the build failed.
        error : Exception or None
            Why the build failed.
        """
        if pair is None:
            self.build = "failed"
            return
        with self._lock:
            self._use(pair)
            self.build = "done"
            self._on_swap(self.serial)

    def prepare(self):
        """Wait for the compiled tier where this network can have one: the background build's result, else (the
        build failed, or mode ``"off"``) compile in this process now."""
        if not self.eligible or self.tier == "compiled":
            return
        if self.build == "running":
            BUILDER.wait(self.signature)
        if self.tier != "compiled":
            pair = build.compile_network(self.signature)
            with self._lock:
                self._use(pair)
                self._on_swap(self.serial)

    def use_parallel(self, n, weighted=False):
        """Whether a batch of n rows goes to the parallel twins: enough work in the largest layer and, for the
        compiled kernels, more than one tile; for the generic ones (which also run every weighted call), no layer on
        BLAS, which runs its own threads.

        Parameters
        ----------
        n : int
            The batch's rows.
        weighted : bool
            Whether the call has sample weights (which only the generic kernels take).

        Returns
        -------
        bool
        """
        if self.tier == "compiled" and not weighted:
            return n > self._tile and n * self._widest >= kernels.PARALLEL_MIN_WORK
        sizes = self.signature[0]
        return (n * self._widest >= kernels.PARALLEL_MIN_WORK
                and not any(kernels.uses_blas(n, a, b) for a, b in zip(sizes[:-1], sizes[1:])))

    def kernel(self, name, n, weighted=False):
        """The kernel to call for a batch.

        Parameters
        ----------
        name : str
            ``"train_step"``, ``"predict"``, ``"gradient"``, ``"loss"`` or ``"backward"``.
        n : int
            The batch's rows.
        weighted : bool
            Whether the call has sample weights (the generic ``weighted_`` kernel then runs).

        Returns
        -------
        kernel : numba dispatcher
            The kernel, serial or parallel.
        parallel : bool
            Whether it is the parallel twin (to be run under the network's thread count).
        """
        parallel = self.use_parallel(n, weighted)
        if weighted:
            return getattr(GENERIC_PARALLEL if parallel else GENERIC, f"weighted_{name}"), parallel
        return getattr(self.parallel if parallel else self.serial, name), parallel

    def __repr__(self):
        return f"Dispatch(mode={self.mode!r}, tier={self.tier!r}, build={self.build!r})"


class _Job:
    """One signature's background build and the networks waiting for it (weakly: a network may be dropped)."""

    def __init__(self, signature):
        self.signature = signature
        self.waiting = []
        self.result = None  # (pair, error) once finished
        self.finished = threading.Event()

    def run(self):
        pair, error = None, None
        try:
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(PACKAGE.parent),
                                                                            os.environ.get("PYTHONPATH")])))
            sig = json.dumps([list(self.signature[0]), *self.signature[1:]])
            child = subprocess.run([sys.executable, "-m", "fastbp.kernels.build", sig], env=env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   timeout=BUILD_TIMEOUT)
            if child.returncode != 0:
                lines = child.stderr.decode(errors="replace").strip().splitlines()
                raise RuntimeError(lines[-1] if lines else f"exit status {child.returncode}")
            pair = build.compile_network(self.signature)  # from the disk cache the child wrote
        except Exception as exc:  # noqa: BLE001 (any failure leaves the generic kernels, with one warning)
            error = exc
        if error is not None:
            try:
                warnings.warn(f"fastbp: the kernels compiled for {self.signature} could not be built in the "
                              f"background ({type(error).__name__}: {error}); the network goes on with the generic "
                              "kernels", RuntimeWarning, stacklevel=1)
            except Exception:  # warnings turned into errors: nothing in this thread can catch one
                pass
        BUILDER.finish(self, pair, error)


class _Builder:
    """The queue of background builds: one at a time, on one daemon thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._jobs = {}
        self._queue = queue.Queue()
        self._thread = None

    def submit(self, signature, dispatch):
        with self._lock:
            job = self._jobs.get(signature)
            if job is None:
                job = self._jobs[signature] = _Job(signature)
                self._queue.put(job)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._work, name="fastbp-builder", daemon=True)
                    self._thread.start()
            if job.result is None:
                job.waiting.append(weakref.ref(dispatch))
                return
        dispatch.arrive(*job.result)

    def _work(self):
        while True:
            self._queue.get().run()

    def finish(self, job, pair, error):
        with self._lock:
            job.result = (pair, error)
            waiting, job.waiting = job.waiting, []
            if pair is None:  # a later network of this signature may try again
                del self._jobs[job.signature]
        for ref in waiting:
            dispatch = ref()
            if dispatch is not None:
                dispatch.arrive(pair, error)
        job.finished.set()

    def wait(self, signature):
        with self._lock:
            job = self._jobs.get(signature)
        if job is not None:
            job.finished.wait()


BUILDER = _Builder()
