"""scikit-learn estimators trained by fastbp: :class:`MLPClassifier` and :class:`MLPRegressor`, drop-in replacements for
``sklearn.neural_network``'s (the extra ``fastbp[sklearn]``).

Same parameters, defaults, attributes and arithmetic as scikit-learn's MLP: its Glorot-uniform initialisation drawn
from ``random_state`` in its order, its shuffling and early-stopping split from the same generator, its L2 term
``alpha`` on the weights only, its SGD (velocity form, ``invscaling`` and ``adaptive`` rates), its Adam, its stopping
rule and warnings, and ``lbfgs`` through ``scipy.optimize.minimize``. So a fit from the same ``random_state`` follows
scikit-learn's to rounding. The solvers are in :mod:`fastbp.sklearn_training`; the passes run in a
:class:`fastbp.Network` (``network_``): each minibatch is one gradient kernel and one update kernel
(:mod:`fastbp.kernels.estimator`). Sparse input is densified.

Beyond scikit-learn: ``activation="leaky_relu"``; the regressor's ``loss="huber"`` (delta 1: half the squared error
within 1 of the target, like ``squared_error``, and linear beyond; summed over outputs and averaged over samples, so the
reported loss is the one whose gradient is followed, which scikit-learn's ``squared_error`` with several outputs is not:
it reports the mean over outputs); and ``compiled``, as :class:`fastbp.Network`'s (None, the default, runs kernels
compiled for the architecture: its first fit compiles them, about half a minute, and later fits and processes load them
from the disk cache; False runs the generic kernels every architecture shares, slower on large data but with nothing to
compile).
"""

from numbers import Integral, Real

import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context, is_classifier
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import optim, sklearn_training
from .network import Network

HIDDEN = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu", "leaky_relu": "leaky_relu"}
OUTPUT = {"identity": "identity", "logistic": "sigmoid", "softmax": "softmax"}  # out_activation_ -> fastbp's name
# The attributes a fit sets besides the weights (copied by from_sklearn and to_sklearn when present).
FITTED = ("n_features_in_", "feature_names_in_", "n_outputs_", "n_layers_", "out_activation_", "classes_",
          "_label_binarizer", "n_iter_", "t_", "loss_", "loss_curve_", "best_loss_", "validation_scores_",
          "best_validation_score_")


