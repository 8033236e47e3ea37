"""scikit-learn's MLP solvers behind :mod:`fastbp.sklearn`'s estimators: the minibatch loop of ``sgd`` and ``adam``
(its shuffling, early-stopping split, stopping rule and learning-rate schedules) and ``lbfgs`` through scipy, each
batch's loss and gradient from the estimator's :class:`fastbp.Network` and its update from
:mod:`fastbp.kernels.estimator`. Functions of the estimator, whose attributes (``n_iter_``, ``loss_curve_``, ...) they
set as scikit-learn's fit does."""

import warnings

import numpy as np
import scipy.optimize
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils.optimize import _check_optimize_result
from threadpoolctl import threadpool_limits  # a dependency of scikit-learn's

from . import plan
from .kernels import estimator as K


def fit_stochastic(est, X, Y, weights, incremental, rng):
    net = est.network_
    if not incremental or not hasattr(est, "_opt"):
        net.optimizer = est._fastbp_optimizer()
        net.flat[2:] = 0
        est._opt = np.zeros(K.OPT_SIZE)
        est._opt[[K.KIND, K.LR, K.MOMENTUM, K.NESTEROV, K.BETA1, K.BETA2, K.EPS]] = (
            K.ADAM if est.solver == "adam" else K.SGD, est.learning_rate_init, est.momentum,
            est.nesterovs_momentum, est.beta_1, est.beta_2, est.epsilon)
    if est.early_stopping and incremental:
        raise ValueError("partial_fit does not support early_stopping=True")
    if est.early_stopping:
        X, Y, weights, validation = _split_validation(est, X, Y, weights, rng)
    n = X.shape[0]
    if est.batch_size == "auto":
        batch_size = min(200, n)
    else:
        if est.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
        batch_size = int(np.clip(est.batch_size, 1, n))
    order = np.arange(n)
    est.n_iter_ = 0
    for _ in range(est.max_iter):
        if est.shuffle:  # sklearn.utils.shuffle(order, random_state=rng)'s permutation, without its checks
            perm = np.arange(n)
            rng.shuffle(perm)
            order = order[perm]
        total = 0.0
        for Xb, Yb, w in _batches(X, Y, weights, order if est.shuffle else None, batch_size):
            total += _loss_grad(est, Xb, Yb, w, est._opt) * Xb.shape[0]
        est.n_iter_ += 1
        est.loss_ = total / n
        est.t_ += n
        est.loss_curve_.append(est.loss_)
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {est.loss_:.8f}")
        if est.early_stopping:
            _validation_step(est, *validation)
        else:
            _loss_step(est)
        if est.solver == "sgd" and est.learning_rate == "invscaling":
            est._opt[K.LR] = est.learning_rate_init / (est.t_ + 1) ** est.power_t
        if est._no_improvement_count > est.n_iter_no_change and _stop(est):
            break
        if incremental:
            break
        if est.n_iter_ == est.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({est.max_iter}) reached and the "
                          "optimization hasn't converged yet.", ConvergenceWarning)
    if est.early_stopping:
        net.params[:] = est._best_params


def fit_lbfgs(est, X, Y, weights):
    net = est.network_

    def loss_grad(x):
        net.params[:] = x
        return _loss_grad(est, X, Y, weights, None), net.grad.astype(np.float64)

    # scipy's L-BFGS-B calls BLAS on vectors of the parameters' length, and each call leaves OpenBLAS's threads
    # spinning for a while after: the kernels' threads then wait for a core. Measured on 2 cores, the gradient of
    # 300 rows took 30 ms instead of 0.12 ms, and scikit-learn's check_classifiers_train 10 s instead of 0.12 s. So
    # BLAS keeps one thread, unless the gradient's own layers run on BLAS (then no kernel thread waits on it).
    with threadpool_limits(None if plan.uses_blas(net.dispatch.signature, X.shape[0]) else 1, user_api="blas"):
        result = scipy.optimize.minimize(loss_grad, net.params.astype(np.float64), method="L-BFGS-B", jac=True,
                                         options={"maxfun": est.max_fun, "maxiter": est.max_iter, "gtol": est.tol})
    est.n_iter_ = _check_optimize_result("lbfgs", result, est.max_iter)
    est.loss_ = float(result.fun)
    net.params[:] = result.x


