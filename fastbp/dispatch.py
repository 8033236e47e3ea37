"""Which kernels a network runs, and when that changes: the one owner of the choice.

A network's methods run either the generic kernels of :mod:`fastbp.kernels`, which every architecture shares (so
they are compiled once per machine and dtype and load from the disk cache after that), or the kernels compiled for
its own signature (:mod:`fastbp.kernels.compiled`), faster on small layers but a compile of their own. Tiers, as JIT
runtimes have them (HotSpot, V8): with the ``background`` mode, the default, a network starts on the generic kernels
at once while a separate process compiles its own into the disk cache; this process then loads them on a thread of
its own and swaps them in between two calls. The serial kernels are built first, the parallel twins only when a
batch large enough for them comes. Once a build has finished, later networks of the signature, in any process, run
the compiled kernels from their first call (loaded from the cache). The modes, from ``Network(compiled=...)`` or the
environment variable ``FASTBP_COMPILE`` when ``compiled`` is None:

- ``"background"`` (None's default): as above. A swap can change results in their last bits (the two families sum
  in different orders), so a seeded run is bitwise repeatable only under the two modes below.
- ``"eager"`` (``compiled=True``): the network's own kernels from the first call, compiled then if not cached.
- ``"off"`` (``compiled=False``): the generic kernels only.

Which kernels run a batch is measured in the ``background`` mode: the build also times the candidates (each family,
serial and parallel at each thread count) per batch class on this machine, and the network follows that plan
(:mod:`fastbp.plan`, :attr:`Dispatch.plan`) from then on, in every process. The two fixed modes plan nothing: they
run their family, serial or parallel by fixed thresholds (``PARALLEL_MIN_WORK``), and ``eager`` networks with a layer
of more than ``MAX_LAYER_WEIGHTS`` weights run the generic kernels (BLAS).

The builds run in :mod:`fastbp.builder`'s queue; if one fails (no writable cache, a crash, a time-out), the network
stays on the generic kernels and one warning says why.
"""

import functools
import os
import types
import warnings

import numba
import numpy as np

from . import cache, kernels, plan
from ._jit import INTERPRETED
from .builder import BUILDER
from .kernels import build, codegen
from .kernels import compiled as compiled_kernels

MODES = ("eager", "background", "off")
ENVIRONMENT = "FASTBP_COMPILE"
KERNELS = ("predict", "loss", "gradient", "train_step", "backward")
WEIGHTED = ("weighted_loss", "weighted_gradient", "weighted_train_step")  # generic only: compiled networks use these
GENERIC = types.SimpleNamespace(**{name: getattr(kernels, name) for name in KERNELS + WEIGHTED})
GENERIC_PARALLEL = types.SimpleNamespace(**{name: kernels.PARALLEL[getattr(kernels, name)]
                                            for name in KERNELS + WEIGHTED})


def mode(compiled, default):
    """The compile mode of ``Network(compiled=...)``: True is ``"eager"``, False ``"off"``, a mode name itself, and
    None ``$FASTBP_COMPILE`` if set, else ``default``."""
    if compiled is None:
        variable = os.environ.get(ENVIRONMENT)
        if variable is not None and variable not in MODES:
            raise ValueError(f"{ENVIRONMENT} must be one of {', '.join(MODES)}, got {variable!r}")
        compiled = variable or default
    if isinstance(compiled, (bool, np.bool_)):
        return "eager" if compiled else "off"
    if not isinstance(compiled, str):
        raise TypeError(f"compiled must be True, False, None or one of {', '.join(map(repr, MODES))}, got "
                        f"{compiled!r}")
    if compiled not in MODES:
        raise ValueError(f"compiled must be True, False, None or one of {', '.join(map(repr, MODES))}, got "
                         f"{compiled!r}")
    if compiled == "background" and INTERPRETED:
        _warn_interpreted()
        return "off"
    return compiled


@functools.cache
def _warn_interpreted():
    warnings.warn("NUMBA_DISABLE_JIT is set: fastbp runs its kernels as Python, the generic ones by default, with no "
                  "background builds and no plans (compiled=True runs the network's generated kernels as Python)",
                  RuntimeWarning, stacklevel=4)


