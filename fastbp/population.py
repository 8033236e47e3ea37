"""Many independent networks of one architecture, queried and trained in one call each."""

import numbers
import types

import numpy as np

from . import kernels, optim
from ._checks import nonfinite
from .config import PARALLEL_PREDICT_MEMBERS, PARALLEL_TRAIN_MEMBERS
from .dispatch import run_with_threads
from .kernels import codegen, codegen_population
from .kernels.layout import aligned_empty
from .kernels import compiled as compiled_kernels
from .network import Network

GENERIC = types.SimpleNamespace(train_step=kernels.population_train_step, predict=kernels.population_predict)
GENERIC_PARALLEL = types.SimpleNamespace(**{k: kernels.PARALLEL[v] for k, v in vars(GENERIC).items()})


class Population:
    """N independent networks of one architecture (per-agent brains, ensembles, neuroevolution).

    Every member has its own parameters, optimizer state and step count, and takes its own inputs and targets.
    The members are interleaved: member m's :class:`Network` ``flat`` is the column ``flats[:, :, m]``, so the
    kernels run each step of the arithmetic for all members as one SIMD row (see :mod:`fastbp.kernels`). Calls run
    blocks of members in parallel when the work repays a thread launch.

    Parameters
    ----------
    n : int >= 1
        The number of members, N.
    sizes : sequence of int
        As for :class:`Network`: input width, hidden widths..., output width.
    hidden : str or sequence of str
        As for :class:`Network`: one name for every hidden layer, or one per hidden layer.
    output : str
        As for :class:`Network`.
    loss : str
        As for :class:`Network`.
    optimizer : SGD or Adam
        As for :class:`Network` (default ``SGD(lr=0.01)``), without ``clip_norm``: every member starts with it.
    dtype : numpy.dtype or type, float32 or float64
        As for :class:`Network`.
    threads : int or None
        Threads for blocks of members when the population is large enough (Numba's current count when None).
    compiled : bool
        True: run the population kernels compiled for this architecture (:attr:`compiled`) when its layers are
        small enough (as for :class:`Network`); False (the default): the generic population kernels. The compiled
        ones are no faster on the benchmark's population (see the README), so they are not the default.
    seed : int or None
        Member m is initialised as ``Network(..., seed=member_seeds[m])``, the seeds drawn from
        ``np.random.SeedSequence(seed)``.

    Attributes
    ----------
    flats : ndarray, shape (2 + n_slots, n_params, n), the population's dtype, C-contiguous
        The members' parameters, gradients and optimizer states, member m in column m.
    hypers : ndarray, shape (n, fastbp.optim.HYPER_SIZE), float64
        Each member's optimizer hyperparameters, schedule and step count (members do not clip gradients).
    member_seeds : ndarray, shape (n,), int64
        The seed each member was initialised from.
    spec : ndarray, shape (2 * n_layers + 4,), int64
        The architecture, as :mod:`fastbp.kernels` takes it.
    sizes : list of int
        The layer widths.
    hidden : str or tuple of str
        The hidden activation, as :attr:`Network.hidden`.
    output : str
        The output activation.
    loss : str
        The loss.
    dtype : numpy.dtype
        float32 or float64.
    threads : int or None
        The thread count given.
    optimizer : SGD or Adam
        The optimizer every member was created with.

    Raises
    ------
    TypeError
        As for :class:`Network`, or if ``compiled`` is not a bool.
    ValueError
        As for :class:`Network`, or if n is not a positive integer or the optimizer has a ``clip_norm``.
    """

    def __init__(self, n, sizes, hidden="relu", output="identity", loss="mse", optimizer=None, dtype=np.float64,
                 seed=None, threads=None, compiled=False):
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if not isinstance(compiled, (bool, np.bool_)):
            raise TypeError(f"compiled must be True or False, got {compiled!r}")
        self.member_seeds = np.random.SeedSequence(seed).generate_state(n, np.uint32).astype(np.int64)
        # Members are built as Networks on the generic kernels: the population runs its own.
        self._args = dict(sizes=sizes, hidden=hidden, output=output, loss=loss, optimizer=optimizer, dtype=dtype,
                          threads=threads, compiled=False)
        first = Network(seed=int(self.member_seeds[0]), **self._args)  # validates every argument
        if first.optimizer.clip_norm is not None:
            raise ValueError("a Population does not clip gradients: use an optimizer with clip_norm=None")
        self._template = first
        self.sizes, self.hidden, self.output, self.loss = first.sizes, first.hidden, first.output, first.loss
        self.dtype, self.threads, self.optimizer, self.spec = first.dtype, threads, first.optimizer, first.spec
        self.flats = aligned_empty((*first.flat.shape, n), self.dtype)
        self.hypers = np.empty((n, first.hyper.size), np.float64)
        for m in range(n):
            net = first if m == 0 else Network(seed=int(self.member_seeds[m]), **self._args)
            self.flats[:, :, m], self.hypers[m] = net.flat, net.hyper
        self._works, self._work_rows = np.empty((0, n), self.dtype), 0
        self._fast_train = self._fast_x = self._fast_y = None  # the hot path of train_step, armed by _call
        self._signature = codegen.signature(self.sizes, self.hidden, self.output, self.loss, self.dtype)
        self._compiled_pair = None
        self._kernels, self._kernels_parallel = GENERIC, GENERIC_PARALLEL
        if compiled and compiled_kernels.eligible(self.sizes):
            self._kernels, self._kernels_parallel = self._compiled()

    def _compiled(self):
        if self._compiled_pair is None:
            self._compiled_pair = compiled_kernels.for_population(self._signature)
        return self._compiled_pair

    @property
    def compiled(self):
        """The population kernels compiled for this architecture, for a user's own ``@njit`` code (a namespace).

        ``train_step`` and ``predict``, taking exactly the arguments of ``fastbp.kernels.population_train_step`` and
        ``population_predict`` (with ``works`` from :meth:`workspace`), plus ``work_size(n, N)`` (the rows of
        ``works`` for N members on n rows) and ``source`` (the generated module's path). Generated on first access,
        also for a population created with ``compiled=False``; each kernel compiles at its first call. See
        :func:`fastbp.kernels.compiled.for_population`."""
        return self._compiled()[0]

    def __len__(self):
        return self.hypers.shape[0]

    @property
    def params(self):
        """The members' parameter vectors, ``flats[0].T``: ndarray, shape (n, n_params), the population's dtype; a
        view, member m in row m (perturb it in place, e.g. for evolution strategies)."""
        return self.flats[0].T

    @property
    def n_params(self):
        """The number of parameters of each member (int)."""
        return self.flats.shape[1]

    def workspace(self, rows):
        """Scratch for batches of up to ``rows`` rows, for the generic and the compiled kernels alike.

        The population keeps it (its own methods use it too): it grows, as a new array, only when ``rows`` exceeds
        every earlier request.

        Parameters
        ----------
        rows : int
            The largest batch per member the caller will pass.

        Returns
        -------
        works : ndarray, shape (size, n), the population's dtype, C-contiguous
            ``size >= fastbp.kernels.population_work_size(spec, rows)`` and the compiled kernels'
            ``work_size(rows, n)``; contents undefined.
        """
        if rows > self._work_rows:
            size = max(kernels.population_work_size(self.spec, rows),
                       codegen_population.work_rows(self._signature, rows, len(self)))
            self._works = aligned_empty((size, len(self)), self.dtype)
            self._work_rows = rows
        return self._works

    def member(self, m):
        """Member m as a new :class:`Network`.

        Parameters
        ----------
        m : int
            The member's index, in [-n, n).

        Returns
        -------
        net : Network
            A copy: the member's parameters, gradient, optimizer state and step count, its seed, on the generic
            kernels (``compiled=False``).

        Raises
        ------
        IndexError
            If m is not an integer in [-n, n).
        """
        m = self._index(m)
        net = Network(seed=int(self.member_seeds[m]), **self._args)
        net.flat[:], net.hyper[:] = self.flats[:, :, m], self.hypers[m]
        return net

    def set_member(self, m, net):
        """Copy a :class:`Network` of the same architecture, dtype and optimizer kind into member m.

        Parameters
        ----------
        m : int
            The member's index, in [-n, n).
        net : Network
            Its parameters, gradient, optimizer state, hyperparameters and step count are copied; it must not
            clip gradients.

        Raises
        ------
        IndexError
            If m is not an integer in [-n, n).
        TypeError
            If ``net`` is not a :class:`Network`.
        ValueError
            If ``net``'s architecture, dtype, optimizer kind or state rows differ, or it has a ``clip_norm``.
        """
        m = self._index(m)
        if not isinstance(net, Network):
            raise TypeError(f"expected a fastbp.Network, got {type(net).__name__}")
        if (net.sizes, net.hidden, net.output, net.loss, net.dtype) != (
                self.sizes, self.hidden, self.output, self.loss, self.dtype) or net.flat.shape != self.flats.shape[:2] \
                or net.hyper[optim.KIND] != self.hypers[m, optim.KIND] or net.hyper[optim.CLIP_NORM] != 0:
            raise ValueError(f"{net!r} does not fit this population of {self._template!r}")
        self.flats[:, :, m], self.hypers[m] = net.flat, net.hyper

    def forward(self, X, out=None):
        """Every member's output activations on its own inputs.

        Parameters
        ----------
        X : array_like, shape (n_members, rows, n_in), real
            Member m's batch is ``X[m]`` (rows >= 1); converted to the population's dtype.
        out : ndarray, shape (n_members, rows, n_out), the population's dtype, optional
            Written and returned instead of a new array; must be writeable and C-contiguous.

        Returns
        -------
        out : ndarray, shape (n_members, rows, n_out), the population's dtype
            ``out[m]`` is member m's output (``out`` itself when given).

        Raises
        ------
        TypeError
            If X does not hold real numbers.
        ValueError
            If X's shape is wrong or it holds a NaN or an infinity, or ``out`` does not fit.
        """
        X = self._inputs(X)
        shape = (len(self), X.shape[1], self.sizes[-1])
        if out is None:
            out = np.empty(shape, self.dtype)
        elif not (type(out) is np.ndarray and out.shape == shape and out.dtype == self.dtype
                  and out.flags.c_contiguous and out.flags.writeable):
            raise ValueError(f"out must be a writeable C-contiguous {self.dtype} array of shape {shape}")
        if not self._call("predict", X, out, X.shape[1]):
            raise ValueError(nonfinite("X", X))
        return out

    def train_step(self, X, Y):
        """One train step for every member on its own batch.

        Parameters
        ----------
        X : array_like, shape (n_members, rows, n_in), real
            Member m's batch is ``X[m]`` (rows >= 1); converted to the population's dtype.
        Y : array_like, shape (n_members, rows, n_out), real, or shape (n_members, rows), integer
            The targets; integer class labels of shape (n_members, rows) for ``cross_entropy``.

        Returns
        -------
        losses : ndarray, shape (n_members,), float64
            Each member's mean loss before its update; NaN for a member whose loss, or whose update, would not be
            finite (its parameters, optimizer state and step count are left as they were).

        Raises
        ------
        TypeError
            If X or Y does not hold real numbers (or labels are not integers).
        ValueError
            If a shape is wrong, or X or Y holds a NaN or an infinity or a label is out of range; no member is
            updated.
        """
        # The hot path: a batch like the last checked one goes straight to the kernel, which checks finiteness as it
        # loads X and Y and touches nothing when they fail (then checked below, to say what is wrong). Each step of
        # Python after a kernel runs with cold caches: the checks below cost 3.5 us a step here (1024 x 4-16-2).
        if type(X) is np.ndarray and type(Y) is np.ndarray and X.shape == self._fast_x and Y.shape == self._fast_y \
                and X.dtype is self.dtype and Y.dtype is self.dtype and X.flags.c_contiguous and Y.flags.c_contiguous:
            losses = np.empty(X.shape[0])
            if self._fast_train(self.flats, self.spec, self.hypers, self._works, X, Y, losses):
                return losses
        X = self._inputs(X)
        Y = self._targets(Y, X.shape[1])
        losses = np.empty(len(self))
        if not self._call("train_step", X, Y, losses, X.shape[1]):
            for m in range(len(self)):  # the slow path: name the member and the problem
                self._template._check_finite(X[m], Y[m])
        return losses

    def _call(self, name, X, last, *rest):
        rows = rest[-1]
        works = self.workspace(rows)
        args = (self.flats, self.spec, self.hypers, works, X, last, *rest[:-1]) \
            if name == "train_step" else (self.flats, self.spec, works, X, last)
        # Blocks of members go to threads, for large populations only (fastbp.config says why).
        parallel = len(self) > (PARALLEL_PREDICT_MEMBERS if name == "predict" else PARALLEL_TRAIN_MEMBERS)
        kern = getattr(self._kernels_parallel if parallel else self._kernels, name)
        if name == "train_step" and not parallel and last.shape[2] == self.sizes[-1]:  # not for class labels
            self._fast_train, self._fast_x, self._fast_y = kern, X.shape, last.shape
        return run_with_threads(kern, args, self.threads if parallel else None)

    def _inputs(self, X):
        X = np.asarray(X) if not isinstance(X, np.ndarray) else X
        if X.dtype.kind not in "fiu":
            raise TypeError(f"X must hold real numbers, got dtype {X.dtype}")
        if X.ndim != 3 or X.shape[0] != len(self) or X.shape[2] != self.sizes[0] or X.shape[1] == 0:
            raise ValueError(f"X must have shape ({len(self)}, rows >= 1, {self.sizes[0]}), got {X.shape}")
        return np.ascontiguousarray(X, self.dtype)

    def _targets(self, Y, rows):
        Y = np.asarray(Y) if not isinstance(Y, np.ndarray) else Y
        if self.loss == "cross_entropy" and Y.ndim == 2:
            if Y.dtype.kind not in "iu":
                raise TypeError(f"class labels must be integers, got dtype {Y.dtype}")
            if Y.shape != (len(self), rows):
                raise ValueError(f"labels must have shape {(len(self), rows)}, got {Y.shape}")
            return np.ascontiguousarray(Y, self.dtype).reshape(len(self), rows, 1)  # as Network: exact in range
        if Y.dtype.kind not in "fiu":
            raise TypeError(f"Y must hold real numbers, got dtype {Y.dtype}")
        if Y.shape != (len(self), rows, self.sizes[-1]):
            raise ValueError(f"Y must have shape {(len(self), rows, self.sizes[-1])}, got {Y.shape}")
        return np.ascontiguousarray(Y, self.dtype)

    def _index(self, m):
        if isinstance(m, bool) or not isinstance(m, numbers.Integral) or not -len(self) <= m < len(self):
            raise IndexError(f"member index must be an integer in [-{len(self)}, {len(self)}), got {m!r}")
        return int(m) % len(self)

    def __repr__(self):
        return f"Population({len(self)}, {self._template!r})"
