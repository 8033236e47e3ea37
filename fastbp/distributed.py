"""Synchronous data-parallel training over MPI: one network per process, gradients summed by ``Allreduce``.

Every rank builds the same network (same sizes, optimizer and dtype); :func:`broadcast_parameters` makes their
parameters equal, and each step every rank computes the gradient of its shard of a global batch, the ranks sum the
shard gradients weighted by shard size, and every rank applies the same optimizer update to the same parameters. The
parameters therefore stay identical with no further communication, and the result equals a single process's step on
the whole global batch up to rounding (the sum is formed in a different order). This assumes the MPI library gives
every rank the same bits from ``Allreduce`` (tests/test_distributed.py checks it with MPICH on 2 ranks); with one that
does not, call :func:`broadcast_parameters` now and then.

Run under ``mpiexec -n 4 python train.py`` (or ``srun`` under Slurm); every rank runs the same script::

    from mpi4py import MPI
    from fastbp import Network, SGD, distributed

    net = Network([16, 64, 4], optimizer=SGD(0.01, momentum=0.9), seed=0)   # on every rank
    history = distributed.fit(net, X, Y, MPI.COMM_WORLD, epochs=10, batch_size=256)

A step moves one vector of ``n_params + 2`` values of the network's dtype per rank (the gradient, the loss and an
error flag) through one ``Allreduce``; nothing else is communicated except the permutation once per epoch.
"""

import sys
import traceback
from contextlib import contextmanager

import numpy as np

from . import optim
from ._checks import check_int

try:
    from mpi4py import MPI
except ImportError as exc:
    raise ImportError("fastbp.distributed needs MPI: pip install 'fastbp[mpi]' (mpi4py and an MPI such as the mpich "
                      "package)") from exc

__all__ = ["broadcast_parameters", "train_step", "fit", "map_ranks"]


def broadcast_parameters(net, comm, root=0):
    """Overwrite every rank's parameters, optimizer state and step count with root's, in place.

    Parameters
    ----------
    net : fastbp.Network
        Built with the same sizes, optimizer kind and dtype on every rank (the buffers must have the same shapes).
        Its whole ``flat`` (parameters, gradient, optimizer state) and ``hyper`` (hyperparameters, schedule, step
        count) are overwritten on every rank but root.
    comm : mpi4py.MPI.Comm
        The communicator; every rank of it must call this.
    root : int
        The rank whose network is copied.
    """
    comm.Bcast(net.flat, root=root)  # all rows: parameters, gradient and optimizer state (momentum, Adam moments)
    comm.Bcast(net.hyper, root=root)  # hyperparameters and the step count Adam's bias correction reads


