"""The measured choice of kernels: which candidate runs a network's train step fastest on this machine, per batch
class, timed once and remembered in the disk cache beside the kernels (as FFTW's wisdom, cuDNN's benchmark mode and
XLA's autotuner settle such choices).

The candidates are named ``"compiled"`` and ``"generic"`` (the serial kernels of each family; the generic ones hand
large layers to BLAS, the compiled ones never do) and ``"compiled x2"``, ``"generic x2"``, ... (their parallel twins
on that many threads). The background build (:mod:`fastbp.kernels.build`) times them in its own process, off the
user's critical path, right after compiling: the serial build the serial candidates and the generic twins, the
parallel build all of them again with the compiled twins. Each batch class (:data:`CLASSES`) is timed on a batch of
its size (the powers of two from 1 to 4096 rows; a batch belongs to the nearest on a log scale, larger ones to
4096), in alternating rounds, medians; a class whose step would take too long to time is left out, and batches of it
follow the largest class timed.

A plan is a JSON file under ``cache_dir()/plans``, named by a hash of everything that decides it (:func:`key`: the
signature with its dtype, the CPU model, the thread count, fastbp's version and sources) and holding that key, so a
file that no longer fits (another CPU, a corrupt or edited file) is never trusted: it is measured again.

The candidates differ in rounding only (the two families sum in different orders; a parallel twin gives its serial
kernel's results bitwise), so a choice changes results in their last bits at most. ``compiled=True`` or ``False``
(``FASTBP_COMPILE=eager`` or ``off``) fixes the family and plans nothing, for bitwise repeatable runs.
"""

import hashlib
import json
import math
import platform
import time

import numba
import numpy as np

from . import __version__, io, kernels
from ._jit import cache_dir, source_hash
from .config import (OBSERVE_CANDIDATES, OBSERVE_MIN_SECONDS, OBSERVE_RATIO, PLAN_BLAS_SETTLE_SECONDS,
                     PLAN_BLOCK_SECONDS, PLAN_MAX_WORK, PLAN_ROUNDS, PLAN_SETTLE_SECONDS, PLAN_TWIN_MARGIN)
from .kernels.codegen import tile_rows
from .observe import Observer

CLASSES = tuple(2 ** k for k in range(13))  # each batch class's rows, 1 to 4096; a batch belongs to the nearest
FAMILIES = ("compiled", "generic")
FORMAT = 1  # the plan file's layout


def batch_class(n):
    """The batch class of a batch: the representative size nearest to its rows on a log scale.

    Parameters
    ----------
    n : int
        The batch's rows (1 or more).

    Returns
    -------
    int
        One of :data:`CLASSES`.
    """
    return min(CLASSES, key=lambda c: abs(math.log(n / c)))


def thread_counts():
    """The thread counts the parallel twins are timed at: 2, 4, 8, ... below Numba's maximum, and the maximum."""
    top = numba.config.NUMBA_NUM_THREADS
    return sorted({t for t in (2 ** k for k in range(1, top.bit_length())) if t < top} | ({top} if top > 1 else set()))


def name(family, threads=1):
    """A candidate's name: ``"generic"``, ``"compiled x2"``."""
    return family if threads == 1 else f"{family} x{threads}"


def parse(candidate):
    """(family, threads) of a candidate's name; ValueError for a name no plan makes."""
    family, twin, threads = candidate.partition(" x")
    if family not in FAMILIES or (twin and (not threads.isdigit() or int(threads) < 2)):
        raise ValueError(f"not a candidate: {candidate!r}")
    return family, int(threads) if twin else 1


def cpu_model():
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def key(sig):
    """Everything a plan for the signature ``sig`` depends on, as a JSON-ready dict."""
    return {"signature": [list(sig[0]), *sig[1:]], "cpu": cpu_model(), "threads": numba.config.NUMBA_NUM_THREADS,
            "fastbp": __version__, "sources": source_hash(), "format": FORMAT}


