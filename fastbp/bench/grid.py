"""The planner's grid: fastbp's train step on architectures and batches chosen apart from the benchmark cases, against
each of fastbp's own candidate kernels forced in turn (:mod:`fastbp.plan`), the plain numpy loop and the installed
peers, timed alternating in one process (medians).

``python -m fastbp.bench.grid [--points 40] [--cases NAME ...] [--threads N ...] [--json PATH] [--plot PATH]``:
widths 2-1024 (every layer as wide, input and output too), 1-6 layers, batches 1-4096, float32 and float64, drawn by
a seeded generator from the points whose step is at most 2^30 multiply-adds; relu hidden layers, identity output,
mse. ``--cases`` runs the benchmark cases (``python -m fastbp bench``'s) instead; ``--threads`` times each point at
each thread count.
"""

import argparse
import itertools
import json
import sys

import numpy as np

from .. import plan
from ..kernels import compiled as compiled_kernels
from .cases import CASES, IMPLS, Case, FastbpImpl, NumpyImpl
from .runner import measure

# Batches between the plan's batch classes as well as on them, so the grid does not flatter the planner.
WIDTHS, DEPTHS, BATCHES = (2, 8, 32, 128, 512, 1024), range(1, 7), (1, 4, 32, 200, 1000, 4096)
DTYPES = (np.float32, np.float64)


def points(count=40, seed=0, max_work=1 << 30):
    """``count`` grid cases drawn without replacement, seeded."""
    grid = [(w, d, b, t) for w, d, b, t in itertools.product(WIDTHS, DEPTHS, BATCHES, DTYPES)
            if b * d * w * w <= max_work]
    chosen = np.random.default_rng(seed).choice(len(grid), size=min(count, len(grid)), replace=False)
    return [Case(f"{w}x{d}-b{b}-{np.dtype(t).name}", (w,) * (d + 1), b, t, "relu", "identity", "mse")
            for w, d, b, t in (grid[i] for i in sorted(chosen))]


class CandidateImpl(FastbpImpl):
    """fastbp's ``Network.train_step`` made to run one candidate: both compiled tiers loaded, a plan that has that
    candidate only (so the network has nothing to check)."""

    def __init__(self, case, candidate, threads=None):
        super().__init__(case, threads)
        self.name = candidate
        dispatch = self.net.dispatch
        for phase, namespace in zip(("serial", "parallel"), compiled_kernels.for_network(self.net._signature)):
            dispatch._use(phase, namespace)
        dispatch.plan = plan.Plan({rows: {candidate: 1e-6} for rows in plan.CLASSES})
        self.net._forget_hot_path()


def run(cases, peers=("torch", "jax"), rounds=9, block_seconds=0.05, settle=0.2, threads=(None,), log=print):
    """One row per case and thread count: seconds of fastbp (as planned), of each candidate forced (those within the
    thread count), of numpy and of each peer (PyTorch at that thread count; None: each at its default)."""
    rows = []
    for case, t in itertools.product(cases, threads):
        fastbp = FastbpImpl(case, t)
        candidates = [c for c in plan.candidates(fastbp.net._signature, case.batch,
                                                 compiled_kernels.for_network(fastbp.net._signature))
                      if t is None or plan.parse(c)[1] <= t]
        impls = [fastbp, NumpyImpl(case)] + [CandidateImpl(case, c, t) for c in candidates]
        for peer in peers:
            try:
                impls.append(IMPLS[peer](case, t))
            except NotImplementedError:
                pass
        times = measure(case, "train_step", impls, rounds, block_seconds, settle)
        best = min(candidates, key=times.get)
        found = [t for name, t in times.items() if name in peers]
        row = {"case": case.name, "width": case.sizes[0], "layers": len(case.sizes) - 1, "batch": case.batch,
               "dtype": np.dtype(case.dtype).name, "threads": t, "seconds": times, "chosen": _chosen(fastbp.net,
                                                                                                   case.batch),
               "best_candidate": best, "vs_best_candidate": times[best] / times["fastbp"],
               "vs_numpy": times["numpy"] / times["fastbp"],
               "vs_best_peer": min(found) / times["fastbp"] if found else None}
        rows.append(row)
        log(f"{case.name:<22} {'' if t is None else f'x{t}':<4} chosen {row['chosen']:<12} best {best:<12} "
            f"fastbp {times['fastbp'] * 1e6:>10.1f} us  vs best candidate {row['vs_best_candidate']:.2f}  "
            f"vs numpy {row['vs_numpy']:.2f}" + (f"  vs best peer {row['vs_best_peer']:.2f}" if found else ""))
    return rows


def _chosen(net, batch):
    """The candidate a network runs on a batch: what its observer settled on, else its plan's choice."""
    if net.plan is None:
        return "fixed"
    observer = net.plan.observed(batch)
    return observer.chosen if observer is not None else net.plan.choice(batch)


def plot(rows, path):
    """Speed-up over numpy and over the best peer, by width (x) and batch (y), one marker per point (size: layers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("vs_numpy", "speed-up over numpy")] + ([("vs_best_peer", "speed-up over the best peer")]
                                                      if any(r["vs_best_peer"] for r in rows) else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        shown = [r for r in rows if r[key]]
        jitter = {"float32": 0.9, "float64": 1.1}
        sc = ax.scatter([r["width"] * jitter[r["dtype"]] for r in shown], [r["batch"] for r in shown],
                        c=[np.log2(r[key]) for r in shown], cmap="RdYlGn", vmin=-3, vmax=3,
                        s=[30 + 15 * r["layers"] for r in shown], marker="o", edgecolors="k")
        for r in shown:
            ax.annotate(f"{r[key]:.1f}", (r["width"] * jitter[r["dtype"]], r["batch"]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
        ax.set(xscale="log", yscale="log", xlabel="width (every layer)", ylabel="batch rows", title=title)
        fig.colorbar(sc, ax=ax, label="log2 speed-up")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastbp.bench.grid", description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=40)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), help="the benchmark cases instead of the grid")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, nargs="+", metavar="N",
                        help="time each point at each of these thread counts (more than the cores needs "
                             "NUMBA_NUM_THREADS as large)")
    parser.add_argument("--json")
    parser.add_argument("--plot")
    args = parser.parse_args(argv)
    cases = [CASES[name] for name in args.cases] if args.cases else points(args.points, args.seed)
    rows = run(cases, threads=args.threads or (None,), log=lambda line: print(line, flush=True))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