def generic_signatures(dtype):
    """(kernel, argument types) of every generic kernel, serial and parallel, weighted or not, for the argument types
    a network of ``dtype`` passes: what :func:`warm` compiles."""
    signatures = build.argument_types(((1, 1), "relu", "identity", "mse", np.dtype(dtype).name))
    weights = numba.types.Array(numba.from_dtype(np.dtype(dtype)), 1, "C")
    return [(getattr(namespace, name),
             (*signatures[name.removeprefix("weighted_")], *((weights,) if name in WEIGHTED else ())))
            for namespace in (GENERIC, GENERIC_PARALLEL) for name in KERNELS + WEIGHTED]


def warm(dtypes=("float32", "float64"), log=None):
    """Compile the generic kernels, serial and parallel, weighted or not, for every argument type a network passes,
    into the disk cache: for a machine image or a CI cache, so that no first use compiles them (``python -m fastbp
    warm``). Networks' own kernels still build in the background as they come.

    Parameters
    ----------
    dtypes : sequence of str
        The dtypes to compile for.
    log : callable, optional
        Called with each kernel's name and argument types once compiled (or loaded).
    """
    for dtype in dtypes:
        for kernel, argtypes in generic_signatures(dtype):
            kernel.compile(argtypes)
            if log:
                log(f"{kernel.__name__}{argtypes}")