def path(sig):
    digest = hashlib.sha256(json.dumps(key(sig), sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir() / "plans" / f"{digest}.json"


class Plan:
    """Median seconds of a train step per batch class (rows) and candidate, and the choice they make.

    Parameters
    ----------
    times : dict of int to dict of str to float
        ``times[rows][candidate]``: seconds per train step on a batch of ``rows`` rows (``rows`` in
        :data:`CLASSES`). Kept as :attr:`times`.

    Attributes
    ----------
    observers : dict
        The network's own timing of its calls, per batch class observed (:meth:`observer`).
    """

    def __init__(self, times):
        self.times = times
        self.observers = {}  # (batch class, candidates allowed) -> Observer or None, made at first use

    def timed_class(self, n):
        """The class whose times decide a batch: its own, else the largest class timed below it, else the smallest
        timed.

        Parameters
        ----------
        n : int
            The batch's rows.

        Returns
        -------
        int or None
            None if nothing was timed.
        """
        c = batch_class(n)
        below = [r for r in self.times if r <= c]
        return max(below) if below else min(self.times, default=None)

    def choice(self, n, allowed=lambda candidate: True):
        """The fastest candidate for a batch, a parallel twin only if faster by ``PLAN_TWIN_MARGIN``.

        Parameters
        ----------
        n : int
            The batch's rows.
        allowed : callable, optional
            Called with a candidate's name: whether it may run (its kernels loaded, few enough threads).

        Returns
        -------
        str or None
            The candidate's name; None if none is allowed.
        """
        c = self.timed_class(n)
        ranked = sorted((t * (PLAN_TWIN_MARGIN if parse(candidate)[1] > 1 else 1), candidate)
                        for candidate, t in self.times.get(c, {}).items() if allowed(candidate))
        return ranked[0][1] if ranked else None

    def observer(self, n, allowed, kernel, on_choice=None):
        """The observer of a batch (:mod:`fastbp.observe`), made at first use: the plan's candidates for it within
        ``OBSERVE_RATIO`` of the fastest (``OBSERVE_CANDIDATES`` at most) and the fastest serial one, timed on the
        network's own train steps, and watched from then on if the plan's step is ``OBSERVE_MIN_SECONDS`` or longer;
        None where the plan has one candidate.

        Parameters
        ----------
        n : int
            The batch's rows.
        allowed : callable
            As for :meth:`choice`.
        kernel : callable
            Called with a candidate's name: the callable that runs its train step.
        on_choice : callable, optional
            Passed to the observer: called when a check changes its choice.

        Returns
        -------
        fastbp.observe.Observer or None
        """
        c = self.timed_class(n)
        row = {candidate: t * max(1.0, n / c) for candidate, t in self.times.get(c, {}).items() if allowed(candidate)}
        key = (batch_class(n), tuple(sorted(row)))
        if key not in self.observers:
            prior = self.choice(n, allowed)
            ranked = sorted(row, key=row.get)
            close = [c for c in ranked if row[c] <= OBSERVE_RATIO * row[ranked[0]]][:OBSERVE_CANDIDATES] if row else []
            close += [c for c in (prior, next((c for c in ranked if parse(c)[1] == 1), None))
                      if c is not None and c not in close]
            self.observers[key] = None if len(close) < 2 else Observer(
                {c: kernel(c) for c in close}, prior, row[prior], on_choice, watch=row[prior] >= OBSERVE_MIN_SECONDS)
        return self.observers[key]

    def observed(self, n):
        """The observer that has timed this network's batches of n rows' class (:meth:`observer`), or None.

        Parameters
        ----------
        n : int
            The batch's rows.

        Returns
        -------
        fastbp.observe.Observer or None
        """
        return next((o for (rows, _), o in self.observers.items() if o is not None and rows == batch_class(n)), None)

    def has_twins(self):
        """Whether the compiled parallel twins were timed (on some batch class).

        Returns
        -------
        bool
        """
        return any(candidate.startswith("compiled x") for row in self.times.values() for candidate in row)

    def __str__(self):
        candidates = sorted({c for row in self.times.values() for c in row}, key=lambda c: parse(c)[::-1])
        lines = ["rows    " + "".join(f"{c:>14}" for c in candidates) + "   chosen"]
        for rows in sorted(self.times):
            row = self.times[rows]
            lines.append(f"{rows:<8}" + "".join(f"{row[c] * 1e6:>12.1f}us" if c in row else f"{'-':>14}"
                                                for c in candidates) + f"   {self.choice(rows)}")
        for (rows, _), observer in sorted(self.observers.items()):
            if observer is not None:
                lines.append(f"observed, batches of class {rows}: {observer}")
        return "\n".join(lines)

    def __repr__(self):
        return f"Plan({self.times!r})"


def load(sig):
    """The stored plan of a signature for this machine.

    Parameters
    ----------
    sig : tuple
        ``(sizes, hidden, output, loss, dtype name)`` (:func:`fastbp.kernels.codegen.signature`).

    Returns
    -------
    Plan or None
        None when there is no plan or the file does not fit: another key (CPU, thread count, version, sources),
        unreadable, or not a plan's layout (unknown candidates, classes or times that are not positive).
    """
    try:
        data = json.loads(path(sig).read_text())
        if data["key"] != json.loads(json.dumps(key(sig))):
            return None
        times = {int(rows): {candidate: float(t) for candidate, t in row.items()}
                 for rows, row in data["times"].items()}
        if not times or any(rows not in CLASSES or not row for rows, row in times.items()):
            return None
        for row in times.values():
            for candidate, t in row.items():
                parse(candidate)
                if not (math.isfinite(t) and t > 0):
                    return None
        return Plan(times)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def store(sig, plan):
    """Write a signature's plan to the cache, atomically, with its key.

    Parameters
    ----------
    sig : tuple
        The signature, as for :func:`load`.
    plan : Plan
        The times to store.
    """
    target = path(sig)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"key": key(sig), "times": {str(rows): row for rows, row in plan.times.items()}}, indent=1)
    io.write_atomically(target, lambda f: f.write(text.encode()), prefix=f".{target.name}.", suffix=".tmp")


