"""The minibatch training loop behind :meth:`fastbp.Network.fit`: epochs, shuffling, validation, early stopping,
what to do with a step that would not be finite, and the progress bar."""

import sys

import numpy as np

from ._checks import check_int, check_name


def fit(net, X, Y, epochs, batch_size, shuffle, validation, patience, progress, on_nonfinite):
    """:meth:`fastbp.Network.fit` without ``comm`` (its docstring has the parameters); the history dict."""
    X = net._input(X)
    Y = net._targets(Y, X.shape[0])
    n = X.shape[0]
    epochs = check_int("epochs", epochs, 1)
    batch_size = n if batch_size is None else min(check_int("batch_size", batch_size, 1), n)
    patience = None if patience is None else check_int("patience", patience, 1)
    on_nonfinite = check_name("on_nonfinite", on_nonfinite, ("raise", "stop", "skip"))
    if validation is not None:
        if not (isinstance(validation, (tuple, list)) and len(validation) == 2):
            raise TypeError("validation must be a pair (X_val, Y_val)")
        Xv = net._input(validation[0])
        Yv = net._targets(validation[1], Xv.shape[0])
        net._check_finite(Xv, Yv)
    net._check_finite(X, Y)

    history = {"loss": []} if validation is None else {"loss": [], "val_loss": []}
    history.update(nonfinite_steps=0, stopped=False)
    best, best_params, waited = np.inf, None, 0
    bar = _progress(epochs) if progress else None
    for epoch in range(epochs):
        order = net._rng.permutation(n) if shuffle else None
        Xe, Ye = (X[order], Y[order]) if shuffle else (X, Y)
        total, counted = 0.0, 0
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            step_loss = net._call("train_step", Xe[start:stop], Ye[start:stop])
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
            total += step_loss * (stop - start)
            counted += stop - start
        history["loss"].append(total / counted if counted else float("nan"))
        if validation is not None:
            history["val_loss"].append(net._call("loss", Xv, Yv))
        monitored = history["val_loss" if validation is not None else "loss"][-1]
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
        pbar.set_postfix({k: f"{v[-1]:.4g}" for k, v in history.items()})
    return bar
