"""The Network class: checks and converts input once, owns the buffers, calls one kernel per method."""

import numbers
import threading

import numba
import numpy as np

from . import convert, dispatch, io, kernels, losses, optim, training
from . import activations as act
from ._checks import DTYPES, BatchChecks, check_hidden, check_name, check_sizes, is_dtype, nonfinite
from .kernels import codegen
from .kernels.layout import MIXED, aligned_empty
from .kernels import compiled as compiled_kernels

COMPILED_DEFAULT = "background"  # Network(compiled=None) without $FASTBP_COMPILE: see fastbp.dispatch


class Network(BatchChecks):
    """A dense multilayer perceptron trained by backpropagation in Numba kernels.

    Parameters
    ----------
    sizes : sequence of int
        Input width, hidden widths..., output width; at least two entries.
    hidden : str or sequence of str
        Hidden activation, of every hidden layer (a name) or of each (one name per hidden layer, ``len(sizes) - 2``):
        ``relu``, ``leaky_relu`` (slope 0.01), ``tanh``, ``sigmoid``, ``identity``, ``elu`` (alpha 1), ``silu``
        (``z * sigmoid(z)``), ``gelu`` (``z * Phi(z)``, PyTorch's exact form), ``gelu_tanh`` (PyTorch's
        ``approximate="tanh"``) or ``softplus`` (beta 1, and ``z`` above 20 as PyTorch).
    output : str
        Output activation: ``relu``, ``leaky_relu``, ``tanh``, ``sigmoid``, ``identity`` or ``softmax``.
    loss : str
        ``bce`` (sigmoid output), ``cross_entropy`` (softmax output; one-hot targets or integer labels of shape
        (n,)), ``mse`` or ``huber`` (any output).
    optimizer : SGD or Adam
        Default ``SGD(lr=0.01)``. Its ``lr`` may be a schedule of :mod:`fastbp.schedules`; ``clip_norm`` clips the
        gradient's global norm in every update.
    dtype : numpy.dtype or type, float32 or float64
        The dtype of the parameters, the buffers and the arithmetic; input is converted to it.
    seed : int or None
        Seeds the initialisation (Glorot uniform before sigmoid, tanh, identity and softmax; He normal before the
        others, which like relu are unbounded above; zero biases) and ``fit``'s shuffling.
    threads : int or None
        Threads for the parallel kernels on large batches (Numba's current count when None).
    compiled : bool, str or None
        Which kernels run (:mod:`fastbp.dispatch`): the kernels compiled for this network, or the generic kernels of
        :mod:`fastbp.kernels`, which every architecture shares and which hand large layers to BLAS; serial, or
        their parallel twins. ``"background"``: start on the generic kernels at once while another process compiles
        this network's own and times every candidate on this machine (:attr:`plan`), then run, batch by batch, the
        fastest (see :attr:`dispatch`, :meth:`prepare`); results may then change in their last bits. True or
        ``"eager"``: the compiled kernels from the first call, which compiles them if they are not in the disk cache
        (tens of seconds), where every layer has at most ``fastbp.kernels.compiled.MAX_LAYER_WEIGHTS`` weights.
        False or ``"off"``: the generic kernels only. True and False plan nothing and are bitwise repeatable for a
        seed. None (the default): ``$FASTBP_COMPILE`` when set, else ``fastbp.network.COMPILED_DEFAULT``, which is
        ``"background"``.

    Attributes
    ----------
    flat : ndarray, shape (2 + n_slots, n_params), the network's dtype
        Parameters (row 0), gradient (row 1) and optimizer state (rows 2..: SGD's velocity, Adam's moments);
        :attr:`params` and :attr:`grad` are its rows. Replaced by a new array when the optimizer's kind changes.
    spec : ndarray, shape (2 * n_layers + 4,), int64
        The architecture as :mod:`fastbp.kernels` takes it: ``[n_layers, hidden code, output code, loss code,
        sizes..., hidden codes...]``, one code per hidden layer (``hidden code`` is theirs if they share one, else
        -1).
    hyper : ndarray, shape (fastbp.optim.HYPER_SIZE,), float64
        The optimizer's hyperparameters, schedule, clipping norm and step count, as :mod:`fastbp.kernels` takes
        them.
    sizes : list of int
        The layer widths, as given.
    hidden : str or tuple of str
        The hidden activation: a name if every hidden layer has it, else one name per hidden layer.
    output : str
        The output activation.
    activations : tuple of str
        The activation after each layer, the last the output's.
    loss : str
        The loss.
    dtype : numpy.dtype
        float32 or float64.
    seed : int or None
        The seed given.
    threads : int or None
        The thread count given.

    Raises
    ------
    TypeError
        If ``sizes`` holds a non-integer, or ``dtype``, ``optimizer`` or ``compiled`` is not of the kinds above.
    ValueError
        If ``sizes`` has fewer than two entries or a non-positive one, an activation or loss name is unknown, the
        loss does not work with the output activation, a softmax output has fewer than 2 units, or ``seed`` or
        ``threads`` is out of range, or ``compiled`` (or ``$FASTBP_COMPILE``) names no mode.
    """

    def __init__(self, sizes, hidden="relu", output="identity", loss="mse", optimizer=None, dtype=np.float64,
                 seed=None, threads=None, compiled=None):
        sizes = check_sizes(sizes)
        hidden = check_hidden(hidden, len(sizes) - 2, act.HIDDEN)
        output = check_name("output", output, act.OUTPUT)
        loss = check_name("loss", loss, tuple(losses.CODES))
        if output not in losses.PAIRS[loss]:
            works = ", ".join(f"{o} + {l}" for l, outs in losses.PAIRS.items() if len(outs) == 1 for o in outs)
            raise ValueError(f"loss {loss!r} does not work with a {output!r} output; use {works}, or mse/huber "
                             "with any output")
        if output == "softmax" and sizes[-1] < 2:
            raise ValueError(f"a softmax output needs at least 2 units, got {sizes[-1]}")
        if not is_dtype(dtype) or np.dtype(dtype) not in DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, numbers.Integral)
                                    or not 1 <= threads <= numba.config.NUMBA_NUM_THREADS):
            raise ValueError(f"threads must be an integer in [1, {numba.config.NUMBA_NUM_THREADS}], got {threads!r}")
        mode = dispatch.mode(compiled, COMPILED_DEFAULT)
        optimizer = optim.SGD(lr=0.01) if optimizer is None else optimizer
        if not isinstance(optimizer, (optim.SGD, optim.Adam)):
            raise TypeError(f"optimizer must be fastbp.SGD or fastbp.Adam, got {type(optimizer).__name__}")

        self.sizes, self.hidden, self.output, self.loss = sizes, hidden, output, loss
        self.activations = (*((hidden,) * (len(sizes) - 2) if isinstance(hidden, str) else hidden), output)
        self.dtype, self.seed, self.threads = np.dtype(dtype), seed, threads
        self.spec = np.array([len(sizes) - 1, act.CODES[hidden] if isinstance(hidden, str) else MIXED,
                              act.CODES[output], losses.CODES[loss], *sizes,
                              *(act.CODES[name] for name in self.activations[:-1])], np.int64)
        self._rng = np.random.default_rng(seed)
        self._optimizer = optimizer
        self.hyper = optimizer.hyper()
        self.flat = aligned_empty((2 + optimizer.n_slots, kernels.n_params(self.spec)), self.dtype)
        self.flat[:] = 0
        self._keys, off = [], 0  # (state_dict key, start, stop, shape) of every weight and bias in a flat row
        for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            self._keys += [(f"{2 * l}.weight", off, off + n_out * n_in, (n_out, n_in)),
                           (f"{2 * l}.bias", off + n_out * n_in, off + n_out * (n_in + 1), (n_out,))]
            off += n_out * (n_in + 1)
        self._init_params()
        self._forget_batches()
        self._has_grad = False  # whether flat[1] holds a gradient step() may apply
        # One call at a time: kernels release the GIL, and two calls at once would share the workspace and the
        # parameters. A second thread waits for the first (one network per thread runs truly in parallel).
        self._lock = threading.Lock()
        self._signature = codegen.signature(sizes, hidden, output, loss, self.dtype)
        self._mode = mode
        self._start_dispatch()

    def _start_dispatch(self):
        """The owner of which kernels run (:mod:`fastbp.dispatch`); the hot paths remember its answer for the
        batch shapes they last checked, forgotten by :meth:`_swapped`."""
        self._dispatch = dispatch.Dispatch(self._signature, self._mode, self._lock, self._swapped, self.threads)

    def _swapped(self, serial):
        """Called by the dispatch, under the lock, when another tier takes over: the hot paths' kernels were chosen
        among the old tier's, so they are forgotten (the workspace fits both tiers)."""
        self._forget_hot_path()

    def _init_params(self):
        for l, (W, _) in enumerate(self.layers()):
            fan_out, fan_in = W.shape
            if self.activations[l] not in ("sigmoid", "tanh", "identity", "softmax"):
                W[:] = self._rng.normal(0.0, np.sqrt(2.0 / fan_in), W.shape)
            else:
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                W[:] = self._rng.uniform(-limit, limit, W.shape)

    # ---- the arrays the kernels take -------------------------------------------------------------------------

    @property
    def params(self):
        """The flat parameter vector, ``flat[0]``: ndarray, shape (n_params,), the network's dtype; a view, written by
        training (writing it writes the network)."""
        return self.flat[0]

    @property
    def grad(self):
        """The flat gradient, ``flat[1]``: ndarray, shape (n_params,), the network's dtype; a view, written by
        :meth:`train_step` and :meth:`fit` (which may leave it stale with ``SGD(keep_grad=False)``),
        :meth:`gradients` and :meth:`backward`, read by :meth:`step`."""
        return self.flat[1]

    @property
    def n_params(self):
        """The number of parameters (int): weights and biases of every layer, the length of :attr:`params`."""
        return self.flat.shape[1]

    def layers(self, row=0):
        """Per layer, the weight and bias as views into one row of :attr:`flat`.

        Parameters
        ----------
        row : int
            The row of ``flat``: 0 the parameters, 1 the gradient, 2.. the optimizer state.

        Returns
        -------
        layers : list of (ndarray, ndarray)
            ``[(W, b), ...]``, W of shape (n_out, n_in) and b of shape (n_out,), in the network's dtype: views
            (writing them writes ``flat``).
        """
        views = [self.flat[row, start:stop].reshape(shape) for _, start, stop, shape in self._keys]
        return list(zip(views[0::2], views[1::2]))

    def workspace(self, n):
        """The scratch array for batches of up to n rows, for the generic and the compiled kernels alike.

        The network keeps it (its own methods use it too): it grows, as a new array, only when n exceeds every
        earlier request, so a user's ``@njit`` loop calls this once with its largest batch.

        Parameters
        ----------
        n : int
            The largest batch the caller will pass.

        Returns
        -------
        work : ndarray, shape (size,), the network's dtype
            ``size >= fastbp.kernels.work_size(spec, n)`` and the compiled kernels' ``work_size(n)``; contents
            undefined.
        """
        if n > self._work_rows:
            size = max(kernels.work_size(self.spec, n), codegen.work_size(self._signature, n))
            self._work = aligned_empty(size, self.dtype)
            self._work_rows = n
        return self._work

    @property
    def compiled(self):
        """The kernels compiled for this network, for a user's own ``@njit`` code (a namespace).

        ``train_step``, ``predict``, ``gradient``, ``loss`` and ``backward``, each taking exactly the arguments of
        the generic kernel of the same name in :mod:`fastbp.kernels` (with ``work`` from :meth:`workspace`), plus
        ``step`` (:func:`fastbp.kernels.step`), ``work_size(n)`` and ``source`` (the path of the generated module).
        Generated on first access, also for a network created with ``compiled=False``; each kernel compiles at its
        first call. See :func:`fastbp.kernels.compiled.for_network`."""
        return compiled_kernels.for_network(self._signature)[0]

    @property
    def dispatch(self):
        """Which kernels this network runs (:class:`fastbp.dispatch.Dispatch`): ``mode`` (``"eager"``,
        ``"background"`` or ``"off"``), ``tier`` (``"generic"`` or ``"compiled"``: the family its serial kernels
        come from now), ``build`` (their background build: ``"none"``, ``"running"``, ``"done"`` or ``"failed"``),
        and ``parallel_tier``/``parallel_build``, the same for the parallel twins large batches run."""
        return self._dispatch

    def prepare(self, batch=None):
        """Wait until this network runs the kernels it will keep: in the background mode, until its builds have
        finished and measured its plan (:attr:`plan`); in the others, until its compiled kernels run, where it can
        have them (mode ``"off"`` compiles them in this process; ``"eager"`` networks with a layer of more than
        ``fastbp.kernels.compiled.MAX_LAYER_WEIGHTS`` weights keep the generic kernels).

        Parameters
        ----------
        batch : int, optional
            The largest batch the caller will pass: the compiled parallel twins are waited for only if it may run
            them (more than one tile of rows). All by default.

        Returns
        -------
        self : Network
        """
        self._dispatch.prepare(batch)
        return self

    @property
    def plan(self):
        """What chose this network's kernels (:mod:`fastbp.plan`): the measured seconds of a train step per batch
        class and candidate, and the choice (``print(net.plan)`` shows the table); None until the background build
        has measured it, and in the fixed modes (``compiled=True`` or ``False``), which plan nothing."""
        return self._dispatch.plan

    @property
    def optimizer(self):
        """The optimizer, :class:`fastbp.SGD` or :class:`fastbp.Adam`; assignable.

        Assigning one swaps the optimizer: its state rows and step count carry over when its kind and number of
        state rows stay the same; otherwise :attr:`flat` is replaced by a new array with the parameters and the
        gradient copied and the state zeroed, and the step count restarts at 0. Assigning anything else raises
        ``TypeError``.
        """
        return self._optimizer

    @optimizer.setter
    def optimizer(self, optimizer):
        """Swap the optimizer; its state and step count carry over when the kind stays the same."""
        if not isinstance(optimizer, (optim.SGD, optim.Adam)):
            raise TypeError(f"optimizer must be fastbp.SGD or fastbp.Adam, got {type(optimizer).__name__}")
        hyper = optimizer.hyper()
        with self._lock:
            if hyper[optim.KIND] == self.hyper[optim.KIND] and optimizer.n_slots == self._optimizer.n_slots:
                hyper[optim.STEP] = self.hyper[optim.STEP]
            else:
                flat = aligned_empty((2 + optimizer.n_slots, self.n_params), self.dtype)
                flat[2:] = 0
                flat[0:2] = self.flat[0:2]
                self.flat = flat
            self._optimizer, self.hyper = optimizer, hyper

    # ---- the API -----------------------------------------------------------------------------------------------

    def forward(self, X, out=None):
        """The output activations for X; ``net(X)`` is the same call.

        Parameters
        ----------
        X : array_like, shape (n, n_in), real
            The batch (n >= 1); converted to the network's dtype.
        out : ndarray, shape (n, n_out), the network's dtype, optional
            Written and returned instead of a new array; must be writeable.

        Returns
        -------
        out : ndarray, shape (n, n_out), the network's dtype
            The output activations (``out`` itself when given).

        Raises
        ------
        TypeError
            If X does not hold real numbers.
        ValueError
            If X is not (n, n_in) with n >= 1 or holds a NaN or an infinity, or ``out`` is not a writeable array of
            the network's dtype and shape (n, n_out).
        """
        if type(X) is not np.ndarray or X.dtype is not self.dtype or X.shape != self._fast_forward:
            X = self._input(X)
            self.workspace(X.shape[0])
            self._fast_forward_kernels = self._dispatch.serial_for(X.shape[0])
            self._fast_forward = X.shape if self._fast_forward_kernels is not None else None
        n = X.shape[0]
        if out is None:
            out = np.empty((n, self.sizes[-1]), self.dtype)
        elif out is not self._fast_out or out.shape[0] != n:  # the last out checked needs no new check
            if not (type(out) is np.ndarray and out.dtype is self.dtype and out.shape == (n, self.sizes[-1])
                    and out.flags.writeable):
                raise ValueError(f"out must be a writeable {self.dtype} array of shape {(n, self.sizes[-1])}, "
                                 f"got {getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}")
            self._fast_out = out
        if self._fast_forward is not None:  # the batch's shape is the checked one, on the serial kernels
            lock = self._lock
            lock.acquire()
            try:
                ok = self._fast_forward_kernels.predict(self.flat, self.spec, self._work, X, out)
            finally:
                lock.release()
        else:
            ok = self._call("predict", X, out)
        if not ok:
            raise ValueError(nonfinite("X", X))
        return out

    __call__ = forward

    def train_step(self, X, Y, sample_weight=None):
        """One forward pass, backward pass and optimizer update in place, all or nothing.

        Parameters
        ----------
        X : array_like, shape (n, n_in), real
            The batch (n >= 1); converted to the network's dtype.
        Y : array_like, shape (n, n_out), real, or shape (n,)
            The targets: integer class labels of shape (n,) for ``cross_entropy``, shape (n,) also for one output
            unit; converted to the network's dtype (labels too).
        sample_weight : array_like, shape (n,), real, optional
            Non-negative, finite, not all zero: the loss is then ``sum_i w_i l_i / sum_i w_i``, so integer weights
            equal repeated rows.

        Returns
        -------
        loss : float
            The mean loss of the batch before the update (weighted by ``sample_weight``).

        Raises
        ------
        TypeError
            If an array does not hold real numbers (or labels are not integers).
        ValueError
            If a shape is wrong, X is empty, X or Y holds a NaN or an infinity, a label is out of range, or the
            weights are negative, non-finite or all zero.
        FloatingPointError
            If the loss or an updated parameter or optimizer state would not be finite; nothing is applied.
        """
        if sample_weight is not None:
            return self._checked_call("train_step", X, Y, sample_weight)
        # The hot path: a batch like the last checked one goes straight to the kernel, which checks finiteness and
        # label range as it reads X and Y, and updates nothing (returning NaN) when they fail.
        if type(X) is np.ndarray and type(Y) is np.ndarray and X.dtype is self.dtype and Y.dtype is self.dtype \
                and X.shape == self._fast_x and Y.shape == self._fast_y:
            lock = self._lock  # acquire/release on a local: half the cost of a with statement
            lock.acquire()
            try:
                loss = self._fast_step(self.flat, self.spec, self.hyper, self._work, X, Y)
            finally:
                lock.release()
            if loss != loss:
                self._diagnose(X, Y)
            return loss
        return self._checked_call("train_step", X, Y)

    def gradients(self, X, Y, sample_weight=None):
        """The mean loss and its gradient into :attr:`grad`, with no update (:meth:`step` applies it).

        Parameters
        ----------
        X : array_like, shape (n, n_in), real
            The batch (n >= 1); converted to the network's dtype.
        Y : array_like, shape (n, n_out), real, or shape (n,)
            The targets: integer class labels of shape (n,) for ``cross_entropy``, shape (n,) also for one output
            unit; converted to the network's dtype (labels too).
        sample_weight : array_like, shape (n,), real, optional
            Non-negative, finite, not all zero: the loss is then ``sum_i w_i l_i / sum_i w_i``, so integer weights
            equal repeated rows.

        Returns
        -------
        loss : float
            The mean loss of the batch (weighted by ``sample_weight``).
        grads : dict of str to ndarray
            dL/d(parameters), keyed like :meth:`state_dict` (``"0.weight"`` of shape (n_out, n_in), ``"0.bias"`` of
            shape (n_out,), ...) in the network's dtype; copies.

        Raises
        ------
        TypeError
            If an array does not hold real numbers (or labels are not integers).
        ValueError
            If a shape is wrong, X is empty, X or Y holds a NaN or an infinity, a label is out of range, or the
            weights are negative, non-finite or all zero.
        FloatingPointError
            If the loss is NaN although the input is finite (diverged parameters).
        """
        loss = self._checked_call("gradient", X, Y, sample_weight)
        self._has_grad = True
        return loss, self._named(row=1)

    def evaluate(self, X, Y, sample_weight=None):
        """The mean loss on (X, Y), with no gradient and no update.

        Parameters
        ----------
        X : array_like, shape (n, n_in), real
            The batch (n >= 1); converted to the network's dtype.
        Y : array_like, shape (n, n_out), real, or shape (n,)
            The targets: integer class labels of shape (n,) for ``cross_entropy``, shape (n,) also for one output
            unit; converted to the network's dtype (labels too).
        sample_weight : array_like, shape (n,), real, optional
            Non-negative, finite, not all zero: the loss is then ``sum_i w_i l_i / sum_i w_i``, so integer weights
            equal repeated rows.

        Returns
        -------
        loss : float
            The mean loss (weighted by ``sample_weight``).

        Raises
        ------
        TypeError
            If an array does not hold real numbers (or labels are not integers).
        ValueError
            If a shape is wrong, X is empty, X or Y holds a NaN or an infinity, a label is out of range, or the
            weights are negative, non-finite or all zero.
        FloatingPointError
            If the loss is NaN although the input is finite (diverged parameters).
        """
        return self._checked_call("loss", X, Y, sample_weight)

    def backward(self, X, grad_output):
        """Backpropagate the gradient of any loss: a forward pass on X, then the delta recursion from
        ``grad_output``, dL/dP for the output activations P = ``forward(X)``, through the output activation's
        Jacobian (softmax's whole). Writes the gradient into :attr:`grad`; no update (:meth:`step` applies it).

        Parameters
        ----------
        X : array_like, shape (n, n_in), real
            The batch (n >= 1); converted to the network's dtype.
        grad_output : array_like, shape (n, n_out), real
            dL/dP for your loss L (for a mean over rows, already divided by n); converted to the network's dtype.
            Shape (n,) is accepted for one output unit.

        Returns
        -------
        grads : dict of str to ndarray
            dL/d(parameters), keyed like :meth:`state_dict`, in the network's dtype; copies.

        Raises
        ------
        TypeError
            If X or ``grad_output`` does not hold real numbers.
        ValueError
            If a shape is wrong, X is empty, or X or ``grad_output`` holds a NaN or an infinity.
        """
        if type(X) is np.ndarray and type(grad_output) is np.ndarray and X.dtype is self.dtype \
                and grad_output.dtype is self.dtype and (X.shape, grad_output.shape) == self._fast_backward:
            lock = self._lock  # the hot path, as train_step's: shapes as the last checked call's, serial kernels
            lock.acquire()
            try:
                ok = self._fast_backward_kernels.backward(self.flat, self.spec, self._work, X, grad_output)
            finally:
                lock.release()
            X, G = (X, grad_output) if ok else (self._input(X), self._grad_output(grad_output, X.shape[0]))
        else:
            X = self._input(X)
            G = self._grad_output(grad_output, X.shape[0])
            ok = self._call("backward", X, G)
            self._fast_backward_kernels = self._dispatch.serial_for(X.shape[0])
            if self._fast_backward_kernels is not None:
                self._fast_backward = (X.shape, G.shape)
        if not ok:  # only for non-finite input: the shapes are checked
            raise ValueError(nonfinite("X", X) if not np.isfinite(X).all() else nonfinite("grad_output", G))
        self._has_grad = True
        return self._named(row=1)

    def step(self):
        """One optimizer update from :attr:`grad` (left by :meth:`backward` or :meth:`gradients`), in place.

        All or nothing: if any parameter or optimizer state would become non-finite, nothing is applied and
        ``FloatingPointError`` is raised. The gradient stays in :attr:`grad`, so a second call applies it again.

        Raises
        ------
        RuntimeError
            If no gradient was computed yet (no :meth:`backward` or :meth:`gradients` call).
        FloatingPointError
            If the step would make a parameter or optimizer state non-finite; nothing is applied.
        """
        if not self._has_grad:
            raise RuntimeError("no gradient to apply: call backward(X, grad_output) or gradients(X, Y) before step()")
        with self._lock:
            ok = optim.update(self.flat, self.hyper)
        if not ok:
            raise FloatingPointError("the step was not applied: a parameter or optimizer state would not be finite "
                                     "(diverging: lower the learning rate or clip the gradient); the parameters are "
                                     "unchanged")

    def predict(self, X):
        """Class predictions: the argmax for a softmax output (labels), else outputs thresholded at 0.5 for a
        sigmoid output, else the outputs themselves.

        Parameters
        ----------
        X : array_like, shape (n, n_in), real
            The batch (n >= 1); converted to the network's dtype.

        Returns
        -------
        predictions : ndarray
            Shape (n,), int64 labels for a softmax output; shape (n, n_out), int64 0 or 1 for a sigmoid output;
            else the outputs, shape (n, n_out), the network's dtype.

        Raises
        ------
        TypeError
            If X does not hold real numbers.
        ValueError
            If X is not (n, n_in) with n >= 1 or holds a NaN or an infinity.
        """
        P = self.forward(X)
        if self.output == "softmax":
            return P.argmax(axis=1)
        if self.output == "sigmoid":
            return (P > 0.5).astype(np.int64)
        return P

    def fit(self, X, Y, epochs=1, batch_size=32, shuffle=True, validation=None, patience=None, progress=False,
            on_nonfinite="raise", comm=None, sample_weight=None, reduce_on_plateau=None):
        """Minibatch training (the loop is :func:`fastbp.training.fit`).

        Parameters
        ----------
        X : array_like, shape (n, n_in), real
            The training data (n >= 1); converted to the network's dtype.
        Y : array_like, shape (n, n_out), real, or shape (n,)
            The targets: integer class labels of shape (n,) for ``cross_entropy``, shape (n,) also for one output
            unit; converted to the network's dtype (labels too).
        epochs : int >= 1
            Passes over the data.
        batch_size : int >= 1 or None
            Rows per step (the last batch of an epoch may be shorter; more than n means n); None for full-batch
            steps.
        shuffle : bool
            Reorder the samples each epoch with the network's seeded generator.
        validation : tuple of (array_like, array_like), optional
            ``(Xv, Yv)``, shaped as X and Y; evaluated after every epoch into ``history["val_loss"]``.
        patience : int >= 1, optional
            Stop after this many epochs without a new best ``val_loss`` (training loss without validation); at the
            end, early or not, restore the parameters of the best epoch.
        progress : bool
            Show a progress bar (tqdm when installed, else a line per epoch on stderr).
        on_nonfinite : {"raise", "stop", "skip"}
            What to do when a step would give a non-finite loss or parameter (the step is never applied, so the
            parameters stay finite): raise ``FloatingPointError`` (the default), stop training there, or skip that
            batch and go on.
        comm : mpi4py.MPI.Comm, optional
            Train data-parallel across the communicator's ranks (every rank calls ``fit`` with the same X and Y):
            :func:`fastbp.distributed.fit`, which supports ``epochs``, ``batch_size`` and ``shuffle``.
        sample_weight : array_like, shape (n,), float, optional
            Per-sample weights (non-negative, finite, not all zero): each step's loss is the weighted mean over its
            batch; a batch whose weights are all zero is skipped.
        reduce_on_plateau : fastbp.schedules.ReduceOnPlateau, optional
            Multiply the learning rate by its factor when the monitored loss (``val_loss``, else ``loss``) stops
            improving; the rate of each epoch goes to ``history["lr"]``.

        Returns
        -------
        history : dict
            ``loss`` (list of float: each epoch's mean training loss over the samples of the steps applied, each
            step's loss, before its update, weighted by its rows or by its weight sum), ``val_loss`` (list of
            float: the validation loss after each epoch) with validation, ``lr`` (list of float) with
            ``reduce_on_plateau``, ``nonfinite_steps`` (int: steps not applied) and ``stopped`` (bool: True if
            ``on_nonfinite="stop"`` ended it). With ``comm``, :func:`fastbp.distributed.fit`'s history (``loss``
            only).

        Raises
        ------
        TypeError
            If an array does not hold real numbers, ``validation`` is not a pair or ``reduce_on_plateau`` not a
            :class:`fastbp.schedules.ReduceOnPlateau`.
        ValueError
            If an argument is out of range, X, Y or the validation data are malformed or not finite, or ``comm`` is
            given with an option it does not support.
        FloatingPointError
            With ``on_nonfinite="raise"``, at the first step that would not be finite (not applied).
        """
        return training.fit(self, X, Y, epochs, batch_size, shuffle, validation, patience, progress, on_nonfinite,
                            comm, sample_weight, reduce_on_plateau)

    # ---- state ------------------------------------------------------------------------------------------------

    def state_dict(self):
        """Parameters named as PyTorch's ``nn.Sequential(Linear, act, ..., Linear)``.

        Returns
        -------
        state_dict : dict of str to ndarray
            ``"{i}.weight"`` of shape (n_out, n_in) and ``"{i}.bias"`` of shape (n_out,) for the Linear at index
            i = 0, 2, 4, ... of the Sequential, in the network's dtype; copies.
        """
        return self._named(row=0)

    def load_state_dict(self, state_dict):
        """Copy parameters from a dict like :meth:`state_dict`, all or nothing (:func:`fastbp.io.load_state_dict`).

        Parameters
        ----------
        state_dict : mapping of str to array_like
            Exactly the keys and shapes of :meth:`state_dict`; values anything ``np.asarray`` takes (or torch
            tensors), real and finite, converted to the network's dtype. Only the parameters are written: the
            gradient, the optimizer state and the step count are left as they are.

        Raises
        ------
        TypeError
            If ``state_dict`` is not a mapping, or a value does not hold real numbers.
        ValueError
            If the keys differ, a shape is wrong or a value holds a NaN or an infinity; nothing is copied.
        """
        io.load_state_dict(self, state_dict)

    def save(self, path):
        """Write the architecture, optimizer and parameters to a ``.npz`` file, atomically (:func:`fastbp.io.save`).

        Parameters
        ----------
        path : str or os.PathLike
            The file, replaced whole: a crash mid-save leaves the previous file.
        """
        io.save(self, path)

    @classmethod
    def load(cls, path):
        """A network from a file written by :meth:`save` (:func:`fastbp.io.load`).

        Parameters
        ----------
        path : str, os.PathLike or binary file object
            The ``.npz`` file.

        Returns
        -------
        net : Network
            The saved architecture, dtype, seed, optimizer (with its schedule and step count), parameters,
            gradient and optimizer state; ``threads`` and ``compiled`` are the defaults, and the shuffling of
            ``fit`` starts again from the seed, as for a new network of that seed (a pickle keeps where it was).

        Raises
        ------
        ValueError
            If the file is not a readable fastbp model file, was written by a newer fastbp's format, or its
            arrays do not fit the network it describes or are not finite.
        FileNotFoundError
            If there is no such file (``IsADirectoryError`` and ``PermissionError`` also propagate).
        """
        return io.load(cls, path)

    def to_onnx(self, path=None, opset=None):
        """This network as an ONNX model (:func:`fastbp.onnx.export`; the extra ``fastbp[onnx]``).

        Parameters
        ----------
        path : str, os.PathLike or None
            Where to write it, atomically; None writes nothing.
        opset : int or None
            The ONNX operator set; None for ``fastbp.onnx.DEFAULT_OPSET``.

        Returns
        -------
        model : onnx.ModelProto
            Input ``"input"``, shape (batch, n_in), and output ``"output"``, shape (batch, n_out), in the
            network's dtype: ONNX Runtime computes :meth:`forward` to rounding.
        """
        from .onnx import writer

        return writer.write_network(self, path, writer.DEFAULT_OPSET if opset is None else opset)

    def to_torch(self):
        """This network as a PyTorch module (PyTorch must be installed).

        Returns
        -------
        module : torch.nn.Sequential
            ``Linear, activation, ..., Linear[, output activation]`` in the network's dtype, with a copy of the
            parameters (an ``nn.Identity`` stands for a hidden identity, so the keys of its ``state_dict`` are those
            of :meth:`state_dict`): it computes :meth:`forward` to rounding.
        """
        return convert.to_torch(self)

    @classmethod
    def from_torch(cls, module, **kwargs):
        """A network computing a PyTorch ``nn.Sequential`` of ``Linear`` and activation modules.

        Parameters
        ----------
        module : torch.nn.Sequential
            ``Linear`` layers (with or without bias), each followed by at most one of ``ReLU``, ``LeakyReLU``
            (slope 0.01), ``Tanh``, ``Sigmoid``, ``ELU`` (alpha 1), ``SiLU``, ``GELU`` (either ``approximate``),
            ``Softplus`` (beta 1, threshold 20; these four after hidden layers only) or ``Softmax`` (over the
            features, after the last layer only), any of them after each layer; ``Identity`` anywhere. Its
            parameters are copied, float32 or float64.
        **kwargs
            Passed to the constructor: ``loss`` (default: ``cross_entropy`` after a softmax, ``bce`` after a
            sigmoid, ``mse`` otherwise), ``optimizer``, ``dtype`` (default: the module's), ``seed``, ``threads``,
            ``compiled``.

        Returns
        -------
        net : Network
            With the module's parameters, exactly.

        Raises
        ------
        TypeError
            If ``module`` is not an ``nn.Sequential``.
        ValueError
            If it holds another module (the message names it and what fastbp takes) or one with arguments fastbp
            does not compute, a softmax before the last layer, or parameters that are not float32 or float64 or
            not finite. Nothing is built.
        """
        return convert.from_torch(cls, module, **kwargs)

    def __getstate__(self):  # copy and pickle without the lock, the kernels, the workspace and the hot path's shapes
        return {k: v for k, v in self.__dict__.items()
                if k not in ("_lock", "_dispatch") and not k.startswith(("_work", "_fast_"))}

    def __setstate__(self, state):
        if "activations" not in state:  # pickled before per-layer activations: a spec without the hidden codes
            hidden = (state["hidden"],) * (len(state["sizes"]) - 2)
            state.update(activations=(*hidden, state["output"]),
                         spec=np.concatenate([state["spec"], np.array([act.CODES[h] for h in hidden], np.int64)]))
        if state["hyper"].size < optim.HYPER_SIZE:  # pickled before keep_grad: the fields since then are 0
            state["hyper"] = np.concatenate([state["hyper"], np.zeros(optim.HYPER_SIZE - state["hyper"].size)])
        self.__dict__.update(state)
        self._forget_batches()
        # Arrays unpickled from a read-only memory map (joblib's) become the network's own, which kernels write.
        for name in ("hyper", "spec"):
            if not getattr(self, name).flags.writeable:
                setattr(self, name, getattr(self, name).copy())
        flat, self.flat = self.flat, aligned_empty(self.flat.shape, self.flat.dtype)  # unpickled: malloc's alignment
        self.flat[:] = flat
        self._lock = threading.Lock()
        self._start_dispatch()

    def __repr__(self):
        return (f"Network({self.sizes}, hidden={self.hidden!r}, output={self.output!r}, loss={self.loss!r}, "
                f"optimizer={self._optimizer!r}, dtype={self.dtype.name})")

    # ---- the boundary -----------------------------------------------------------------------------------------

    def _call(self, name, X, last, weights=None):
        """Run the kernel ``name`` on a checked batch (``last`` is Y, or ``out`` for predict; ``weights`` checked
        sample weights, which run the generic weighted twin): the dispatch's choice, under the network's thread
        count. An unweighted train step also arms the hot path (see :meth:`train_step`) for the batch's shapes."""
        with self._lock:
            work = self.workspace(X.shape[0])
            if name == "train_step" and weights is None:  # the plan's observer where one times the calls
                step = self._dispatch.train_step_for(X.shape[0])
                # The hot path's, for this batch's shapes; not for class labels: converted to the network's dtype,
                # they would let a float array of their shape (not labels) through unchecked.
                if last.shape[1] == self.sizes[-1]:
                    self._fast_step, self._fast_x, self._fast_y = step, X.shape, last.shape
                return step(self.flat, self.spec, self.hyper, work, X, last)
            args = (self.flat, self.spec, self.hyper, work, X, last) if name == "train_step" else \
                (self.flat, self.spec, work, X, last)
            kern, threads = self._dispatch.kernel(name, X.shape[0], weighted=weights is not None)
            args = args if weights is None else (*args, weights)
            return dispatch.run_with_threads(kern, args, threads)

    def _checked_call(self, name, X, Y, sample_weight=None):
        """Check and convert (X, Y) and the weights, run the kernel, explain a NaN."""
        X = self._input(X)
        Y = self._targets(Y, X.shape[0])
        weights = None if sample_weight is None else self._weights(sample_weight, X.shape[0])
        loss = self._call(name, X, Y, weights)
        if loss != loss:
            self._diagnose(X, Y)
        return loss

    def _forget_batches(self):
        """An empty workspace, and no hot path: it trusts the shapes of the last checked batch (see train_step), for
        which the workspace was sized."""
        self._work, self._work_rows = np.empty(0, self.dtype), 0
        self._forget_hot_path()

    def _forget_hot_path(self):
        self._fast_x = self._fast_y = self._fast_forward = self._fast_out = None
        self._fast_backward = None

    def _named(self, row):
        """flat[row] copied once, as a dict of per-layer views of the copy keyed like :meth:`state_dict`."""
        values = self.flat[row].copy()
        return {key: values[start:stop].reshape(shape) for key, start, stop, shape in self._keys}

