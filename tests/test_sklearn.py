"""fastbp.sklearn: the same arithmetic as scikit-learn's MLP step for step, the same accuracy, conversions both ways,
errors, pickling and refitting (scikit-learn's estimator checks are in test_sklearn_checks.py)."""

import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn", minversion="1.6")
from sklearn import neural_network as skn  # noqa: E402
from sklearn.datasets import load_digits, make_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import threadpoolctl  # noqa: E402 (scikit-learn's dependency)

from fastbp import sklearn_training  # noqa: E402
from fastbp.kernels import estimator as K  # noqa: E402
from fastbp.sklearn import MLPClassifier, MLPRegressor, from_sklearn  # noqa: E402

OURS = {skn.MLPClassifier: MLPClassifier, skn.MLPRegressor: MLPRegressor}

def _data(kind, n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = {"multiclass": lambda: rng.integers(0, 3, n), "binary": lambda: rng.integers(0, 2, n),
         "multilabel": lambda: rng.integers(0, 2, (n, 3)),
         "regression": lambda: X @ rng.normal(size=(5, 2)) + 0.1 * rng.normal(size=(n, 2))}[kind]()
    return X, y, rng.uniform(0.2, 2.0, n)


def _pair(kind, **params):
    """(ours, scikit-learn's) with the same parameters."""
    theirs = (skn.MLPRegressor if kind == "regression" else skn.MLPClassifier)(**params)
    return OURS[type(theirs)](**params, compiled=False), theirs


def _fit_both(pair, X, y, sample_weight=None, method="fit"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for est in pair:
            getattr(est, method)(X, y, sample_weight=sample_weight)


def _assert_same_weights(ours, theirs, rtol):
    assert len(ours.coefs_) == len(theirs.coefs_)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)


SOLVERS = {"adam": dict(solver="adam"), "sgd": dict(solver="sgd"),
           "sgd-invscaling": dict(solver="sgd", learning_rate="invscaling", power_t=0.25),
           # tol=10 counts every epoch as no improvement: the rate is divided by 5 after every second epoch
           "sgd-adaptive": dict(solver="sgd", learning_rate="adaptive", tol=10.0, n_iter_no_change=1),
           "sgd-plain-momentum": dict(solver="sgd", nesterovs_momentum=False),
           "sgd-no-momentum": dict(solver="sgd", momentum=0.0)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel", "regression"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_training_matches_sklearn_step_for_step(solver, kind, weighted, dtype):
    """The same initial weights from random_state, then 4 epochs of 4 shuffled minibatches with alpha > 0: the same
    weights, loss curve and counters as scikit-learn's, to rounding (so the same loss normalisation, L2 term, sample
    weighting, optimizer arithmetic, schedules and shuffling)."""
    X, y, w = _data(kind)
    X = X.astype(dtype)
    pair = _pair(kind, hidden_layer_sizes=(7, 4), alpha=0.05, batch_size=16, max_iter=4, random_state=0,
                 learning_rate_init=0.02, **SOLVERS[solver])
    _fit_both(pair, X, y, w if weighted else None)
    ours, theirs = pair
    rtol = 1e-9 if dtype == np.float64 else 1e-4
    _assert_same_weights(ours, theirs, rtol)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=rtol)
    assert (ours.n_iter_, ours.t_, ours.out_activation_, ours.n_layers_, ours.n_outputs_) == \
        (theirs.n_iter_, theirs.t_, theirs.out_activation_, theirs.n_layers_, theirs.n_outputs_)
    assert ours._no_improvement_count == theirs._no_improvement_count
    if solver.startswith("sgd"):  # the rate the next epoch would use (adaptive: divided by 5 on a plateau)
        assert ours._opt[K.LR] == pytest.approx(theirs._optimizer.learning_rate, rel=1e-12)


@pytest.mark.parametrize("solver, params", [
    ("sgd-adaptive", dict(max_iter=30)),  # rates divided by 5 until "Learning rate too small. Stopping."
    ("adam", dict(early_stopping=True, validation_fraction=0.25, n_iter_no_change=2, tol=10.0, max_iter=10))])
def test_verbose_prints_what_sklearn_prints(capsys, solver, params):
    X, y, _ = _data("multiclass")
    printed = []
    for est in _pair("multiclass", hidden_layer_sizes=(4,), random_state=0, verbose=True, learning_rate_init=0.02,
                     **{**SOLVERS[solver], **params}):
        _fit_both((est,), X, y)
        printed.append(capsys.readouterr().out)
    assert printed[0] == printed[1] and printed[0].endswith("Stopping.\n")


@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression"])
def test_one_step_matches_sklearn_exactly_on_the_compiled_kernels(kind):
    """One full-batch step on the kernels compiled for the network (the default outside the tests, whose conftest
    picks the generic ones): scikit-learn's weights to 1e-12. (Weighted batches run the generic weighted kernels.)"""
    X, y, _ = _data(kind)
    theirs = (skn.MLPRegressor if kind == "regression" else skn.MLPClassifier)(
        hidden_layer_sizes=(6,), alpha=0.1, batch_size=60, max_iter=1, random_state=1)
    ours = OURS[type(theirs)](**theirs.get_params(), compiled=True)
    _fit_both((ours, theirs), X, y)
    assert ours.network_.dispatch.tier == "compiled"
    _assert_same_weights(ours, theirs, 1e-12)


@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel", "regression"])
def test_lbfgs_matches_sklearn(kind):
    X, y, w = _data(kind)
    pair = _pair(kind, solver="lbfgs", hidden_layer_sizes=(5,), alpha=0.1, max_iter=15, random_state=0)
    _fit_both(pair, X, y, w)
    ours, theirs = pair
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=1e-6)
    _assert_same_weights(ours, theirs, 1e-5)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_lbfgs_keeps_blas_to_one_thread_unless_its_layers_run_on_blas(monkeypatch):
    """L-BFGS runs with BLAS on one thread (sklearn_training.fit_lbfgs: else OpenBLAS's spinning threads starve the
    kernels' own), but where the gradient's layers are BLAS's own; the caller's limit is back after the fit."""
    def blas_threads():
        return max((pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"),
                   default=0)

    seen, minimize = [], sklearn_training.scipy.optimize.minimize
    monkeypatch.setattr(sklearn_training.scipy.optimize, "minimize",
                        lambda *args, **kwargs: seen.append(blas_threads()) or minimize(*args, **kwargs))
    X, y, _ = _data("multiclass")
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        outside = blas_threads()
        if outside < 2:
            pytest.skip(f"needs a BLAS of two threads or more, found {outside}")
        for width in (5, 100):  # 60 rows x 5 x 100 multiply-adds run on BLAS, 60 x 5 x 5 do not
            MLPClassifier(solver="lbfgs", hidden_layer_sizes=(width,), max_iter=5, compiled=False).fit(X, y)
            assert blas_threads() == outside
    assert seen == [1, outside]


@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_early_stopping_and_partial_fit_match_sklearn(kind):
    X, y, _ = _data(kind, n=120)
    pair = _pair(kind, hidden_layer_sizes=(8,), early_stopping=True, validation_fraction=0.25, n_iter_no_change=3,
                 max_iter=40, random_state=3, learning_rate_init=0.01)
    _fit_both(pair, X, y)
    ours, theirs = pair
    assert ours.n_iter_ == theirs.n_iter_ == len(ours.validation_scores_)
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=1e-9)
    assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_, rel=1e-9)
    _assert_same_weights(ours, theirs, 1e-9)  # the best epoch's weights, restored

    pair = _pair(kind, hidden_layer_sizes=(8,), solver="sgd", random_state=3)
    extra = {} if kind == "regression" else {"classes": np.unique(y)}
    for start in (0, 40, 80):
        for est in pair:
            est.partial_fit(X[start:start + 40], y[start:start + 40], **extra)
        extra = {}
    _assert_same_weights(*pair, 1e-9)


