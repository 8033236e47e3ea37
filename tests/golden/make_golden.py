"""PyTorch's numbers for every test that compares fastbp with PyTorch, kept in ``tests/golden/torch.npz`` so that
every run of ``make test`` checks them, on machines without PyTorch too.

Run with PyTorch installed, from the repository's root: ``python -m tests.golden.make_golden``. It needs numpy and
torch only (not fastbp). Each case stores its inputs (parameters in ``state_dict`` layout, X, Y: made here from fixed
seeds, and kept in the file, so nothing depends on a random generator's version) beside what PyTorch computes from
them: losses and gradients (``torch.autograd``), parameters after each step of ``torch.optim`` (with
``clip_grad_norm_`` and ``lr_scheduler``), rates of ``ReduceLROnPlateau``, vector-Jacobian products of objectives
fastbp does not know, and an ``nn.Sequential``'s forward (every hidden activation x last module x dtype, for
``tests/test_convert.py``). Networks with an activation per hidden layer (:data:`MIXED`) have gradients, a few Adam
steps and modules of their own. ``tests/test_golden.py`` compares fastbp with the file (and, where PyTorch is
installed, the file with what PyTorch computes today). It also writes ``tests/golden/torch_onnx.npz``:
``torch.onnx.export`` of each of those modules by both exporters (needs onnx and onnxscript), and of the modules with
gelu at opset 17 too (the formulas that stand for ``Gelu`` before opset 20), which ``tests/test_onnx.py`` loads.

A case already in the files with the same inputs keeps its numbers and graphs: the files record what the tests were
written against, and another PyTorch build rounds a few of them differently; ``torch_version`` names every version
whose numbers are in the file. New seeds for new cases leave the old cases' inputs as they were. To compute everything
again, delete the files first.
"""

import pathlib
import warnings

import numpy as np

PATH = pathlib.Path(__file__).with_name("torch.npz")
# A case's seed holds its activation's index here: new activations are appended, so older cases keep their inputs.
HIDDEN = ["relu", "leaky_relu", "tanh", "sigmoid", "identity", "elu", "silu", "gelu", "gelu_tanh", "softplus"]
MIXED = ["relu,tanh,silu", "gelu,elu,softplus", "gelu_tanh,sigmoid,leaky_relu"]  # an activation per hidden layer
MIXED_SIZES = [6, 10, 10, 8, 3]
PAIRED = HIDDEN[:5]  # with every output and loss; the others with the first three pairings, a gradient check each
TRAINED = HIDDEN[5:] + MIXED  # a few optimizer steps of these: the others' are the optimizer and schedule cases
TRAIN_STEPS = 5
PAIRINGS = [("sigmoid", "bce"), ("softmax", "cross_entropy")] + [
    (out, loss) for loss in ("mse", "huber") for out in ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax")]
OPTIMIZERS = {  # name: (torch.optim class, its arguments); fastbp's equivalents are in tests/test_golden.py
    "sgd": ("SGD", dict(lr=0.05)),
    "momentum": ("SGD", dict(lr=0.05, momentum=0.9)),
    "nesterov-decay": ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "adam": ("Adam", dict(lr=0.01)),
    "adamw": ("AdamW", dict(lr=0.01, weight_decay=0.1)),
}
MODULE_OUTPUTS = ["identity", "sigmoid", "softmax", "leaky_relu"]  # an nn.Sequential's last module
ONNX_PATH = pathlib.Path(__file__).with_name("torch_onnx.npz")
SCHEDULES = ["constant", "warmup", "step", "exponential", "cosine"]
SCHEDULE_STEPS = 12
PLATEAU = dict(factor=0.5, patience=1, threshold=0.05, cooldown=1, min_lr=0.05)


def layers(rng, sizes, dtype):
    """Parameters in ``state_dict`` layout: ``{"0.weight": (out, in), "0.bias": (out,), "2.weight": ...}``."""
    params = {}
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"{2 * l}.weight"] = rng.normal(0, 0.6, (n_out, n_in)).astype(dtype)
        params[f"{2 * l}.bias"] = rng.normal(0, 0.3, n_out).astype(dtype)
    return params


def targets(rng, n, n_out, loss, dtype):
    if loss == "cross_entropy":
        return rng.integers(0, n_out, n)  # class labels
    if loss == "bce":
        return rng.integers(0, 2, (n, n_out)).astype(dtype)
    return rng.normal(size=(n, n_out)).astype(dtype)


