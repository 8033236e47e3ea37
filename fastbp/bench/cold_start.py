"""The ``cold-start`` case: what a new user waits for, each figure a fresh interpreter.

- ``import fastbp``;
- import plus the first train step of an architecture the cache has never seen (its hidden width drawn at random),
  with an empty cache (every kernel it needs compiles) and with the generic kernels cached (a second architecture on
  a machine where fastbp has run), in the default (background) mode;
- the first ``fit`` and first ``score`` of :class:`fastbp.sklearn.MLPClassifier` on the digits in a fresh process
  (after the imports), beside scikit-learn's: with the cache left by the runs above (float32 only, so the float64
  estimator compiles its kernels), and again in a later process.

Medians of ``rounds`` runs of each, scikit-learn's and fastbp's alternating.
"""

import os
import subprocess
import sys
import tempfile

import numpy as np

_IMPORT = """
import time
start = time.perf_counter()
import fastbp
print(time.perf_counter() - start)
"""

_FIRST_STEP = """
import time
start = time.perf_counter()
import numpy as np
import fastbp
net = fastbp.Network([64, {width}, 10], hidden="relu", output="softmax", loss="cross_entropy", dtype=np.float32,
                     seed=0)
rng = np.random.default_rng(0)
net.train_step(rng.random((32, 64), dtype=np.float32), rng.integers(0, 10, 32))
print(time.perf_counter() - start)
"""

_FIT = """
import time, warnings
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from {module} import MLPClassifier
X, y = load_digits(return_X_y=True)
Xt, Xv, yt, yv = train_test_split(X / 16, y, random_state=0)
start = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    est = MLPClassifier(hidden_layer_sizes=(70,), max_iter=60, random_state=0).fit(Xt, yt)
middle = time.perf_counter()
est.score(Xv, yv)
print(middle - start, time.perf_counter() - middle)
"""


def _seconds(code, cache, **fields):
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    out = subprocess.run([sys.executable, "-c", code.format(**fields)], env=env, check=True, capture_output=True,
                         text=True).stdout
    return [float(v) for v in out.split()]


def run(rounds=3, log=print):
    """The case's rows, ``{"what": ..., "fastbp": seconds, "sklearn": seconds or None}``; logs a table."""
    rng = np.random.default_rng()
    times = {key: [] for key in ("import", "empty", "generic", "fit", "score", "fit2", "score2", "sk_fit", "sk_score")}
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as cache:
            times["import"] += _seconds(_IMPORT, cache)
            times["empty"] += _seconds(_FIRST_STEP, cache, width=int(rng.integers(20, 200)))
            times["generic"] += _seconds(_FIRST_STEP, cache, width=int(rng.integers(200, 400)))
            for module, fit, score in (("sklearn.neural_network", "sk_fit", "sk_score"),
                                       ("fastbp.sklearn", "fit", "score"), ("fastbp.sklearn", "fit2", "score2")):
                f, s = _seconds(_FIT, cache, module=module)
                times[fit].append(f)
                times[score].append(s)
    med = {key: float(np.median(v)) for key, v in times.items()}
    rows = [{"what": "import fastbp", "fastbp": med["import"], "sklearn": None},
            {"what": "import + first train_step, empty cache", "fastbp": med["empty"], "sklearn": None},
            {"what": "import + first train_step, generic kernels cached", "fastbp": med["generic"], "sklearn": None},
            {"what": "digits: first fit, float64 kernels not cached", "fastbp": med["fit"], "sklearn": med["sk_fit"]},
            {"what": "digits: its first score", "fastbp": med["score"], "sklearn": med["sk_score"]},
            {"what": "digits: first fit in a later process", "fastbp": med["fit2"], "sklearn": med["sk_fit"]},
            {"what": "digits: its first score", "fastbp": med["score2"], "sklearn": med["sk_score"]}]
    log(f"\ncold start (fresh processes, medians of {rounds}; new architectures 64-w-10 float32, batch 32)")
    log(f"{'what':<52} {'fastbp s':>9} {'sklearn s':>10}")
    for row in rows:
        sk = f"{row['sklearn']:10.3f}" if row["sklearn"] is not None else f"{'-':>10}"
        log(f"{row['what']:<52} {row['fastbp']:9.3f} {sk}")
    return rows
