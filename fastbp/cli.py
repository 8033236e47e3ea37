"""``python -m fastbp demo|bench|warm``."""

import argparse
import sys
import time

import numpy as np

from . import SGD, Adam, Network, bench
from .baseline import NumpyMLP


def demo():
    """XOR, then the handwritten digits, then fastbp's train steps per second against plain numpy."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64)
    Y = np.array([[0], [1], [1], [0]], np.float64)
    net = Network([2, 2, 1], hidden="sigmoid", output="sigmoid", loss="bce", optimizer=SGD(lr=0.5), seed=1)
    for _ in range(8000):
        loss = net.train_step(X, Y)
    print("XOR: 2-2-1 sigmoid, binary cross-entropy, SGD lr 0.5, 8000 full-batch steps")
    print(f"  final loss {loss:.5f}")
    print("  input  target  output  prediction")
    for x, y, p in zip(X, Y[:, 0], net.forward(X)[:, 0]):
        print(f"  {x[0]:.0f} {x[1]:.0f}    {y:.0f}       {p:.4f}  {int(p > 0.5)}")

    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        print("\nDigits: skipped (pip install 'fastbp[demo]' for scikit-learn's bundled data set)")
    else:
        digits = load_digits()
        Xtr, Xte, ytr, yte = train_test_split(digits.data / 16.0, digits.target, test_size=0.25, random_state=0,
                                              stratify=digits.target)
        def digits_net():
            return Network([64, 64, 10], hidden="relu", output="softmax", loss="cross_entropy",
                           optimizer=Adam(lr=1e-3), seed=0)

        digits_net().fit(Xtr[:64], ytr[:64], epochs=1, batch_size=32)  # compile (first run) outside the timing
        net = digits_net()
        start = time.perf_counter()
        net.fit(Xtr, ytr, epochs=30, batch_size=32)
        seconds = time.perf_counter() - start
        accuracy = (net.predict(Xte) == yte).mean()
        print(f"\nDigits: 64-64-10 relu/softmax, Adam, 30 epochs of {len(ytr)} images in batches of 32")
        print(f"  held-out accuracy {accuracy:.4f} on {len(yte)} images; training took {seconds:.2f} s")

    print("\nTrain steps per second, XOR network (median of 5 rounds of 2000 steps, alternating):")
    fast = Network([2, 2, 1], hidden="sigmoid", output="sigmoid", loss="bce", optimizer=SGD(lr=0.5), seed=1)
    slow = NumpyMLP(fast, lr=0.5)
    rates = {"fastbp": [], "numpy": []}
    for _ in range(5):
        for name, step in (("fastbp", fast.train_step), ("numpy", slow.train_step)):
            start = time.perf_counter()
            for _ in range(2000):
                step(X, Y)
            rates[name].append(2000 / (time.perf_counter() - start))
    f, n = np.median(rates["fastbp"]), np.median(rates["numpy"])
    print(f"  fastbp {f:12,.0f} steps/s\n  numpy  {n:12,.0f} steps/s\n  speed-up {f / n:.1f}x")


def info():
    """What a bug report needs, as ``numba -s`` and PyTorch's ``collect_env`` print it."""
    import os
    import platform
    from importlib import metadata

    import numba
    from llvmlite import binding as llvm

    from . import __version__, builder, cache, plan
    from ._jit import cache_dir

    def version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    layers = []
    for layer, module in (("tbb", "tbbpool"), ("omp", "omppool"), ("workqueue", "workqueue")):
        try:
            __import__(f"numba.np.ufunc.{module}")
            layers.append(layer)
        except ImportError:
            pass
    try:
        in_use = numba.threading_layer()
    except ValueError:  # no parallel kernel has run in this process
        in_use = "none started yet"
    root = cache_dir()
    files = cache.scan(root)
    held = builder.builds_alive()
    lines = [
        f"fastbp {__version__} ({cache.PACKAGE}), sources {cache.source_hash()[:12]}",
        f"python {platform.python_version()} ({platform.platform()})",
        "versions: " + ", ".join(f"{name} {version(name)}" for name in
                                 ("numba", "llvmlite", "numpy", "scipy", "torch", "jax", "scikit-learn",
                                  "onnxruntime", "mpi4py")),
        f"CPU: {plan.cpu_model()}, {os.cpu_count()} cores, LLVM target {numba.core.config.CPU_NAME or 'host'} "
        f"({llvm.get_host_cpu_name()})",
        f"threads: numba {numba.config.NUMBA_NUM_THREADS}, threading layer {numba.config.THREADING_LAYER} "
        f"(available: {', '.join(layers) or 'none'}; in use: {in_use})",
        f"cache: {root}, {len(files)} files, {cache.format_size(sum(f[3] for f in files))}",
        f"background builds: {held} running, at most {builder.build_processes()} at once (FASTBP_BUILDS)",
        "environment: " + (", ".join(f"{k}={v}" for k, v in sorted(os.environ.items())
                                     if k.startswith(("FASTBP_", "NUMBA_", "OMP_", "OPENBLAS_", "MKL_")))
                           or "no FASTBP_, NUMBA_, OMP_, OPENBLAS_ or MKL_ variable set"),
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastbp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="train XOR and the digits, and compare with numpy")
    b = sub.add_parser("bench", help="time fastbp against numpy and the installed peers, alternating, in one run")
    cases = [*bench.CASES, bench.POPULATION.name, "sklearn", "cold-start"]
    b.add_argument("--cases", nargs="+", choices=cases, default=cases,
                   help="population: 1024 networks of 4-16-2, one row each; sklearn: whole fits of scikit-learn's "
                        "MLPClassifier and fastbp.sklearn's; cold-start: fresh processes' import and first calls")
    b.add_argument("--ops", nargs="+", choices=bench.OPS, default=list(bench.OPS))
    b.add_argument("--threads", type=int, nargs="+", metavar="N",
                   help="time each case at each of these thread counts (fastbp, PyTorch, ONNX Runtime); more than "
                        "the cores needs NUMBA_NUM_THREADS as large (default: each library's own)")
    b.add_argument("--json", metavar="PATH", help="write the results as JSON")
    b.add_argument("--plot", metavar="PATH", help="write a bar chart PNG of the speed-ups (needs matplotlib)")
    b.add_argument("--quick", action="store_true", help="fewer and shorter rounds (CI, smoke tests)")
    sub.add_parser("warm", help="compile the generic kernels of both dtypes into the disk cache (machine images, CI)")
    c = sub.add_parser("cache", help="list the disk cache per state of fastbp's sources; --prune, --clear")
    what = c.add_mutually_exclusive_group()
    what.add_argument("--prune", action="store_true", help="remove what no installed fastbp can use")
    what.add_argument("--clear", action="store_true", help="remove the whole cache (running processes rebuild)")
    sub.add_parser("info", help="versions, CPU, threads, cache and builds: what a bug report needs")
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo()
    elif args.command == "warm":
        from .dispatch import warm
        warm(log=print)
    elif args.command == "cache":
        from . import cache
        if args.prune or args.clear:
            files, size = (cache.prune if args.prune else cache.clear)()
            print(f"removed {files} files, {cache.format_size(size)}")
        print(cache.report())
    elif args.command == "info":
        print(info())
    elif args.command == "bench":
        result = bench.run(args.cases, args.ops, threads=args.threads, quick=args.quick)
        if args.json:
            bench.save_json(result, args.json)
        if args.plot:
            bench.plot(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