def train_step(net, X_shard, Y_shard, comm, global_batch=None):
    """One synchronous step on a global batch split across the ranks; every rank calls it, with its own shard.

    Parameters
    ----------
    net : fastbp.Network
        Identical on every rank (see :func:`broadcast_parameters`); updated in place.
    X_shard : array_like, shape (b_r, n_in), real
        This rank's rows of the global batch; b_r may be 0 on some ranks. Converted to the network's dtype.
    Y_shard : array_like, shape (b_r, n_out), real, or shape (b_r,)
        This rank's targets, as :meth:`fastbp.Network.train_step` takes them (integer labels of shape (b_r,) for
        ``cross_entropy``).
    comm : mpi4py.MPI.Comm
        The communicator; every rank of it must call this.
    global_batch : int >= 1, optional
        B, the sum of b_r over the ranks; computed with one extra small ``allreduce`` when None.

    Returns
    -------
    loss : float
        The mean loss over the global batch before the update, the same on every rank.

    Raises
    ------
    ValueError
        On every rank, with no rank updated, if any rank's shard is invalid (NaN, infinity, an out-of-range label,
        a wrong shape, a non-real dtype); that rank re-raises its own error (a ``TypeError`` for a dtype), the
        others a ValueError naming how many ranks failed. Also if ``global_batch`` is not an integer >= 1, or the
        global batch is empty.
    FloatingPointError
        On every rank, with no rank updated, if the global loss or an updated parameter would not be finite.
    """
    rows = len(X_shard)
    B = comm.allreduce(rows) if global_batch is None else check_int("global_batch", global_batch, 1)
    if B < 1:
        raise ValueError("the global batch is empty on every rank")
    # One buffer per network, made once: [weighted gradient..., weighted loss, error flag]. Packing the loss and the
    # flag with the gradient keeps a step at one collective, the latency that dominates for small networks.
    n = net.n_params
    buf = getattr(net, "_allreduce_buffer", None)
    if buf is None or buf.shape != (n + 2,) or buf.dtype != net.dtype:
        buf = net._allreduce_buffer = np.empty(n + 2, net.dtype)
    error, buf[n:] = None, 0
    try:
        if rows:
            X = net._input(X_shard)
            Y = net._targets(Y_shard, rows)
            loss = net._call("gradient", X, Y)
            if loss != loss:  # NaN: bad input (no gradient written) or a diverged loss (shows in the sum below)
                try:
                    net._diagnose(X, Y)
                except FloatingPointError:
                    pass
            # The mean over B of per-sample losses is sum_r (b_r / B) * (mean over shard r).
            np.multiply(net.flat[1], rows / B, out=buf[:n])
            buf[n] = loss * (rows / B)
        elif len(Y_shard):
            raise ValueError(f"X_shard has 0 rows but Y_shard has {len(Y_shard)}")
        else:
            buf[:n] = 0  # an empty shard adds nothing
    except (ValueError, TypeError) as exc:  # raised after the collective, so no rank is left waiting in it
        error, buf[:n], buf[n + 1] = exc, 0, 1
    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
    if buf[n + 1] != 0:
        if error is not None:
            raise error
        raise ValueError(f"{int(buf[n + 1])} of {comm.Get_size()} ranks had an invalid shard (see their errors); "
                         "no rank updated")
    loss = float(buf[n])
    if not np.isfinite(loss):
        raise FloatingPointError("the global loss is not finite (diverging: lower the learning rate); no rank updated")
    with net._lock:
        net.flat[1] = buf[:n]
        if not optim.update(net.flat, net.hyper):  # the same inputs on every rank, so the same answer
            raise FloatingPointError("a parameter would become non-finite (diverging: lower the learning rate); the "
                                     "step was not applied on any rank")
    return loss