class Dispatch:
    """The kernels of one network: which family runs (``tier``), serial or parallel for a batch, and the swap.

    The serial kernels and their parallel twins are built and swapped apart: most networks never meet a batch large
    enough for the twins, so those are built only when one comes (until then such batches run the compiled serial
    kernels, which give the twins' results bitwise).

    Parameters
    ----------
    signature : tuple
        The network's ``(sizes, hidden, output, loss, dtype name)`` (:func:`fastbp.kernels.codegen.signature`).
    mode : str
        ``"eager"``, ``"background"`` or ``"off"``, as :func:`mode` returns it.
    lock : threading.Lock
        The network's lock, held while a tier changes.
    on_swap : callable
        Called with the serial kernels, under ``lock``, when a tier or the plan changes.
    threads : int or None
        The network's thread count: the most a parallel twin runs on (None: Numba's).

    Attributes
    ----------
    mode : str
        ``"eager"``, ``"background"`` or ``"off"`` (see the module's docstring).
    tier : str
        ``"generic"`` or ``"compiled"``: the family of the serial kernels loaded (``"generic"`` also when a plan
        found its own kernels slower on every batch class).
    parallel_tier : str
        The same for the parallel twins, which large batches run.
    build : str
        The background build of the serial kernels (and the plan): ``"none"`` (no build: another mode, or an eager
        network too wide for compiled kernels), ``"running"`` (queued, compiling or timing), ``"done"`` or
        ``"failed"``.
    parallel_build : str
        The same for the parallel twins.
    plan : fastbp.plan.Plan or None
        The measured times that choose the kernels of each batch (:meth:`choose`), in the background mode once its
        build has measured them (or a stored plan fits this machine); None before, and in the fixed modes.
    serial, parallel : types.SimpleNamespace
        The kernels of the tier loaded (``train_step``, ``predict``, ``gradient``, ``loss``, ``backward``).
    """

    def __init__(self, signature, mode, lock, on_swap, threads=None):
        self.mode, self.signature, self.threads = mode, signature, threads
        sizes = signature[0]
        # In the background mode every network builds, and its plan says where its own kernels pay.
        self.eligible = mode == "background" or compiled_kernels.eligible(sizes)
        self._widest = max(a * b for a, b in zip(sizes[:-1], sizes[1:]))  # multiply-adds per row, largest layer
        self._tile = codegen.tile_rows(signature[4])
        self._lock, self._on_swap = lock, on_swap
        self.tier = self.parallel_tier = "generic"
        self.build = self.parallel_build = "none"
        self.serial, self.parallel = GENERIC, GENERIC_PARALLEL
        self.plan = plan.load(signature) if mode == "background" else None
        cache.mark_used()
        if self.eligible and mode != "off":
            for phase in build.PHASES:
                # a build without a plan for this machine (another CPU, a lost file) is measured again
                if mode == "eager" or (build.is_built(signature, phase) and self.plan is not None):
                    if self._plans_compiled():
                        self._use(phase, compiled_kernels.for_network(signature)[build.PHASES.index(phase)])
                    self._set_build(phase, "done" if mode == "background" else "none")
            if mode == "background" and self.build == "none":
                self._start("serial")

    @property
    def compiled_pair(self):
        """The (serial, parallel) compiled kernels once either tier runs them, else None."""
        if "compiled" in (self.tier, self.parallel_tier):
            return compiled_kernels.for_network(self.signature)
        return None

    def _use(self, phase, namespace):
        if phase == "serial":
            self.serial, self.tier = namespace, "compiled"
        else:
            self.parallel, self.parallel_tier = namespace, "compiled"

    def _set_build(self, phase, state):
        if phase == "serial":
            self.build = state
        else:
            self.parallel_build = state

    def _start(self, phase):
        self._set_build(phase, "running")
        result = BUILDER.submit((self.signature, phase), self)
        if result is not None:  # built before in this process: taken by the asking thread, which may hold the lock
            self._take(phase, *result)

    def _take(self, phase, namespace, error):
        self._set_build(phase, "failed" if namespace is None else "done")
        if namespace is not None:
            if self.mode == "background":
                self.plan = plan.load(self.signature)
            if self._plans_compiled():
                self._use(phase, namespace)
            self._on_swap(self.serial)  # the plan, or the kernels it chooses among, changed

    def _plans_compiled(self):
        """Whether the compiled kernels run any batch: always in the eager mode, else where the plan says so."""
        return self.plan is None or any(plan.parse(self.plan.choice(rows))[0] == "compiled"
                                        for rows in self.plan.times)

    def _swap(self, phase, namespace):
        self._use(phase, namespace)
        self._on_swap(self.serial)

    def arrive(self, phase, namespace, error):
        """Take a background build's result, from the builder's thread: swapped in under the network's lock, so no
        call is ever half on one tier.

        Parameters
        ----------
        phase : str
            ``"serial"`` or ``"parallel"``.
        namespace : types.SimpleNamespace or None
            The compiled kernels, loaded; None if the build failed.
        error : Exception or None
            Why the build failed.
        """
        with self._lock:
            self._take(phase, namespace, error)

    def prepare(self, batch=None):
        """Wait for the compiled kernels, serial and parallel, where this network can have them: the background
        builds' results and their plan (which may keep the generic kernels), else (a build failed, or mode
        ``"off"``) compile in this process now.

        Parameters
        ----------
        batch : int, optional
            The largest batch to come: the parallel twins are waited for only if it has more than a tile of rows.
        """
        if not self.eligible:
            return
        for phase, tier, state in zip(build.PHASES, ("tier", "parallel_tier"), ("build", "parallel_build")):
            if getattr(self, tier) == "compiled" or (phase == "parallel" and batch is not None
                                                     and batch <= self._tile):
                continue
            if self.mode == "background":
                if getattr(self, state) == "none":
                    self._start(phase)
                BUILDER.wait((self.signature, phase))
                if getattr(self, state) == "done":  # measured: the plan keeps the generic kernels
                    continue
            namespace = build.compile_network(self.signature, phase)
            with self._lock:
                self._swap(phase, namespace)

    def _allowed(self, n, limit):
        """Whether a plan's candidate can run a batch of n rows now: its kernels loaded, no more threads than
        ``limit``, the compiled twins on more than a tile, the generic ones with no layer on BLAS (its own threads)."""
        blas = plan.uses_blas(self.signature, n)

        def allowed(candidate):
            family, threads = plan.parse(candidate)
            if threads > limit:
                return False
            if family == "generic":
                return threads == 1 or not blas
            return self.tier == "compiled" if threads == 1 else self.parallel_tier == "compiled" and n > self._tile
        return allowed

    def choose(self, n, weighted=False):
        """The kernels for a batch of n rows and the thread count to run them on (None: serial).

        Where there is a plan (unweighted calls), its candidate for the batch: the one its observer chose on this
        network's own train steps (:mod:`fastbp.observe`) where the class is observed, else the plan's fastest that
        can run now. Else fixed thresholds: enough work in the largest layer for the parallel twins and, for the
        compiled kernels, more than one tile (their twins built, else the serial ones run it meanwhile), for the
        generic ones (which also run every weighted call) no layer on BLAS, which runs its own threads. A batch
        that the compiled twins would take starts their build, in the background mode, if it has not started.

        Parameters
        ----------
        n : int
            The batch's rows.
        weighted : bool
            Whether the call has sample weights (which only the generic kernels take).

        Returns
        -------
        kernels : types.SimpleNamespace
            ``train_step``, ``predict``, ``gradient``, ``loss`` and ``backward``.
        threads : int or None
            The thread count for the parallel twins (None: serial kernels).
        """
        return self._choice(n, weighted)[:2]

    def train_step_for(self, n):
        """What runs an unweighted train step of n rows: a callable taking the train step kernels' arguments, with
        its thread count applied; the class's observer (which times the call) while it checks or watches.

        Parameters
        ----------
        n : int
            The batch's rows.

        Returns
        -------
        callable
        """
        namespace, threads, observer = self._choice(n, False)
        if observer is None or observer.settled:
            return _threaded(namespace.train_step, threads)
        return observer.train_step

    def _choice(self, n, weighted):
        """(kernels, threads, the class's observer or None) for a batch: see :meth:`choose`."""
        if self.tier == "compiled" and not weighted and self.parallel_tier != "compiled" \
                and self.mode == "background" and self.parallel_build == "none" \
                and n > self._tile and n * self._widest >= kernels.PARALLEL_MIN_WORK:
            self._start("parallel")  # before choosing: a build done before in this process swaps in at once
        limit = self.threads or numba.get_num_threads()
        observer = None
        if self.plan is not None and not weighted:
            allowed = self._allowed(n, limit)
            observer = self.plan.observer(n, allowed, self._train_step_of, self._chose)
            namespace, threads = self._candidate(observer.chosen if observer else self.plan.choice(n, allowed))
        else:
            namespace, threads = self._fixed(n, weighted, limit)
        return namespace, threads, observer

    def _candidate(self, candidate):
        """(kernels, threads) of a plan's candidate (threads None: serial)."""
        family, threads = plan.parse(candidate)
        if family == "generic":
            return (GENERIC, None) if threads == 1 else (GENERIC_PARALLEL, threads)
        return (self.serial, None) if threads == 1 else (self.parallel, threads)

    def _train_step_of(self, candidate):
        namespace, threads = self._candidate(candidate)
        return _threaded(namespace.train_step, threads)

    def _chose(self):
        """An observer's choice changed (under the network's lock, from its train step): the hot paths forget theirs."""
        self._on_swap(self.serial)

    def _fixed(self, n, weighted, limit):
        if self.tier == "compiled" and not weighted:
            if self.parallel_tier == "compiled" and n > self._tile and n * self._widest >= kernels.PARALLEL_MIN_WORK:
                return self.parallel, limit
            return self.serial, None
        if n * self._widest >= kernels.PARALLEL_MIN_WORK and not plan.uses_blas(self.signature, n):
            return GENERIC_PARALLEL, limit
        return GENERIC, None

    def use_parallel(self, n, weighted=False):
        """Whether a batch goes to the parallel twins (:meth:`choose`).

        Parameters
        ----------
        n : int
            The batch's rows.
        weighted : bool
            Whether the call has sample weights.

        Returns
        -------
        bool
        """
        return self.choose(n, weighted)[1] is not None

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
        threads : int or None
            The thread count to run a parallel twin under (:func:`run_with_threads`); None for a serial kernel.
        """
        namespace, threads = self.choose(n, weighted)
        return getattr(namespace, f"weighted_{name}" if weighted else name), threads

    def serial_for(self, n):
        """The serial kernels that run a batch, or None if a parallel twin runs it (the network's hot paths remember
        them with the batch's shapes).

        Parameters
        ----------
        n : int
            The batch's rows.

        Returns
        -------
        types.SimpleNamespace or None
        """
        namespace, threads = self.choose(n)
        return namespace if threads is None else None

    def __repr__(self):
        return (f"Dispatch(mode={self.mode!r}, tier={self.tier!r}, build={self.build!r}, "
                f"parallel_tier={self.parallel_tier!r}, parallel_build={self.parallel_build!r})")


def run_with_threads(kern, args, threads):
    """kern(*args) with Numba's thread count set to ``threads`` (when not None) and restored after."""
    if threads is None:
        return kern(*args)
    before = numba.get_num_threads()
    if before == threads:
        return kern(*args)
    numba.set_num_threads(threads)
    try:
        return kern(*args)
    finally:
        numba.set_num_threads(before)


def _threaded(kern, threads):
    """A callable running ``kern`` on ``threads`` threads (None: serial): the kernel itself where Numba's thread count
    is that already (reading it costs 0.7 us, more than a small step's tenth)."""
    if threads is None or threads == numba.get_num_threads():
        return kern
    return lambda *args: run_with_threads(kern, args, threads)
