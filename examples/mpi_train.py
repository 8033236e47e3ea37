"""Synchronous data-parallel training over MPI: every rank trains the same network on its share of each batch.

Every rank builds the same network and the same synthetic data from fixed seeds; ``distributed.fit`` splits each
global batch between the ranks and sums their gradients with one Allreduce per step. Rank 0 prints the final loss,
the steps per second, the bytes each rank sends into the Allreduce per step, and checks that every rank ends with
bit-identical parameters.

    mpiexec -n 2 python examples/mpi_train.py                 # 16-64-64-4 tanh, float64, a few seconds
    mpiexec -n 2 python examples/mpi_train.py --case wide     # 1024-1024-1024-1024 relu, float32, batch 256
"""

import argparse
import hashlib
import time

import numpy as np
from mpi4py import MPI

import fastbp
from fastbp import distributed

CASES = {  # sizes, hidden, dtype, global batch, optimizer
    "small": ([16, 64, 64, 4], "tanh", np.float64, 64, fastbp.SGD(lr=0.02, momentum=0.9)),
    "wide": ([1024, 1024, 1024, 1024], "relu", np.float32, 256, fastbp.SGD(lr=1e-3)),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(CASES), default="small")
    parser.add_argument("--steps", type=int, default=None, help="steps per epoch (default 64 small, 20 wide)")
    parser.add_argument("--epochs", type=int, default=None, help="default 10 small, 1 wide")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    sizes, hidden, dtype, batch, optimizer = CASES[args.case]
    steps = args.steps or (64 if args.case == "small" else 20)
    epochs = args.epochs or (10 if args.case == "small" else 1)

    # The same data on every rank: a fixed random teacher network's outputs, so there is something to learn.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(steps * batch, sizes[0])).astype(dtype)
    teacher = fastbp.Network(sizes, hidden=hidden, dtype=dtype, seed=1)
    Y = teacher.forward(X)
    net = fastbp.Network(sizes, hidden=hidden, output="identity", loss="mse", optimizer=optimizer, dtype=dtype, seed=0)

    # Warm up (the Numba cache load, BLAS's threads) on one step, outside the timing.
    lo, hi = batch * rank // size, batch * (rank + 1) // size
    distributed.train_step(net, X[lo:hi], Y[lo:hi], comm, global_batch=batch)
    comm.Barrier()
    start = time.perf_counter()
    history = distributed.fit(net, X, Y, comm, epochs=epochs, batch_size=batch, seed=2)
    elapsed = comm.allreduce(time.perf_counter() - start, op=MPI.MAX)  # the slowest rank sets the pace

    digests = comm.gather(hashlib.sha256(net.params.tobytes()).hexdigest(), root=0)
    if rank == 0:
        n_steps = epochs * steps
        payload = net.dtype.itemsize * (net.n_params + 2)  # gradient, loss and error flag
        print(f"case {args.case}: {sizes} {hidden} {net.dtype.name}, {net.n_params} parameters, global batch {batch} "
              f"({batch // size} rows per rank), {size} rank(s)")
        print(f"loss first epoch {history['loss'][0]:.6g}, final {history['loss'][-1]:.6g}")
        print(f"steps/s {n_steps / elapsed:.1f} ({n_steps} steps in {elapsed:.3f} s)")
        print(f"Allreduce payload per step per rank: {payload} bytes ({payload / 2**20:.2f} MiB)")
        same = len(set(digests)) == 1
        print(f"parameters identical on all ranks: {same}")
        if not same:
            comm.Abort(1)


if __name__ == "__main__":
    main()
