"""Kernels compiled for one network signature: the generated source (:mod:`.codegen` for a network,
:mod:`.codegen_population` for a population) written to the cache directory, imported by name, and compiled by Numba
with its cache beside it.

A generated module is named by a hash of everything that shaped it: the signature, the generator and every fastbp
file kernels compile from (:func:`fastbp._jit.source_hash`), so an edit to any of them can never serve a stale
kernel. It is written atomically (a temporary file in the same directory, renamed), rewritten when its text is not
exactly what the generator makes (a truncated or edited file), and registered in ``sys.modules`` before use, because
Numba's cache rebuilds a cached function's environment by importing its module by name.
"""

import hashlib
import sys
import threading
import types

import numba

from .. import io
from ..optim import update
from .._jit import cache_dir, source_hash
from ..config import MAX_LAYER_WEIGHTS  # networks with a larger layer run the generic kernels (BLAS)
from . import codegen, codegen_population

_lock = threading.Lock()
SOURCES_LINE = "# fastbp sources "  # a generated module's first line, then its sources' hash (fastbp.cache reads it)
GENERATORS = {"net": codegen.source, "pop": codegen_population.source}  # the module families, by name prefix


def eligible(sizes):
    """Whether a network of these sizes runs on compiled kernels by default."""
    return max(a * b for a, b in zip(sizes[:-1], sizes[1:])) <= MAX_LAYER_WEIGHTS


def key(sig):
    """The cache key of a signature: a hash of the signature, the generator version and the sources."""
    text = repr((sig, codegen.GENERATOR_VERSION, source_hash()))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def load(sig, family="net"):
    """The module of ``family``'s kernels (``"net"``, ``"pop"``) compiled for ``sig`` (:func:`codegen.signature`):
    written if missing, imported once per process. Compilation itself happens at the first call of each kernel (or
    comes from Numba's cache)."""
    name = f"fastbp_{family}_{key(sig)}"
    with _lock:
        module = sys.modules.get(name)
        if module is not None:
            return module
        path = cache_dir() / "generated" / f"{name}.py"
        text = f"{SOURCES_LINE}{source_hash()}\n" + GENERATORS[family](sig, name)  # the first line: for fastbp.cache
        try:
            current = path.read_text()
        except (OSError, UnicodeDecodeError):
            current = None
        if current != text:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                io.write_atomically(path, lambda f: f.write(text.encode()), prefix=f".{path.name}.", suffix=".tmp")
            except FileNotFoundError:  # `fastbp cache --clear` removed the folder meanwhile: the text runs all the same
                pass
        # Run the text itself, not the file read again: `fastbp cache --clear` may remove it meanwhile.
        module = types.ModuleType(name)
        module.__file__ = str(path)
        sys.modules[name] = module
        try:
            exec(compile(text, str(path), "exec"), module.__dict__)
        except BaseException:
            del sys.modules[name]
            raise
        return module


def _pair(module, names, **extra):
    """(serial, parallel) namespaces of a generated module's kernels ``names`` (the parallel twins end in
    ``_parallel``), each with ``extra`` and ``source``, the module's path; made once per module, so every caller
    holds the same namespaces."""
    if hasattr(module, "_fastbp_pair"):
        return module._fastbp_pair
    # The public parallel kernels are serial wrappers around parallel ones. Numba drops a cached callee's hook that
    # starts its thread pool when it links the callee into a caller it compiles (numba#4807), so a wrapper compiled
    # against a cached callee, loaded by a later process, would enter a pool never started (a jump to address 0).
    # Asking for the thread count starts the pool.
    numba.get_num_threads()
    module._fastbp_pair = tuple(types.SimpleNamespace(**{name: getattr(module, name + suffix) for name in names},
                                                      **extra, source=module.__file__) for suffix in ("", "_parallel"))
    return module._fastbp_pair


def for_network(sig):
    """The kernels compiled for a network signature: its generated module, written and imported if need be.

    Parameters
    ----------
    sig : tuple
        ``(sizes, hidden, output, loss, dtype name)`` as :func:`fastbp.kernels.codegen.signature` makes it, e.g.
        ``((4, 16, 2), "relu", "identity", "mse", "float64")``.

    Returns
    -------
    serial : types.SimpleNamespace
        ``train_step``, ``predict``, ``gradient``, ``loss`` and ``backward``, taking the arguments of the generic
        kernels of :mod:`fastbp.kernels` (``spec`` is not read: the sizes are literals), ``step`` (the optimizer
        update, :func:`fastbp.kernels.step`), ``work_size(n)`` (the length of ``work`` for n rows) and ``source``
        (the generated module's path). This is :attr:`fastbp.Network.compiled`.
    parallel : types.SimpleNamespace
        The same names, the kernels being their parallel twins, for large batches.
    """
    module = load(sig)
    return _pair(module, ("train_step", "predict", "gradient", "loss", "backward"), work_size=module.work_size,
                 step=update)


def for_population(sig):
    """The population kernels compiled for a network signature: its generated module, written and imported if
    need be.

    Parameters
    ----------
    sig : tuple
        ``(sizes, hidden, output, loss, dtype name)`` as :func:`fastbp.kernels.codegen.signature` makes it.

    Returns
    -------
    serial : types.SimpleNamespace
        ``train_step`` and ``predict``, taking the arguments of :func:`fastbp.kernels.population_train_step` and
        :func:`fastbp.kernels.population_predict`, ``work_size(n, N)`` (the rows of ``works`` for N members on n
        rows) and ``source`` (the generated module's path). This is :attr:`fastbp.Population.compiled`.
    parallel : types.SimpleNamespace
        The same names, the kernels being their parallel twins, which run blocks of members on threads.
    """
    module = load(sig, "pop")
    return _pair(module, ("train_step", "predict"), work_size=module.work_size)


__all__ = ["eligible", "for_network", "for_population", "load", "key"]