def hidden_names(hidden, n_hidden):
    """The activation after each hidden layer, from a case key's: one name for every layer, or one per layer joined
    by commas (:data:`MIXED`)."""
    return hidden.split(",") if "," in hidden else [hidden] * n_hidden


def cases():
    """{key: inputs}: every case's inputs, from fixed seeds."""
    out = {}
    for d, dtype in enumerate((np.float32, np.float64)):
        for h, hidden in enumerate(HIDDEN + MIXED):
            sizes = MIXED_SIZES if hidden in MIXED else [6, 8, 5, 3]
            for p, (output, loss) in enumerate(PAIRINGS if hidden in PAIRED else PAIRINGS[:3]):
                rng = np.random.default_rng([d, h, p])
                out[f"autograd/{hidden}/{output}/{loss}/{np.dtype(dtype).name}"] = dict(
                    sizes=np.array(sizes), **layers(rng, sizes, dtype),
                    X=rng.normal(size=(7, sizes[0])).astype(dtype), Y=targets(rng, 7, 3, loss, dtype))
    for o, name in enumerate(OPTIMIZERS):
        rng = np.random.default_rng([10, o])
        out[f"optim/{name}"] = dict(sizes=np.array([4, 8, 2]), **layers(rng, [4, 8, 2], np.float64),
                                    X=rng.normal(size=(6, 4)), Y=rng.normal(size=(6, 2)))
    for s, name in enumerate(SCHEDULES):
        for kind in ("sgd", "adamw"):
            for clip in (0.0, 0.05):
                rng = np.random.default_rng([20, s])
                out[f"schedule/{name}/{kind}/{clip}"] = dict(
                    sizes=np.array([3, 5, 2]), **layers(rng, [3, 5, 2], np.float64), X=rng.normal(size=(10, 3)),
                    Y=rng.integers(0, 2, 10), clip=np.float64(clip))
    rng = np.random.default_rng(30)
    out["plateau"] = dict(losses=np.concatenate([np.linspace(1, 0.5, 6), 0.5 + 0.01 * rng.normal(size=19)]))
    for c, (name, output) in enumerate((("cubes", "tanh"), ("policy_gradient", "softmax"))):
        rng = np.random.default_rng([40, c])
        out[f"backward/{name}"] = dict(sizes=np.array([3, 5, 3]), **layers(rng, [3, 5, 3], np.float64),
                                       X=rng.normal(size=(5, 3)), actions=np.array([0, 2, 1, 1, 0]),
                                       advantages=np.array([1.5, -0.5, 2.0, -1.0, 0.3]))
    rng = np.random.default_rng(50)
    out["sequential"] = dict(sizes=np.array([3, 5, 2]), **layers(rng, [3, 5, 2], np.float64),
                             X=rng.normal(size=(4, 3)))
    for d, dtype in enumerate((np.float32, np.float64)):
        for h, hidden in enumerate(HIDDEN + MIXED):
            sizes = MIXED_SIZES if hidden in MIXED else [4, 6, 5, 3]
            for o, output in enumerate(MODULE_OUTPUTS):
                rng = np.random.default_rng([60, d, h, o])
                out[f"module/{hidden}/{output}/{np.dtype(dtype).name}"] = dict(
                    sizes=np.array(sizes), **layers(rng, sizes, dtype),
                    X=rng.normal(0, 2, size=(9, sizes[0])).astype(dtype))
    for d, dtype in enumerate((np.float32, np.float64)):
        for h, hidden in enumerate(TRAINED):
            sizes = MIXED_SIZES if hidden in MIXED else [6, 8, 5, 3]
            rng = np.random.default_rng([70, d, h])
            out[f"train/{hidden}/{np.dtype(dtype).name}"] = dict(
                sizes=np.array(sizes), **layers(rng, sizes, dtype), X=rng.normal(size=(12, sizes[0])).astype(dtype),
                Y=rng.integers(0, sizes[-1], 12))
    return out


def sequential(torch, inputs, hidden, output=None):
    """An nn.Sequential of Linear layers with ``hidden`` between them (a name, or names joined by commas: one per
    hidden layer) and ``output`` after the last, holding the inputs' parameters, in their dtype."""
    nn = torch.nn
    acts = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
            "identity": nn.Identity, "elu": nn.ELU, "silu": nn.SiLU, "gelu": nn.GELU,
            "gelu_tanh": lambda: nn.GELU(approximate="tanh"), "softplus": nn.Softplus, "softmax": lambda: nn.Softmax(1)}
    sizes = [int(n) for n in inputs["sizes"]]
    modules = []
    for n_in, n_out, name in zip(sizes[:-1], sizes[1:], hidden_names(hidden, len(sizes) - 2) + [output]):
        modules += [nn.Linear(n_in, n_out)] + ([acts[name]()] if name else [])
    model = torch.nn.Sequential(*modules).to(torch.from_numpy(inputs["X"]).dtype)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in inputs.items() if "." in k})
    return model


