"""
XOR: the decision surface as it trains
======================================

XOR is the classic problem a single layer cannot solve: the two classes are not linearly separable. A network with
one hidden layer of two sigmoid units can, and watching its output over the input plane shows how it gets there.

This example trains the textbook 2-2-1 network with full-batch gradient descent, one :meth:`fastbp.Network.train_step`
per epoch, and draws the network's output over the plane at a few moments of training.
"""

import matplotlib.pyplot as plt
import numpy as np

import fastbp

EPOCHS = 8000
# sphinx_gallery_start_ignore
import os

if os.environ.get("FASTBP_DOCS_QUICK") == "1":
    EPOCHS = 2000
# sphinx_gallery_end_ignore

# %%
# The data and the network
# ------------------------
# Four points, their XOR as the target. The network has a sigmoid output and the binary cross-entropy loss
# (``loss="bce"``), trained by plain SGD with a learning rate of 0.5. ``seed=1`` fixes the initial weights, so the
# run is the same every time.

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
Y = np.array([[0], [1], [1], [0]], dtype=np.float64)

net = fastbp.Network([2, 2, 1], hidden="sigmoid", output="sigmoid", loss="bce",
                     optimizer=fastbp.SGD(lr=0.5), dtype=np.float64, seed=1)
print(net)

# %%
# Training, with snapshots of the output surface
# ----------------------------------------------
# Each ``train_step(X, Y)`` runs the forward pass, backpropagation and the SGD update in place, and returns the mean
# loss *before* the update. Every few epochs we also evaluate the network on a grid covering
# [-0.5, 1.5]²: ``net.forward(grid)`` takes all 40,000 grid points as one batch.

xs = np.linspace(-0.5, 1.5, 200)
gx, gy = np.meshgrid(xs, xs)
grid = np.column_stack([gx.ravel(), gy.ravel()])

snapshots = [0, 500, 1000, EPOCHS]
surfaces = {}
losses = np.empty(EPOCHS)
for epoch in range(EPOCHS + 1):
    if epoch in snapshots:
        surfaces[epoch] = net.forward(grid).reshape(gx.shape)
    if epoch < EPOCHS:
        losses[epoch] = net.train_step(X, Y)

print("loss after", EPOCHS, "epochs:", net.evaluate(X, Y))
print("outputs:    ", net.forward(X).ravel().round(4))
print("predictions:", net.forward(X).round().ravel())

# %%
# The output surface
# ------------------
# Before training the output is close to 0.5 everywhere. The network first separates the plane with one line, then
# the second hidden unit bends the surface into the band that puts (0, 1) and (1, 0) on one side and (0, 0) and
# (1, 1) on the other.

fig, axes = plt.subplots(1, len(snapshots), figsize=(13, 3.6), sharex=True, sharey=True, layout="constrained")
for ax, epoch in zip(axes, snapshots):
    filled = ax.contourf(gx, gy, surfaces[epoch], levels=np.linspace(0, 1, 11), cmap="RdBu_r", vmin=0, vmax=1)
    ax.contour(gx, gy, surfaces[epoch], levels=[0.5], colors="black", linewidths=1.2)
    for cls, marker in ((0, "o"), (1, "s")):
        points = X[Y[:, 0] == cls]
        ax.scatter(points[:, 0], points[:, 1], marker=marker, s=90, c="white", edgecolors="black",
                   linewidths=1.5, label=f"class {cls}")
    ax.set_title(f"after {epoch} epochs")
    ax.set_xlabel("$x_1$")
    ax.set_aspect("equal")
axes[0].set_ylabel("$x_2$")
axes[0].legend(loc="upper left", fontsize=8, framealpha=0.9)
fig.colorbar(filled, ax=axes, label="network output", shrink=0.9)
fig.suptitle("XOR: output of the 2-2-1 network over the input plane (black line: output 0.5)")

# %%
# The loss curve
# --------------
# The loss sits on a plateau near log 2 ≈ 0.69 (the output is 0.5 for every point) until the hidden
# units break the symmetry, then falls steeply; after that it keeps shrinking slowly as the outputs approach 0 and 1.

fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
ax.plot(np.arange(EPOCHS), losses, label="training loss (binary cross-entropy)")
for epoch in snapshots[1:-1]:
    ax.axvline(epoch, color="gray", linestyle=":", linewidth=1)
ax.set_yscale("log")
ax.set_xlabel("epoch (one full-batch train step)")
ax.set_ylabel("loss")
ax.set_title("XOR: training loss (dotted: the snapshots above)")
ax.legend()

plt.show()
