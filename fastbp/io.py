"""Saving and loading networks: one ``.npz`` file, no pickle, written atomically; parameters in from a state dict
(PyTorch's names)."""

import contextlib
import os
import tempfile

import numpy as np

from . import optim

FORMAT = 2  # bumped when the file layout changes; a newer file is refused with a clear message
# Format 2: "hidden" may be an array of names, one per hidden layer. Files with one hidden activation keep format 1,
# which fastbp versions before per-layer activations read too.
_TMP_SUFFIX = ".fastbp-tmp"
_KEYS = {"format", "fastbp_version", "sizes", "hidden", "output", "loss", "dtype", "seed", "hyper", "flat"}


def save(net, path):
    """Write ``net`` to ``path``: a temporary file in the same folder, flushed to disk, then renamed over ``path``,
    so a crash mid-save leaves the previous file whole.

    The file is an uncompressed ``.npz`` (no pickle) of the format number, the fastbp version, the sizes, the
    activations, the loss, the dtype, the seed (-1 for None), ``hyper`` and the whole ``flat`` (parameters,
    gradient and optimizer state). Temporary files of earlier saves to the same path whose writer no longer runs
    are removed first.

    Parameters
    ----------
    net : fastbp.Network
        The network to save; read only.
    path : str or os.PathLike
        The file to write or replace (``np.savez`` writes to it as given: no ``.npz`` is appended).
    """
    from . import __version__

    arrays = {
        "format": np.int64(1 if isinstance(net.hidden, str) else 2), "fastbp_version": np.str_(__version__), "sizes": np.array(net.sizes, np.int64),
        "hidden": np.array(net.hidden), "output": np.str_(net.output), "loss": np.str_(net.loss),
        "dtype": np.str_(net.dtype.name), "seed": np.int64(-1 if net.seed is None else net.seed),
        "hyper": net.hyper, "flat": net.flat,
    }
    write_model(path, lambda f: np.savez(f, **arrays))


def write_model(path, write):
    """``write(f)`` into ``path`` atomically (:func:`write_atomically`), as every model file is written (``save``,
    ONNX exports): the temporary file is named after the target and the writer's process, so a writer killed mid-save
    leaves it, never a half-written model, and the next write to the same path removes it."""
    path = os.fspath(path)
    prefix = f".{os.path.basename(path)}."
    _remove_leftovers(os.path.dirname(os.path.abspath(path)), prefix)
    write_atomically(path, write, prefix=f"{prefix}{os.getpid()}.", suffix=_TMP_SUFFIX)