def _stochastic(est):
    if est.solver not in ("sgd", "adam"):
        raise AttributeError(f"partial_fit is only available for stochastic optimizers. {est.solver} is not "
                             "stochastic.")
    return True


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: the parameters, the fit loops and the conversions."""

    _parameter_constraints = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(HIDDEN))],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "compiled": ["boolean", None],
    }

    # ---- the weights, as scikit-learn's attributes: views into network_'s parameters ------------------------------

    @property
    def coefs_(self):
        """Per layer, the weights of shape (n_in, n_out): transposed views of ``network_``'s (writing them writes
        the network)."""
        return [W.T for W, _ in self.network_.layers()]

    @property
    def intercepts_(self):
        """Per layer, the biases of shape (n_out,): views of ``network_``'s."""
        return [b for _, b in self.network_.layers()]

    # ---- fit -----------------------------------------------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to X (n_samples, n_features) and y; ``sample_weight`` (n_samples,) weighs each sample's
        loss. Returns self."""
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight, incremental):
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        if np.any(np.array(hidden) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        first_pass = not hasattr(self, "network_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype, ensure_non_negative=True)
        y = y.reshape(-1, 1) if y.ndim == 1 else y
        if not first_pass and y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y.shape[1]} outputs, but this model was fitted with {self.n_outputs_}")
        self.n_outputs_ = y.shape[1]
        rng = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, [X.shape[1], *hidden, self.n_outputs_], X.dtype, rng)
        net = self.network_
        X = np.ascontiguousarray(X, net.dtype)
        Y = np.ascontiguousarray(y, net.dtype)
        sample_weight = None if sample_weight is None else sample_weight.astype(net.dtype)
        if self.solver == "lbfgs":
            sklearn_training.fit_lbfgs(self, X, Y, sample_weight)
        else:
            sklearn_training.fit_stochastic(self, X, Y, sample_weight, incremental, rng)
        if not np.isfinite(net.params).all():
            raise ValueError("Solver produced non-finite parameter weights. The input data may contain large values "
                             "and need to be preprocessed.")
        return self

    def _validate_input(self, X, y, incremental, reset):
        """scikit-learn's checks of (X, y), X densified, y encoded for the network (:meth:`_encode_targets`)."""
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=not is_classifier(self), dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return (X.toarray() if scipy.sparse.issparse(X) else X), self._encode_targets(y, incremental)

    def _initialize(self, y, layer_units, dtype, rng):
        """scikit-learn's first-fit set-up: the output layer, Glorot-uniform weights and biases drawn from ``rng`` in
        its order, the stopping state."""
        self.n_iter_, self.t_ = 0, 0
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._out_activation()
        self.network_ = self._new_network(layer_units, dtype)
        factor = 2.0 if self.activation == "logistic" else 6.0
        for W, b in self.network_.layers():
            bound = np.sqrt(factor / sum(W.shape))
            W[:] = rng.uniform(-bound, bound, W.shape[::-1]).T
            b[:] = rng.uniform(-bound, bound, b.shape)
        self._best_params = self.network_.params.copy()
        if self.solver != "lbfgs":
            self.loss_curve_, self._no_improvement_count = [], 0
            if self.early_stopping:
                self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
            else:
                self.best_loss_, self.validation_scores_, self.best_validation_score_ = np.inf, None, None

    def _new_network(self, sizes, dtype):
        """The Network for these parameters and ``out_activation_`` (weights to be written)."""
        return Network(sizes, HIDDEN[self.activation], OUTPUT[self.out_activation_], self._network_loss(),
                       self._fastbp_optimizer(), dtype=dtype, compiled=self.compiled)

    def _fastbp_optimizer(self):
        """The fastbp optimizer nearest the solver, for training ``network_`` further with fastbp's own methods (it
        also sets the number of state rows the estimator's update uses)."""
        if self.solver == "adam":
            return optim.Adam(self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon)
        if self.solver == "sgd" and self.momentum > 0:
            momentum = min(self.momentum, np.nextafter(1.0, 0.0))  # fastbp's SGD takes momentum < 1
            return optim.SGD(self.learning_rate_init, momentum, self.nesterovs_momentum)
        return optim.SGD(self.learning_rate_init)

    # ---- predict -------------------------------------------------------------------------------------------------

    def _forward(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        return self.network_.forward(X.toarray() if scipy.sparse.issparse(X) else X)

    def predict(self, X):
        """Predictions for X (n_samples, n_features): class labels, or values of shape (n_samples,) or
        (n_samples, n_outputs)."""
        return self._decode(self._forward(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # ---- conversion ------------------------------------------------------------------------------------------------

    def to_sklearn(self):
        """The fitted scikit-learn estimator with these parameters and weights (it predicts the same)."""
        from sklearn import neural_network

        check_is_fitted(self)
        params = self.get_params()
        del params["compiled"]
        if params["activation"] == "leaky_relu" or params.get("loss") == "huber":
            raise ValueError("scikit-learn's MLP has no activation 'leaky_relu' and no loss 'huber'")
        est = getattr(neural_network, type(self).__name__)(**params)
        est.coefs_ = [W.copy() for W in self.coefs_]
        est.intercepts_ = [b.copy() for b in self.intercepts_]
        for name in FITTED:
            if hasattr(self, name):
                setattr(est, name, getattr(self, name))
        return est


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier, as ``sklearn.neural_network.MLPClassifier`` (same parameters, defaults,
    attributes and methods), trained by fastbp; see the module docstring.

    Binary and multiclass targets, and multilabel indicator matrices. Adds ``activation="leaky_relu"``. Attributes as
    scikit-learn's (``coefs_``, ``intercepts_``, ``n_iter_``, ``t_``, ``loss_``, ``loss_curve_``, ``best_loss_``,
    ``validation_scores_``, ``best_validation_score_``, ``n_layers_``, ``n_outputs_``, ``out_activation_``,
    ``classes_``, ``n_features_in_``, ``feature_names_in_``), plus ``network_``, the trained :class:`fastbp.Network`.
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, max_fun=15000, compiled=None):
        _set_params(self, locals())

    _score_function = staticmethod(accuracy_score)

    def _network_loss(self):
        return "cross_entropy" if self.out_activation_ == "softmax" else "bce"

    def _out_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _encode_targets(self, y, incremental):
        """y as the binarized label matrix, after fitting the binarizer on a first fit or checking the classes."""
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes as in the previous "
                                     f"call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. 'y' "
                                 f"has {classes}.")
        return self._label_binarizer.transform(y).astype(bool)

    def _decode(self, out):
        return self._label_binarizer.inverse_transform(out.ravel() if self.n_outputs_ == 1 else out)

    @available_if(_stochastic)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y); ``classes`` (all the labels) is required on the first call."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if type_of_target(y).startswith("multilabel") else classes)
        return self._fit(X, y, sample_weight, incremental=True)

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), in the order of ``classes_``."""
        out = self._forward(X)
        if self.n_outputs_ == 1:
            return np.hstack([1 - out, out])
        return out

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``."""
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor, as ``sklearn.neural_network.MLPRegressor`` (same parameters, defaults,
    attributes and methods), trained by fastbp; see the module docstring.

    ``loss``: ``squared_error`` (scikit-learn's half squared error) or ``huber``. Multi-output targets. Attributes as
    :class:`MLPClassifier`'s, without ``classes_``.
    """

    _parameter_constraints = {**_BaseMLP._parameter_constraints, "loss": [StrOptions({"squared_error", "huber"})]}

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, compiled=None):
        _set_params(self, locals())

    _score_function = staticmethod(r2_score)

    def _network_loss(self):
        return "mse" if self.loss == "squared_error" else "huber"

    def _out_activation(self):
        return "identity"

    def _encode_targets(self, y, incremental):
        return y

    def _decode(self, out):
        return out.ravel() if out.shape[1] == 1 else out

    @available_if(_stochastic)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y)."""
        return self._fit(X, y, sample_weight, incremental=True)


def _set_params(est, params):
    for name, value in params.items():
        if name not in ("self", "__class__"):
            setattr(est, name, value)


def from_sklearn(est, compiled=None):
    """The fastbp estimator equal to a fitted ``sklearn.neural_network`` MLPClassifier or MLPRegressor: the same
    parameters and fitted attributes, its weights in ``network_`` (it predicts the same); ``compiled`` as the
    estimators'."""
    from sklearn import neural_network

    kinds = {neural_network.MLPClassifier: MLPClassifier, neural_network.MLPRegressor: MLPRegressor}
    if type(est) not in kinds:
        raise TypeError(f"expected a scikit-learn MLPClassifier or MLPRegressor, got {type(est).__name__}")
    check_is_fitted(est)
    params = est.get_params()
    if params.get("loss", "squared_error") != "squared_error":
        raise ValueError(f"fastbp's MLPRegressor has no loss {params['loss']!r}")
    ours = kinds[type(est)](**params, compiled=compiled)
    for name in FITTED:
        if hasattr(est, name):
            setattr(ours, name, getattr(est, name))
    sizes = [est.coefs_[0].shape[0]] + [W.shape[1] for W in est.coefs_]
    ours.network_ = ours._new_network(sizes, est.coefs_[0].dtype)
    for (W, b), coef, intercept in zip(ours.network_.layers(), est.coefs_, est.intercepts_):
        W[:], b[:] = coef.T, intercept
    return ours
