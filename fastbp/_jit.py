"""The one place that owns Numba's decorator options and its disk cache, so kernels never repeat them."""

import functools
import hashlib
import os
import pathlib
import re
import types

import numba
from numba import njit
from numba.core import config as numba_config
from numba.core.caching import CompileResultCacheImpl, FunctionCache, _CacheLocator
from numba.core.compiler_lock import global_compiler_lock
from numba.core.registry import CPUDispatcher

# fastmath without nnan/ninf: reassociation lets LLVM vectorise the dot products, while a NaN or an infinity still
# propagates and can be seen (stumpy's config.STUMPY_FASTMATH_FLAGS does the same).
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

_OPTIONS = dict(fastmath=FASTMATH, error_model="numpy", nogil=True)
# NUMBA_DISABLE_JIT=1, Numba's debugging mode: every decorator gives the Python function back, and fastbp runs as
# plain Python (no background builds, no plans; see docs/guide/njit.md).
INTERPRETED = bool(numba.config.DISABLE_JIT)
PACKAGE = pathlib.Path(__file__).resolve().parent


def cache_dir():
    """Where fastbp keeps compiled code: ``$NUMBA_CACHE_DIR/fastbp`` when Numba's variable is set, else
    ``$XDG_CACHE_HOME/fastbp`` (``~/.cache/fastbp``). Safe to delete at any time."""
    root = os.environ.get("NUMBA_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return pathlib.Path(root) / "fastbp"


_FROM_IMPORT = re.compile(r"^from\s+(\.*)([\w.]*)\s+import\s+(\([^)]*\)|.*)", re.MULTILINE)
_DECORATORS = {"kernel", "kernel_pair", "lanes_kernel", "helper", "inline"}


def compiled_sources(package=PACKAGE):
    """The files Numba compiles kernels from: every module that imports this module's decorators, and every fastbp
    module those import (their helpers are inlined, their constants frozen into the code), found from their
    ``from ... import`` statements (a regular expression: parsing every file would cost a tenth of a second at
    import). Host code (the Network class, io, the estimators) is not among them, so editing it keeps the cache. A
    generated module's own bytes are stamped separately (:class:`_Locator`)."""
    files = {path.relative_to(package): path.read_text() for path in package.rglob("*.py")}

    def imports(path):  # (the package path imported from, the names imported), for each fastbp import
        for dots, dotted, names in _FROM_IMPORT.findall(files[path]):
            names = [name.split()[0] for name in re.sub(r"#.*", "", names).strip("() \n").split(",") if name.strip()]
            dotted = [part for part in dotted.split(".") if part]
            if dots:  # relative: one dot is the importing file's own package
                yield [*path.parent.parts[:len(path.parent.parts) + 1 - len(dots)], *dotted], names
            elif dotted[:1] == ["fastbp"]:
                yield dotted[1:], names

    def file_of(module):  # a module's file, as a path inside the package, or None
        candidates = [pathlib.Path(*module[:-1], module[-1] + ".py"), pathlib.Path(*module, "__init__.py")]
        return next((path for path in candidates if module and path in files), None)

    def modules(path):  # each name is a submodule, else defined in the module imported from
        for parts, names in imports(path):
            for name in names:
                found = file_of(parts + [name]) or file_of(parts)
                if found:
                    yield found

    todo = [path for path in files for parts, names in imports(path)
            if parts[-1:] == ["_jit"] and _DECORATORS & set(names)]
    found = set()
    while todo:
        path = todo.pop()
        if path not in found:
            found.add(path)
            todo.extend(modules(path))
    return sorted(found)


@functools.cache
def source_hash(package=PACKAGE, numba_version=numba.__version__):
    """A hash of the files kernels are compiled from (:func:`compiled_sources`) and the Numba version:
    kernels inline helpers from other files, so a change to any of them must make every cached kernel stale (Numba's
    own stamp is the mtime of the function's file alone). Of this installation by default; of another one's package
    and Numba version for :mod:`fastbp.cache`."""
    h = hashlib.sha256(numba_version.encode())
    for path in compiled_sources(package):
        h.update(str(path).encode() + b"\0" + (package / path).read_bytes())
    return h.hexdigest()


class _Locator(_CacheLocator):
    """Numba's cache files for a fastbp kernel, under :func:`cache_dir`, stamped with :func:`source_hash` and the
    contents of the kernel's own file (a generated module lives outside the package)."""

    def __init__(self, py_func, py_file):
        self._lineno = py_func.__code__.co_firstlineno
        self._stamp = source_hash() + hashlib.sha256(pathlib.Path(py_file).read_bytes()).hexdigest()
        self._cache_path = str(cache_dir() / "numba" / self.get_suitable_cache_subpath(py_file))

    def get_cache_path(self):
        return self._cache_path

    def get_source_stamp(self):
        return self._stamp

    def get_disambiguator(self):
        return str(self._lineno)

    @classmethod
    def from_function(cls, py_func, py_file):
        try:
            self = cls(py_func, py_file)
            self.ensure_cache_path()
        except OSError:  # no writable cache directory: Numba's own locators are tried next
            return None
        return self


class _CacheImpl(CompileResultCacheImpl):
    _locator_classes = [_Locator, *CompileResultCacheImpl._locator_classes]


class _Cache(FunctionCache):
    """Numba's function cache with fastbp's locator; a cache file that does not load (truncated, corrupt) is
    compiled afresh and overwritten, never trusted. Numba writes its files atomically (a temporary file, renamed)."""

    _impl_class = _CacheImpl

    def load_overload(self, sig, target_context):
        try:
            return super().load_overload(sig, target_context)
        except Exception:
            return None

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except Exception:  # an unreadable index: start it afresh (caching is an optimisation, never an error)
            try:
                self._cache_file.flush()
                super().save_overload(sig, data)
            except Exception:
                pass


def _cached(dispatcher):
    if INTERPRETED:  # njit gave the function back: nothing to cache
        return dispatcher
    try:
        dispatcher._cache = _Cache(dispatcher.py_func)
    except RuntimeError:  # no locator: its file was removed meanwhile (`fastbp cache --clear`); compiled, not cached
        pass
    return dispatcher


def python_function(fn):
    """The Python function behind a kernel (the kernel itself when Numba runs interpreted)."""
    return getattr(fn, "py_func", fn)


def kernel(fn=None, *, parallel=False):
    """Compile ``fn`` with the project's options; ``parallel=True`` turns its ``prange`` loops into threads."""
    if fn is None:
        return lambda f: kernel(f, parallel=parallel)
    return _cached(njit(parallel=parallel, **_OPTIONS)(fn))


class _LanesDispatcher(CPUDispatcher):
    """A dispatcher that compiles with LLVM's SLP vectoriser on (see :func:`lanes_kernel`). Numba reads its switch
    whenever it builds an optimisation pipeline, and compiles under one global lock, so setting it for this
    dispatcher's compiles (and the helpers they compile) leaves every other function as Numba would make it."""

    def compile(self, sig):
        with global_compiler_lock:
            # Numba's compiler reloads its config if the environment changed, which would reset the switch: first
            numba_config.reload_config()
            saved, numba_config.SLP_VECTORIZE = numba_config.SLP_VECTORIZE, 1
            try:
                return super().compile(sig)
            finally:
                numba_config.SLP_VECTORIZE = saved


def lanes_kernel(fn=None, *, parallel=False):
    """:func:`kernel` for code that holds rows in SIMD lanes as scalars, one statement per lane (the generated tile
    path's register blocks): LLVM's SLP vectoriser packs the statements into vectors. Numba turns that vectoriser off
    by default (numba#8852: miscompilations in the LLVM of 2023; the tests compare these kernels with the reference
    on a covering set of architectures), so these compile with it on; and without reassociation, with which the loop
    vectoriser turns their loops over a layer's inputs into gathers (measured: a 64 x 64 layer on 32 float32 rows
    10.2 us, against 2.7)."""
    if fn is None:
        return lambda f: lanes_kernel(f, parallel=parallel)
    if INTERPRETED:
        return fn
    options = dict(_OPTIONS, fastmath=FASTMATH - {"reassoc"}, nopython=True, parallel=parallel)
    return _cached(_LanesDispatcher(py_func=fn, locals={}, targetoptions=options))


def helper(fn):
    """A function the kernels call: compiled once per argument types and linked into each caller, where LLVM
    inlines it (and folds the branches of a constant code argument)."""
    return njit(no_cpython_wrapper=True, no_cfunc_wrapper=True, **_OPTIONS)(fn)


def inline(fn):
    """A helper inlined into its caller at Numba IR level, so its ``prange`` loops become the caller's parfors.

    For helpers that hold a ``prange`` (or inline one), and for a few small ones that must share their caller's
    variables to vectorise (see :mod:`fastbp.activations`). Not more: the IR inliner deep-copies a helper at every
    call site and types the copy again, which was two thirds of the generic kernels' compile time when every helper
    was inlined so."""
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