def test_predictions_and_conversions_both_ways():
    X, y, _ = _data("multiclass")
    theirs = skn.MLPClassifier(hidden_layer_sizes=(9,), max_iter=30, random_state=0)
    _fit_both((theirs,), X, y)
    ours = from_sklearn(theirs)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-12)
    np.testing.assert_allclose(ours.predict_log_proba(X), theirs.predict_log_proba(X), rtol=1e-12)
    assert ours.score(X, y) == theirs.score(X, y)
    back = ours.to_sklearn()
    assert type(back) is skn.MLPClassifier and back.get_params() == theirs.get_params()
    np.testing.assert_array_equal(back.predict_proba(X), theirs.predict_proba(X))

    X, y, _ = _data("regression")
    ours = MLPRegressor(hidden_layer_sizes=(4, 3), max_iter=20, random_state=0, compiled=False)
    _fit_both((ours,), X, y)
    theirs = ours.to_sklearn()
    np.testing.assert_allclose(theirs.predict(X), ours.predict(X), rtol=1e-12)
    np.testing.assert_allclose(from_sklearn(theirs).predict(X), ours.predict(X), rtol=1e-12)
    leaky = MLPRegressor(activation="leaky_relu", max_iter=2, compiled=False)
    _fit_both((leaky,), X, y)
    with pytest.raises(ValueError, match="leaky_relu"):
        leaky.to_sklearn()
    with pytest.raises(TypeError, match="MLPClassifier or MLPRegressor"):
        from_sklearn(ours)


