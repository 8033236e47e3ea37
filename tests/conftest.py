import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import fastbp

from . import reference as ref

# Hypothesis: 200 examples per property in CI (make test); HYPOTHESIS_PROFILE=quick for a fast local run.
settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                          derandomize=True)
settings.register_profile("quick", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                          derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The suite runs the generic kernels unless a test asks for compiled ones (tests/test_compiled.py, test_dispatch.py):
# every network compiled is a compilation of its own, and the suite must stay well inside CI's time. The environment
# variable carries the choice into the subprocesses tests start (examples, the docs build), which would otherwise
# start background builds that outlive the test.
fastbp.network.COMPILED_DEFAULT = False
os.environ["FASTBP_COMPILE"] = "off"

# Under NUMBA_DISABLE_JIT=1 (tests/test_interpreted.py, make coverage) the kernels run as Python on numpy scalars, which
# warn of the overflows and invalid values the compiled kernels meet silently and handle (the non-finite checks).
INTERPRETED = fastbp._jit.INTERPRETED
needs_jit = pytest.mark.skipif(INTERPRETED, reason="checks the compiler's own work (allocations, caches, dispatchers)")


def pytest_collection_modifyitems(items):
    if INTERPRETED:
        for item in items:
            item.add_marker(pytest.mark.filterwarnings("ignore:.* encountered in:RuntimeWarning"))


DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}
# Every (output, loss) pairing fastbp accepts.
PAIRINGS = [("sigmoid", "bce"), ("softmax", "cross_entropy")] + [
    (out, loss) for loss in ("mse", "huber") for out in ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax")]
HIDDEN = list(fastbp.activations.HIDDEN)


def make_data(sizes, n, output, loss, dtype, seed=0, labels=False):
    """Inputs and targets that suit the loss: probabilities for bce, one-hot rows (or labels) for cross_entropy."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    n_out = sizes[-1]
    if loss == "cross_entropy":
        y = rng.integers(0, n_out, n)
        return X, (y if labels else np.eye(n_out, dtype=dtype)[y])
    if loss == "bce":
        return X, rng.integers(0, 2, (n, n_out)).astype(dtype)
    return X, rng.normal(size=(n, n_out)).astype(dtype)


def ref_layers(net):
    """The network's parameters as lists of reference arrays (copies)."""
    return [W.copy() for W, _ in net.layers()], [b.copy() for _, b in net.layers()]


def ref_gradients(net, X, Y):
    Ws, bs = ref_layers(net)
    return ref.gradients(Ws, bs, net.hidden, net.output, net.loss, X, Y)


def finite_difference_error(net, X, Y, h=1e-6):
    """Relative error between the analytic gradient and central differences of the loss (float64)."""
    net.gradients(X, Y)
    analytic = net.grad.copy()
    numeric = np.empty_like(analytic)
    for k in range(net.n_params):
        saved = net.params[k]
        net.params[k] = saved + h
        up = net.evaluate(X, Y)
        net.params[k] = saved - h
        down = net.evaluate(X, Y)
        net.params[k] = saved
        numeric[k] = (up - down) / (2 * h)
    # Central differences carry ~eps |loss| / h = 2e-10 |loss| of rounding noise per component, so a gradient of
    # norm below 1e-2 is compared on that absolute scale (a wrong gradient is still off by its own size).
    return np.linalg.norm(analytic - numeric) / max(np.linalg.norm(numeric), 1e-2)


@pytest.fixture(scope="session")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture
def xor():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64)
    Y = np.array([[0], [1], [1], [0]], np.float64)
    return X, Y


def xor_network(seed=1):
    return fastbp.Network([2, 2, 1], hidden="sigmoid", output="sigmoid", loss="bce", optimizer=fastbp.SGD(lr=0.5),
                          seed=seed)
