"""fastbp.distributed under a real ``mpiexec -n 2``: data-parallel steps equal single-process steps on the whole
batch, a failing rank ends the job instead of hanging it, a bad shard fails on every rank with nothing updated."""

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastbp

from . import reference as ref

TIMEOUT = 300


def find_mpiexec():
    """The mpiexec next to this interpreter (the ``mpich`` wheel puts it there), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")


MPIEXEC = find_mpiexec()
needs_mpi = pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None or MPIEXEC is None,
                               reason="needs mpi4py and mpiexec (pip install 'fastbp[mpi]')")


def mpiexec_command(n):
    """mpiexec for n local processes. MPICH's hydra runs as root on loopback as is; Open MPI refuses root and
    more processes than cores without its flags."""
    version = subprocess.run([MPIEXEC, "--version"], capture_output=True, text=True).stdout
    flags = ["--allow-run-as-root", "--oversubscribe"] if "Open MPI" in version or "OpenRTE" in version else []
    return [MPIEXEC, *flags, "-n", str(n)]


def run_mpi(tmp_path, source, n=2, timeout=TIMEOUT):
    """Write ``source`` to a script in tmp_path and run it on n ranks (cwd tmp_path); the CompletedProcess.

    The job runs in its own session so a hang is killed whole (mpiexec and every rank) at the timeout."""
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(source))
    proc = subprocess.Popen([*mpiexec_command(n), sys.executable, str(script)], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"mpiexec -n {n} did not finish within {timeout} s (a hang)")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


PRELUDE = """
import numpy as np
from mpi4py import MPI
import fastbp
from fastbp import distributed

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
assert comm.Get_size() == 2, "mpiexec and mpi4py come from different MPIs: every rank thinks it is alone"
"""

OPTIMIZERS = {"sgd_momentum": "fastbp.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)",
              "adam": "fastbp.Adam(lr=0.01, weight_decay=1e-2)"}
N, EPOCHS, BATCH = 49, 3, 16  # the last batch of each epoch has 1 row: rank 0's shard is empty
# Both forms of the call: the module's fit, and Network.fit with a communicator.
FIT = {"sgd_momentum": f"distributed.fit(net, X, Y, comm, epochs={EPOCHS}, batch_size={BATCH})",
       "adam": f"net.fit(X, Y, epochs={EPOCHS}, batch_size={BATCH}, comm=comm)"}


def network(optimizer):
    return fastbp.Network([5, 8, 3], hidden="tanh", output="identity", loss="mse", optimizer=optimizer, seed=3)


def data():
    rng = np.random.default_rng(7)
    return rng.normal(size=(N, 5)), rng.normal(size=(N, 3))


@needs_mpi
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_two_ranks_equal_one_process_on_the_whole_batch(tmp_path, optimizer):
    result = run_mpi(tmp_path, PRELUDE + f"""
rng = np.random.default_rng(7)
X, Y = rng.normal(size=({N}, 5)), rng.normal(size=({N}, 3))
net = fastbp.Network([5, 8, 3], hidden="tanh", output="identity", loss="mse", optimizer={OPTIMIZERS[optimizer]},
                     seed=3 if rank == 0 else 99)  # rank 1 starts elsewhere: fit broadcasts rank 0's parameters
