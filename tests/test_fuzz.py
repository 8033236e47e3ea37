"""Bad-input fuzzing of every public entry point.

Each call either works correctly (the same result as for clean float64 input) or raises ValueError/TypeError (or
FloatingPointError, for finite but enormous targets whose loss overflows), and a rejected call leaves the parameters
bitwise unchanged. Nothing else may escape: no Numba typing error, no crash.
``--hypothesis-show-statistics`` prints how many inputs were tried per entry point.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastbp

SIZES = [3, 5, 2]
DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int8, np.uint8, np.bool_, np.complex128, object, "U3"]


@st.composite
def arrays(draw, rows=None, cols=None):
    """Arrays of any dtype and shape (near the valid ones), possibly non-contiguous, read-only, NaN or inf."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    rows = draw(st.sampled_from([0, 1, 4, 7])) if rows is None else rows
    shape = draw(st.sampled_from([(rows, cols or 3), (rows,), (rows, (cols or 3) + 1), (rows, cols or 3, 1), ()]))
    if dtype.kind == "O":
        arr = np.empty(shape, object)
        arr[...] = draw(st.sampled_from([1.5, "x", None]))
    elif dtype.kind == "U":
        arr = np.full(shape, "ab", dtype)
    else:
        arr = draw(hnp.arrays(dtype, shape, elements=hnp.from_dtype(dtype, allow_nan=True, allow_infinity=True)
                              if dtype.kind == "f" else None))
    layout = draw(st.sampled_from(["c", "strided", "fortran", "readonly", "list"]))
    if layout == "strided" and arr.ndim >= 1:
        big = np.repeat(arr, 2, axis=-1)
        arr = big[..., ::2]
    elif layout == "fortran":
        arr = np.asfortranarray(arr)
    elif layout == "readonly":
        arr = arr.copy()
        arr.setflags(write=False)
    elif layout == "list":
        return arr.tolist()
    return arr


def clean(value, dtype=np.float64):
    """The same input as a plain float64 array, if it is real and finite; else None."""
    try:
        arr = np.asarray(value)
    except Exception:
        return None
    if arr.dtype.kind not in "fiu" or not np.isfinite(arr.astype(np.float64)).all():
        return None
    return np.ascontiguousarray(arr, dtype)


def network():
    return fastbp.Network(SIZES, hidden="tanh", optimizer=fastbp.SGD(lr=0.1, momentum=0.5), seed=0)


def snapshot(net):
    return net.flat.tobytes() + net.hyper.tobytes()


def check_call(net, method, *args):
    """Call; on rejection, only ValueError/TypeError/FloatingPointError and nothing changed. Returns the result or
    None."""
    before = snapshot(net)
    try:
        return getattr(net, method)(*args)
    except (ValueError, TypeError, FloatingPointError):
        assert snapshot(net) == before
        return None


@given(arrays())
def test_fuzz_forward(X):
    net = network()
    out = check_call(net, "forward", X)
    X_clean = clean(X)
    if out is not None:
        np.testing.assert_allclose(out, network().forward(X_clean), rtol=1e-12)


@given(arrays(rows=4), arrays(rows=4, cols=2))
def test_fuzz_train_step(X, Y):
    net = network()
    loss = check_call(net, "train_step", X, Y)
    if loss is not None:
        ref = network()
        Y_clean = clean(Y)
        assert loss == ref.train_step(clean(X), Y_clean.reshape(-1, 2) if Y_clean.ndim == 1 else Y_clean)
        assert snapshot(net) == snapshot(ref)


@given(arrays(rows=4), arrays(rows=4, cols=2))
def test_fuzz_gradients_and_fit(X, Y):
    net = network()
    check_call(net, "gradients", X, Y)
    check_call(net, "fit", X, Y)


@given(arrays(rows=4), st.one_of(arrays(rows=4, cols=1), st.lists(st.integers(-3, 5), min_size=4, max_size=4)))
def test_fuzz_labels(X, labels):
    net = fastbp.Network([3, 4], output="softmax", loss="cross_entropy", seed=0)
    check_call(net, "train_step", X, labels)


@given(st.dictionaries(st.sampled_from(["0.weight", "0.bias", "2.weight", "2.bias", "1.weight", "x"]),
                       arrays(rows=5), min_size=0, max_size=5))
def test_fuzz_load_state_dict(sd):
    net = network()
    check_call(net, "load_state_dict", sd)


@given(st.fixed_dictionaries({}, optional={
    "sizes": st.one_of(st.lists(st.one_of(st.integers(-2, 4), st.floats(), st.text(max_size=2)), max_size=4),
                       st.integers(), st.none()),
    "hidden": st.one_of(st.sampled_from(["relu", "softmax", "RELU", ""]), st.integers()),
    "output": st.sampled_from(["softmax", "sigmoid", "identity", "swish"]),
    "loss": st.sampled_from(["mse", "bce", "cross_entropy", "huber", "nll"]),
    "dtype": st.sampled_from([np.float32, np.float64, np.int32, "float64", "f2", None, object]),
    "seed": st.one_of(st.integers(-5, 2**40), st.none(), st.floats()),
    "threads": st.one_of(st.integers(-1, 4), st.none()),
}))
def test_fuzz_construction(kwargs):
    kwargs.setdefault("sizes", SIZES)
    try:
        net = fastbp.Network(**kwargs)
    except (ValueError, TypeError):
        return
    net.forward(np.zeros((2, net.sizes[0])))  # a network that was built works


@given(arrays(rows=3), arrays(rows=3, cols=2))
def test_fuzz_population(X, Y):
    pop = fastbp.Population(2, SIZES, seed=0)
    before = pop.flats.tobytes() + pop.hypers.tobytes()
    for method, args in (("train_step", (np.stack([X, X]) if isinstance(X, np.ndarray) else X, Y)),
                         ("forward", (X,))):
        try:
            getattr(pop, method)(*args)
        except (ValueError, TypeError, FloatingPointError):
            assert pop.flats.tobytes() + pop.hypers.tobytes() == before


@pytest.mark.parametrize("rows", [1_000_000])
def test_huge_batch(rows):
    net = network()
    X = np.random.default_rng(0).normal(size=(rows, 3))
    P = net.forward(X)
    np.testing.assert_allclose(P[-5:], net.forward(X[-5:]), rtol=1e-12)
    loss = net.train_step(X, np.zeros((rows, 2)))
    assert np.isfinite(loss)


def test_hot_path_takes_strided_and_readonly_arrays():
    """After a checked batch, the hot path hands a same-shaped strided or read-only array straight to the kernel
    (Numba compiles that layout once): the results equal those for clean arrays."""
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(4, 6))[:, ::2], rng.normal(size=(4, 2))
    Y.setflags(write=False)
    net, ref = network(), network()
    net.train_step(np.ascontiguousarray(X), np.ascontiguousarray(Y))
    ref.train_step(np.ascontiguousarray(X), np.ascontiguousarray(Y))
    assert net.train_step(X, Y) == ref.train_step(np.ascontiguousarray(X), np.ascontiguousarray(Y))
    np.testing.assert_array_equal(net.forward(X), ref.forward(np.ascontiguousarray(X)))
    assert snapshot(net) == snapshot(ref)
