"""
A population: evolution strategy fitness curve
==============================================

A :class:`fastbp.Population` holds many networks of one architecture and runs all of them in one call. That is
what an evolution strategy needs: every generation, score a crowd of perturbed copies of one parameter vector.

This example fits a 1-16-1 tanh network to y = sin 2x twice: first with no gradients at all, by OpenAI-ES
(Salimans et al., 2017) on the members' parameters ``pop.params``; then by backpropagation, training 200 independent
members at once with ``pop.train_step``.
"""

import matplotlib.pyplot as plt
import numpy as np

import fastbp
from fastbp import kernels, schedules

GENERATIONS = 400
# sphinx_gallery_start_ignore
import os

if os.environ.get("FASTBP_DOCS_QUICK") == "1":
    GENERATIONS = 100
# sphinx_gallery_end_ignore

# %%
# The task and the population
# ---------------------------
# 64 points of sin 2x on [-2, 2]. A population's input has one batch per member,
# shape ``(members, rows, n_in)``; here every member sees the same points, so we repeat them.
#
# The ES perturbs a search mean θ with antithetic noise, θ ± σε, 100 pairs
# for 200 members. We give the population one more member, the last one, which always holds θ
# itself, so a single ``forward`` call scores the perturbations and the current solution together.

x = np.linspace(-2, 2, 64).reshape(-1, 1)
y = np.sin(2 * x)

PAIRS, SIGMA = 100, 0.02
N = 2 * PAIRS
pop = fastbp.Population(N + 1, [1, 16, 1], hidden="tanh", output="identity", loss="mse", seed=0)
X = np.repeat(x[None], N + 1, axis=0)  # (201, 64, 1)
Y = np.repeat(y[None], N + 1, axis=0)
print(pop)
print("parameters per network:", pop.n_params, "  pop.params:", pop.params.shape)

# %%
# OpenAI-ES
# ---------
# Each generation:
#
# 1. write θ + σε_i and θ - σε_i straight into ``pop.params``
#    (a writable view of every member's parameters, one row per member);
# 2. one ``pop.forward(X)`` gives all outputs, shape ``(201, 64, 1)``; fitness is minus each member's mean squared
#    error;
# 3. shape the fitness by its centred ranks (in [-0.5, 0.5], robust to the scale of the fitness) and
#    estimate the gradient ``sum_i r_i eps_i / (N sigma)``;
# 4. take an Adam step on θ. fastbp's own update kernel does this: ``kernels.step(flat, hyper)`` works
#    on any array laid out as a network's ``flat`` (row 0 the parameters, row 1 the gradient, rows 2-3 Adam's
#    moments), and minimises, so we hand it the negated fitness gradient. Its learning rate follows a cosine
#    schedule from 0.03 down to 0 (:class:`fastbp.schedules.Cosine`, computed inside the kernel from the step
#    count), which lets θ settle at the end instead of jittering around the optimum.

rng = np.random.default_rng(0)
theta = np.zeros((4, pop.n_params))  # parameters, gradient, Adam's two moments
theta[0] = pop.params[0]  # start from member 0's initial weights
adam = fastbp.Adam(schedules.Cosine(0.03, steps=GENERATIONS)).hyper()


def centred_ranks(f):
    ranks = np.empty(len(f))
    ranks[np.argsort(f)] = np.arange(len(f))
    return ranks / (len(f) - 1) - 0.5


record = {"best": [], "median": [], "mean": [], "theta": []}
for generation in range(GENERATIONS):
    eps = rng.standard_normal((PAIRS, pop.n_params))
    pop.params[:PAIRS] = theta[0] + SIGMA * eps
    pop.params[PAIRS:N] = theta[0] - SIGMA * eps
    pop.params[N] = theta[0]
    fitness = -np.mean((pop.forward(X) - Y) ** 2, axis=(1, 2))  # (201,)
    members = fitness[:N]
    record["best"].append(members.max())
    record["median"].append(np.median(members))
    record["mean"].append(members.mean())
    record["theta"].append(fitness[N])
    shaped = centred_ranks(members)
    theta[1] = -(shaped[:PAIRS] - shaped[PAIRS:]) @ eps / (N * SIGMA)
    kernels.step(theta, adam)

pop.params[N] = theta[0]
es_mse = np.mean((pop.forward(X)[N] - y) ** 2)
print(f"search mean: MSE {-record['theta'][0]:.4f} at generation 0, {es_mse:.5f} after {GENERATIONS} generations")

