"""asv: fastbp.distributed's train step on one MPI rank, against TrainStep's plain one in benchmarks.py.

asv runs a benchmark in one process, so COMM_WORLD has a single rank: this times what the distributed step adds (the
gradient packed for the Allreduce and copied back, the flag and loss check), not the communication. Scaling across
ranks needs mpiexec: ``mpiexec -n 2 python examples/mpi_train.py --case wide``. Skipped without mpi4py.
"""

from fastbp import bench

from .benchmarks import grid


class DistributedTrainStep:
    params = grid(["policy-batch", "wide"])
    param_names = ["case"]

    def setup(self, case):
        try:
            from mpi4py import MPI

            from fastbp import distributed
        except ImportError:
            raise NotImplementedError("mpi4py is not installed (pip install 'fastbp[mpi]')") from None
        c = bench.CASES[case]
        self.step, self.comm, self.batch = distributed.train_step, MPI.COMM_WORLD, c.batch
        self.net = c.network()
        self.X, self.Y = c.data()
        self.time_train_step(case)  # the Numba cache load and the buffer, outside the timing

    def time_train_step(self, case):
        self.step(self.net, self.X, self.Y, self.comm, self.batch)
