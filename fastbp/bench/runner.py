"""Running the cases: the machine, the GEMM peak, alternating timed rounds, the table, the plot and the JSON."""

import json
import os
import platform
import sys
import time

import numba
import numpy as np

from ..plan import cpu_model
from . import cold_start, estimators
from .cases import CASES, IMPLS, OPS, PEERS, FastbpImpl, FastbpNoGradImpl, NjitLoopImpl, NumpyImpl
from .population import POPULATION, POPULATION_IMPLS, POPULATION_OPS
from .timing import time_block

_FIRST_STEP = """
import time
start = time.perf_counter()
import fastbp.bench
case = fastbp.bench.CASES[{name!r}]
X, Y = case.data()
case.network().train_step(X, Y)
print(time.perf_counter() - start)
"""


def first_step_seconds(name):
    """Seconds of a fresh interpreter's import and first train step of case ``name``: with an empty cache (every
    kernel it needs compiles) and then with the cache that run left (loads)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        run = lambda: float(subprocess.run([sys.executable, "-c", _FIRST_STEP.format(name=name)], env=env,  # noqa: E731
                                           check=True, capture_output=True, text=True).stdout)
        return run(), run()


def gemm_peak(dtype, n=2048, repeats=5):
    """GFLOP/s of a large ``np.dot`` in ``dtype``, the best of ``repeats``: the machine's practical peak."""
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(n, n)).astype(dtype), rng.normal(size=(n, n)).astype(dtype)
    C = np.empty_like(A)
    np.dot(A, B, out=C)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.dot(A, B, out=C)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def memory_bandwidth(megabytes=256, repeats=3):
    """Bytes per second of a large copy (read and write counted), the best of ``repeats``: the machine's practical
    memory bandwidth."""
    src = np.ones(megabytes << 17)  # float64: 8 bytes each
    dst = np.empty_like(src)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - start)
    return 2 * src.nbytes / min(times)


def floor_seconds(case, op, peak_gflops, bandwidth):
    """The least time one call of ``op`` can take: its FLOPs at the GEMM peak, or the bytes it must move at the
    memory bandwidth (the batch read once, the parameters read and written once: what any fused step moves),
    whichever is longer."""
    itemsize = np.dtype(case.dtype).itemsize
    members = getattr(case, "n", 1)  # a population case: its members
    params = sum(a * b + b for a, b in zip(case.sizes[:-1], case.sizes[1:]))
    rows = case.batch * (case.sizes[0] + (case.sizes[-1] if op != "forward" else 0))
    moved = members * itemsize * (rows + (2 * params if op != "forward" else params))
    return max(case.flops(op) / (peak_gflops * 1e9), moved / bandwidth)


def machine():
    """What the numbers were measured on."""
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "numba_threads": numba.get_num_threads(),
            "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__}
    for mod in PEERS:
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = "; ".join(f"{p.get('internal_api')} {p.get('version')} ({p.get('filepath', '').rsplit('/', 1)[-1]}"
                                 f", {p.get('num_threads')} threads, {p.get('architecture')})"
                                 for p in threadpool_info() if p.get("user_api") == "blas")
    except ImportError:
        info["blas"] = "unknown (install threadpoolctl)"
    return info


def measure(case, op, impls, rounds, block_seconds, settle=0.2):
    """Median seconds per call of each implementation, timed in alternating rounds (:func:`measure_rounds`)."""
    return {name: float(np.median(t)) for name, t in measure_rounds(case, op, impls, rounds, block_seconds,
                                                                    settle).items()}


def measure_rounds(case, op, impls, rounds, block_seconds, settle=0.2):
    """Seconds per call of each implementation in each of ``rounds`` alternating rounds: round k of one and of another
    were timed side by side, so their ratio cancels the drift of the machine between rounds.

    ``impls`` are constructed adapters; each round times a block of calls of every one, in an order drawn afresh each
    round (seeded: no implementation always follows the same one), after a pause of ``settle`` seconds: each
    library's thread pool spins for a while after its last call (OpenBLAS for about 0.1 s), and would otherwise
    steal the cores from the next one.
    """
    calls = {}
    for impl in impls:
        getattr(impl, "prepare", lambda: None)()
        fn = getattr(impl, op)
        fn()
        once = max(time_block(fn, 1), 1e-7)
        calls[impl.name] = max(1, min(100_000, int(block_seconds / once)))
    times = {impl.name: [] for impl in impls}
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        for impl in (impls[i] for i in rng.permutation(len(impls))):
            getattr(impl, "prepare", lambda: None)()
            times[impl.name].append(time_block(getattr(impl, op), calls[impl.name], settle))
    return times