# %%
# The fitness curves show the two faces of the ES: the population's mean and median stay well behind the best member,
# since every member is θ plus noise, while the search mean θ itself, which no perturbed
# member ever equals, improves steadily, tracks the best member and ends below it as the step size shrinks. We plot
# the fitness as the mean squared error it negates, on a log scale: lower is better.

generations = np.arange(1, GENERATIONS + 1)
fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
ax.plot(generations, -np.array(record["best"]), label="best member")
ax.plot(generations, -np.array(record["median"]), label="median member")
ax.plot(generations, -np.array(record["mean"]), label="mean fitness over members", alpha=0.7)
ax.plot(generations, -np.array(record["theta"]), color="black", linewidth=2, label=r"search mean $\theta$")
ax.set_yscale("log")
ax.set_xlabel("generation")
ax.set_ylabel("MSE = -fitness (lower is better)")
ax.set_title(f"OpenAI-ES on {N} members ({PAIRS} antithetic pairs, sigma {SIGMA}), fitting sin(2x)")
ax.legend(loc="upper right")
ax.grid(alpha=0.3)

# %%
# A population trained by gradient
# --------------------------------
# With a loss fastbp knows, there is no need to search: backpropagation gives the gradient exactly.
# ``pop.train_step(X, Y)`` runs one forward pass, backward pass and Adam update for *every* member, each on its own
# batch and with its own optimizer state, and returns each member's loss before its update, shape ``(members,)``. That
# trains an ensemble of 200 independent networks in one call per step. The members start from different random initial
# weights, so they spread out: some converge within 50 steps, the median takes about 150 to fall below 0.01, and a few
# sit on a plateau far longer.

ensemble = fastbp.Population(N, [1, 16, 1], hidden="tanh", output="identity", loss="mse",
                             optimizer=fastbp.Adam(lr=0.03), seed=1)
losses = np.empty((GENERATIONS, N))
for step in range(GENERATIONS):
    losses[step] = ensemble.train_step(X[:N], Y[:N])

final = np.mean((ensemble.forward(X[:N]) - Y[:N]) ** 2, axis=(1, 2))
print(f"gradient-trained members after {GENERATIONS} steps: median MSE {np.median(final):.5f}, "
      f"best {final.min():.6f}, worst {final.max():.5f}")

# %%
# Left: the spread of the members' losses over the train steps, with the ES search mean's loss per generation for
# reference (one generation costs 200 forward passes, one train step one forward and one backward pass per
# member). Right: the functions learnt, on a finer grid: ``forward`` accepts any number of rows per member.

fig, (ax_loss, ax_fit) = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
steps = np.arange(1, GENERATIONS + 1)
lo, q10, median, q90, hi = np.percentile(losses, [0, 10, 50, 90, 100], axis=1)
ax_loss.fill_between(steps, lo, hi, color="C0", alpha=0.15, label="members: min to max")
ax_loss.fill_between(steps, q10, q90, color="C0", alpha=0.35, label="members: 10th to 90th percentile")
ax_loss.plot(steps, median, color="C0", label="members: median")
ax_loss.plot(generations, -np.array(record["theta"]), color="black", linestyle="--",
             label=r"ES search mean $\theta$ (per generation)")
ax_loss.set_yscale("log")
ax_loss.set_xlabel("train step (ES: generation)")
ax_loss.set_ylabel("MSE")
ax_loss.set_title(f"{N} members trained at once by pop.train_step")
ax_loss.legend(fontsize=8)

x_fine = np.linspace(-2.2, 2.2, 200).reshape(-1, 1)
curves = ensemble.forward(np.repeat(x_fine[None], N, axis=0))  # (200 members, 200 rows, 1)
pop.params[:] = theta[0]  # every ES member set to theta
es_curve = pop.forward(np.repeat(x_fine[None], N + 1, axis=0))[0]
for m in range(20):
    ax_fit.plot(x_fine, curves[m], color="C0", alpha=0.3, linewidth=1,
                label="gradient-trained members (20 of 200)" if m == 0 else None)
ax_fit.plot(x_fine, es_curve, color="C3", linewidth=2, label=r"ES search mean $\theta$")
ax_fit.plot(x_fine, np.sin(2 * x_fine), color="black", linestyle="--", label="target sin(2x)")
ax_fit.scatter(x[::4], y[::4], color="black", s=12, zorder=3, label="training points (every 4th)")
ax_fit.set_xlabel("x")
ax_fit.set_ylabel("y")
ax_fit.set_title("The functions learnt")
ax_fit.legend(fontsize=8, loc="upper left")

plt.show()