def flat(model):
    """The parameters in fastbp's order (each ``state_dict`` entry raveled, in order)."""
    return np.concatenate([v.detach().numpy().ravel() for v in model.state_dict().values()])


def torch_loss(torch, output, loss, z, y):
    F = torch.nn.functional
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(z, y)
    if loss == "cross_entropy":
        return F.cross_entropy(z, y)
    a = {"softmax": lambda t: torch.softmax(t, 1), "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": F.relu,
         "leaky_relu": F.leaky_relu, "identity": lambda t: t}[output](z)
    return F.mse_loss(a, y) if loss == "mse" else F.huber_loss(a, y)


def scheduler(torch, name, opt):
    """The torch.optim.lr_scheduler equivalent of tests/test_schedules.py's SCHEDULES[name]."""
    sched = torch.optim.lr_scheduler
    if name == "constant":
        return sched.ConstantLR(opt, factor=1.0)
    if name == "step":
        return sched.StepLR(opt, step_size=3, gamma=0.5)
    warm = dict(warmup=(4, 0.25), exponential=(2, 0.5), cosine=(3, 0.1))[name]
    after = {"warmup": lambda: sched.ConstantLR(opt, factor=1.0),
             "exponential": lambda: sched.ExponentialLR(opt, gamma=0.8),
             "cosine": lambda: sched.CosineAnnealingLR(opt, T_max=8, eta_min=0.01)}[name]()
    return sched.SequentialLR(opt, [sched.LinearLR(opt, start_factor=warm[1], end_factor=1.0, total_iters=warm[0]),
                                    after], milestones=[warm[0]])


def compute(torch, key, inputs):
    """What PyTorch computes for one case: {name: ndarray}."""
    kind, *rest = key.split("/")
    X = torch.from_numpy(inputs.get("X", np.zeros(1)))
    if kind == "autograd":
        hidden, output, loss, _ = rest
        model = sequential(torch, inputs, hidden)
        value = torch_loss(torch, output, loss, model(X), torch.from_numpy(inputs["Y"]))
        value.backward()
        return {"loss": np.float64(value.item()),
                **{f"grad/{k}": p.grad.numpy() for k, p in model.named_parameters()}}
    if kind == "optim":
        model = sequential(torch, inputs, "tanh")
        cls, args = OPTIMIZERS[rest[0]]
        opt = getattr(torch.optim, cls)(model.parameters(), **args)
        steps = []
        for _ in range(10):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(X), torch.from_numpy(inputs["Y"])).backward()
            opt.step()
            steps.append(flat(model))
        return {"params": np.stack(steps)}
    if kind == "schedule":
        name, optimizer, _ = rest
        model = sequential(torch, inputs, "tanh")
        opt = (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01) if optimizer == "sgd"
               else torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.05))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SequentialLR's deprecation notes in some PyTorch versions
            sched = scheduler(torch, name, opt)
        steps, clip = [], float(inputs["clip"])
        for _ in range(SCHEDULE_STEPS):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(X), torch.from_numpy(inputs["Y"])).backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sched.step()
            steps.append(flat(model))
        return {"params": np.stack(steps)}
    if kind == "plateau":
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
        rule = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **PLATEAU)
        rates = []
        for loss in inputs["losses"]:
            rule.step(float(loss))
            rates.append(opt.param_groups[0]["lr"])
        return {"rates": np.array(rates)}
    if kind == "backward":
        name = rest[0]
        model = sequential(torch, inputs, "tanh", "tanh" if name == "cubes" else "softmax")
        P = model(X)
        if name == "cubes":
            objective = (P**3).sum()
        else:
            actions, advantages = torch.from_numpy(inputs["actions"]), torch.from_numpy(inputs["advantages"])
            objective = -(advantages * torch.log(P[torch.arange(len(actions)), actions])).mean()
        objective.backward()
        return {f"grad/{k}": p.grad.numpy() for k, p in model.named_parameters()}
    if kind == "sequential":
        return {"forward": sequential(torch, inputs, "tanh")(X).detach().numpy()}
    if kind == "module":
        hidden, output, _ = rest
        with torch.no_grad():
            return {"forward": sequential(torch, inputs, hidden, None if output == "identity" else output)(X).numpy()}
    if kind == "train":  # softmax and cross-entropy (the loss's), Adam
        model = sequential(torch, inputs, rest[0])
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        steps = []
        for _ in range(TRAIN_STEPS):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(X), torch.from_numpy(inputs["Y"])).backward()
            opt.step()
            steps.append(flat(model))
        return {"params": np.stack(steps)}
    raise ValueError(key)


