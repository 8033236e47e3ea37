"""The backpropagation kernels: plain ``@njit`` functions over the arrays a :class:`fastbp.Network` exposes.

They are public so a user's own ``@njit`` code (a simulation loop, an agent) can query and train a network with no
Python in between::

    net = fastbp.Network([4, 16, 2], ...)
    flat, spec, hyper, work = net.flat, net.spec, net.hyper, net.workspace(batch)

    @numba.njit
    def simulate(flat, spec, hyper, work, X, Y, out):
        for t in range(1000):
            fastbp.kernels.predict(flat, spec, work, X, out)         # query
            fastbp.kernels.train_step(flat, spec, hyper, work, X, Y) # learn

One sample is a batch of one row, shape (1, n_in).

Any objective: ``backward(flat, spec, work, X, grad_output)`` backpropagates dL/dP, the gradient of the user's loss
with respect to the output activations P (n, n_out), into ``flat[1]``, and ``step(flat, hyper)`` applies the
optimizer update (clipping and schedule included). ``weighted_loss``, ``weighted_gradient`` and
``weighted_train_step`` take one more argument, ``sample_weight`` (n,): the loss is ``sum_i w_i l_i / sum_i w_i``.

The arrays
----------
flat : ndarray, shape (2 + n_slots, n_params), float32 or float64
    Row 0 the parameters, row 1 the gradient, rows 2.. the optimizer state. Layer l's weight ``W`` (shape
    (n_out, n_in), PyTorch's ``Linear.weight``) and then its bias ``b`` (n_out,) follow layer l-1's in each row.
spec : ndarray of int64
    The architecture, read only: ``[n_layers, hidden code, output code, loss code, sizes..., hidden codes...]``.
hyper : ndarray of float64, shape (fastbp.optim.HYPER_SIZE,)
    The optimizer's hyperparameters, schedule, clipping norm and step count (:mod:`fastbp.optim`); the step count is
    written.
work : ndarray, shape (>= work_size(spec, n),), the network's dtype
    Scratch for a batch of n rows: the input copy, the activations, the output pre-activation, the deltas and the
    target copy.
X : ndarray, shape (n, n_in); Y : ndarray, shape (n, n_out), or integer class labels of shape (n, 1)
    Read only. Non-finite values (or labels outside [0, n_out)) make a kernel return NaN (``predict`` returns False)
    before it writes anything but ``work``. ``train_step`` also returns NaN, applying nothing, when the loss or any
    updated parameter would not be finite.

The population kernels take N members' arrays: ``flats`` (2 + n_slots, n_params, N), C-contiguous, member m's
``flat`` being the column ``flats[:, :, m]``; ``hypers`` (N, HYPER_SIZE); ``works`` (population_work_size(spec, n),
N); ``X`` (N, n, n_in) and ``Y`` (N, n, n_out), or labels (N, n, 1). They do not clip gradients.

Every kernel comes in two compilations of one source. The public ones are serial, safe inside a user's ``prange``;
``PARALLEL`` holds the twins the network uses for large batches. Results do not depend on the thread count: rows are
split between threads for the forward pass and the deltas, and gradient *rows* (output units) for the weight
gradients, so no sum over the batch is ever split. Layers with enough work call BLAS through ``np.dot`` instead.
"""

from .generic import (BLAS_MIN_WIDTH, BLAS_MIN_WORK, PARALLEL_MIN_WORK, backward, gradient, loss, predict, step,
                      train_step, uses_blas, weighted_gradient, weighted_loss, weighted_train_step)
from .generic import PARALLEL as _GENERIC_PARALLEL
from .layout import HIDDEN, LOSS, N_LAYERS, OUTPUT, SIZES, n_params, work_size
from .population import LANES, population_predict, population_train_step, population_work_size
from .population import PARALLEL as _POPULATION_PARALLEL

PARALLEL = {**_GENERIC_PARALLEL, **_POPULATION_PARALLEL}  # each serial kernel's parallel twin

__all__ = ["predict", "loss", "gradient", "train_step", "backward", "step", "weighted_loss", "weighted_gradient",
           "weighted_train_step", "n_params", "work_size", "population_predict",
           "population_train_step", "population_work_size", "uses_blas", "PARALLEL", "LANES", "BLAS_MIN_WORK",
           "BLAS_MIN_WIDTH", "PARALLEL_MIN_WORK", "N_LAYERS", "HIDDEN", "OUTPUT", "LOSS", "SIZES"]