def write_atomically(path, write, prefix, suffix):
    """``write(f)`` into a temporary binary file beside ``path`` (named ``prefix...suffix``), flushed to disk, then
    renamed over ``path``: a reader sees the old file or the new one, never part of one."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=prefix, suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):  # removed already (the folder cleared meanwhile)
            os.unlink(tmp)
        raise


def _remove_leftovers(folder, prefix):
    """Delete the temporary files of earlier saves to the same path whose writing process no longer runs (a live
    writer, in this process or another, keeps its file)."""
    for name in os.listdir(folder):
        if not (name.startswith(prefix) and name.endswith(_TMP_SUFFIX)):
            continue
        pid = name[len(prefix):].split(".")[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            os.unlink(os.path.join(folder, name))
        except FileNotFoundError:  # another saver removed it first
            pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def load_state_dict(net, state_dict):
    """:meth:`fastbp.Network.load_state_dict`: check every entry (keys, dtype, shape, finiteness), then copy.

    Parameters
    ----------
    net : fastbp.Network
        Written in place: its parameters ``flat[0]`` only, under its lock.
    state_dict : mapping of str to array_like
        Exactly the keys of ``net.state_dict()``: ``"{i}.weight"`` of shape (n_out, n_in) and ``"{i}.bias"`` of
        shape (n_out,) for i = 0, 2, 4, ...; values anything ``np.asarray`` takes (torch tensors are detached and
        moved to the CPU), real and finite, converted to the network's dtype.

    Raises
    ------
    TypeError
        If ``state_dict`` is not a mapping, or a value is not real numbers (booleans included).
    ValueError
        If the keys differ (the message names the missing and unexpected ones), a shape is wrong or a value holds
        a NaN or an infinity. Nothing is copied unless every entry passes.
    """
    if not hasattr(state_dict, "keys"):
        raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
    expected = net._named(row=0)
    if set(state_dict.keys()) != set(expected):
        missing, extra = sorted(set(expected) - set(state_dict)), sorted(set(state_dict) - set(expected))
        raise ValueError(f"state_dict keys do not match this network: missing {missing}, unexpected {extra}")
    values = {}
    for key, ref in expected.items():
        value = state_dict[key]
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().numpy()
        value = np.asarray(value)
        if value.dtype.kind not in "fiu" or value.dtype == np.bool_:
            raise TypeError(f"state_dict[{key!r}] must be real numbers, got dtype {value.dtype}")
        if value.shape != ref.shape:
            raise ValueError(f"state_dict[{key!r}] must have shape {ref.shape}, got {value.shape}")
        if not np.isfinite(value).all():
            raise ValueError(f"state_dict[{key!r}] contains NaN or infinity")
        values[key] = value
    with net._lock:
        for (W, b), l in zip(net.layers(), range(0, 2 * len(net.sizes), 2)):
            W[:] = values[f"{l}.weight"]
            b[:] = values[f"{l}.bias"]


def _open(path):
    return path if hasattr(path, "read") else open(os.fspath(path), "rb")


def load(cls, path):
    """A ``cls`` (Network) from a file written by :func:`save`; ``ValueError`` for anything else.

    The first argument, ``cls`` (:class:`fastbp.Network` or a subclass), is called with the saved architecture,
    optimizer, dtype and seed.

    Parameters
    ----------
    path : str, os.PathLike or binary file object
        The file; read with ``allow_pickle=False``. A file object is closed after reading.

    Returns
    -------
    net : cls
        The saved network: its ``flat`` (parameters, gradient, optimizer state) and ``hyper`` (with the step count)
        as saved. Files of format 1 from before clipping and schedules (``hyper`` of 8 entries) load with no
        clipping and a constant rate, and files from before ``keep_grad`` (15 entries) with ``keep_grad=True``.

    Raises
    ------
    ValueError
        If the file is not a readable fastbp model file, was written in a newer format, describes no valid network,
        or holds arrays that do not fit that network or are not finite.
    FileNotFoundError
        If ``path`` does not exist (``IsADirectoryError`` and ``PermissionError`` propagate too).
    """
    try:
        # Opened here, so the file is closed even when np.load gives up half-way through a corrupt archive.
        with _open(path) as f, np.load(f, allow_pickle=False) as archive:
            data = {key: archive[key] for key in archive.files}
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # zipfile, zlib, numpy format and pickle refusals alike
        raise ValueError(f"{path!s} is not a readable fastbp model file ({type(exc).__name__}: {exc})") from None
    if "format" not in data:
        raise ValueError(f"{path!s} is not a fastbp model file (no 'format' entry)")
    fmt = int(data["format"]) if data["format"].shape == () and data["format"].dtype.kind == "i" else -1
    if fmt > FORMAT:
        raise ValueError(f"{path!s} was written by a newer fastbp ({data['fastbp_version']}, file format {fmt}); "
                         f"this fastbp reads format {FORMAT} and older: upgrade fastbp")
    if fmt < 1 or set(data) != _KEYS:
        raise ValueError(f"{path!s} is not a fastbp model file of format {FORMAT} (entries {sorted(data)})")
    try:
        seed = int(data["seed"])
        hidden = data["hidden"]
        net = cls([int(s) for s in data["sizes"]], hidden=[str(h) for h in hidden] if hidden.ndim else str(hidden),
                  output=str(data["output"]),
                  loss=str(data["loss"]), optimizer=optim.from_hyper(data["hyper"]), dtype=str(data["dtype"]),
                  seed=None if seed == -1 else seed)
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"{path!s} describes no valid network: {exc}") from None
    flat, hyper = data["flat"], data["hyper"]
    # Older files hold the first 8 entries of hyper (before clipping and schedules) or 15 (before keep_grad); the
    # rest are then zero.
    if flat.shape != net.flat.shape or flat.dtype != net.dtype or hyper.dtype != np.float64 \
            or hyper.shape not in ((8,), (optim.NO_GRAD,), net.hyper.shape):
        raise ValueError(f"{path!s}: parameters of shape {flat.shape} {flat.dtype} do not fit {net!r}")
    if not (np.isfinite(flat).all() and np.isfinite(hyper).all()):
        raise ValueError(f"{path!s}: the parameters contain NaN or infinity")
    net.flat[:] = flat
    net.hyper[:hyper.size] = hyper
    return net
