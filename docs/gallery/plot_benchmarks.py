"""
Benchmarks: fastbp against numpy, PyTorch and JAX
=================================================

How long one training step takes in fastbp, in a plain numpy implementation of the same network, in PyTorch and in
JAX, for networks from 2-2-1 up to three 1024-wide layers. This page does not run a benchmark (that takes minutes,
and the docs are built on machines that vary): it plots a stored result, ``bench.json`` beside this file, which the
benchmark command wrote:

.. code-block:: sh

    python -m fastbp bench --json bench.json

``--plot speedups.png`` also draws fastbp's speed-ups as a bar chart (it needs matplotlib), ``--cases`` and
``--ops`` pick what to time, and ``--quick`` runs fewer, shorter rounds. The command times all implementations in
one process, alternating round by round so that drift on a shared machine hits them alike, and reports medians. The
PyTorch and JAX columns appear only when ``import torch`` and ``import jax`` work.
"""

import json
import pathlib
import tempfile

import matplotlib.pyplot as plt
import numpy as np

from fastbp import bench

result = json.loads(pathlib.Path("bench.json").read_text())

# %%
# Where the numbers come from
# ---------------------------
# The file records the machine and the versions of everything it timed. These numbers are the medians of one run,
# on a shared 2-core virtual machine, where timings drift by 10-30% from run to run: compare the implementations
# within the file, not with another machine's.

machine = result["machine"]
print(f"machine: {machine['cpu']}, {machine['cores']} cores, numba threads {machine['numba_threads']}")
print(f"versions: python {machine['python']}, numpy {machine['numpy']}, numba {machine['numba']}, "
      f"torch {machine['torch']}, jax {machine['jax']}")
print(f"BLAS: {machine['blas']}")
print("GEMM peak (np.dot):", ", ".join(f"{d} {g:.1f} GFLOP/s" for d, g in result["gemm_peak_gflops"].items()))
for case, (cold, warm) in result["first_step_seconds"].items():
    print(f"{case}: import and first train step in a fresh process {cold:.1f} s with an empty cache (compiling), "
          f"{warm:.2f} s from the disk cache")

# %%
# The cases
# ---------
# Each case is one network, batch size and dtype, defined in ``fastbp.bench``. Every implementation trains the same
# network from the same weights on the same data; the rows below give microseconds per call and fastbp's speed-up
# over numpy and over the faster of PyTorch and JAX. ``train_step (@njit loop)`` is fastbp's train step called from
# a user's own ``@njit`` loop instead of from Python.

cases = {case.name: case for case in [*bench.CASES.values(), bench.POPULATION]}


def describe(name):
    case = cases[name]
    sizes = "-".join(map(str, case.sizes))
    members = f"{case.n} x " if hasattr(case, "n") else ""
    rows = f"{case.batch:,} row" + ("s" if case.batch > 1 else "")
    return f"{name}\n{members}{sizes}, {rows}, {np.dtype(case.dtype).name}"


print(f"{'case':<14} {'op':<24} {'fastbp us':>10} {'numpy us':>10} {'torch us':>10} {'jax us':>10} "
      f"{'vs numpy':>9} {'vs best peer':>13}")
for row in result["results"]:
    us = row["us"]
    cell = {k: f"{us[k]:10.2f}" if k in us else f"{'-':>10}" for k in ("fastbp", "numpy", "torch", "jax")}
    peer = f"{row['speedup_best_peer']:6.2f}x ({row['best_peer']})" if row["best_peer"] else "-"
    print(f"{row['case']:<14} {row['op']:<24} {cell['fastbp']} {cell['numpy']} {cell['torch']} {cell['jax']} "
          f"{row['speedup_numpy']:8.2f}x {peer:>13}")

# %%
# Time per call
# -------------
# One group of bars per case, one bar per implementation, on a log scale (shorter is faster). The small networks
# are where fastbp's kernels pay off: a train step of the XOR network costs a few microseconds from Python and well
# under one from ``@njit``, where numpy, PyTorch and JAX spend tens to hundreds of microseconds on the overhead of
# their calls. For the large layers (``mnist``, ``wide``) all four run the same kind of BLAS matrix products and
# land close together.

IMPLS = [("fastbp", "fastbp"), ("fastbp @njit", "fastbp, from an @njit loop"), ("numpy", "numpy"),
         ("torch", "PyTorch"), ("jax", "JAX")]


def timings(op):
    """{implementation: [us per case]} for one op, NaN where the file has no timing."""
    rows = {r["case"]: r for r in result["results"] if r["op"] == op}
    njit = {r["case"]: r for r in result["results"] if r["op"] == op + " (@njit loop)"}
    out = {}
    for name, _ in IMPLS:
        if name == "fastbp @njit":
            out[name] = [njit[c]["us"]["fastbp"] if c in njit else np.nan for c in rows]
        else:
            out[name] = [rows[c]["us"].get(name, np.nan) for c in rows]
    return list(rows), out


fig, axes = plt.subplots(1, 2, figsize=(13, 7.5), sharey=True, layout="constrained")
for ax, op in zip(axes, ["train_step", "forward"]):
    names, us = timings(op)
    impls = [(k, label) for k, label in IMPLS if not np.all(np.isnan(us[k]))]
    height = 0.8 / len(impls)
    y = np.arange(len(names))
    for j, (key, label) in enumerate(impls):
        offset = (j - (len(impls) - 1) / 2) * height
        ax.barh(y + offset, us[key], height, label=label, color=f"C{IMPLS.index((key, label))}")
    ax.set_xscale("log")
    ax.set_xlabel("microseconds per call (log scale; shorter is faster)")
    ax.set_title(f"{op}")
    ax.grid(axis="x", which="major", alpha=0.3)
axes[0].set_yticks(np.arange(len(names)), [describe(n) for n in names], fontsize=9)
axes[0].invert_yaxis()
fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(IMPLS))
fig.suptitle(f"fastbp, numpy, PyTorch and JAX: medians of one run on {machine['cpu']}, {machine['cores']} cores")

# %%
# Speed-ups: what ``--plot`` draws
# --------------------------------
# ``python -m fastbp bench --plot speedups.png`` draws fastbp's speed-up on the train step over numpy and over the
# best installed peer with ``fastbp.bench.plot(result, path)``, which takes the same dictionary the JSON file holds.
# Above 1, fastbp is faster. Here it draws the stored result into a temporary file and the figure it leaves open is
# shown below.

with tempfile.TemporaryDirectory() as tmp:
    bench.plot(result, pathlib.Path(tmp) / "speedups.png")

plt.show()