def _data(sig, n, seed=0):
    """A batch of n rows whose targets suit the loss (one-hot rows, probabilities, values)."""
    sizes, loss, dtype = sig[0], sig[3], np.dtype(sig[4])
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    if loss == "cross_entropy":
        return X, np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], n)]
    if loss == "bce":
        return X, rng.integers(0, 2, (n, sizes[-1])).astype(dtype)
    return X, rng.normal(size=(n, sizes[-1])).astype(dtype)


def uses_blas(sig, rows):
    """Whether the generic kernels hand a layer of a batch of ``rows`` rows to BLAS (which runs its own threads)."""
    return any(kernels.uses_blas(rows, a, b) for a, b in zip(sig[0][:-1], sig[0][1:]))


def candidates(sig, rows, compiled_pair=None):
    """The candidate kernels for a batch: the generic serial kernel, its twins where no layer runs on BLAS (which
    brings its own threads), and, given the compiled kernels, the compiled serial kernel and its twins for more than
    a tile of rows.

    Parameters
    ----------
    sig : tuple
        The signature, as for :func:`load`.
    rows : int
        The batch's rows.
    compiled_pair : tuple, optional
        The compiled kernels ``(serial, parallel)`` (:func:`fastbp.kernels.compiled.for_network`; ``parallel`` may
        be None).

    Returns
    -------
    dict of str to (numba dispatcher, int)
        Per candidate name, its ``train_step`` kernel and the thread count to run it on.
    """
    found = {name("generic"): (kernels.train_step, 1)}
    if not uses_blas(sig, rows):
        found.update({name("generic", t): (kernels.PARALLEL[kernels.train_step], t) for t in thread_counts()})
    if compiled_pair is not None:
        serial, parallel = compiled_pair
        found[name("compiled")] = (serial.train_step, 1)
        if parallel is not None and rows > tile_rows(sig[4]):  # more than one tile
            found.update({name("compiled", t): (parallel.train_step, t) for t in thread_counts()})
    return found