def fit(net, X, Y, comm, epochs=1, batch_size=32, shuffle=True, seed=None, abort_on_error=True):
    """Minibatch training of one network across the ranks of ``comm``: each global batch is split among them.

    Every rank passes the same X and Y (rank r reads only its rows). Root's parameters are broadcast first. Each
    epoch all ranks walk the same permutation in global batches of ``batch_size``; rank r takes the r-th contiguous
    block of each batch, so the steps equal a single process's ``train_step`` on the same batches up to rounding.

    Parameters
    ----------
    net : fastbp.Network
        Built alike on every rank; trained in place (root's parameters and optimizer state are broadcast first).
    X : array_like, shape (n, n_in), real
        The whole data set, the same on every rank; converted to the network's dtype.
    Y : array_like, shape (n, n_out), real, or shape (n,)
        The targets, as :meth:`fastbp.Network.fit` takes them (integer labels of shape (n,) for ``cross_entropy``).
    comm : mpi4py.MPI.Comm
        The communicator; every rank of it must call this.
    epochs : int >= 1
        Passes over the data.
    batch_size : int >= 1
        The global batch (at most n); a rank's shard is about ``batch_size / comm.size`` rows (possibly 0 on a
        last short one).
    shuffle : bool
        Walk a new permutation of the rows each epoch; else the rows in order.
    seed : int, optional
        Seeds the permutations identically on every rank. When None, rank 0 draws them from the network's
        generator (as :meth:`Network.fit` does) and broadcasts them.
    abort_on_error : bool
        If a rank raises, print its traceback and call ``comm.Abort(1)``, which ends every rank of the job (and
        makes ``mpiexec`` exit non-zero) instead of leaving the others waiting in a collective forever. Pass False
        to let exceptions propagate, e.g. to catch the ValueError every rank raises alike for a bad shard.

    Returns
    -------
    history : dict
        ``loss``: list of float, the global mean training loss of each epoch, the same on every rank.

    Raises
    ------
    ValueError
        As :func:`train_step`, or for ``epochs`` or ``batch_size`` out of range or X or Y malformed (a
        ``TypeError`` for a non-real dtype). With ``abort_on_error``, raised only after ``comm.Abort(1)``.
    FloatingPointError
        As :func:`train_step`; with ``abort_on_error``, after ``comm.Abort(1)``.
    """
    with _abort_on_error(comm, abort_on_error):
        X = net._input(X)
        checked = net._targets(Y, X.shape[0])
        # Integer labels stay labels: each shard goes through train_step's own check, which takes them as given.
        Y = np.asarray(Y) if net.loss == "cross_entropy" and np.ndim(Y) == 1 else checked
        N, rank, size = X.shape[0], comm.Get_rank(), comm.Get_size()
        epochs = check_int("epochs", epochs, 1)
        batch_size = min(check_int("batch_size", batch_size, 1), N)
        broadcast_parameters(net, comm)
        rng = None if seed is None else np.random.default_rng(seed)
        order = np.arange(N, dtype=np.int64)
        history = {"loss": []}
        for _ in range(epochs):
            if shuffle:
                if rng is not None:
                    order = rng.permutation(N)
                else:
                    if rank == 0:
                        order[:] = net._rng.permutation(N)
                    comm.Bcast(order, root=0)
            total = 0.0
            for start in range(0, N, batch_size):
                b = min(batch_size, N - start)
                lo, hi = start + b * rank // size, start + b * (rank + 1) // size
                # Contiguous rows are views (no copy) when not shuffling; else copy only this rank's rows.
                Xs, Ys = (X[lo:hi], Y[lo:hi]) if not shuffle else (X[order[lo:hi]], Y[order[lo:hi]])
                total += train_step(net, Xs, Ys, comm, global_batch=b) * b
            history["loss"].append(total / N)
        return history


def map_ranks(fn, items, comm, root=0, abort_on_error=True):
    """``[fn(item) for item in items]`` with the items dealt round-robin to the ranks; the results on root.

    Parameters
    ----------
    fn : callable
        Called on the rank an item is dealt to; the same function on every rank.
    items : sequence
        Read on root only (others may pass None); sent to the ranks by pickle.
    comm : mpi4py.MPI.Comm
        The communicator; every rank of it must call this.
    root : int
        The rank that holds ``items`` and receives the results.
    abort_on_error : bool
        As in :func:`fit`: a rank whose ``fn`` raises ends the job instead of leaving root waiting.

    Returns
    -------
    list or None
        On root, the results in the order of ``items``; None on the other ranks.
    """
    with _abort_on_error(comm, abort_on_error):
        rank, size = comm.Get_rank(), comm.Get_size()
        items = list(items) if rank == root else None
        mine = comm.scatter([items[r::size] for r in range(size)] if rank == root else None, root=root)
        gathered = comm.gather([fn(item) for item in mine], root=root)
        if rank != root:
            return None
        results = [None] * len(items)
        for r, part in enumerate(gathered):
            results[r::size] = part
        return results


@contextmanager
def _abort_on_error(comm, enabled):
    """Turn an exception on one rank into ``comm.Abort(1)``: MPI has no way to interrupt the others' collectives."""
    if not enabled:
        yield
        return
    try:
        yield
    except BaseException as exc:
        sys.stdout.flush()
        # The cause on the first line: the launcher may kill this rank before it forwards the traceback's lines.
        print(f"fastbp.distributed: rank {comm.Get_rank()} failed ({type(exc).__name__}: {exc}); aborting all ranks",
              file=sys.stderr, flush=True)
        traceback.print_exc()
        sys.stderr.flush()
        comm.Abort(1)
        raise  # Abort asks the launcher to kill every rank and may return first: never go on with partial results
