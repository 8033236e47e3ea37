"""The background builds' queue: a signature's compiled kernels (the serial ones, or the parallel twins) built in a
child process, one at a time per process, and handed to the networks waiting for them (:mod:`fastbp.dispatch`).

The child (:func:`fastbp.kernels.build.main`) runs at a lower priority and holds a lock file, so that processes
meeting the same new architecture at once compile it once; it compiles into the disk cache and times the plan, and
this process then loads the kernels from the cache on the builder's thread. A build under way when the script ends
finishes in its own process, so the next run finds the kernels cached; builds not started are dropped. At most
:func:`build_processes` builds compile at once on the machine (:func:`build_slot`): the others wait in their
processes' builder threads, where nothing but a network's ``prepare()`` waits for them.
"""

import contextlib
import os
import queue
import subprocess
import sys
import threading
import time
import warnings
import weakref

try:
    import fcntl  # the cap's slots: flock'ed files
except ImportError:  # Windows: no cap
    fcntl = None

from ._jit import PACKAGE, cache_dir
from .config import BUILD_PROCESSES, BUILD_TIMEOUT
from .kernels import build

# The child's program (not ``-m fastbp.kernels.build``: the package imports that module first, which runpy warns of).
_CHILD = "import sys; from fastbp.kernels.build import main; sys.exit(main(sys.argv))"


def build_processes():
    """How many background builds may compile at once on this machine: ``$FASTBP_BUILDS``, else
    ``config.BUILD_PROCESSES``, else half the cores (at least 1)."""
    value = os.environ.get("FASTBP_BUILDS", BUILD_PROCESSES)
    if value is None:
        return max(1, (os.cpu_count() or 2) // 2)
    if not str(value).strip().isdigit() or int(value) < 1:
        raise ValueError(f"FASTBP_BUILDS must be a positive integer, got {value!r}")
    return int(value)


@contextlib.contextmanager
def build_slot(poll=0.2):
    """One of :func:`build_processes` slots, machine-wide, for a build: an exclusive ``flock`` on one of the files
    ``builds/slot-<i>.lock`` in the cache, waited for (polling) while all are held. Yields the locked file's
    descriptor (None where there is no ``flock``: no cap). The lock belongs to the open file, so a child given the
    descriptor holds it until both have closed it, or died."""
    if fcntl is None:
        yield None
        return
    folder = cache_dir() / "builds"
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for i in range(build_processes()):
            fd = os.open(folder / f"slot-{i}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            try:
                yield fd
            finally:
                os.close(fd)
            return
        time.sleep(poll)


def builds_alive():
    """How many background builds hold a slot on this machine now (any process's)."""
    if fcntl is None:
        return 0
    held = 0
    for path in (cache_dir() / "builds").glob("slot-*.lock"):
        try:
            with open(path) as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: taken, and let go at once
        except BlockingIOError:
            held += 1
        except OSError:
            pass
    return held


class _Job:
    """One background build (a signature's serial kernels, or its parallel twins) and the networks waiting for it
    (weakly: a network may be dropped)."""

    def __init__(self, key):
        self.key = key
        self.waiting = []
        self.result = None  # (namespace, error) once finished
        self.finished = threading.Event()

    def run(self):
        (signature, phase), namespace, error = self.key, None, None
        try:
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(PACKAGE.parent),
                                                                            os.environ.get("PYTHONPATH")])))
            sig = build.encode(signature)
            with build_slot() as slot:  # the child holds the slot too: it outlives this process if the script ends
                child = subprocess.run([sys.executable, "-c", _CHILD, sig, phase], env=env, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=BUILD_TIMEOUT,
                                       pass_fds=() if slot is None else (slot,))
            if child.returncode != 0:
                lines = child.stderr.decode(errors="replace").strip().splitlines()
                raise RuntimeError(lines[-1] if lines else f"exit status {child.returncode}")
            namespace = build.compile_network(signature, phase)  # from the disk cache the child wrote
        except Exception as exc:  # noqa: BLE001 (any failure leaves the generic kernels, with one warning)
            error = exc
        if error is not None:
            try:
                warnings.warn(f"fastbp: the {phase} kernels compiled for {signature} could not be built in the "
                              f"background ({type(error).__name__}: {error}); the network goes on with the generic "
                              "kernels", RuntimeWarning, stacklevel=1)
            except Exception:  # warnings turned into errors: nothing in this thread could catch one
                pass
        BUILDER.finish(self, namespace, error)


class _Builder:
    """The queue of background builds: one at a time, on one daemon thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._jobs = {}
        self._queue = queue.Queue()
        self._thread = None

    def submit(self, key, dispatch):
        """Queue the build ``key`` (signature, phase) unless it is queued or done, and have ``dispatch`` told when it
        finishes; the result ``(namespace, error)`` at once if it is done already (the caller takes it), else None."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                job = self._jobs[key] = _Job(key)
                self._queue.put(job)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._work, name="fastbp-builder", daemon=True)
                    self._thread.start()
            if job.result is None:
                job.waiting.append(weakref.ref(dispatch))
            return job.result

    def _work(self):
        while True:
            self._queue.get().run()

    def finish(self, job, namespace, error):
        with self._lock:
            job.result = (namespace, error)
            waiting, job.waiting = job.waiting, []
            if namespace is None:  # a later network of this signature may try again
                del self._jobs[job.key]
        for ref in waiting:
            dispatch = ref()
            if dispatch is not None:
                dispatch.arrive(job.key[1], namespace, error)
        job.finished.set()

    def wait(self, key):
        """Until the build ``key`` (signature, phase) has finished, if one was started."""
        with self._lock:
            job = self._jobs.get(key)
        if job is not None:
            job.finished.wait()


BUILDER = _Builder()