@pytest.mark.parametrize("kind, params", [("multiclass", {}), ("binary", {}), ("multilabel", {}),
                                          ("regression", {"loss": "huber", "activation": "leaky_relu"})])
def test_loss_gradient_matches_finite_differences(kind, params):
    """The batch loss (L2 term included) and the gradient the update follows are one function and its derivative
    (scikit-learn's squared_error with several outputs is not: it reports a mean over outputs)."""
    X, y, w = _data(kind, n=30)
    est = _pair(kind, hidden_layer_sizes=(4,), alpha=0.3, max_iter=1, random_state=0, **params)[0]
    _fit_both((est,), X, y, w)
    net = est.network_
    Y = (est._label_binarizer.transform(y) if kind != "regression" else y).astype(float).reshape(len(y), -1)
    sklearn_training._loss_grad(est, X, Y, w, None)
    grad, x0 = net.grad.copy(), net.params.copy()
    for k in np.random.default_rng(0).choice(net.n_params, 12, replace=False):
        values = []
        for h in (1e-6, -1e-6):
            net.params[:] = x0
            net.params[k] += h
            values.append(sklearn_training._loss_grad(est, X, Y, w, None))
        assert (values[0] - values[1]) / 2e-6 == pytest.approx(grad[k], rel=1e-5, abs=1e-8)


def test_huber_and_leaky_relu_train():
    X, y, _ = _data("regression", n=200)
    y[:5] += 50.0  # outliers: huber's linear tails keep the fit on the rest
    scores = {}
    for loss in ("squared_error", "huber"):
        est = MLPRegressor(loss=loss, hidden_layer_sizes=(10,), activation="leaky_relu", solver="lbfgs", random_state=0,
                           compiled=False)
        _fit_both((est,), X, y)
        scores[loss] = est.score(X[5:], y[5:])
    assert scores["huber"] > 0.9 and scores["huber"] > scores["squared_error"]


def test_pickle_refit_and_float32():
    X, y, _ = _data("multiclass")
    est = MLPClassifier(hidden_layer_sizes=(6,), max_iter=5, random_state=0, compiled=False)
    _fit_both((est,), X.astype(np.float32), y)
    assert est.network_.dtype == np.float32 and est.coefs_[0].dtype == np.float32
    copy = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(copy.predict_proba(X), est.predict_proba(X))
    first = est.network_.params.copy()
    _fit_both((est,), X.astype(np.float32), y)
    np.testing.assert_array_equal(est.network_.params, first)
    _fit_both((est,), X, y)  # float64 input: float64 training
    assert est.network_.dtype == np.float64