def stored(path):
    """{name: array} of a file written before, or {} if there is none."""
    if not path.exists():
        return {}
    with np.load(path) as f:
        return {name: f[name] for name in f.files}


def unchanged(old, key, inputs):
    """Whether the old file holds the case with these very inputs (names, dtypes and values)."""
    names = {name for name in old if name.startswith(f"{key}/in/")}
    return names == {f"{key}/in/{name}" for name in inputs} and all(
        old[f"{key}/in/{name}"].dtype == np.asarray(value).dtype and np.array_equal(old[f"{key}/in/{name}"], value)
        for name, value in inputs.items())


def versions(old, torch, computed):
    """The PyTorch versions whose numbers are in a file: the old file's and, if it computed any, this one's."""
    names = str(old["torch_version"]).split(", ") if "torch_version" in old else []
    return np.array(", ".join(dict.fromkeys(names + [torch.__version__] * bool(computed))))


def main():
    import torch

    old, arrays, kept = stored(PATH), {}, set()
    for key, inputs in cases().items():
        arrays.update({f"{key}/in/{name}": value for name, value in inputs.items()})
        if unchanged(old, key, inputs):
            kept.add(key)
            arrays.update({name: value for name, value in old.items() if name.startswith(f"{key}/out/")})
        else:
            arrays.update({f"{key}/out/{name}": value for name, value in compute(torch, key, inputs).items()})
    n = len(cases())
    np.savez_compressed(PATH, torch_version=versions(old, torch, n - len(kept)), **arrays)
    print(f"{PATH}: {n} cases ({len(kept)} kept, {n - len(kept)} computed by torch {torch.__version__}), "
          f"{PATH.stat().st_size / 1e6:.2f} MB")
    old = stored(ONNX_PATH)
    graphs = onnx_exports(torch, {name: value for name, value in old.items() if name.split("/", 1)[-1] in kept})
    np.savez_compressed(ONNX_PATH, torch_version=versions(old, torch, set(graphs) - set(old)), **graphs)
    print(f"{ONNX_PATH}: {len(graphs)} graphs ({len(set(graphs) & set(old))} kept), "
          f"{ONNX_PATH.stat().st_size / 1e6:.2f} MB")


def onnx_exports(torch, kept):
    """``torch.onnx.export`` of every module case, by both of its exporters (TorchScript's, ``dynamo=False``, and
    torch.export's, the default since PyTorch 2.9; the latter needs onnxscript) at their default opset, and at opset 17
    those with gelu (``"torchscript-17"``, ``"dynamo-17"``), batch dimension dynamic: the bytes of each graph as a uint8
    array keyed ``"{exporter}/{case key}"``, those in ``kept`` as they were. Read by tests/test_onnx.py."""
    import io

    graphs = {}
    for key, inputs in cases().items():
        if not key.startswith("module/"):
            continue
        _, hidden, output, _ = key.split("/")
        model = sequential(torch, inputs, hidden, None if output == "identity" else output).eval()
        X = torch.from_numpy(inputs["X"])
        exporters = {"torchscript": dict(dynamo=False, dynamic_axes={"x": {0: "batch"}}),
                     "dynamo": dict(dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},))}
        if "gelu" in hidden and output == "identity":
            exporters |= {f"{name}-17": dict(options, opset_version=17) for name, options in exporters.items()}
        for exporter, options in exporters.items():
            if f"{exporter}/{key}" in kept:
                graphs[f"{exporter}/{key}"] = kept[f"{exporter}/{key}"]
                continue
            f = io.BytesIO()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation note
                torch.onnx.export(model, (X,), f, input_names=["x"], output_names=["y"], verbose=False, **options)
            graphs[f"{exporter}/{key}"] = np.frombuffer(f.getvalue(), np.uint8)
    return graphs


if __name__ == "__main__":
    main()
