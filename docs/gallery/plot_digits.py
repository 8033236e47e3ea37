"""
Handwritten digits: learning curves
===================================

A 64-64-10 network classifies scikit-learn's 8x8 handwritten digits (1,797 images, bundled with scikit-learn, so
nothing is downloaded). We train it epoch by epoch with :meth:`fastbp.Network.fit`, record the training and
validation loss and accuracy after every epoch, and then let ``fit`` stop early on its own with ``patience``.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fastbp

EPOCHS = 150
# sphinx_gallery_start_ignore
import os

if os.environ.get("FASTBP_DOCS_QUICK") == "1":
    EPOCHS = 40
# sphinx_gallery_end_ignore

# %%
# The data
# --------
# The pixels are integers 0-16: dividing by 16 scales them to [0, 1]. Labels stay integers 0-9, which
# ``loss="cross_entropy"`` takes directly (no one-hot encoding needed). We hold out 20% as a test set and split the
# rest 75/25 into training and validation sets, all stratified so every digit appears in the same proportion.

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_rest, X_test, y_rest, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
X_train, X_val, y_train, y_val = train_test_split(X_rest, y_rest, test_size=0.25, stratify=y_rest, random_state=0)
print(f"train {X_train.shape}, validation {X_val.shape}, test {X_test.shape}")

# %%
# Training epoch by epoch
# -----------------------
# ``fit(..., epochs=1)`` runs one pass over the shuffled training set in minibatches of 32 and returns a history
# dict with that epoch's mean training loss (``"loss"``) and the validation loss at its end (``"val_loss"``).
# ``predict`` returns class labels (the argmax of the softmax output), from which we compute accuracies.


def make_network():
    return fastbp.Network([64, 64, 10], hidden="relu", output="softmax", loss="cross_entropy",
                          optimizer=fastbp.Adam(lr=1e-3), seed=0)


net = make_network()
curves = {"loss": [], "val_loss": [], "acc": [], "val_acc": []}
for epoch in range(EPOCHS):
    history = net.fit(X_train, y_train, epochs=1, batch_size=32, validation=(X_val, y_val))
    curves["loss"].append(history["loss"][0])
    curves["val_loss"].append(history["val_loss"][0])
    curves["acc"].append(np.mean(net.predict(X_train) == y_train))
    curves["val_acc"].append(np.mean(net.predict(X_val) == y_val))

print(f"after {EPOCHS} epochs: training loss {curves['loss'][-1]:.4f}, validation loss {curves['val_loss'][-1]:.4f}")
print(f"training accuracy {curves['acc'][-1]:.4f}, validation accuracy {curves['val_acc'][-1]:.4f}")
print(f"held-out test accuracy {np.mean(net.predict(X_test) == y_test):.4f}")

# %%
# Learning curves
# ---------------
# The training loss keeps falling as the network memorises the training set (its accuracy reaches 100%), while the
# validation loss levels off after a few dozen epochs and then creeps up slightly: the network starts to overfit.
# Validation accuracy barely moves once it has levelled off.

epochs = np.arange(1, EPOCHS + 1)
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
ax_loss.plot(epochs, curves["loss"], label="training")
ax_loss.plot(epochs, curves["val_loss"], label="validation")
ax_loss.set_yscale("log")
ax_loss.set_xlabel("epoch")
ax_loss.set_ylabel("cross-entropy loss")
ax_loss.set_title("Loss")
ax_loss.legend()
ax_acc.plot(epochs, curves["acc"], label="training")
ax_acc.plot(epochs, curves["val_acc"], label="validation")
ax_acc.set_ylim(0.8, 1.005)
ax_acc.set_xlabel("epoch")
ax_acc.set_ylabel("accuracy")
ax_acc.set_title("Accuracy")
ax_acc.legend(loc="lower right")
fig.suptitle("Digits, 64-64-10 relu/softmax network, Adam (lr 1e-3), batches of 32")

# %%
# Early stopping
# --------------
# Instead of picking the number of epochs by eye, ``fit`` can watch the validation loss itself: with
# ``patience=10`` it stops after 10 epochs without a new best validation loss and restores the parameters of the
# best epoch. A fresh network with the same seed follows exactly the same path as above (the shuffling comes from
# the network's seeded generator), so it stops where the validation curve above turns.

net_es = make_network()
history = net_es.fit(X_train, y_train, epochs=EPOCHS, batch_size=32, validation=(X_val, y_val), patience=10)
ran = len(history["val_loss"])
best = int(np.argmin(history["val_loss"])) + 1
print(f"early stopping: ran {ran} of at most {EPOCHS} epochs, best validation loss "
      f"{min(history['val_loss']):.4f} at epoch {best}")
print(f"held-out test accuracy of the restored best network {np.mean(net_es.predict(X_test) == y_test):.4f}")

fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
ax.plot(epochs, curves["val_loss"], color="lightgray", linewidth=3, label=f"validation loss, all {EPOCHS} epochs")
ax.plot(np.arange(1, ran + 1), history["val_loss"], color="C1", label="validation loss, fit(patience=10)")
ax.axvline(best, color="C2", linestyle="--", label=f"best epoch ({best}): parameters restored")
ax.axvspan(best, ran, color="C2", alpha=0.1, label="patience: no improvement")
lowest = min(curves["val_loss"])
ax.set_ylim(0.9 * lowest, 1.6 * lowest)  # zoom in on the bottom of the curve
ax.set_xlabel("epoch")
ax.set_ylabel("validation cross-entropy loss")
ax.set_title("Early stopping on the validation loss (zoomed in)")
ax.legend(fontsize=9)

plt.show()
