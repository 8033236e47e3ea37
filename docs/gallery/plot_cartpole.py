"""
CartPole: REINFORCE return curve
================================

Balancing a pole on a cart (Gymnasium's CartPole-v1) with a policy-gradient method, trained entirely inside one
Numba ``@njit`` loop: the simulation, the policy queries, the gradient of the policy-gradient loss and the Adam
updates all run in compiled code, with no Python between episodes.

The code lives in the repository's ``examples`` folder: ``examples/cartpole.py`` (the CartPole-v1 dynamics in
``@njit``) and ``examples/cartpole_reinforce.py`` (REINFORCE with a learned baseline). This page imports them and
plots the return of every episode.
"""

import pathlib
import sys

import matplotlib.pyplot as plt
import numpy as np

# cartpole and cartpole_reinforce are in the examples folder of a fastbp checkout: put it on sys.path.
# sphinx_gallery_start_ignore
# This file is docs/gallery/plot_cartpole.py. sphinx-gallery runs it without __file__ but, as python does, with
# sys.argv[0] set to its path.
sys.path.insert(0, str(pathlib.Path(sys.argv[0]).resolve().parents[2] / "examples"))
# sphinx_gallery_end_ignore
import cartpole
import cartpole_reinforce

MAX_EPISODES = 1000
SEEDS = [0, 1, 2]
# sphinx_gallery_start_ignore
import os

if os.environ.get("FASTBP_DOCS_QUICK") == "1":
    MAX_EPISODES = 150
# sphinx_gallery_end_ignore

# %%
# The networks
# ------------
# The policy is a 4-32-2 tanh network with a softmax output: the probabilities of pushing the cart left or right.
# The baseline is a 4-32-1 network that learns each state's (scaled) discounted return, by mean squared error. Both
# are ordinary :class:`fastbp.Network` objects, built by ``cartpole_reinforce.networks(seed)``:
#
# .. code-block:: python
#
#     policy = fastbp.Network([4, 32, 2], hidden="tanh", output="softmax", loss="cross_entropy",
#                             optimizer=fastbp.Adam(0.01), seed=seed)
#     value = fastbp.Network([4, 32, 1], hidden="tanh", output="identity", loss="mse",
#                            optimizer=fastbp.Adam(0.01), seed=seed + 1)

policy, value = cartpole_reinforce.networks(0)
print(policy)
print(value)

# %%
# The training loop
# -----------------
# ``cartpole_reinforce.train`` is an ``@njit`` function that receives the networks' arrays (``flat``: parameters,
# gradient and Adam state; ``spec``: the architecture; ``hyper``: the optimizer settings) and a scratch ``work``
# array. For every episode it
#
# - plays the episode, querying the policy once per step with ``fastbp.kernels.predict`` and sampling the push;
# - computes the discounted returns ``G_t`` and the advantages ``A_t = G_t - V(s_t)``, normalised;
# - writes the gradient of the policy-gradient loss ``L = -(1/T) sum_t A_t log pi(a_t | s_t)`` with
#   respect to the policy's output probabilities, ``dL/dP[t, a_t] = -A_t / (T P[t, a_t])``,
#   and hands it to ``fastbp.kernels.backward`` (backpropagation through softmax and the layers) and
#   ``fastbp.kernels.step`` (Adam): a loss fastbp does not know, trained with fastbp's kernels;
# - fits the baseline with one ``fastbp.kernels.train_step`` on the episode's states and returns.
#
# It stops once the mean return of the last 100 episodes reaches 475, Gymnasium's threshold for solving
# CartPole-v1 (an episode lasts at most 500 steps, and every step earns a reward of 1).
# ``cartpole_reinforce.run_fastbp(seed, max_episodes)`` builds the networks and the arrays, calls ``train`` and
# returns the number of episodes, environment steps, seconds and each episode's return.

cartpole_reinforce.run_fastbp(0, 1)  # compile the loop (or load it from Numba's cache) before timing anything

runs = {}
for seed in SEEDS:
    episodes, steps, seconds, returns = cartpole_reinforce.run_fastbp(seed, MAX_EPISODES)
    runs[seed] = returns
    solved = episodes >= 100 and returns[-100:].mean() >= cartpole.SOLVED
    print(f"seed {seed}: {'solved' if solved else 'not solved'} after {episodes} episodes "
          f"({steps} environment steps) in {seconds:.2f} s")

# %%
# The return curves
# -----------------
# Each episode's return (thin) and the mean of the last 100 episodes (thick; fewer at the start). Learning is noisy,
# as policy gradients are, but every seed climbs from about 20 steps of balancing to the full 500 within a few
# hundred episodes, and training stops as soon as the 100-episode mean crosses 475.


def trailing_mean(x, window=100):
    sums = np.cumsum(np.concatenate([[0.0], x]))
    counts = np.minimum(np.arange(1, len(x) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(x) + 1) - counts]) / counts


fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
for k, (seed, returns) in enumerate(runs.items()):
    episode = np.arange(1, len(returns) + 1)
    ax.plot(episode, returns, color=f"C{k}", alpha=0.3, linewidth=0.8)
    ax.plot(episode, trailing_mean(returns), color=f"C{k}", linewidth=2.2,
            label=f"seed {seed}: 100-episode mean ({len(returns)} episodes run)")
ax.plot([], [], color="gray", alpha=0.5, linewidth=0.8, label="thin lines: each episode's return")
ax.axhline(cartpole.SOLVED, color="black", linestyle="--", linewidth=1, label="solved: mean return 475")
ax.set_ylim(0, 520)
ax.set_xlabel("episode")
ax.set_ylabel("return (steps balanced)")
ax.set_title("REINFORCE with a baseline on CartPole-v1, trained inside one @njit loop")
ax.legend(loc="center left", fontsize=9)

plt.show()
