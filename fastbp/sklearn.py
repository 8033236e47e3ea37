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
it reports the mean over outputs); and ``compiled``, as :class:`fastbp.Network`'s (None, the default, starts on the
generic kernels every architecture shares and swaps in kernels compiled for the architecture once a background process
has built them, so later fits and processes run those from their first call; True compiles them before the first
step, a wait of 10-40 s for a new architecture; False runs the generic kernels only).
"""

from numbers import Integral, Real
from string import Template

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
        """Per layer, the weights: list of ndarray of shape (n_in, n_out), transposed views of ``network_``'s
        (writing them writes the network)."""
        return [W.T for W, _ in self.network_.layers()]

    @property
    def intercepts_(self):
        """Per layer, the biases: list of ndarray of shape (n_out,), views of ``network_``'s."""
        return [b for _, b in self.network_.layers()]

    # ---- fit -----------------------------------------------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to (X, y), from new weights unless ``warm_start``.

        Parameters
        ----------
        X : array_like or scipy.sparse matrix, shape (n_samples, n_features), real
            The input; float32 stays float32 (on a first fit the network is then float32), anything else becomes
            float64. Sparse input is densified.
        y : array_like, shape (n_samples,) or (n_samples, n_outputs)
            Class labels of any dtype, or a 0/1 multilabel indicator matrix, for the classifier; float target values
            for the regressor.
        sample_weight : array_like, shape (n_samples,), float, optional
            Non-negative weights of each sample's loss (and of the L2 term's denominator, their sum).

        Returns
        -------
        self : object
            The fitted estimator.

        Raises
        ------
        ValueError
            If a parameter or the data is invalid (scikit-learn's checks), or the fit produced non-finite weights.
        """
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
        X = np.require(X.toarray() if scipy.sparse.issparse(X) else X, requirements=("C", "W"))  # the kernels' layout
        return X, self._encode_targets(y, incremental)

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
        """Predictions for X.

        Parameters
        ----------
        X : array_like or scipy.sparse matrix, shape (n_samples, n_features), float
            The input, with the features seen by ``fit``.

        Returns
        -------
        y : ndarray, shape (n_samples,) or (n_samples, n_outputs)
            Class labels (a multilabel indicator matrix for multilabel targets) for the classifier; values, in the
            network's dtype, for the regressor (shape (n_samples,) for a single output).

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        ValueError
            If X is invalid or does not have the fitted features.
        """
        return self._decode(self._forward(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # ---- conversion ------------------------------------------------------------------------------------------------

    def to_onnx(self, path=None, opset=None):
        """This fitted estimator as an ONNX model with skl2onnx's inputs and outputs (:func:`fastbp.onnx.export`; the
        extra ``fastbp[onnx]``).

        Parameters
        ----------
        path, opset
            As :meth:`fastbp.Network.to_onnx`'s: where to write it (None: nowhere), and the operator set.

        Returns
        -------
        model : onnx.ModelProto
            Input ``"X"``; outputs ``"label"`` (:meth:`predict`) and ``"probabilities"`` (``predict_proba``) for the
            classifier, ``"variable"`` (shape (batch, n_outputs)) for the regressor.
        """
        from .onnx import writer

        return writer.write_estimator(self, path, writer.DEFAULT_OPSET if opset is None else opset)

    def to_sklearn(self):
        """The fitted scikit-learn estimator with these parameters and weights (it predicts the same).

        Returns
        -------
        est : sklearn.neural_network.MLPClassifier or MLPRegressor
            The same kind, with this estimator's parameters (but ``compiled``), copies of its weights and its fitted
            attributes (but ``network_``).

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        ValueError
            If ``activation`` is ``"leaky_relu"`` or ``loss`` is ``"huber"``, which scikit-learn does not have.
        """
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


# The parameters and attributes both estimators document alike, filled into their docstrings' $parameters and
# $attributes lines; $split, $score and $out_activation are the words that differ.
_PARAMETERS = Template("""\
    hidden_layer_sizes : array_like of int, shape (n_hidden_layers,), or int, default=(100,)
        The width of each hidden layer, in order (an int for a single hidden layer).
    activation : {"identity", "logistic", "tanh", "relu", "leaky_relu"}, default="relu"
        The hidden layers' activation: ``x``, ``1 / (1 + exp(-x))``, ``tanh(x)``, ``max(0, x)``, or (fastbp only)
        ``x`` for x > 0 and ``0.01 x`` otherwise (PyTorch's default slope).
    solver : {"lbfgs", "sgd", "adam"}, default="adam"
        ``"lbfgs"``: full-batch L-BFGS-B through ``scipy.optimize.minimize``, often best on small data sets;
        ``"sgd"``: minibatch gradient descent with momentum; ``"adam"``: minibatch Adam (Kingma and Ba).
    alpha : float >= 0, default=0.0001
        The L2 penalty on the weights (not the biases): ``0.5 * alpha * ||W||^2 / n`` is added to each batch's
        loss, n being its rows (or its summed sample weights).
    batch_size : int >= 1 or "auto", default="auto"
        Rows per minibatch of the stochastic solvers, clipped to the sample count (with a warning when larger);
        ``"auto"`` is ``min(200, n_samples)``. Not used by lbfgs.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        The step size of ``solver="sgd"``: ``"constant"`` keeps ``learning_rate_init``; ``"invscaling"`` sets it
        to ``learning_rate_init / (t_ + 1) ** power_t`` after every epoch, ``t_`` the samples seen so far;
        ``"adaptive"`` divides it by 5 each time the stopping rule (``tol``, ``n_iter_no_change``) fires, and
        stops only once it is at most 1e-6.
    learning_rate_init : float > 0, default=0.001
        The initial step size of ``"sgd"`` and ``"adam"``.
    power_t : float >= 0, default=0.5
        The exponent of ``learning_rate="invscaling"`` (sgd only).
    max_iter : int >= 1, default=200
        The most epochs of the stochastic solvers (a ``ConvergenceWarning`` when they are all run), or iterations
        of lbfgs.
    shuffle : bool, default=True
        Shuffle the samples before each epoch (sgd and adam).
    random_state : int, numpy.random.RandomState or None, default=None
        Draws the initial weights and biases, the shuffling and the early-stopping split; an int gives the same
        fit every time (each ``fit`` and ``partial_fit`` call draws from a generator made from it afresh).
    tol : float >= 0, default=1e-4
        The improvement that counts: the stochastic solvers stop (or, for adaptive sgd, lower the rate) after more
        than ``n_iter_no_change`` epochs in a row in which the training loss did not fall by ``tol`` (or the
        validation score rise by ``tol``, with early stopping); lbfgs's gradient tolerance ``gtol``.
    verbose : bool, default=False
        Print each epoch's loss (and validation score) and the stopping message to stdout (sgd and adam; lbfgs
        prints nothing).
    warm_start : bool, default=False
        Start ``fit`` from the previous fit's weights instead of initialising afresh (sgd and adam keep ``t_``,
        ``loss_curve_`` and the stopping state, but start their optimizer state afresh). The classifier's classes
        must stay the same.
    momentum : float in [0, 1], default=0.9
        sgd's momentum: the velocity ``v = momentum * v - lr * g``.
    nesterovs_momentum : bool, default=True
        Nesterov's momentum for sgd (when ``momentum > 0``).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data$split and stop when its $score has not risen by
        ``tol`` for more than ``n_iter_no_change`` epochs in a row, keeping the best epoch's weights. sgd and adam
        only; not with ``partial_fit``.
    validation_fraction : float in [0, 1), default=0.1
        The share of the training data held out for early stopping (at least 2 samples).
    beta_1 : float in [0, 1), default=0.9
        Adam's decay rate of the first moment.
    beta_2 : float in [0, 1), default=0.999
        Adam's decay rate of the second moment.
    epsilon : float > 0, default=1e-8
        Adam's term added to the square root of the second moment.
    n_iter_no_change : int >= 1 or numpy.inf, default=10
        The stochastic solvers stop (or adaptive sgd lowers its rate) after more than this many epochs in a row
        without a ``tol`` improvement.
    max_fun : int >= 1, default=15000
        lbfgs's most loss evaluations.
    compiled : bool or None, default=None
        As :class:`fastbp.Network`'s (fastbp only), for networks whose layers are small enough for compiled
        kernels: None starts on the generic kernels and swaps in the compiled ones when a background process has
        built them (later fits and processes run them from their first call); True compiles them before the first
        step (10-40 s for a new architecture); False runs the generic kernels only. Results may differ in the last
        bits between the tiers: True or False for bitwise repeatable fits.""")
_ATTRIBUTES = Template("""\
    loss_ : float
        The loss with the L2 term: of the last epoch (sgd and adam: its batches' losses averaged, weighted by
        their rows) or of the solution (lbfgs).
    best_loss_ : float or None
        The least loss of an epoch (sgd and adam); None with early stopping.
    loss_curve_ : list of float
        Each epoch's loss (sgd and adam).
    validation_scores_ : list of float or None
        Each epoch's score on the held-out data ($score), with early stopping; else None.
    best_validation_score_ : float or None
        The best of ``validation_scores_``, with early stopping; else None.
    t_ : int
        The training samples the stochastic solvers have seen, over every epoch.
    coefs_ : list of ndarray, float32 or float64
        Layer i's weights, shape (n_in, n_out): transposed views of ``network_``'s (writing them writes it).
    intercepts_ : list of ndarray, float32 or float64
        Layer i's biases, shape (n_out,): views of ``network_``'s.
    n_features_in_ : int
        The number of features seen by ``fit``.
    feature_names_in_ : ndarray, shape (n_features,), object
        The feature names seen by ``fit``, when X has string column names.
    n_iter_ : int
        The epochs (sgd, adam) or iterations (lbfgs) run by the last fit.
    n_layers_ : int
        The number of layers, input and output included.
    n_outputs_ : int
        The number of output units.
    out_activation_ : str
        The output activation: $out_activation.
    network_ : fastbp.Network
        The trained network (float32 when the first fit's X was float32, else float64), whose parameters are the
        weights above.""")


def _shared_docs(**words):
    """A class decorator filling in the estimator docstring's shared parameters and attributes."""
    def fill(cls):
        cls.__doc__ = Template(cls.__doc__).substitute(parameters=_PARAMETERS.substitute(words),
                                                       attributes=_ATTRIBUTES.substitute(words))
        return cls
    return fill


@_shared_docs(split=" (stratified for single-output targets)", score="accuracy",
              out_activation='``"softmax"`` for multiclass targets, else ``"logistic"``')
class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier, as ``sklearn.neural_network.MLPClassifier`` (same parameters, defaults,
    attributes and methods), trained by fastbp; see the module docstring.

    Binary and multiclass targets, and multilabel indicator matrices. The loss is the log-loss: softmax
    cross-entropy for multiclass targets, the logistic outputs' binary cross-entropy summed over outputs otherwise,
    averaged over samples. Adds ``activation="leaky_relu"`` and ``compiled``.

    Parameters
    ----------
$parameters

    Attributes
    ----------
    classes_ : ndarray, shape (n_classes,), the labels' dtype
        The class labels, sorted (0 .. n_labels - 1, the columns, for multilabel targets).
$attributes
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
        """One epoch of the stochastic solver over (X, y), going on from the current weights.

        Only for ``solver="sgd"`` or ``"adam"`` (the attribute does not exist for lbfgs); not with early stopping.

        Parameters
        ----------
        X : array_like or scipy.sparse matrix, shape (n_samples, n_features), float
            The input, as for :meth:`fit`.
        y : array_like, shape (n_samples,) or (n_samples, n_classes)
            Class labels of any dtype, or a 0/1 multilabel indicator matrix.
        sample_weight : array_like, shape (n_samples,), float, optional
            Non-negative weights of each sample's loss.
        classes : array_like, shape (n_classes,), the labels' dtype, optional
            Every class label; required on the first call, and the same or None on later ones. Ignored for
            multilabel targets.

        Returns
        -------
        self : object
            The updated estimator.

        Raises
        ------
        ValueError
            If ``classes`` is missing on the first call or differs later, y has classes not in ``classes_``,
            ``early_stopping`` is set, the data are invalid, or the weights became non-finite.
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if type_of_target(y).startswith("multilabel") else classes)
        return self._fit(X, y, sample_weight, incremental=True)

    def predict_proba(self, X):
        """Class probabilities, in the order of ``classes_``.

        Parameters
        ----------
        X : array_like or scipy.sparse matrix, shape (n_samples, n_features), float
            The input, with the features seen by ``fit``.

        Returns
        -------
        proba : ndarray, shape (n_samples, n_classes), the network's dtype
            Rows summing to 1 for binary and multiclass targets (``[1 - p, p]`` for binary); each label's own
            probability for multilabel targets.
        """
        out = self._forward(X)
        if self.n_outputs_ == 1:
            return np.hstack([1 - out, out])
        return out

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``.

        Parameters
        ----------
        X : array_like or scipy.sparse matrix, shape (n_samples, n_features), float
            The input, with the features seen by ``fit``.

        Returns
        -------
        log_proba : ndarray, shape (n_samples, n_classes), the network's dtype
            The natural logarithm of :meth:`predict_proba`'s result (-inf where a probability is 0).
        """
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


@_shared_docs(split="", score="R^2 score", out_activation='``"identity"``')
class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor, as ``sklearn.neural_network.MLPRegressor`` (same parameters, defaults,
    attributes and methods), trained by fastbp; see the module docstring.

    Single- and multi-output targets; the output activation is the identity.

    Parameters
    ----------
    loss : {"squared_error", "huber"}, default="squared_error"
        ``"squared_error"``: scikit-learn's half squared error, averaged over samples and outputs.
        ``"huber"`` (fastbp only): Huber's loss with delta 1, half the squared error within 1 of the target and
        linear beyond, summed over outputs and averaged over samples.
$parameters

    Attributes
    ----------
$attributes
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
        """One epoch of the stochastic solver over (X, y), going on from the current weights.

        Only for ``solver="sgd"`` or ``"adam"`` (the attribute does not exist for lbfgs); not with early stopping.

        Parameters
        ----------
        X : array_like or scipy.sparse matrix, shape (n_samples, n_features), float
            The input, as for :meth:`fit`.
        y : array_like, shape (n_samples,) or (n_samples, n_outputs), float
            The target values; the number of outputs must stay that of the first fit.
        sample_weight : array_like, shape (n_samples,), float, optional
            Non-negative weights of each sample's loss.

        Returns
        -------
        self : object
            The updated estimator.

        Raises
        ------
        ValueError
            If ``early_stopping`` is set, the data are invalid, or the weights became non-finite.
        """
        return self._fit(X, y, sample_weight, incremental=True)


def _set_params(est, params):
    for name, value in params.items():
        if name not in ("self", "__class__"):
            setattr(est, name, value)


def from_sklearn(est, compiled=None):
    """The fastbp estimator equal to a fitted ``sklearn.neural_network`` MLPClassifier or MLPRegressor.

    Parameters
    ----------
    est : sklearn.neural_network.MLPClassifier or sklearn.neural_network.MLPRegressor
        Fitted; read only (its weights are copied).
    compiled : bool or None
        As the estimators' ``compiled``.

    Returns
    -------
    ours : MLPClassifier or MLPRegressor
        The same kind with the same parameters and fitted attributes, and ``est``'s weights in ``network_``, whose
        dtype is theirs: it predicts the same.

    Raises
    ------
    TypeError
        If ``est`` is not exactly a scikit-learn MLPClassifier or MLPRegressor.
    sklearn.exceptions.NotFittedError
        If ``est`` is not fitted.
    ValueError
        If ``est``'s loss is not ``"squared_error"``.
    """
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
