"""
Deploying: ONNX out, a PyTorch policy in
========================================

Two directions of the same trip. A network trained with fastbp leaves as an ONNX file that ONNX Runtime (a C++
service, a browser, an embedded controller) runs to rounding of :meth:`fastbp.Network.forward`. And a network trained
elsewhere, here a CartPole policy trained in PyTorch, comes in through :func:`fastbp.onnx.load` and runs inside an
``@njit`` simulation loop, with no Python per step.

The policy file is ``examples/data/cartpole_policy.onnx``, written by ``examples/torch_policy.py`` (PyTorch's
``torch.onnx.export`` of an ``nn.Sequential(Linear(4, 32), Tanh(), Linear(32, 2), Softmax(dim=-1))``, trained by
behaviour cloning of a linear controller); the CartPole dynamics are ``examples/cartpole.py``'s, Gymnasium's
CartPole-v1 in ``@njit``.
"""

import pathlib
import sys
import tempfile
import time

import matplotlib.pyplot as plt
import numba
import numpy as np
import onnxruntime as ort

import fastbp
import fastbp.onnx
from fastbp import kernels

# sphinx_gallery_start_ignore
# This file is docs/gallery/plot_deploy.py; sphinx-gallery runs it with sys.argv[0] set to its path.
EXAMPLES = pathlib.Path(sys.argv[0]).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))
# sphinx_gallery_end_ignore
import cartpole

EPISODES = 100
# sphinx_gallery_start_ignore
import os

if os.environ.get("FASTBP_DOCS_QUICK") == "1":
    EPISODES = 20
# sphinx_gallery_end_ignore

# %%
# Out: train, export, run in ONNX Runtime
# ---------------------------------------
# Two interleaved half-moons, a 2-32-32-2 tanh network with a softmax output, ``fit`` for 200 epochs. ``to_onnx``
# writes the graph (one ``Gemm`` and one activation per layer, the batch dimension dynamic, checked by
# ``onnx.checker``) and returns it.

rng = np.random.default_rng(0)
t = rng.uniform(0, np.pi, 600)
label = rng.integers(0, 2, 600)
X = np.column_stack([np.cos(t) + label, np.sin(t) * (1 - 2 * label) + 0.5 * label]) + rng.normal(0, 0.1, (600, 2))

net = fastbp.Network([2, 32, 32, 2], hidden="tanh", output="softmax", loss="cross_entropy",
                     optimizer=fastbp.Adam(0.01), dtype=np.float32, seed=0)
net.fit(X, label, epochs=200, batch_size=64)
print(f"training accuracy {(net.predict(X) == label).mean():.3f}")
path = pathlib.Path(tempfile.mkdtemp()) / "moons.onnx"
net.to_onnx(path)

session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
(probabilities,) = session.run(None, {"input": X.astype(np.float32)})
print(f"ONNX Runtime vs fastbp: largest difference {np.abs(probabilities - net.forward(X)).max():.1e}")

# %%
# Either side answers one query in microseconds; fastbp's ``forward`` checks its input each call (the ``@njit``
# kernels below skip even that). A quick look, not a benchmark (``python -m fastbp bench`` is one):

x = X[:1].astype(np.float32)
for name, query in [("fastbp forward", lambda: net.forward(x)),
                    ("ONNX Runtime run", lambda: session.run(None, {"input": x}))]:
    query()
    start = time.perf_counter()
    for _ in range(2000):
        query()
    print(f"{name:>18}: {(time.perf_counter() - start) / 2000 * 1e6:6.1f} us per one-row query")

# %%
# In: a PyTorch-trained policy inside an ``@njit`` loop
# -----------------------------------------------------
# :func:`fastbp.onnx.load` reads PyTorch's graph (``Gemm``, ``Tanh``, ``Gemm``, ``Softmax``) into a network of the
# same function; the network's arrays then go to the ``@njit`` episode loop, which queries the policy through
# :func:`fastbp.kernels.predict` at every step and pushes the cart the likelier way.

policy = fastbp.onnx.load(EXAMPLES / "data" / "cartpole_policy.onnx")
print(policy)


@numba.njit
def episodes(flat, spec, work, n, angles):
    """n episodes of greedy control; the pole angle of every step into angles[episode, step]; the returns."""
    np.random.seed(0)
    state, x, p = np.zeros(4), np.zeros((1, 4)), np.zeros((1, 2))
    returns = np.zeros(n)
    for e in range(n):
        cartpole.reset(state)
        for t in range(cartpole.MAX_STEPS):
            x[0, :] = state
            kernels.predict(flat, spec, work, x, p)
            angles[e, t] = state[2]
            returns[e] += 1
            if cartpole.step(state, 1 if p[0, 1] > p[0, 0] else 0):
                break
    return returns


angles = np.full((EPISODES, cartpole.MAX_STEPS), np.nan)
returns = episodes(policy.flat, policy.spec, policy.workspace(1), EPISODES, angles)
print(f"{EPISODES} episodes: mean return {returns.mean():.1f} (CartPole-v1 counts {cartpole.SOLVED:.0f} as solved)")

fig, ax = plt.subplots(figsize=(7, 3.2))
for e in range(min(EPISODES, 10)):
    ax.plot(np.degrees(angles[e]), lw=0.8)
ax.axhline(12, color="k", ls=":", lw=0.8)
ax.axhline(-12, color="k", ls=":", lw=0.8)
ax.set(xlabel="step", ylabel="pole angle (degrees)", title="The PyTorch policy, run by fastbp in @njit")
fig.tight_layout()
plt.show()