def run(cases=tuple(CASES), ops=OPS, threads=None, quick=False, peers=PEERS, log=print):
    """Measure every case and op; returns a JSON-ready dict and logs the table at the end (progress on stderr). The case
    ``sklearn`` (:mod:`.estimators`) times whole fits instead of ops, and ``cold-start`` (:mod:`.cold_start`) fresh
    processes' first calls, each in a table of its own.

    ``threads`` sweeps thread counts: each case is timed at each count, fastbp's network (or population) and
    PyTorch's and ONNX Runtime's intra-op threads limited to it (numpy's BLAS and JAX keep theirs); None times each
    library at its default (fastbp: Numba's thread count; PyTorch and ONNX Runtime: their fastest count here)."""
    sklearn_rows = estimators.run(rounds=1 if quick else 3, log=log) if "sklearn" in cases else None
    cold_rows = cold_start.run(rounds=1 if quick else 3, log=log) if "cold-start" in cases else None
    cases = [c for c in cases if c not in ("sklearn", "cold-start")]
    if not cases:
        return {"machine": machine(), "results": [], "skipped": {}, "sklearn": sklearn_rows, "cold_start": cold_rows}
    counts = list(threads) if threads else [None]
    for t in counts:
        if t is not None and not 1 <= t <= numba.config.NUMBA_NUM_THREADS:
            raise ValueError(f"--threads {t}: Numba has {numba.config.NUMBA_NUM_THREADS} threads; set "
                             f"NUMBA_NUM_THREADS to at least {t} (more threads than cores are allowed)")
    rounds, block = (3, 0.02) if quick else (7, 0.1)
    info = machine()
    dtypes = sorted({np.dtype(_case(c).dtype).name for c in cases})
    gemm_n = 1024 if quick else 2048
    peak = {d: gemm_peak(np.dtype(d).type, n=gemm_n) for d in dtypes}
    rows, skipped, plans = [], {}, {}
    for name in cases:
        case = _case(name)
        for t in counts:
            impls = _impls(case, t, ops, peers, skipped)
            for op in (o for o in ops if name != POPULATION.name or o in POPULATION_OPS):
                times = measure(case, op, [i for i in impls if hasattr(i, op)], rounds, block)
                nograd = times.pop(FastbpNoGradImpl.name, None)  # timed in the same rounds, reported as its own row
                rows.append(_row(case, op, times, t))
                if nograd is not None:
                    rows.append(_row(case, f"{op} (no grad)", {**times, "fastbp": nograd}, t))  # SGD(keep_grad=False)
                print(f"  measured {_label(name, t)} {op}", file=sys.stderr)
            if name != POPULATION.name:
                plans[_label(name, t)] = _plan(impls[0].net, case.batch)
            if "train_step" in ops and name in ("xor", "policy-online"):
                loop = NjitLoopImpl(case, t)
                per_step = measure(case, "train_step", [loop], rounds, block)["fastbp-njit"] / NjitLoopImpl.STEPS
                numpy_time = next(r for r in rows if r["case"] == name and r["op"] == "train_step"
                                  and r["threads"] == t)["us"]["numpy"]
                rows.append(_row(case, "train_step (@njit loop)", {"fastbp": per_step, "numpy": numpy_time * 1e-6}, t))
    first_steps = {} if quick else {name: first_step_seconds(name) for name in ("simplechains",) if name in cases}
    # A shared machine drifts: the peak is the best of a measurement before the cases and one after them.
    peak = {d: max(g, gemm_peak(np.dtype(d).type, n=gemm_n)) for d, g in peak.items()}
    for row in rows:
        row["peak_percent"] = 100 * row["gflops"] / peak[np.dtype(_case(row["case"]).dtype).name]
    log(_header(info, peak, gemm_n))
    for row in rows:
        log(_format_row(row))
    for name, chosen in plans.items():
        log(_format_plan(name, chosen))
    for peer, why in skipped.items():
        log(f"{peer}: skipped ({why})")
    for name, (cold, warm) in first_steps.items():
        log(f"{name}: import and first train step in a fresh process: {cold:.1f} s with an empty cache (compiles), "
            f"{warm:.2f} s from the disk cache")
    return {"machine": info, "gemm_peak_gflops": peak, "results": rows, "skipped": skipped, "plans": plans,
            "first_step_seconds": first_steps, "sklearn": sklearn_rows, "cold_start": cold_rows}


def _impls(case, threads, ops, peers, skipped):
    """fastbp, numpy and the installed peers that have one of ``ops``, set up for ``case`` at ``threads``."""
    if case.name == POPULATION.name:
        impls = [POPULATION_IMPLS["fastbp"](case, threads)] + [POPULATION_IMPLS[k](case) for k in ("numpy", "loop")]
        registry, extra = POPULATION_IMPLS, ()
    else:
        impls, registry, extra = [FastbpImpl(case, threads), NumpyImpl(case)], IMPLS, (threads,)
        if case.batch == 1 and "train_step" in ops:  # where keep_grad=False changes the kernel's work
            impls.append(FastbpNoGradImpl(case, threads))
    # ONNX Runtime has no population case, and only forward
    for peer in (p for p in peers if p in registry and any(hasattr(registry[p], op) for op in ops)):
        try:
            impls.append(registry[peer](case, *extra))
        except NotImplementedError as exc:
            skipped[peer] = str(exc)
    return impls


