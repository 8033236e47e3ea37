"""fastbp.onnx: every network, population member and estimator exported runs in ONNX Runtime to rounding of fastbp;
graphs of the family load back from whoever wrote them (fastbp, PyTorch's two exporters from committed files,
skl2onnx, hand-written MatMul + Add); anything else is a ValueError naming the node, and nothing is built."""

import math
import re
import warnings

import numpy as np
import pytest

import fastbp
from fastbp import activations as act
from fastbp import onnx as fonnx

from .golden import make_golden

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
reference = pytest.importorskip("onnx.reference")  # part of onnx: its evaluator, for what ONNX Runtime does not run
helper, numpy_helper, TP = onnx.helper, onnx.numpy_helper, onnx.TensorProto

TOL = {np.float32: dict(rtol=1e-6, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}
MIXED = [["relu", "tanh", "silu"], ["gelu", "elu", "softplus"], ["gelu_tanh", "sigmoid", "leaky_relu"]]


def run(model, **feeds):
    session = ort.InferenceSession(model.SerializeToString() if hasattr(model, "SerializeToString") else model,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


class Erf(reference.op_run.OpRun):
    """erf in the input's dtype (onnx's reference evaluator's own computes in float32)."""

    op_domain = ""

    def _run(self, x):
        return (np.vectorize(math.erf, otypes=[x.dtype])(x),)


def computed(model, **feeds):
    """The graph's outputs: ONNX Runtime's, or for a float64 graph with Erf (gelu), for which ONNX Runtime has no
    kernel, onnx's reference evaluator's."""
    if "Erf" in {n.op_type for n in model.graph.node} and model.graph.input[0].type.tensor_type.elem_type == TP.DOUBLE:
        return reference.ReferenceEvaluator(model, new_ops=[Erf]).run(None, feeds)
    return run(model, **feeds)


def close(got, want):
    """Equal to rounding: TOL's, atol taken relative to the largest output (a float32 network's outputs of 10 to 100
    round to 1e-5)."""
    tol = TOL[want.dtype.type]
    np.testing.assert_allclose(got, want, rtol=tol["rtol"], atol=tol["atol"] * max(1.0, np.abs(want).max()))


def inputs(n_in, dtype, rows=7, seed=0):
    return (np.random.default_rng(seed).normal(0, 2, (rows, n_in))).astype(dtype)


# ---- export ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("output", act.OUTPUT)
@pytest.mark.parametrize("hidden", act.HIDDEN)
def test_onnx_runtime_computes_forward(hidden, output, dtype):
    """Every activation x output x dtype: the graph checks in full, runs any batch size, equals forward to 1e-6
    (float32) or 1e-12 (float64), and loads back to the same parameters, bitwise. (A float64 gelu's graph runs in
    onnx's reference evaluator: ONNX Runtime has no float64 Erf.)"""
    net = fastbp.Network([5, 8, 7, 3], hidden=hidden, output=output, dtype=dtype, seed=3)
    model = net.to_onnx()
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17  # the documented default
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["output"]
    # The weights under state_dict's names, in PyTorch's layout (Gemm's transB), one activation node after each.
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert all(np.array_equal(weights[k], v) for k, v in net.state_dict().items())
    gemms = [n for n in model.graph.node if n.op_type == "Gemm"]
    assert len(gemms) == 3 and all(helper.get_attribute_value(a) == 1 for n in gemms for a in n.attribute)
    for rows in (1, 7, 64):
        X = inputs(5, dtype, rows, seed=rows)
        (got,) = computed(model, input=X)
        assert got.dtype == dtype and got.shape == (rows, 3)
        np.testing.assert_allclose(got, net.forward(X), **TOL[dtype])
    back = fonnx.load(model)
    assert (back.sizes, back.hidden, back.output, back.dtype) == (net.sizes, hidden, output, net.dtype)
    assert np.array_equal(back.params, net.params)


@pytest.mark.parametrize("opset", [fonnx.MIN_OPSET, 17, 20])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hidden", [[h] * 3 for h in act.HIDDEN[5:]] + MIXED, ids=",".join)
def test_every_activation_exports_at_every_opset(hidden, dtype, opset):
    """The activations added after the first five, and mixed networks, at opsets below and from Gelu's (20): the
    standard operator where ONNX Runtime has a kernel for the dtype (Gelu for float32 from opset 20, Elu and Softplus
    for float32), else the formula; over a range that reaches softplus's threshold and elu's saturation, the graph
    equals forward and loads back to the same network."""
    net = fastbp.Network([4, 9, 8, 7, 3], hidden=hidden, dtype=dtype, seed=2)
    model = net.to_onnx(opset=opset)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    float32 = dtype == np.float32
    assert ("Gelu" in ops) == (float32 and opset >= 20 and any(h.startswith("gelu") for h in hidden))
    assert ("Erf" in ops) == ("gelu" in hidden and not (float32 and opset >= 20))
    assert ("Elu" in ops) == ("elu" in hidden and float32) and ("Softplus" in ops) == ("softplus" in hidden and float32)
    assert ("Where" in ops) == (not float32 and bool({"elu", "softplus"} & set(hidden)))
    X = inputs(4, dtype, rows=64) * np.linspace(0.1, 12, 64, dtype=dtype)[:, None]
    (got,) = computed(model, input=X)
    close(got, net.forward(X))
    back = fonnx.load(model)
    assert back.activations == net.activations and np.array_equal(back.params, net.params)


@pytest.mark.parametrize("opset", [9, 12, 13, 17, "newest"])  # 9: MIN_OPSET, as documented
def test_every_opset_in_range_runs(opset):
    """Softmax's axis changes meaning at opset 13: both sides of it give the same probabilities."""
    opset = onnx.defs.onnx_opset_version() if opset == "newest" else opset
    net = fastbp.Network([4, 6, 3], hidden="leaky_relu", output="softmax", loss="cross_entropy", seed=1)
    model = net.to_onnx(opset=opset)
    assert model.opset_import[0].version == opset
    X = inputs(4, np.float64)
    try:
        (got,) = run(model, input=X)
    except Exception as exc:  # an onnx newer than the installed runtime
        if "opset" not in str(exc).lower():
            raise
        pytest.skip(f"ONNX Runtime {ort.__version__} does not run opset {opset}")
    np.testing.assert_allclose(got, net.forward(X), **TOL[np.float64])
    assert np.array_equal(fonnx.load(model).params, net.params)


def test_a_file_is_written_atomically_and_reads_back(tmp_path):
    net = fastbp.Network([3, 4, 2], hidden="tanh", dtype=np.float32, seed=0)
    path = tmp_path / "net.onnx"
    path.write_bytes(b"an older model")
    returned = fonnx.export(net, path)
    assert path.read_bytes() == returned.SerializeToString()
    assert [p.name for p in tmp_path.iterdir()] == ["net.onnx"]  # no temporary file left
    assert np.array_equal(fonnx.load(path).params, net.params)
    with open(path, "rb") as f:
        assert np.array_equal(fonnx.load(f).params, net.params)
    assert np.array_equal(fonnx.load(path.read_bytes()).params, net.params)


def test_a_population_member_exports_as_itself():
    pop = fastbp.Population(4, [3, 5, 2], hidden="tanh", output="sigmoid", loss="bce", dtype=np.float32, seed=2)
    X = np.random.default_rng(0).normal(size=(4, 6, 3)).astype(np.float32)
    pop.train_step(X, (X[..., :2] > 0).astype(np.float32))  # members now differ from their initialisation
    for m in (0, 3):
        (got,) = run(pop.member(m).to_onnx(), input=X[m])
        np.testing.assert_allclose(got, pop.forward(X)[m], **TOL[np.float32])


@pytest.mark.parametrize("bad, error", [
    (dict(model="a string"), TypeError), (dict(opset=8), ValueError), (dict(opset=10**3), ValueError),
    (dict(opset=17.0), TypeError), (dict(opset=True), TypeError)])
def test_export_refuses_what_it_cannot_write(bad, error, tmp_path):
    net = fastbp.Network([2, 3, 1])
    args = dict(model=net, path=tmp_path / "x.onnx", opset=fonnx.DEFAULT_OPSET) | bad
    with pytest.raises(error):
        fonnx.export(**args)
    assert list(tmp_path.iterdir()) == []


# ---- the scikit-learn estimators ---------------------------------------------------------------------------------

def classifier_targets(X):
    """Target kinds and their label dtypes: string, bool, integer, float, binary and multiclass, multilabel."""
    return {
        "strings-3": np.array(["ant", "bee", "cat"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0)],
        "bool-2": X[:, 0] > 0, "int-2": np.where(X[:, 0] > 0, 7, -1), "float-2": (X[:, 0] > 0) * 1.0,
        "int-4": np.digitize(X[:, 0], [-0.7, 0, 0.7]), "multilabel-3": (X[:, :3] > 0).astype(int)}


@pytest.mark.parametrize("target", list(classifier_targets(np.zeros((1, 3)))))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_classifier_exports_with_skl2onnx_outputs(target, dtype):
    from fastbp.sklearn import MLPClassifier

    X = inputs(4, dtype, rows=80)
    y = classifier_targets(X)[target]
    est = MLPClassifier((6,), max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged
        est.fit(X, y)
    model = est.to_onnx()
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["X"]
    assert [o.name for o in model.graph.output] == ["label", "probabilities"]
    for rows in (1, 80):
        label, probabilities = run(model, X=X[:rows])
        np.testing.assert_allclose(probabilities, est.predict_proba(X[:rows]), **TOL[dtype])
        want = est.predict(X[:rows])
        assert label.shape == want.shape and np.array_equal(label, want)
        assert label.dtype == (object if want.dtype.kind == "U" else want.dtype)
    skl2onnx = pytest.importorskip("skl2onnx")
    theirs = skl2onnx.to_onnx(est.to_sklearn(), X[:1].astype(np.float32), options={"zipmap": False})
    assert [o.name for o in theirs.graph.output] == ["label", "probabilities"]
    assert model.graph.output[0].type.tensor_type.elem_type == theirs.graph.output[0].type.tensor_type.elem_type \
        or target in ("bool-2", "float-2")  # skl2onnx's labels are int64 there; fastbp's predict's dtype


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_a_regressor_exports_its_predictions(n_outputs):
    from fastbp.sklearn import MLPRegressor

    X = inputs(4, np.float64, rows=50)
    y = X[:, :n_outputs].sum(axis=1) if n_outputs == 1 else X[:, :n_outputs]
    est = MLPRegressor(hidden_layer_sizes=(5,), activation="tanh", max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    model = est.to_onnx()
    assert [o.name for o in model.graph.output] == ["variable"]
    (got,) = run(model, X=X)
    np.testing.assert_allclose(got, est.predict(X).reshape(50, n_outputs), **TOL[np.float64])


def test_an_unfitted_estimator_is_refused():
    from sklearn.exceptions import NotFittedError

    from fastbp.sklearn import MLPClassifier

    with pytest.raises(NotFittedError):
        MLPClassifier().to_onnx()


def test_skl2onnx_converts_pipelines_holding_fastbp_estimators():
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fastbp.sklearn import MLPClassifier, MLPRegressor

    fonnx.register_skl2onnx()
    X = inputs(4, np.float64, rows=60) + 3
    y = classifier_targets(X - 3)["strings-3"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = make_pipeline(StandardScaler(), MLPClassifier((6,), max_iter=30, random_state=0)).fit(X, y)
        reg = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(6,), max_iter=30)).fit(X, X[:, 0])
    label, probabilities = run(skl2onnx.to_onnx(clf, X[:1].astype(np.float32), options={"zipmap": False}),
                               X=X.astype(np.float32))
    np.testing.assert_allclose(probabilities, clf.predict_proba(X), rtol=1e-4, atol=1e-5)  # a float32 graph
    assert np.array_equal(label, clf.predict(X))
    for options in ({"zipmap": True}, {"zipmap": "columns"}, {"zipmap": False, "output_class_labels": True}):
        outputs = run(skl2onnx.to_onnx(clf, X[:1].astype(np.float32), options=options), X=X.astype(np.float32))
        assert np.array_equal(outputs[0], clf.predict(X)), options
    (variable,) = run(skl2onnx.to_onnx(reg, X[:1].astype(np.float32)), X=X.astype(np.float32))
    np.testing.assert_allclose(variable.ravel(), reg.predict(X), rtol=1e-4, atol=1e-4)


# ---- import ----------------------------------------------------------------------------------------------------

TORCH_GRAPHS = np.load(make_golden.ONNX_PATH)
TORCH_NUMBERS = np.load(make_golden.PATH)


@pytest.mark.parametrize("key", [k for k in TORCH_GRAPHS.files if k != "torch_version"])
def test_graphs_pytorch_exported_load(key):
    """PyTorch's graphs of nn.Sequential (both exporters, every hidden activation and mixed network x last module x
    dtype, committed with its outputs; those with gelu at opset 17 too, as formulas): the network computes PyTorch's
    numbers, as ONNX Runtime does."""
    exporter, case = key.split("/", 1)
    X, want = TORCH_NUMBERS[f"{case}/in/X"], TORCH_NUMBERS[f"{case}/out/forward"]
    _, hidden, output, dtype = case.split("/")
    model = TORCH_GRAPHS[key].tobytes()
    ops = {n.op_type for n in onnx.load_from_string(model).graph.node}
    net = fonnx.load(model)
    assert (net.activations, net.dtype.name) == (
        (*make_golden.hidden_names(hidden, len(net.sizes) - 2), output), dtype)
    if "gelu" in hidden:  # Gelu from opset 20, its formulas before
        assert ("Gelu" in ops) != exporter.endswith("-17")
    close(net.forward(X), want)
    # ONNX Runtime has no float64 kernel for LeakyRelu (its alpha is a float32 attribute: fastbp takes it as 0.01), Elu,
    # Softplus or Erf (gelu's), and its float64 Gelu computes with float32 constants (1e-9 off).
    if not (dtype == "float64" and ({"leaky_relu", "elu", "softplus", "gelu"} & set(net.activations) or "Gelu" in ops)):
        close(run(model, x=X)[0], want)


@pytest.mark.parametrize("kind, zipmap", [(kind, zipmap) for kind in ("binary", "multiclass", "multilabel")
                                          for zipmap in (True, False)] + [("regressor", False)])
def test_graphs_skl2onnx_writes_load(kind, zipmap):
    """scikit-learn's own MLP through skl2onnx (MatMul + Add, a Cast of the input, its classifier and regressor
    tails, ZipMap or not): the network computes the graph's probabilities or values."""
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn import neural_network

    X = inputs(4, np.float64, rows=40)
    y = {"binary": X[:, 0] > 0, "multiclass": np.digitize(X[:, 0], [-1, 1]),
         "multilabel": (X[:, :3] > 0).astype(int), "regressor": X[:, 0]}[kind]
    est = (neural_network.MLPRegressor if kind == "regressor" else neural_network.MLPClassifier)(
        hidden_layer_sizes=(5, 4), activation="tanh", max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    options = None if zipmap or kind == "regressor" else {"zipmap": False}  # a regressor has no ZipMap
    model = skl2onnx.to_onnx(est, X[:1].astype(np.float32), options=options)
    net = fonnx.load(model)
    assert net.dtype == np.float32
    want = est.predict(X).reshape(40, 1) if kind == "regressor" else est.predict_proba(X)
    np.testing.assert_allclose(net.forward(X), want, rtol=1e-5, atol=1e-6)
    if not zipmap:
        np.testing.assert_allclose(net.forward(X), run(model, X=X.astype(np.float32))[-1], **TOL[np.float32])


def graph(nodes, initializers, inputs=(("x", TP.DOUBLE, ["N", 3]),), outputs=(("y", TP.DOUBLE, ["N", 2]),),
          opset=17):
    """A hand-written model of nodes (op, inputs, output, attributes) and named initializer arrays."""
    made = [helper.make_node(op, list(ins), [out], name=f"n{i}", **attrs)
            for i, (op, ins, out, attrs) in enumerate(nodes)]
    return helper.make_model(helper.make_graph(
        made, "g", [helper.make_tensor_value_info(*i) for i in inputs],
        [helper.make_tensor_value_info(*o) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()]),
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("ai.onnx.ml", 3)], ir_version=8)


RNG = np.random.default_rng(5)
W1, B1, W2, B2 = RNG.normal(size=(3, 4)), RNG.normal(size=4), RNG.normal(size=(4, 2)), RNG.normal(size=2)
KERAS = dict(nodes=[("MatMul", ["x", "W1"], "h1", {}), ("Add", ["h1", "B1"], "z1", {}), ("Relu", ["z1"], "a1", {}),
                    ("MatMul", ["a1", "W2"], "h2", {}), ("Add", ["B2", "h2"], "y", {})],
             initializers=dict(W1=W1, B1=B1, W2=W2, B2=B2))


def numpy_forward(X):
    return np.maximum(X @ W1 + B1, 0) @ W2 + B2


def test_a_keras_style_matmul_add_graph_loads():
    X = inputs(3, np.float64)
    net = fonnx.load(graph(**KERAS))
    assert (net.sizes, net.hidden, net.output, net.loss) == ([3, 4, 2], "relu", "identity", "mse")
    np.testing.assert_allclose(net.forward(X), numpy_forward(X), **TOL[np.float64])


def test_a_graph_with_an_activation_per_layer_loads():
    model = graph([("Gemm", ["x", "W1", "B1"], "z1", {}), ("Relu", ["z1"], "a1", {}),
                   ("Gemm", ["a1", "W3", "B3"], "z2", {}), ("Tanh", ["z2"], "a2", {}), ("Gemm", ["a2", "W2", "B2"], "y", {})],
                  dict(W1=W1, B1=B1, W3=RNG.normal(size=(4, 4)), B3=np.zeros(4), W2=W2, B2=B2))
    net = fonnx.load(model)
    assert (net.sizes, net.hidden, net.activations) == ([3, 4, 4, 2], ("relu", "tanh"), ("relu", "tanh", "identity"))
    X = inputs(3, np.float64)
    np.testing.assert_allclose(net.forward(X), run(model, x=X)[0], **TOL[np.float64])


@pytest.mark.parametrize("name, nodes, constants", [
    ("silu", [("Sigmoid", ["z1"], "s", {}), ("Mul", ["s", "z1"], "a1", {})], {}),
    ("gelu_tanh", [("Pow", ["z1", "three"], "z3", {}), ("Mul", ["z3", "k"], "kz3", {}), ("Add", ["kz3", "z1"], "in", {}),
                   ("Mul", ["in", "c"], "cin", {}), ("Tanh", ["cin"], "t", {}), ("Add", ["one", "t"], "p", {}),
                   ("Mul", ["half", "z1"], "hz", {}), ("Mul", ["hz", "p"], "a1", {})],
     dict(three=3.0, k=0.044715, c=math.sqrt(2 / math.pi), one=1.0, half=0.5)),
    ("softplus", [("Exp", ["z1"], "e", {}), ("Add", ["one", "e"], "p", {}), ("Log", ["p"], "l", {}),
                  ("Less", ["twenty", "z1"], "big", {}), ("Where", ["big", "z1", "l"], "a1", {})],
     dict(one=1.0, twenty=20.0)),
    ("elu", [("Greater", ["z1", "zero"], "pos", {}), ("Exp", ["z1"], "e", {}), ("Sub", ["e", "one"], "em1", {}),
             ("Where", ["pos", "z1", "em1"], "a1", {})], dict(zero=0.0, one=1.0))], ids=lambda v: v if isinstance(v, str) else "")
def test_activation_formulas_load_in_any_order(name, nodes, constants):
    """Formulas as another writer may order them (products and sums in any order and grouping, Pow for a cube, after
    MatMul + Add): the activation is read and the network computes the graph."""
    model = graph(activation(nodes), KERAS["initializers"] | constants)
    X = inputs(3, np.float64) * 3
    net = fonnx.load(model)
    assert net.activations == (name, "identity")
    np.testing.assert_allclose(net.forward(X), run(model, x=X)[0], **TOL[np.float64])


@pytest.mark.parametrize("variant", ["transB=0", "alpha-beta", "no-bias", "identities", "matmul-no-add",
                                     "bias-(1,n)", "prelu"])
def test_gemm_variants_load_to_the_same_function(variant):
    """Each way of writing the same layers: the network computes the graph (ONNX Runtime's numbers)."""
    W2T = np.ascontiguousarray(W2.T)
    first = [("Gemm", ["x", "W1", "B1"], "z1", {}), ("Tanh", ["z1"], "a1", {})]
    second = ("Gemm", ["a1", "W2T", "B2"], "y", dict(transB=1))
    inits = dict(W1=W1, B1=B1, W2T=W2T, B2=B2)
    nodes = {
        "transB=0": first + [("Gemm", ["a1", "W2", "B2"], "y", {})],
        "alpha-beta": first + [("Gemm", ["a1", "W2T", "B2"], "y", dict(transB=1, alpha=0.5, beta=-2.0))],
        "no-bias": first + [("Gemm", ["a1", "W2T"], "y", dict(transB=1))],
        "identities": [("Identity", ["x"], "x1", {}), ("Gemm", ["x1", "W1", "B1"], "z1", {}),
                       ("Identity", ["z1"], "z2", {}), ("Tanh", ["z2"], "a1", {}), second],
        "matmul-no-add": [("MatMul", ["x", "W1"], "z1", {}), ("Tanh", ["z1"], "a1", {}), second],
        "bias-(1,n)": [("Gemm", ["x", "W1", "B1row"], "z1", {}), ("Tanh", ["z1"], "a1", {}), second],
        "prelu": [("Gemm", ["x", "W1", "B1"], "z1", {}), ("PRelu", ["z1", "slope"], "a1", {}), second],
    }[variant]
    inits |= dict(W2=W2, B1row=B1.reshape(1, 4), slope=np.array([0.01]))
    model = graph(nodes, {k: v for k, v in inits.items() if any(k in n[1] for n in nodes)})
    X = inputs(3, np.float64)
    np.testing.assert_allclose(fonnx.load(model).forward(X), run(model, x=X)[0], **TOL[np.float64])


def test_a_cast_input_sets_the_dtype_and_loss_and_dtype_can_be_chosen():
    nodes = [("Cast", ["x"], "xf", dict(to=TP.FLOAT)), ("Gemm", ["xf", "W", "b"], "z", {}),
             ("Sigmoid", ["z"], "y", {})]
    model = graph(nodes, dict(W=W1[:, :2].astype(np.float32), b=B1[:2].astype(np.float32)),
                  outputs=(("y", TP.FLOAT, ["N", 2]),))
    net = fonnx.load(model)
    assert (net.dtype, net.output, net.loss) == (np.float32, "sigmoid", "bce")
    X = inputs(3, np.float64)
    np.testing.assert_allclose(net.forward(X), run(model, x=X)[0], **TOL[np.float32])
    net = fonnx.load(model, loss="mse", dtype=np.float64, optimizer=fastbp.Adam(0.1), seed=4)
    assert (net.dtype, net.loss, net.optimizer.lr, net.seed) == (np.float64, "mse", 0.1, 4)


def swap(nodes, i, new):
    return nodes[:i] + [new] + nodes[i + 1:]


K = KERAS["nodes"]
GELU = [("Div", ["z1", "sqrt2"], "u", {}), ("Erf", ["u"], "e", {}), ("Add", ["e", "one"], "p", {}),
        ("Mul", ["z1", "p"], "q", {}), ("Mul", ["q", "half"], "a1", {})]  # z (1 + erf(z / sqrt2)) / 2


def activation(nodes):
    """KERAS's nodes with these computing its first layer's activation (z1 to a1) in place of its Relu."""
    return K[:2] + nodes + K[3:]


UNSUPPORTED = {  # name: (model, a piece of the message)
    "conv": (graph(swap(K, 0, ("Conv", ["x", "W1"], "h1", {})), KERAS["initializers"]), "'n0' (Conv)"),
    "second input": (graph(swap(K, 1, ("Add", ["h1", "x2"], "z1", {})), KERAS["initializers"],
                           inputs=(("x", TP.DOUBLE, ["N", 3]), ("x2", TP.DOUBLE, ["N", 4]))), "2 inputs"),
    "skip connection": (graph(swap(K, 3, ("Add", ["a1", "z1"], "h2", {})) + [], KERAS["initializers"]),
                        "'n3' (Add) takes 2 computed tensors"),
    "weight from a node": (graph([("Constant", [], "W1c", dict(value=numpy_helper.from_array(W1)))]
                                 + swap(K, 0, ("MatMul", ["x", "W1c"], "h1", {})), KERAS["initializers"]),
                           "(MatMul) takes 2 computed tensors"),
    "elu's alpha": (graph(swap(K, 2, ("Elu", ["z1"], "a1", dict(alpha=0.5))), KERAS["initializers"]),
                    "fastbp's elu has alpha 1.0, the graph's is 0.5"),
    "softplus of beta 2": (graph(activation([("Mul", ["z1", "two"], "bz", {}), ("Softplus", ["bz"], "s", {}),
                                             ("Div", ["s", "two"], "a1", {})]), KERAS["initializers"] | dict(two=2.0)),
                           "'n2' (Mul): it ends no formula of an activation"),
    "softplus of another threshold": (graph(activation([
        ("Softplus", ["z1"], "s", {}), ("Greater", ["z1", "ten"], "big", {}), ("Where", ["big", "z1", "s"], "a1", {})]),
        KERAS["initializers"] | dict(ten=10.0)), "(Where): it ends no formula of an activation"),
    "a Sigmoid times another tensor": (graph(activation([
        ("Relu", ["z1"], "r", {}), ("Sigmoid", ["z1"], "s", {}), ("Mul", ["r", "s"], "a1", {})]), KERAS["initializers"]),
        "'n4' (Mul) takes 2 computed tensors"),
    "gelu of another constant": (graph(activation(GELU), KERAS["initializers"] | dict(sqrt2=1.5, one=1.0, half=0.5)),
                                 "(Mul): it ends no formula of an activation"),
    "gelu's float32 constants in a float64 graph": (graph(  # Constant nodes, as PyTorch's TorchScript exporter writes
        [("Constant", [], k, dict(value=numpy_helper.from_array(np.array(v, np.float32))))
         for k, v in dict(sqrt2=math.sqrt(2), one=1, half=0.5).items()] + activation(GELU), KERAS["initializers"]),
        "it ends no formula of an activation fastbp computes (in float64)"),
    "an unknown operator": (graph(swap(K, 2, ("Selu", ["z1"], "a1", {})), KERAS["initializers"]),
                            "fastbp does not read node 'n2' (Selu); it reads Gemm"),
    "two activations in a row": (graph(K[:3] + [("Tanh", ["a1"], "t1", {})] + swap(K[3:], 0, (
        "MatMul", ["t1", "W2"], "h2", {})), KERAS["initializers"]), "'n3' (Tanh) does not follow a dense layer"),
    "leaky slope": (graph(swap(K, 2, ("LeakyRelu", ["z1"], "a1", dict(alpha=0.2))), KERAS["initializers"]),
                    "slope 0.01"),
    "softmax in the middle": (graph(swap(K, 2, ("Softmax", ["z1"], "a1", {})), KERAS["initializers"]),
                              "softmax comes before the last layer"),
    "softmax over the batch": (graph(K + [("Softmax", ["y"], "p", dict(axis=0))], KERAS["initializers"],
                                     outputs=(("p", TP.DOUBLE, ["N", 2]),)), "axis 0"),
    "weights from the left": (graph(swap(K, 0, ("MatMul", ["W1T", "x"], "h1", {})),
                                    KERAS["initializers"] | dict(W1T=np.zeros((4, 5)))), "from the left"),
    "a last reshape to another shape": (graph(K + [("Reshape", ["y", "shape"], "r", {})],
                                              KERAS["initializers"] | dict(shape=np.array([-1, 1])),
                                              outputs=(("r", TP.DOUBLE, ["N", 1]),)), "reshapes"),
    "a float16 output": (graph([("Cast", ["x"], "h", dict(to=TP.FLOAT16)), ("MatMul", ["h", "W"], "y", {})],
                               dict(W=W1.astype(np.float16)), outputs=(("y", TP.FLOAT16, ["N", 4]),)), "float16"),
    "integer input": (graph(K, KERAS["initializers"], inputs=(("x", TP.INT64, ["N", 3]),)), "not a float32"),
    "3-D input": (graph(K, KERAS["initializers"], inputs=(("x", TP.DOUBLE, ["N", 5, 3]),)), "(batch, features)"),
    "another domain": (graph(K + [("Scaler", ["y"], "s", dict(domain="ai.onnx.ml", offset=[0.0, 0.0]))],
                             KERAS["initializers"], outputs=(("s", TP.FLOAT, ["N", 2]),)), "domain 'ai.onnx.ml'"),
    "two float outputs": (graph(K, KERAS["initializers"], outputs=(("y", TP.DOUBLE, ["N", 2]),
                                                                    ("a1", TP.DOUBLE, ["N", 4]))), "2 float outputs"),
    "a mixed-dtype initializer": (graph(K, KERAS["initializers"] | dict(B2=B2.astype(np.float32))), "float32"),
    "NaN weights": (graph(K, KERAS["initializers"] | dict(W2=np.full((4, 2), np.nan))), "NaN"),
    "an output of no node": (graph([], dict(y=np.zeros((1, 2)))), "does not depend on its input"),
    "no float output": (graph(K + [("ArgMax", ["y"], "label", dict(axis=1))], KERAS["initializers"],
                              outputs=(("label", TP.INT64, ["N", 1]),)), "0 float outputs"),
    "an Add after a Gemm": (graph([("Gemm", ["x", "W1", "B1"], "z1", {}), ("Add", ["z1", "B1"], "y", {})],
                                  KERAS["initializers"], outputs=(("y", TP.DOUBLE, ["N", 4]),)), "(Add)"),
    "[1 - p, p] of another constant": (graph(swap(K, 4, ("Add", ["h2", "B2"], "z2", {})) + [
        ("Sigmoid", ["z2"], "p", {}), ("Sub", ["half", "p"], "q", {}), ("Concat", ["q", "p"], "y", dict(axis=1))],
        KERAS["initializers"] | dict(half=np.array(0.5))), "(Concat) takes 2 computed tensors"),
    "[1 - p, p] over the rows": (graph(swap(K, 4, ("Add", ["h2", "B2"], "z2", {})) + [
        ("Sigmoid", ["z2"], "p", {}), ("Sub", ["one", "p"], "q", {}), ("Concat", ["q", "p"], "y", dict(axis=0))],
        KERAS["initializers"] | dict(one=np.array(1.0))), "(Concat) takes 2 computed tensors"),
}


@pytest.mark.parametrize("name", list(UNSUPPORTED))
def test_graphs_outside_the_family_are_refused_naming_what(name, monkeypatch):
    model, words = UNSUPPORTED[name]
    built = []
    monkeypatch.setattr(fastbp.Network, "_init_params", lambda self: built.append(self))
    with pytest.raises(ValueError, match=re.escape(words)):
        fonnx.load(model)
    assert built == []  # no network was started


@pytest.mark.parametrize("content", [b"", b"\x00\x01not a protobuf\xff" * 9, "truncated"])
def test_unreadable_files_are_a_value_error(content, tmp_path):
    if content == "truncated":
        content = fastbp.Network([3, 4, 2]).to_onnx().SerializeToString()[:-7]
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="ONNX model"):
        fonnx.load(path)
    with pytest.raises(FileNotFoundError):
        fonnx.load(tmp_path / "missing.onnx")


def test_the_benchmarks_onnx_runtime_peer_computes_fastbps_forward():
    """``python -m fastbp bench`` and asv time ONNX Runtime on the case's own network and batch: the same numbers."""
    from fastbp import bench

    case = bench.CASES["policy-batch"]
    peer, ours = bench.IMPLS["onnxruntime"](case), bench.FastbpImpl(case)  # the peer times its thread counts
    np.testing.assert_allclose(peer.forward(), ours.forward(), **TOL[np.float32])
    assert not hasattr(peer, "train_step")  # inference only: the other ops leave it out
