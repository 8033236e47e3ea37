"""The property and population tests again, in a process with ``NUMBA_BOUNDSCHECK=1`` and a fresh cache.

The longest test of the suite (every kernel is compiled afresh with bounds checks): its own file, first in collection
order, so that ``pytest -n`` starts it first on a worker of its own.
"""

import os
import subprocess
import sys


def test_property_tests_with_bounds_checking(tmp_path):
    """The property tests again, in a process with NUMBA_BOUNDSCHECK=1 and a fresh cache (so every kernel is
    compiled with bounds checks): an out-of-bounds index would raise IndexError and fail them."""
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path), "HYPOTHESIS_PROFILE": "quick"}
    tests = os.path.join(os.path.dirname(__file__), "test_properties.py")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", tests,
                             os.path.join(os.path.dirname(__file__), "test_population.py")],
                            env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(result.stdout.strip().splitlines()[-1])
