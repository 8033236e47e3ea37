"""scikit-learn's estimator checks over fastbp.sklearn's estimators (a file of their own, so pytest-xdist can run them
beside the rest of test_sklearn.py)."""

import pytest

pytest.importorskip("sklearn", minversion="1.6")
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fastbp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

# A few settings each, on the generic kernels (the checks' many input widths would each compile a network's own
# kernels; test_sklearn.py checks the compiled ones against scikit-learn). scikit-learn's own test suite runs its MLPs'
# checks with max_iter=100. Its lbfgs classifier with the defaults saturates a multilabel probability to exactly 1 and
# its sgd regressor with tol=1e-2 stops before an R^2 of 0.5 (both fail those checks in scikit-learn too, with the same
# arithmetic): alpha=1 and max_iter=100 there.
CHECKED = [
    MLPClassifier(max_iter=100, compiled=False),
    MLPClassifier(solver="lbfgs", alpha=1.0, compiled=False),
    MLPClassifier(solver="sgd", activation="leaky_relu", learning_rate="adaptive", max_iter=50, compiled=False),
    MLPRegressor(max_iter=100, compiled=False),
    MLPRegressor(solver="sgd", max_iter=100, random_state=42, compiled=False),
    MLPRegressor(loss="huber", activation="tanh", solver="lbfgs", compiled=False),
]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(CHECKED)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
