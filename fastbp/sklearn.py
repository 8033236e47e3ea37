"""scikit-learn estimators trained by fastbp: :class:`MLPClassifier` and :class:`MLPRegressor`, drop-in replacements for
``sklearn.neural_network``'s (the extra ``fastbp[sklearn]``).

Same parameters, defaults, attributes and arithmetic as scikit-learn's MLP: its Glorot-uniform initialisation drawn
from ``random_state`` in its order, its shuffling and early-stopping split from the same generator, its L2 term
``alpha`` on the weights only, its SGD (velocity form, ``invscaling`` and ``adaptive`` rates), its Adam, its stopping
rule and warnings, and ``lbfgs`` through ``scipy.optimize.minimize``. So a fit from the same ``random_state`` follows
scikit-learn's to rounding. The passes run in a :class:`fastbp.Network` (``network_``): each minibatch is one gradient
kernel and one update kernel (:mod:`fastbp.kernels.estimator`). Sparse input is densified.

Beyond scikit-learn: ``activation="leaky_relu"``; the regressor's ``loss="huber"`` (delta 1: half the squared error
within 1 of the target, like ``squared_error``, and linear beyond; summed over outputs and averaged over samples, so
the reported loss is the one whose gradient is followed, which scikit-learn's ``squared_error`` with several outputs
is not: it reports the mean over outputs); and ``compiled``,
as :class:`fastbp.Network`'s (None, the default, runs kernels compiled for the architecture: its first fit compiles
them, about half a minute, and later fits and processes load them from the disk cache; False runs the generic kernels
every architecture shares, slower on large data but with nothing to compile).
"""

import warnings
from numbers import Integral, Real

