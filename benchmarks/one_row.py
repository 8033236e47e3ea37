"""One-row train steps from a user's ``@njit`` loop: the compiled kernels (writing the gradient, and with
``SGD(keep_grad=False)``) against the generic ones, on one architecture, alternating blocks, medians.

    python benchmarks/one_row.py [16,64,64,64,64,4] [--dtype float64] [--blocks 9] [--steps 5000]

The issue's deep-network target (compiled >= 2x generic) is read here; ``fastbp bench`` carries the cases it has.
"""

import argparse
import time

import numba
import numpy as np

import fastbp


@numba.njit
def steps(train_step, flat, spec, hyper, work, X, Y, n):
    total = 0.0
    for _ in range(n):
        total += train_step(flat, spec, hyper, work, X, Y)
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="?", default="16,64,64,64,64,4")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--steps", type=int, default=5000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1, sizes[0])).astype(args.dtype)
    Y = rng.standard_normal((1, sizes[-1])).astype(args.dtype)
    runs = {}
    for name, compiled, keep_grad in (("compiled", True, True), ("compiled, keep_grad=False", True, False),
                                      ("generic", False, True)):
        net = fastbp.Network(sizes, hidden="tanh", output="identity", loss="mse", dtype=args.dtype, seed=0,
                             compiled=compiled, optimizer=fastbp.SGD(lr=1e-3, keep_grad=keep_grad))
        kernel = net.dispatch.kernel("train_step", 1)[0]
        run = (kernel, net.flat, net.spec, net.hyper, net.workspace(1), X, Y)
        steps(*run, 10)  # compiles
        runs[name] = run
    times = {name: [] for name in runs}
    for _ in range(args.blocks):
        for name, run in runs.items():
            start = time.perf_counter()
            steps(*run, args.steps)
            times[name].append((time.perf_counter() - start) / args.steps * 1e6)
    generic = np.median(times["generic"])
    for name, values in times.items():
        print(f"{name:<28} {np.median(values):7.2f} us  ({generic / np.median(values):.2f}x generic)")


if __name__ == "__main__":
    main()