def measure(sig, compiled_pair=None, block_seconds=PLAN_BLOCK_SECONDS, rounds=PLAN_ROUNDS, max_work=PLAN_MAX_WORK):
    """Time every candidate (:func:`candidates`) on a batch of each class: median seconds of alternating rounds.

    Each candidate's block of calls starts with one call not timed, so a twin's threads are awake, as in a loop of
    calls (what a twin costs after a pause the network measures on its own calls, :mod:`fastbp.observe`). A
    candidate that calls BLAS runs last in its round, and the next round waits ``PLAN_BLAS_SETTLE_SECONDS``: BLAS's
    threads spin for about 0.1 s after a call, and timed beside them a twin ran 35 times slower (so plans timed
    without this wait refused every twin on large batches).

    A network of the signature is made for it (seeded, SGD with a learning rate too small to move it).

    Parameters
    ----------
    sig : tuple
        The signature, as for :func:`load`.
    compiled_pair : tuple, optional
        The compiled kernels, as for :func:`candidates`.
    block_seconds : float
        About how long each candidate's block of calls lasts in a round (one call at least).
    rounds : int
        Rounds, each timing every candidate once, in an order that rotates.
    max_work : int
        Classes whose step has more multiply-adds are not timed (the smallest always is).

    Returns
    -------
    Plan
    """
    from . import SGD, Network

    net = Network(list(sig[0]), hidden=sig[1], output=sig[2], loss=sig[3], optimizer=SGD(lr=1e-9), dtype=sig[4],
                  seed=0, compiled=False)
    macs = sum(a * b for a, b in zip(sig[0][:-1], sig[0][1:]))
    before = numba.get_num_threads()
    times = {}
    try:
        for rows in CLASSES:
            if rows > 1 and rows * macs > max_work:
                break
            X, Y = _data(sig, rows)
            args = (net.flat, net.spec, net.hyper, net.workspace(rows), X, Y)
            found = candidates(sig, rows, compiled_pair)
            blas = uses_blas(sig, rows)
            calls = {}
            for candidate, (kern, threads) in found.items():
                numba.set_num_threads(threads)
                kern(*args)  # compiles, or loads from the cache
                start = time.perf_counter()
                kern(*args)
                calls[candidate] = max(1, int(block_seconds / max(time.perf_counter() - start, 1e-7)))
            samples = {candidate: [] for candidate in found}
            order = [c for c in found if not (blas and c == name("generic"))]
            for r in range(rounds):
                for candidate in order[r % len(order):] + order[:r % len(order)] + [name("generic")] * blas:
                    kern, threads = found[candidate]
                    numba.set_num_threads(threads)
                    if blas and candidate == name("generic"):
                        time.sleep(PLAN_SETTLE_SECONDS)  # the twins' OpenMP threads spin for milliseconds too
                    kern(*args)
                    start = time.perf_counter()
                    for _ in range(calls[candidate]):
                        kern(*args)
                    samples[candidate].append((time.perf_counter() - start) / calls[candidate])
                if blas:
                    time.sleep(PLAN_BLAS_SETTLE_SECONDS)
            times[rows] = {candidate: float(np.median(s)) for candidate, s in samples.items()}
    finally:
        numba.set_num_threads(before)
    return Plan(times)


__all__ = ["CLASSES", "Plan", "batch_class", "candidates", "load", "measure", "store", "key", "name", "parse",
           "thread_counts", "cpu_model", "uses_blas"]