import numpy as np
import scipy.optimize
import scipy.sparse
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import optim
from .kernels import estimator as K
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
        X = X.toarray() if scipy.sparse.issparse(X) else X
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
            self._fit_lbfgs(X, Y, sample_weight)
        else:
            self._fit_stochastic(X, Y, sample_weight, incremental, rng)
        if not np.isfinite(net.params).all():
            raise ValueError("Solver produced non-finite parameter weights. The input data may contain large values "
                             "and need to be preprocessed.")
        return self

    def _initialize(self, y, layer_units, dtype, rng):
        """scikit-learn's first-fit set-up: the output layer, Glorot-uniform weights and biases drawn from ``rng`` in
        its order, the stopping state."""
        self.n_iter_, self.t_ = 0, 0
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._out_activation()
        self.network_ = Network(layer_units, HIDDEN[self.activation], OUTPUT[self.out_activation_],
                                self._network_loss(), self._fastbp_optimizer(), dtype=dtype,
                                compiled=self.compiled)
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

    def _fastbp_optimizer(self):
        """The fastbp optimizer nearest the solver, for training ``network_`` further with fastbp's own methods (it
        also sets the number of state rows the estimator's update uses)."""
        if self.solver == "adam":
            return optim.Adam(self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon)
        if self.solver == "sgd" and self.momentum > 0:
            momentum = min(self.momentum, np.nextafter(1.0, 0.0))  # fastbp's SGD takes momentum < 1
            return optim.SGD(self.learning_rate_init, momentum, self.nesterovs_momentum)
        return optim.SGD(self.learning_rate_init)

    def _scales(self):
        """(loss, gradient) factors from the network's loss to scikit-learn's: its log-losses sum over outputs, its
        squared error is half the mean but its gradient is ``(p - y) / n`` whatever the outputs (fastbp's losses are
        means over every element)."""
        n_out = self.n_outputs_
        return {"cross_entropy": (1.0, 1.0), "bce": (n_out, n_out), "mse": (0.5, n_out / 2),
                "huber": (n_out, n_out)}[self.network_.loss]

    def _loss_grad(self, X, Y, weights, opt):
        """scikit-learn's batch loss (with the L2 term) at the current parameters; leaves its gradient in
        ``network_.grad``, and with ``opt`` applies its update."""
        net = self.network_
        data_loss = net._call("gradient", X, Y, weights)
        if opt is not None and not np.isfinite(data_loss):  # (lbfgs's line search takes a non-finite value itself)
            raise ValueError("The loss became non-finite: the training diverged. Lower learning_rate_init, or scale "
                             "the input (StandardScaler).")
        loss_scale, grad_scale = self._scales()
        mass = X.shape[0] if weights is None else float(weights.sum())
        l2 = self.alpha / mass
        if opt is None:
            squares = K.penalize(net.flat, net.spec, grad_scale, l2)
        else:
            squares = K.update(net.flat, net.spec, opt, grad_scale, l2)
        return loss_scale * data_loss + 0.5 * l2 * squares

    def _fit_lbfgs(self, X, Y, weights):
        net = self.network_

        def loss_grad(x):
            net.params[:] = x
            return self._loss_grad(X, Y, weights, None), net.grad.astype(np.float64)

        result = scipy.optimize.minimize(loss_grad, net.params.astype(np.float64), method="L-BFGS-B", jac=True,
                                         options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol})
        self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        self.loss_ = float(result.fun)
        net.params[:] = result.x

    def _fit_stochastic(self, X, Y, weights, incremental, rng):
        net = self.network_
        if not incremental or not hasattr(self, "_opt"):
            net.optimizer = self._fastbp_optimizer()
            net.flat[2:] = 0
            self._opt = np.zeros(K.OPT_SIZE)
            self._opt[[K.KIND, K.LR, K.MOMENTUM, K.NESTEROV, K.BETA1, K.BETA2, K.EPS]] = (
                K.ADAM if self.solver == "adam" else K.SGD, self.learning_rate_init, self.momentum,
                self.nesterovs_momentum, self.beta_1, self.beta_2, self.epsilon)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if self.early_stopping:
            stratify = Y if is_classifier(self) and self.n_outputs_ == 1 else None
            parts = train_test_split(X, Y, *([] if weights is None else [weights]), random_state=rng,
                                     test_size=self.validation_fraction, stratify=stratify)
            X, X_val, Y, Y_val = parts[:4]
            weights, weights_val = (None, None) if weights is None else parts[4:]
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of "
                                 "your dataset.")
            y_val = self._label_binarizer.inverse_transform(Y_val) if is_classifier(self) else Y_val
        n = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n))
        order = np.arange(n)
        self.n_iter_ = 0
        for _ in range(self.max_iter):
            if self.shuffle:  # sklearn.utils.shuffle(order, random_state=rng)'s permutation, without its checks
                perm = np.arange(n)
                rng.shuffle(perm)
                order = order[perm]
            total = 0.0
            for start in range(0, n, batch_size):
                rows = order[start:start + batch_size] if self.shuffle else slice(start, start + batch_size)
                # take: a third of fancy indexing's time, which was a fifth of a step's on 200 x 54
                Xb, Yb = (X.take(rows, 0), Y.take(rows, 0)) if self.shuffle else (X[rows], Y[rows])
                w = None if weights is None else weights[rows]
                if w is not None and not w.sum() > 0:
                    continue  # a batch of zero weights has no gradient
                total += self._loss_grad(Xb, Yb, w, self._opt) * Xb.shape[0]
            self.n_iter_ += 1
            self.loss_ = total / n
            self.t_ += n
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            if self.early_stopping:
                self._validation_step(X_val, y_val, weights_val)
            else:
                self._loss_step()
            if self.solver == "sgd" and self.learning_rate == "invscaling":
                self._opt[K.LR] = self.learning_rate_init / (self.t_ + 1) ** self.power_t
            if self._no_improvement_count > self.n_iter_no_change:
                what = "Validation score" if self.early_stopping else "Training loss"
                msg = (f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} consecutive "
                       "epochs.")
                if self.solver == "sgd" and self.learning_rate == "adaptive" and self._opt[K.LR] > 1e-6:
                    self._opt[K.LR] /= 5.0
                    self._no_improvement_count = 0
                    if self.verbose:
                        print(f"{msg} Setting learning rate to {self._opt[K.LR]:f}")
                else:
                    if self.verbose:
                        print(msg + (" Learning rate too small." if self.learning_rate == "adaptive" and
                                     self.solver == "sgd" else "") + " Stopping.")
                    break
            if incremental:
                break
            if self.n_iter_ == self.max_iter:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                              "optimization hasn't converged yet.", ConvergenceWarning)
        if self.early_stopping:
            net.params[:] = self._best_params

    def _validation_step(self, X, y, weights):
        score = self._score(X, y, weights)
        self.validation_scores_.append(score)
        if self.verbose:
            print(f"Validation score: {score:f}")
        if score < self.best_validation_score_ + self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            self._best_params = self.network_.params.copy()

    def _loss_step(self):
        last = self.loss_curve_[-1]
        self._no_improvement_count = self._no_improvement_count + 1 if last > self.best_loss_ - self.tol else 0
        self.best_loss_ = min(self.best_loss_, last)

    def _score(self, X, y, weights):
        """The validation score, from checked arrays: NaN for a non-finite prediction, as scikit-learn's."""
        out = self.network_.forward(X)
        if not np.isfinite(out).all():
            return np.nan
        return self._score_function(y, self._decode(out), sample_weight=weights)

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
        if params["activation"] not in ("identity", "logistic", "tanh", "relu") or params.get("loss") == "huber":
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

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
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
        return X, self._label_binarizer.transform(y).astype(bool)

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

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

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
    ours.network_ = Network(sizes, HIDDEN[est.activation], OUTPUT[est.out_activation_], ours._network_loss(),
                            ours._fastbp_optimizer(), dtype=est.coefs_[0].dtype, compiled=compiled)
    for (W, b), coef, intercept in zip(ours.network_.layers(), est.coefs_, est.intercepts_):
        W[:], b[:] = coef.T, intercept
    return ours
