"""The minibatch training loop behind :meth:`fastbp.Network.fit`: epochs, shuffling, sample weights, validation,
early stopping, reducing the learning rate on a plateau, what to do with a step that would not be finite, the progress
bar, and the hand-off to :mod:`fastbp.distributed` for data-parallel training over MPI."""

import sys

import numpy as np

from . import optim
from ._checks import check_int, check_name
from .schedules import ReduceOnPlateau


def fit(net, X, Y, epochs=1, batch_size=32, shuffle=True, validation=None, patience=None, progress=False,
        on_nonfinite="raise", comm=None, sample_weight=None, reduce_on_plateau=None):
    """:meth:`fastbp.Network.fit` (its docstring has the parameters); the history dict."""
    if comm is not None:
        unsupported = [name for name, value, default in (
            ("validation", validation, None), ("patience", patience, None), ("progress", progress, False),
            ("on_nonfinite", on_nonfinite, "raise"), ("sample_weight", sample_weight, None),
            ("reduce_on_plateau", reduce_on_plateau, None))
            if (value is not None if default is None else value != default)]
        if unsupported:
            raise ValueError(f"fit(comm=...) does not support {', '.join(unsupported)}")
        from . import distributed  # only with comm: it needs mpi4py, an optional extra

        return distributed.fit(net, X, Y, comm, epochs=epochs, batch_size=batch_size, shuffle=shuffle)
    X = net._input(X)
    Y = net._targets(Y, X.shape[0])
    n = X.shape[0]
    weights = None if sample_weight is None else net._weights(sample_weight, n)
    epochs = check_int("epochs", epochs, 1)
    batch_size = n if batch_size is None else min(check_int("batch_size", batch_size, 1), n)
    patience = None if patience is None else check_int("patience", patience, 1)
    on_nonfinite = check_name("on_nonfinite", on_nonfinite, ("raise", "stop", "skip"))
    if reduce_on_plateau is not None and not isinstance(reduce_on_plateau, ReduceOnPlateau):
        raise TypeError("reduce_on_plateau must be a fastbp.schedules.ReduceOnPlateau, got "
                        f"{type(reduce_on_plateau).__name__}")
    if validation is not None:
        if not (isinstance(validation, (tuple, list)) and len(validation) == 2):
            raise TypeError("validation must be a pair (X_val, Y_val)")
        Xv = net._input(validation[0])
        Yv = net._targets(validation[1], Xv.shape[0])
        net._check_finite(Xv, Yv)
    net._check_finite(X, Y)

    history = {"loss": []} if validation is None else {"loss": [], "val_loss": []}
    history.update(nonfinite_steps=0, stopped=False)
    if reduce_on_plateau is not None:
        history["lr"] = []
    best, best_params, waited = np.inf, None, 0
    plateau = _Plateau(reduce_on_plateau) if reduce_on_plateau is not None else None
    bar = _progress(epochs) if progress else None
    for epoch in range(epochs):
        order = net._rng.permutation(n) if shuffle else None
        Xe, Ye = (X[order], Y[order]) if shuffle else (X, Y)
        We = None if weights is None else (weights[order] if shuffle else weights)
        total, counted = 0.0, 0.0
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            if We is None:
                step_loss, mass = net._call("train_step", Xe[start:stop], Ye[start:stop]), stop - start
            else:
                mass = float(We[start:stop].sum())
                if mass == 0:  # a batch of zero weights has no gradient: nothing to learn from it
                    continue
                step_loss = net._call("train_step", Xe[start:stop], Ye[start:stop], We[start:stop])
            if step_loss != step_loss:  # not applied: the parameters are those before this step
                history["nonfinite_steps"] += 1
                if on_nonfinite == "raise":
                    raise FloatingPointError(f"epoch {epoch}, samples {start}:{stop}: the loss or a parameter "
                                             "would become non-finite; the step was not applied (lower the "
                                             "learning rate, or fit(on_nonfinite='stop' or 'skip'))")
                if on_nonfinite == "stop":
                    history["stopped"] = True
                    break
                continue
            total += step_loss * mass
            counted += mass
        history["loss"].append(total / counted if counted else float("nan"))
        if validation is not None:
            history["val_loss"].append(net._call("loss", Xv, Yv))
        monitored = history["val_loss" if validation is not None else "loss"][-1]
        if plateau is not None:
            plateau(net.hyper, monitored)
            history["lr"].append(float(net.hyper[optim.LR]))
        if bar is not None:
            bar(epoch, history)
        if history["stopped"]:
            break
        if patience is not None:
            if monitored < best:
                best, best_params, waited = monitored, net.params.copy(), 0
            else:
                waited += 1
                if waited >= patience:
                    break
    if bar is not None:
        bar(None, history)
    if best_params is not None:
        net.params[:] = best_params
    return history


class _Plateau:
    """ReduceOnPlateau's state over one ``fit``: multiplies the base rate ``hyper[LR]`` by the factor when the
    monitored loss has not improved (relative threshold, mode min) for ``patience`` epochs, as PyTorch's."""

    def __init__(self, rule):
        self.rule, self.best, self.bad, self.cooldown = rule, np.inf, 0, 0

    def __call__(self, hyper, loss):
        rule = self.rule
        if loss < self.best * (1.0 - rule.threshold):
            self.best, self.bad = loss, 0
        else:
            self.bad += 1
        if self.cooldown > 0:
            self.cooldown -= 1
            self.bad = 0
        if self.bad > rule.patience:
            hyper[optim.LR] = max(hyper[optim.LR] * rule.factor, rule.min_lr)
            self.cooldown, self.bad = rule.cooldown, 0


def _progress(epochs):
    """A progress callback: tqdm when installed, else one line per epoch on stderr."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        def bar(epoch, history):
            if epoch is not None:
                extra = f" val_loss {history['val_loss'][-1]:.6g}" if "val_loss" in history else ""
                print(f"epoch {epoch + 1}/{epochs} loss {history['loss'][-1]:.6g}{extra}", file=sys.stderr)
        return bar
    pbar = tqdm(total=epochs, unit="epoch")

    def bar(epoch, history):
        if epoch is None:
            pbar.close()
            return
        pbar.update(1)
        pbar.set_postfix({k: f"{v[-1]:.4g}" for k, v in history.items() if isinstance(v, list)})  # not the counters
    return bar
