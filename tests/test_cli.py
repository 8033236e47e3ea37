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
