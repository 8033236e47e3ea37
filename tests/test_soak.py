"""Long runs: resident memory flat and the Numba runtime's allocation balance constant.

CI runs 2e5 train steps from Python and 1e7 from inside @njit; ``FASTBP_SOAK=full`` runs the full 1e6 and 1e8
(about a minute here).
"""

import json
import os
import subprocess
import sys
import textwrap

SOAK = textwrap.dedent("""
    import json, os, sys
    import numba, numpy as np, fastbp
    from numba.core.runtime import rtsys
    from fastbp import kernels

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def balance():
        s = rtsys.get_allocation_stats()
        return s.alloc - s.free

    @numba.njit
    def loop(flat, spec, hyper, work, X, Y, steps):
        for _ in range(steps):
            kernels.train_step(flat, spec, hyper, work, X, Y)

    py_steps, njit_steps = int(sys.argv[1]), int(sys.argv[2])
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float); Y = np.array([[0], [1], [1], [0]], float)
    net = fastbp.Network([2, 2, 1], hidden="sigmoid", output="sigmoid", loss="bce", optimizer=fastbp.SGD(lr=0.5),
                         seed=1)
    work = net.workspace(4)
    for _ in range(1000):  # warm up: compile or load, fill caches, settle the allocator
        net.train_step(X, Y)
    loop(net.flat, net.spec, net.hyper, work, X, Y, 1000)
    out = {"rss_start": rss(), "balance_start": balance(), "allocs_start": rtsys.get_allocation_stats().alloc}
    for _ in range(py_steps):
        net.train_step(X, Y)
    out.update(rss_after_python=rss(), balance_after_python=balance())
    before = rtsys.get_allocation_stats().alloc
    loop(net.flat, net.spec, net.hyper, work, X, Y, njit_steps)
    out.update(rss_end=rss(), balance_end=balance(), njit_allocs=rtsys.get_allocation_stats().alloc - before,
               predictions=[int(p > 0.5) for p in net.forward(X)[:, 0]], steps=[py_steps, njit_steps])
    print(json.dumps(out))
""")


def test_soak_memory_flat():
    full = os.environ.get("FASTBP_SOAK") == "full"
    steps = ["1000000", "100000000"] if full else ["200000", "10000000"]
    env = {**os.environ, "NUMBA_NRT_STATS": "1"}
    out = subprocess.run([sys.executable, "-c", SOAK, *steps], env=env, capture_output=True, text=True, check=True,
                         timeout=1800).stdout
    r = json.loads(out)
    print(f"soak: {r['steps'][0]} steps from Python, {r['steps'][1]} inside @njit; resident memory "
          f"{r['rss_start'] / 2**20:.1f} MiB at start, {r['rss_after_python'] / 2**20:.1f} after Python, "
          f"{r['rss_end'] / 2**20:.1f} at end; NRT balance {r['balance_start']} -> {r['balance_end']}; "
          f"allocations during the @njit loop {r['njit_allocs']}")
    assert r["rss_end"] - r["rss_start"] < 4 * 2**20  # flat, within allocator noise
    assert r["balance_start"] == r["balance_after_python"] == r["balance_end"]
    assert r["njit_allocs"] <= 7  # the call's own argument wrappers, however many steps
    assert r["predictions"] == [0, 1, 1, 0]
