"""The command line, end to end, and the numpy baseline it compares with."""

import subprocess
import sys

import numpy as np
import pytest

import fastbp
from fastbp.baseline import NumpyMLP

from .conftest import TOL, make_data


def test_demo_runs():
    out = subprocess.run([sys.executable, "-m", "fastbp", "demo"], capture_output=True, text=True, check=True).stdout
    assert "0 1    1" in out and "held-out accuracy" in out and "speed-up" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("  0 ") or line.startswith("  1 ")]
    assert [int(r[-1]) for r in rows] == [0, 1, 1, 0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sizes, hidden, output, loss", [
    ([2, 2, 1], "sigmoid", "sigmoid", "bce"), ([8, 16, 16, 2], "tanh", "identity", "mse"),
    ([12, 16, 5], "relu", "softmax", "cross_entropy")])
def test_baseline_trains_like_fastbp(dtype, sizes, hidden, output, loss):
    """The benchmarks compare like with like: the numpy baseline takes the same steps as fastbp."""
    net = fastbp.Network(sizes, hidden=hidden, output=output, loss=loss, optimizer=fastbp.SGD(lr=0.1), dtype=dtype,
                         seed=0)
    base = NumpyMLP(net, lr=0.1)
    X, Y = make_data(sizes, 8, output, loss, dtype)
    for _ in range(3):
        np.testing.assert_allclose(base.train_step(X, Y), net.train_step(X, Y), **TOL[dtype])
    np.testing.assert_allclose(base.forward(X), net.forward(X), **TOL[dtype])
    for (W, b), Wt, bb in zip(net.layers(), base.Ws, base.bs):
        np.testing.assert_allclose(Wt.T, W, **TOL[dtype])
        np.testing.assert_allclose(bb, b, **TOL[dtype])


def test_bench_sweeps_thread_counts():
    """``python -m fastbp bench --threads 1 2``: each case at each count, fastbp's network limited to it; a count
    above Numba's is refused with what to set."""
    import numba

    from fastbp import bench

    lines = []
    result = bench.run(["xor"], ["train_step"], threads=[1, 2], quick=True, peers=(), log=lines.append)
    rows = [(r["case"], r["op"], r["threads"]) for r in result["results"]]
    assert rows == [("xor", "train_step", 1), ("xor", "train_step (@njit loop)", 1),
                    ("xor", "train_step", 2), ("xor", "train_step (@njit loop)", 2)]
    assert [line.split()[:2] for line in lines if line.startswith("xor")] == [["xor", "x1"]] * 2 + [["xor", "x2"]] * 2
    assert set(result["plans"]) == {"xor x1", "xor x2"}
    too_many = numba.config.NUMBA_NUM_THREADS + 1
    with pytest.raises(ValueError, match=f"set NUMBA_NUM_THREADS to at least {too_many}"):
        bench.run(["xor"], ["train_step"], threads=[too_many], quick=True, peers=())


def test_bench_one_row_cases_time_the_step_without_a_gradient_row():
    """A one-row case's train step is timed also with ``SGD(keep_grad=False)``, in the same rounds, and reported as
    its own row against the same numpy time; a case of more rows has no such row."""
    from fastbp import bench

    result = bench.run(["policy-online", "xor"], ["train_step"], quick=True, peers=(), log=lambda line: None)
    rows = {(r["case"], r["op"]): r for r in result["results"]}
    assert list(rows) == [("policy-online", "train_step"), ("policy-online", "train_step (no grad)"),
                          ("policy-online", "train_step (@njit loop)"), ("xor", "train_step"),
                          ("xor", "train_step (@njit loop)")]
    plain, nograd = rows["policy-online", "train_step"], rows["policy-online", "train_step (no grad)"]
    assert nograd["us"]["numpy"] == plain["us"]["numpy"] and "fastbp-nograd" not in plain["us"]
    assert nograd["us"]["fastbp"] != plain["us"]["fastbp"]