def _batches(X, Y, weights, order, batch_size):
    """(X, Y, weights) of each minibatch: rows ``order`` (None: in order, as views), in batches of ``batch_size``;
    batches whose weights are all zero have no gradient and are left out."""
    for start in range(0, X.shape[0], batch_size):
        if order is None:
            rows = slice(start, start + batch_size)
            Xb, Yb = X[rows], Y[rows]
        else:
            rows = order[start:start + batch_size]
            Xb, Yb = X.take(rows, 0), Y.take(rows, 0)  # a third of fancy indexing's time on 200 x 54
        w = None if weights is None else weights[rows]
        if w is None or w.sum() > 0:
            yield Xb, Yb, w


def _loss_grad(est, X, Y, weights, opt):
    """scikit-learn's batch loss (with the L2 term) at the current parameters; leaves its gradient in
    ``network_.grad``, and with ``opt`` applies its update."""
    net = est.network_
    data_loss = net._call("gradient", X, Y, weights)
    if opt is not None and not np.isfinite(data_loss):  # (lbfgs's line search takes a non-finite value itself)
        raise ValueError("The loss became non-finite: the training diverged. Lower learning_rate_init, or scale "
                         "the input (StandardScaler).")
    loss_scale, grad_scale = _scales(est)
    mass = X.shape[0] if weights is None else float(weights.sum())
    l2 = est.alpha / mass
    if opt is None:
        squares = K.penalize(net.flat, net.spec, grad_scale, l2)
    else:
        squares = K.update(net.flat, net.spec, opt, grad_scale, l2)
    return loss_scale * data_loss + 0.5 * l2 * squares


def _scales(est):
    """(loss, gradient) factors from the network's loss to scikit-learn's: its log-losses sum over outputs, its
    squared error is half the mean but its gradient is ``(p - y) / n`` whatever the outputs (fastbp's losses are
    means over every element)."""
    n_out = est.n_outputs_
    return {"cross_entropy": (1.0, 1.0), "bce": (n_out, n_out), "mse": (0.5, n_out / 2),
            "huber": (n_out, n_out)}[est.network_.loss]


def _split_validation(est, X, Y, weights, rng):
    """scikit-learn's early-stopping split (stratified for a single-output classifier): the training part
    (X, Y, weights) and the validation part (X, y as labels, weights)."""
    stratify = Y if is_classifier(est) and est.n_outputs_ == 1 else None
    parts = train_test_split(X, Y, *([] if weights is None else [weights]), random_state=rng,
                             test_size=est.validation_fraction, stratify=stratify)
    X, X_val, Y, Y_val = parts[:4]
    weights, weights_val = (None, None) if weights is None else parts[4:]
    if X_val.shape[0] < 2:
        raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of your "
                         "dataset.")
    y_val = est._label_binarizer.inverse_transform(Y_val) if is_classifier(est) else Y_val
    return X, Y, weights, (X_val, y_val, weights_val)


def _validation_step(est, X, y, weights):
    score = _score(est, X, y, weights)
    est.validation_scores_.append(score)
    if est.verbose:
        print(f"Validation score: {score:f}")
    if score < est.best_validation_score_ + est.tol:
        est._no_improvement_count += 1
    else:
        est._no_improvement_count = 0
    if score > est.best_validation_score_:
        est.best_validation_score_ = score
        est._best_params = est.network_.params.copy()


def _loss_step(est):
    last = est.loss_curve_[-1]
    est._no_improvement_count = est._no_improvement_count + 1 if last > est.best_loss_ - est.tol else 0
    est.best_loss_ = min(est.best_loss_, last)


def _score(est, X, y, weights):
    """The validation score, from checked arrays: NaN for a non-finite prediction, as scikit-learn's."""
    out = est.network_.forward(X)
    if not np.isfinite(out).all():
        return np.nan
    return est._score_function(y, est._decode(out), sample_weight=weights)


def _stop(est):
    """scikit-learn's rule once the loss or score stopped improving: adaptive SGD divides its rate by 5 and goes
    on while the rate is above 1e-6; everything else stops."""
    what = "Validation score" if est.early_stopping else "Training loss"
    msg = f"{what} did not improve more than tol={est.tol:f} for {est.n_iter_no_change} consecutive epochs."
    adaptive = est.solver == "sgd" and est.learning_rate == "adaptive"
    if adaptive and est._opt[K.LR] > 1e-6:
        est._opt[K.LR] /= 5.0
        est._no_improvement_count = 0
        if est.verbose:
            print(f"{msg} Setting learning rate to {est._opt[K.LR]:f}")
        return False
    if est.verbose:
        print(msg + (" Learning rate too small." if adaptive else "") + " Stopping.")
    return True
