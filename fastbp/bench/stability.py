"""How steady a case's train step is: from process to process and from block to block in one.

``python -m fastbp.bench.stability [--case simplechains] [--processes 5] [--blocks 7] [--mode background|eager|off]
[--threads N] [--gap SECONDS]``: each fresh process builds the case's network (prepared: the background build and
its plan done, in the first process if the cache is empty), then times ``blocks`` blocks of 0.3 s of train steps back
to back (``--gap``: a pause before every step, as between a simulation's steps) and prints each block's median; the
last lines give the spread: the largest over the smallest median of the processes, and of the blocks in any one.
"""

import argparse
import json
import subprocess
import sys

import numpy as np

_PROCESS = """
import json, sys, time
import numpy as np
import fastbp
from fastbp.bench import CASES
case, mode, threads, blocks, gap = json.loads(sys.argv[1])
X, Y = CASES[case].data()
c = CASES[case]
net = fastbp.Network(list(c.sizes), hidden=c.hidden, output=c.output, loss=c.loss, optimizer=fastbp.SGD(lr=1e-3),
                     dtype=c.dtype, seed=0, threads=threads, compiled=mode)
net.prepare(c.batch)
net.train_step(X, Y)
medians = []
for _ in range(blocks):
    times, end = [], time.perf_counter() + 0.3
    while time.perf_counter() < end:
        if gap:
            time.sleep(gap)
        start = time.perf_counter()
        net.train_step(X, Y)
        times.append(time.perf_counter() - start)
    medians.append(float(np.median(times)))
observer = net.plan.observed(c.batch) if net.plan is not None else None
print(json.dumps({"medians": medians, "chosen": observer.chosen if observer else None}))
"""


def run(case="simplechains", processes=5, blocks=7, mode="background", threads=None, gap=0.0, log=print):
    """Per process, its blocks' median seconds per step (and what its observer chose); logs a line each and the
    spreads. Returns the list of per-process results."""
    results = []
    for p in range(processes):
        args = json.dumps([case, mode, threads, blocks, gap])
        out = subprocess.run([sys.executable, "-c", _PROCESS, args], capture_output=True, text=True, check=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        results.append(result)
        us = [m * 1e6 for m in result["medians"]]
        log(f"process {p + 1}: blocks {' '.join(f'{u:.0f}' for u in us)} us, median {np.median(us):.0f}"
            + (f" ({result['chosen']})" if result["chosen"] else ""))
    medians = [np.median(r["medians"]) for r in results]
    within = max(max(r["medians"]) / min(r["medians"]) for r in results)
    log(f"across processes: {max(medians) / min(medians):.3f} (largest median over smallest); "
        f"within one: {within:.3f} (largest block over smallest, the worst process)")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastbp.bench.stability", description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="simplechains")
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--mode", choices=("background", "eager", "off"), default="background")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--gap", type=float, default=0.0, help="seconds of pause before every step")
    args = parser.parse_args(argv)
    run(args.case, args.processes, args.blocks, args.mode, args.threads, args.gap,
        log=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
