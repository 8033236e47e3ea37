"""The ``sklearn`` case: fit time and held-out accuracy of scikit-learn's ``MLPClassifier`` and
:class:`fastbp.sklearn.MLPClassifier` with the same parameters, on the bundled digits (scikit-learn's defaults) and on a
synthetic ``make_classification`` set of 60,000 x 54 with 7 classes (hidden 100, batches of 200, 10 epochs), in float32
and float64. Fits alternate, round by round; times and accuracies are medians."""

import time
import warnings

import numpy as np

SETS = {"digits": {}, "synthetic": dict(hidden_layer_sizes=(100,), batch_size=200, max_iter=10)}
IMPLS = ("sklearn", "fastbp")


def data(name, dtype):
    """(X_train, X_test, y_train, y_test): a stratified 80/20 split."""
    from sklearn.datasets import load_digits, make_classification
    from sklearn.model_selection import train_test_split

    if name == "digits":
        X, y = load_digits(return_X_y=True)
    else:
        X, y = make_classification(60000, 54, n_informative=30, n_classes=7, random_state=0)
    return train_test_split(X.astype(dtype), y, test_size=0.2, random_state=0, stratify=y)


def estimator(impl, name, seed=0):
    """A fresh classifier of either kind with the set's parameters."""
    if impl == "sklearn":
        from sklearn.neural_network import MLPClassifier
    else:
        from fastbp.sklearn import MLPClassifier
    return MLPClassifier(random_state=seed, **SETS[name])


def fit(impl, name, Xt, yt, seed=0):
    """(seconds, fitted estimator); max_iter reached is expected of the synthetic set's 10 epochs."""
    est = estimator(impl, name, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        est.fit(Xt, yt)
        return time.perf_counter() - start, est


def run(rounds=3, sets=tuple(SETS), dtypes=("float32", "float64"), log=print):
    """Time both fits per set and dtype (after one fit of fastbp's that compiles or loads its kernels); returns rows
    and logs the table."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        log("sklearn: skipped (pip install 'fastbp[sklearn]')")
        return []
    rows = []
    for name in sets:
        for dtype in dtypes:
            Xt, Xv, yt, yv = data(name, dtype)
            fit("fastbp", name, Xt[:450], yt[:450])  # full and partial batches: both kernels load
            seconds, accuracy = {k: [] for k in IMPLS}, {k: [] for k in IMPLS}
            for r in range(rounds):
                for impl in IMPLS:
                    t, est = fit(impl, name, Xt, yt, seed=r)
                    seconds[impl].append(t)
                    accuracy[impl].append(est.score(Xv, yv))
            row = {"set": name, "dtype": dtype, **{f"{k}_s": float(np.median(seconds[k])) for k in IMPLS},
                   **{f"{k}_accuracy": float(np.mean(accuracy[k])) for k in IMPLS}}
            row["speedup"] = row["sklearn_s"] / row["fastbp_s"]
            rows.append(row)
    log(f"\n{'set':<10} {'dtype':<8} {'sklearn s':>10} {'fastbp s':>10} {'speed-up':>9} {'sklearn acc':>12} "
        f"{'fastbp acc':>11}   (median fit time of {rounds}, mean held-out accuracy over seeds 0..{rounds - 1})")
    for r in rows:
        log(f"{r['set']:<10} {r['dtype']:<8} {r['sklearn_s']:10.3f} {r['fastbp_s']:10.3f} {r['speedup']:8.2f}x "
            f"{r['sklearn_accuracy']:12.4f} {r['fastbp_accuracy']:11.4f}")
    return rows