def _label(name, threads):
    return name if threads is None else f"{name} x{threads}"


def _plan(net, batch):
    """What chose fastbp's kernels for a case: the batch class timed, the candidate chosen and every candidate's
    seconds in the plan, and what the network observed on its own calls (None in a fixed mode)."""
    if net.plan is None:
        return None
    rows = net.plan.timed_class(batch)
    observer = net.plan.observed(batch)
    return {"class": rows, "chosen": observer.chosen if observer else net.plan.choice(batch),
            "seconds": net.plan.times[rows], "observed": observer.observed if observer else None}


def _format_plan(name, chosen):
    if chosen is None:
        return f"plan {name}: none (a fixed mode: FASTBP_COMPILE=eager or off)"
    def us(seconds):
        return ", ".join(f"{c} {t * 1e6:.1f}" for c, t in sorted(seconds.items(), key=lambda kv: kv[1]))
    observed = f"; observed here: {us(chosen['observed'])}" if chosen.get("observed") else ""
    return (f"plan {name}: {chosen['chosen']} (class {chosen['class']} rows, us per step: {us(chosen['seconds'])}"
            f"{observed})")


def _case(name):
    return POPULATION if name == POPULATION.name else CASES[name]


def _row(case, op, seconds, threads=None):
    us = {name: t * 1e6 for name, t in seconds.items()}
    gflops = case.flops(op.split()[0]) / seconds["fastbp"] / 1e9
    peers = {k: v for k, v in us.items() if k in PEERS}
    best = min(peers, key=peers.get) if peers else None
    return {"case": case.name, "op": op, "threads": threads, "us": us, "gflops": gflops, "peak_percent": None,
            "speedup_numpy": us["numpy"] / us["fastbp"],
            "best_peer": best, "speedup_best_peer": us[best] / us["fastbp"] if best else None}


def _header(info, peak, n):
    lines = [f"machine: {info['cpu']}, {info['cores']} cores, numba threads {info['numba_threads']}",
             f"versions: python {info['python']}, numpy {info['numpy']}, numba {info['numba']}, "
             f"torch {info['torch']}, jax {info['jax']}, onnxruntime {info['onnxruntime']}",
             f"BLAS: {info['blas']}",
             f"GEMM peak (np.dot, {n} square, best before and after the cases): "
             + ", ".join(f"{d} {g:.1f} GFLOP/s" for d, g in peak.items()),
             "",
             f"{'case':<18} {'op':<24} {'fastbp us':>10} {'numpy us':>10} {'torch us':>10} {'jax us':>10} "
             f"{'ort us':>10} {'loop us':>10} {'GFLOP/s':>8} {'% peak':>7} {'vs numpy':>9} {'vs best peer':>13}"]
    return "\n".join(lines)


def _format_row(row):
    us = row["us"]
    cell = lambda k: f"{us[k]:10.2f}" if k in us else f"{'-':>10}"  # noqa: E731
    peer = f"{row['speedup_best_peer']:7.2f}x ({row['best_peer']})" if row["best_peer"] else f"{'-':>13}"
    return (f"{_label(row['case'], row.get('threads')):<18} {row['op']:<24} {cell('fastbp')} {cell('numpy')} "
            f"{cell('torch')} {cell('jax')} {cell('onnxruntime')} {cell('loop')} "
            f"{row['gflops']:8.2f} {row['peak_percent']:6.1f}% {row['speedup_numpy']:8.2f}x {peer}")


def plot(result, path):
    """A bar chart of fastbp's speed-up over numpy (and the best peer) per case, for the train step."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'fastbp[plot]'") from None
    rows = [r for r in result["results"] if r["op"].startswith("train_step")]
    kind = lambda op: "@njit loop" if "njit" in op else "no grad" if "no grad" in op else "from Python"  # noqa: E731
    labels = [f"{r['case']}\n{kind(r['op'])}" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows)), 4))
    ax.bar(x - 0.2, [r["speedup_numpy"] for r in rows], 0.4, label="vs numpy")
    ax.bar(x + 0.2, [r["speedup_best_peer"] or 0 for r in rows], 0.4, label="vs best installed peer")
    ax.axhline(1, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("fastbp speed-up (time ratio)")
    ax.set_title("fastbp train step speed-up, " + result["machine"]["cpu"])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def save_json(result, path):
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