def test_dataframes_through_a_pipeline_as_sklearn():
    """A pandas DataFrame, as users hand it: feature_names_in_ from its columns (as scikit-learn's), the same
    predictions as for its values, a DataFrame with other column names refused (scikit-learn raises too), and a
    Pipeline with a scaler round trip through pickle."""
    pd = pytest.importorskip("pandas")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, _ = _data("multiclass")
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    ours, theirs = _pair("multiclass", hidden_layer_sizes=(6,), max_iter=20, random_state=0)
    _fit_both((ours, theirs), frame, pd.Series(y))
    assert list(ours.feature_names_in_) == list(theirs.feature_names_in_) == list(frame.columns)
    assert ours.feature_names_in_.dtype == theirs.feature_names_in_.dtype == object
    np.testing.assert_allclose(ours.predict_proba(frame), theirs.predict_proba(frame), rtol=1e-10, atol=1e-12)
    for est in (ours, theirs):  # its values alone: the same answer, with scikit-learn's warning
        with pytest.warns(UserWarning, match="does not have valid feature names"):
            np.testing.assert_array_equal(est.predict(frame.to_numpy()), est.predict(frame))
    renamed = frame.rename(columns={"f0": "other"})
    for est in (ours, theirs):
        with pytest.raises(ValueError, match="feature names"):
            est.predict(renamed)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(6,), max_iter=20, random_state=0,
                                                         compiled=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(frame, y)
    copy = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(copy.predict_proba(frame), pipe.predict_proba(frame))
    assert list(copy.feature_names_in_) == list(frame.columns)
    assert not hasattr(copy[-1], "feature_names_in_")  # the scaler hands it an array, as to scikit-learn's


def test_bad_parameters_raise_at_fit_not_init():
    X, y, _ = _data("multiclass")
    for bad in (dict(alpha=-1.0), dict(activation="softplus"), dict(solver="rmsprop"), dict(batch_size=0),
                dict(hidden_layer_sizes=(3, 0)), dict(learning_rate="cyclic"), dict(momentum=1.5)):
        est = MLPClassifier(**bad)  # nothing at __init__
        with pytest.raises(ValueError):
            est.fit(X, y)
        assert not hasattr(est, "network_")
    with pytest.raises(ValueError, match="loss"):
        MLPRegressor(loss="poisson").fit(X, y)


def test_bad_input_raises_sklearns_errors_and_changes_nothing():
    X, y, w = _data("multiclass")
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0, compiled=False)
    _fit_both((est,), X, y)
    before = est.network_.flat.copy()
    Xnan = X.copy()
    Xnan[3, 1] = np.nan
    for args, error, match in (((Xnan, y), ValueError, "NaN"), ((X[:, :3], y), ValueError, "features"),
                               ((X, y[:10]), ValueError, "inconsistent numbers of samples"),
                               ((X, y + 0.5), ValueError, "Unknown label type"),
                               ((X, y, -w), ValueError, "Negative values"), ((X, y, 0 * w), ValueError, "non-zero")):
        with pytest.raises(error, match=match):
            est.partial_fit(*args[:2], sample_weight=args[2] if len(args) > 2 else None)
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:, :3])
    np.testing.assert_array_equal(est.network_.flat, before)

    X, y, _ = _data("regression")
    est = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0, compiled=False)
    _fit_both((est,), X, y)
    before = est.network_.flat.copy()
    with pytest.raises(ValueError, match="outputs"):
        est.partial_fit(X, y[:, 0])
    np.testing.assert_array_equal(est.network_.flat, before)


def test_divergence_raises():
    X, y, _ = _data("regression")
    est = MLPRegressor(solver="sgd", learning_rate_init=1e6, momentum=0.99, max_iter=50, random_state=0,
                       compiled=False)
    with pytest.raises(ValueError, match="non-finite"):
        _fit_both((est,), X * 1e3, y * 1e3)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["digits", "synthetic"])
def test_same_accuracy_as_sklearn(dataset):
    """Held-out accuracy within one point of scikit-learn's, mean over 3 seeds (the benchmark's settings)."""
    if dataset == "digits":
        X, y = load_digits(return_X_y=True)
        params = {}
    else:
        X, y = make_classification(60000, 54, n_informative=30, n_classes=7, random_state=0)
        params = dict(hidden_layer_sizes=(100,), batch_size=200, max_iter=10)
    Xt, Xv, yt, yv = train_test_split(X.astype(np.float32), y, test_size=0.2, random_state=0, stratify=y)
    accuracy = {"ours": [], "theirs": []}
    for seed in range(3):
        pair = (MLPClassifier(random_state=seed, **params), skn.MLPClassifier(random_state=seed, **params))
        _fit_both(pair, Xt, yt)
        accuracy["ours"].append(pair[0].score(Xv, yv))
        accuracy["theirs"].append(pair[1].score(Xv, yv))
    assert abs(np.mean(accuracy["ours"]) - np.mean(accuracy["theirs"])) < 0.01, accuracy