history = {FIT[optimizer]}
np.save(f"params{{rank}}.npy", net.params)
np.save(f"loss{{rank}}.npy", history["loss"])
""")
    assert result.returncode == 0, result.stderr

    ref = network(eval(OPTIMIZERS[optimizer], {"fastbp": fastbp}))
    X, Y = data()
    losses = []
    for _ in range(EPOCHS):  # Network.fit's loop: the network's generator draws each epoch's permutation
        order = ref._rng.permutation(N)
        Xe, Ye = X[order], Y[order]
        total = sum(ref.train_step(Xe[s:s + BATCH], Ye[s:s + BATCH]) * len(Xe[s:s + BATCH]) for s in range(0, N, BATCH))
        losses.append(total / N)
    assert ref.hyper[7] == EPOCHS * 4
    for rank in (0, 1):
        np.testing.assert_allclose(np.load(tmp_path / f"params{rank}.npy"), ref.params, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.load(tmp_path / f"loss{rank}.npy"), losses, rtol=1e-12)
    assert np.array_equal(np.load(tmp_path / "params0.npy"), np.load(tmp_path / "params1.npy"))


@needs_mpi
def test_seed_decides_the_shuffles_and_each_rank_takes_its_slice(tmp_path):
    """distributed.fit(seed=4): each epoch's permutation is numpy.random.default_rng(4)'s next, the same on every
    rank; of each global batch of b rows, rank r trains on rows ``order[start + b r // 2 : start + b (r + 1) // 2]``;
    the parameters follow tests/reference.py's loop on the whole batches."""
    result = run_mpi(tmp_path, PRELUDE + f"""
rng = np.random.default_rng(7)
X, Y = rng.normal(size=({N}, 5)), rng.normal(size=({N}, 3))
net = fastbp.Network([5, 8, 3], hidden="tanh", output="identity", loss="mse", optimizer=fastbp.SGD(lr=0.05), seed=3)
seen, step = [], distributed.train_step
def recording(net, Xs, Ys, comm, global_batch):
    seen.append(Xs.copy())
    return step(net, Xs, Ys, comm, global_batch=global_batch)
distributed.train_step = recording
distributed.fit(net, X, Y, comm, epochs={EPOCHS}, batch_size={BATCH}, seed=4)
np.save(f"params{{rank}}.npy", net.params)
np.save(f"rows{{rank}}.npy", np.concatenate(seen))
""")
    assert result.returncode == 0, result.stderr
    X, Y = data()
    layers = network(None).layers()  # the parameters seed 3 gives, rank 0's (fit broadcasts them)
    Ws, bs = [W.copy() for W, _ in layers], [b.copy() for _, b in layers]
    opt, order_rng, rows = ref.SGD(0.05), np.random.default_rng(4), {0: [], 1: []}
    for _ in range(EPOCHS):
        order = order_rng.permutation(N)
        for start in range(0, N, BATCH):
            b = min(BATCH, N - start)
            for r in (0, 1):
                rows[r].append(X[order[start + b * r // 2:start + b * (r + 1) // 2]])
            batch = order[start:start + b]
            _, dWs, dbs = ref.gradients(Ws, bs, "tanh", "identity", "mse", X[batch], Y[batch])
            opt.step(Ws + bs, dWs + dbs)
    want = np.concatenate([a.ravel() for pair in zip(Ws, bs) for a in pair])
    for r in (0, 1):
        np.testing.assert_array_equal(np.load(tmp_path / f"rows{r}.npy"), np.concatenate(rows[r]))
        np.testing.assert_allclose(np.load(tmp_path / f"params{r}.npy"), want, rtol=1e-12, atol=1e-12)


@needs_mpi
def test_a_failing_rank_ends_the_job_instead_of_hanging_it(tmp_path):
    result = run_mpi(tmp_path, PRELUDE + """
steps = 0
real_step = distributed.train_step

def failing_step(*args, **kwargs):
    global steps
    steps += 1
    if rank == 1 and steps > 3:
        raise RuntimeError("rank 1 fails on its 4th step")
    return real_step(*args, **kwargs)

distributed.train_step = failing_step
X, Y = np.ones((64, 2)), np.ones((64, 1))
net = fastbp.Network([2, 4, 1], seed=0)
distributed.fit(net, X, Y, comm, epochs=1000, batch_size=8)  # rank 0 would wait forever in the next Allreduce
print("finished", flush=True)
""", timeout=120)
    assert result.returncode != 0
    assert "rank 1 fails on its 4th step" in result.stderr
    assert "finished" not in result.stdout


@needs_mpi
def test_a_bad_shard_on_one_rank_raises_on_every_rank_and_updates_nothing(tmp_path):
    result = run_mpi(tmp_path, PRELUDE + """
net = fastbp.Network([3, 4, 2], optimizer=fastbp.Adam(), seed=0)
distributed.broadcast_parameters(net, comm)
X, Y = np.ones((4, 3)), np.zeros((4, 2))
distributed.train_step(net, X, Y, comm)  # one good step, so the optimizer state is not all zeros
before, hyper = net.flat.copy(), net.hyper.copy()
if rank == 1:
    X[2, 1] = np.nan
try:
    distributed.train_step(net, X, Y, comm)
except ValueError as exc:
    message = str(exc)
else:
    message = None
assert message is not None, "no ValueError"
assert ("NaN" in message) if rank == 1 else ("1 of 2 ranks" in message), message
assert np.array_equal(net.flat[0], before[0]) and np.array_equal(net.flat[2:], before[2:])
assert np.array_equal(net.hyper, hyper)
X[2, 1] = 1.0
distributed.train_step(net, X, Y, comm)  # the ranks are still in step afterwards
with open(f"ok{rank}", "w") as f:
    f.write(message)
""")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ok0").exists() and (tmp_path / "ok1").exists()


@needs_mpi
def test_map_ranks_gathers_results_in_item_order(tmp_path):
    result = run_mpi(tmp_path, PRELUDE + """
out = distributed.map_ranks(lambda x: (x * x, rank), list(range(11)) if rank == 0 else None, comm)
if rank == 0:
    assert [v for v, _ in out] == [x * x for x in range(11)], out
    assert [r for _, r in out] == [x % 2 for x in range(11)], out  # dealt round-robin
    print("ok", flush=True)
else:
    assert out is None
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_import_without_mpi4py_names_the_extra():
    code = ("import sys; sys.modules['mpi4py'] = None\n"  # None in sys.modules: "import mpi4py" raises ImportError
            "import fastbp\n"
            "try:\n    import fastbp.distributed\nexcept ImportError as exc:\n    print(exc)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install 'fastbp[mpi]'" in result.stdout
