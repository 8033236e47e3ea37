"""Benchmark cases and implementations, shared by ``python -m fastbp bench`` and the asv suite in ``benchmarks/``.

Every implementation trains the same network from the same weights on the same data: fastbp, the plain numpy
baseline (:mod:`fastbp.baseline`), and PyTorch and JAX when they are installed. ``run`` times them in one process,
alternating round by round, so drift of a shared machine hits all of them alike, and reports medians.
"""

import json
import os
import platform
import sys
import time
from dataclasses import dataclass

import numba
import numpy as np

from . import SGD, Network
from .baseline import NumpyMLP

LR = 1e-3  # small, so weights never drift far over many timed repeats of the same step


@dataclass(frozen=True)
class Case:
    name: str
    sizes: tuple
    batch: int
    dtype: type
    hidden: str
    output: str
    loss: str

    def data(self, seed=0):
        """(X, Y) with one-hot Y for cross_entropy, so every implementation does the same work."""
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(self.batch, self.sizes[0])).astype(self.dtype)
        n_out = self.sizes[-1]
        if self.loss == "cross_entropy":
            return X, np.eye(n_out, dtype=self.dtype)[rng.integers(0, n_out, self.batch)]
        if self.loss == "bce":
            return X, rng.integers(0, 2, (self.batch, n_out)).astype(self.dtype)
        return X, rng.normal(size=(self.batch, n_out)).astype(self.dtype)

    def network(self, seed=0, threads=None):
        return Network(list(self.sizes), hidden=self.hidden, output=self.output, loss=self.loss,
                       optimizer=SGD(lr=LR), dtype=self.dtype, seed=seed, threads=threads)

    def flops(self, op):
        """Floating-point operations of one call: 2 per multiply-add of the forward product, the weight gradient
        and the delta recursion (none into the input layer)."""
        macs = [a * b for a, b in zip(self.sizes[:-1], self.sizes[1:])]
        forward = 2 * self.batch * sum(macs)
        return forward if op == "forward" else forward + 2 * self.batch * (sum(macs) + sum(macs[1:]))


CASES = {c.name: c for c in [
    Case("xor", (2, 2, 1), 4, np.float64, "sigmoid", "sigmoid", "bce"),
    Case("policy-online", (8, 64, 64, 2), 1, np.float64, "tanh", "identity", "mse"),
    Case("policy-batch", (8, 64, 64, 2), 32, np.float32, "tanh", "identity", "mse"),
    Case("mnist", (784, 256, 128, 10), 128, np.float32, "relu", "softmax", "cross_entropy"),
    Case("wide", (1024, 1024, 1024, 1024), 256, np.float32, "relu", "identity", "mse"),
    # SimpleChains.jl's documentation example: a small network on a large full batch.
    Case("simplechains", (4, 32, 16, 4), 10_000, np.float32, "tanh", "identity", "mse"),
]}
OPS = ("train_step", "forward", "gradients")


class FastbpImpl:
    name = "fastbp"

    def __init__(self, case, threads=None):
        self.net = case.network(threads=threads)
        self.X, self.Y = case.data()
        self.out = np.empty((case.batch, case.sizes[-1]), case.dtype)

    def train_step(self):
        return self.net.train_step(self.X, self.Y)

    def forward(self):
        return self.net.forward(self.X, out=self.out)

    def gradients(self):
        return self.net.gradients(self.X, self.Y)


class NumpyImpl:
    name = "numpy"

    def __init__(self, case, threads=None):
        self.mlp = NumpyMLP(case.network(), LR)
        self.X, self.Y = case.data()

    def train_step(self):
        return self.mlp.train_step(self.X, self.Y)

    def forward(self):
        return self.mlp.forward(self.X)

    def gradients(self):
        return self.mlp.gradients(self.X, self.Y)


class TorchImpl:
    """PyTorch as its users write it, on the intra-op thread count that is fastest for the case."""

    name = "torch"

    def __init__(self, case, threads=None):
        try:
            import torch
        except ImportError:
            raise NotImplementedError("PyTorch is not installed") from None
        self.torch = torch
        nn = torch.nn
        act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity}[case.hidden]
        layers = []
        for a, b in zip(case.sizes[:-1], case.sizes[1:]):
            layers += [nn.Linear(a, b), act()]
        layers.pop()
        if case.output == "sigmoid":
            layers.append(nn.Sigmoid())
        dtype = {np.float32: torch.float32, np.float64: torch.float64}[case.dtype]
        self.model = nn.Sequential(*layers).to(dtype)
        self.model.load_state_dict({k: torch.from_numpy(v) for k, v in case.network().state_dict().items()})
        X, Y = case.data()
        self.X = torch.from_numpy(X)
        if case.loss == "cross_entropy":  # logits and labels, the usual PyTorch idiom
            self.Y, self.loss_fn = torch.from_numpy(Y.argmax(axis=1)), nn.CrossEntropyLoss()
        else:
            self.Y, self.loss_fn = torch.from_numpy(Y), {"bce": nn.BCELoss(), "mse": nn.MSELoss()}[case.loss]
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.threads = threads or _fastest_torch_threads(torch, self.train_step)
        self.prepare()

    def prepare(self):
        self.torch.set_num_threads(self.threads)

    def train_step(self):
        self.opt.zero_grad()
        loss = self.loss_fn(self.model(self.X), self.Y)
        loss.backward()
        self.opt.step()
        return loss.item()

    def forward(self):
        with self.torch.inference_mode():
            return self.model(self.X)

    def gradients(self):
        self.opt.zero_grad()
        loss = self.loss_fn(self.model(self.X), self.Y)
        loss.backward()
        return loss.item()


class JaxImpl:
    """JAX as its docs recommend: the whole SGD step in one ``jax.jit``, the parameters' buffers donated."""

    name = "jax"

    def __init__(self, case, threads=None):
        try:
            import jax
            import jax.numpy as jnp
        except ImportError:
            raise NotImplementedError("JAX is not installed") from None
        if case.dtype == np.float64:
            jax.config.update("jax_enable_x64", True)
        self.params = [(jnp.asarray(W.T), jnp.asarray(b)) for W, b in case.network().layers()]
        X, Y = case.data()
        self.X, self.Y = jnp.asarray(X), jnp.asarray(Y)
        phi = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "identity": lambda z: z}[case.hidden]

        def forward(params, X):
            a = X
            for W, b in params[:-1]:
                a = phi(a @ W + b)
            W, b = params[-1]
            return a @ W + b  # the output's pre-activation

        def loss(params, X, Y):
            z = forward(params, X)
            if case.loss == "bce":
                return jnp.mean(jnp.maximum(z, 0) - Y * z + jnp.log1p(jnp.exp(-jnp.abs(z))))
            if case.loss == "cross_entropy":
                return -jnp.mean(jnp.sum(Y * jax.nn.log_softmax(z), axis=1))
            return jnp.mean((z - Y) ** 2)

        def step(params, X, Y):
            value, grads = jax.value_and_grad(loss)(params, X, Y)
            return jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads), value

        out = {"sigmoid": jax.nn.sigmoid, "softmax": jax.nn.softmax, "identity": lambda z: z}[case.output]
        self._step = jax.jit(step, donate_argnums=0)
        self._forward = jax.jit(lambda params, X: out(forward(params, X)))
        self._grad = jax.jit(jax.value_and_grad(loss))

    def train_step(self):
        self.params, value = self._step(self.params, self.X, self.Y)
        return float(value)

    def forward(self):
        return self._forward(self.params, self.X).block_until_ready()

    def gradients(self):
        value, grads = self._grad(self.params, self.X, self.Y)
        return float(value)


IMPLS = {impl.name: impl for impl in (FastbpImpl, NumpyImpl, TorchImpl, JaxImpl)}


def njit_train_loop(train_step):
    """A user's @njit loop of ``steps`` calls of ``train_step`` (a generic or a compiled kernel): no Python per
    step. The kernel is a global of the loop, as in user code (``net.compiled.train_step`` assigned to a name)."""

    @numba.njit
    def loop(flat, spec, hyper, work, X, Y, steps):
        loss = 0.0
        for _ in range(steps):
            loss = train_step(flat, spec, hyper, work, X, Y)
        return loss

    return loop


class NjitLoopImpl:
    """fastbp's train step called from a user's @njit loop, as a simulation runs it: ``net.compiled.train_step``
    where the network runs compiled kernels, else ``fastbp.kernels.train_step``."""

    name = "fastbp-njit"
    STEPS = 1000

    def __init__(self, case, threads=None):
        self.net = case.network()
        self.X, self.Y = case.data()
        self.work = self.net.workspace(case.batch)
        self.loop = njit_train_loop(self.net._kernels.train_step)
        self.train_step()

    def train_step(self):
        self.loop(self.net.flat, self.net.spec, self.net.hyper, self.work, self.X, self.Y, self.STEPS)


# ---- populations: many small networks at once ---------------------------------------------------------------------

@dataclass(frozen=True)
class PopulationCase:
    """N independent networks of one architecture, each trained on its own batch."""

    name: str
    n: int
    sizes: tuple
    batch: int
    dtype: type
    hidden: str = "tanh"

    def data(self, seed=0):
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(self.n, self.batch, self.sizes[0])).astype(self.dtype)
        return X, rng.normal(size=(self.n, self.batch, self.sizes[-1])).astype(self.dtype)

    def population(self):
        from . import Population

        return Population(self.n, list(self.sizes), hidden=self.hidden, optimizer=SGD(lr=LR), dtype=self.dtype,
                          seed=0)

    def flops(self, op):
        return self.n * Case(self.name, self.sizes, self.batch, self.dtype, self.hidden, "identity", "mse").flops(op)


POPULATION = PopulationCase("population", 1024, (4, 16, 2), 1, np.float32)
POPULATION_OPS = ("train_step", "forward")


class FastbpPopulationImpl:
    name = "fastbp"

    def __init__(self, case):
        self.pop = case.population()
        self.X, self.Y = case.data()
        self.out = np.empty((case.n, case.batch, case.sizes[-1]), case.dtype)

    def train_step(self):
        return self.pop.train_step(self.X, self.Y)

    def forward(self):
        return self.pop.forward(self.X, out=self.out)


class LoopPopulationImpl:
    """One fastbp Network call per member, from Python."""

    name = "loop"

    def __init__(self, case):
        pop = case.population()
        self.nets = [pop.member(m) for m in range(case.n)]
        self.X, self.Y = case.data()
        self.out = np.empty((case.n, case.batch, case.sizes[-1]), case.dtype)

    def train_step(self):
        return [net.train_step(x, y) for net, x, y in zip(self.nets, self.X, self.Y)]

    def forward(self):
        return [net.forward(x, out=o) for net, x, o in zip(self.nets, self.X, self.out)]


def _stacked_layers(case):
    """The population's weights as stacks (N, n_in, n_out) and biases (N, 1, n_out), for batched matmuls."""
    pop = case.population()
    layers, off = [], 0
    for n_in, n_out in zip(case.sizes[:-1], case.sizes[1:]):
        W = pop.params[:, off:off + n_out * n_in].reshape(case.n, n_out, n_in).transpose(0, 2, 1).copy()
        b = pop.params[:, off + n_out * n_in:off + n_out * (n_in + 1)].reshape(case.n, 1, n_out).copy()
        layers.append((W, b))
        off += n_out * (n_in + 1)
    return layers


class NumpyPopulationImpl:
    """Batched matmuls over the member axis (``X @ W`` on stacks), the numpy way to run many networks."""

    name = "numpy"

    def __init__(self, case):
        (self.W1, self.b1), (self.W2, self.b2) = _stacked_layers(case)
        self.X, self.Y = case.data()
        self.lr = case.dtype(LR)

    def forward(self):
        return np.tanh(self.X @ self.W1 + self.b1) @ self.W2 + self.b2

    def train_step(self):
        a1 = np.tanh(self.X @ self.W1 + self.b1)
        z2 = a1 @ self.W2 + self.b2
        d2 = 2 * (z2 - self.Y) / (self.Y.shape[1] * self.Y.shape[2])
        d1 = (d2 @ self.W2.transpose(0, 2, 1)) * (1 - a1 * a1)
        self.W2 -= self.lr * (a1.transpose(0, 2, 1) @ d2)
        self.b2 -= self.lr * d2.sum(axis=1, keepdims=True)
        self.W1 -= self.lr * (self.X.transpose(0, 2, 1) @ d1)
        self.b1 -= self.lr * d1.sum(axis=1, keepdims=True)
        return ((z2 - self.Y) ** 2).mean(axis=(1, 2))


class TorchPopulationImpl:
    """PyTorch at its fastest here: the backward pass written by hand in batched matmuls (``torch.baddbmm``) over
    the member axis, in place, compiled by ``torch.compile`` (measured 2.5x faster than autograd with
    torch.optim.SGD); eager when compiling fails."""

    name = "torch"

    def __init__(self, case):
        try:
            import torch
        except ImportError:
            raise NotImplementedError("PyTorch is not installed") from None
        self.torch = torch
        self.params = [torch.from_numpy(a) for layer in _stacked_layers(case) for a in layer]
        X, Y = case.data()
        self.X, self.Y = torch.from_numpy(X), torch.from_numpy(Y)
        scale = 2.0 / (case.batch * case.sizes[-1])

        def step(X, Y, W1, b1, W2, b2):
            a1 = torch.tanh(torch.baddbmm(b1, X, W1))
            r = torch.baddbmm(b2, a1, W2) - Y
            d2 = scale * r
            d1 = torch.bmm(d2, W2.transpose(1, 2)) * (1 - a1 * a1)
            W2.sub_(LR * torch.bmm(a1.transpose(1, 2), d2))
            b2.sub_(LR * d2.sum(dim=1, keepdim=True))
            W1.sub_(LR * torch.bmm(X.transpose(1, 2), d1))
            b1.sub_(LR * d1.sum(dim=1, keepdim=True))
            return (r * r).mean(dim=(1, 2))

        self._step = step
        try:
            self._step = torch.compile(step)
            self.train_step()
        except Exception:  # no working compiler: eager
            self._step = step
        self.threads = _fastest_torch_threads(torch, self.train_step)
        self.prepare()

    def prepare(self):
        self.torch.set_num_threads(self.threads)

    def forward(self):
        W1, b1, W2, b2 = self.params
        with self.torch.inference_mode():
            return self.torch.baddbmm(b2, self.torch.tanh(self.torch.baddbmm(b1, self.X, W1)), W2)

    def train_step(self):
        with self.torch.no_grad():
            return self._step(self.X, self.Y, *self.params)


class JaxPopulationImpl:
    """``jax.jit(jax.vmap(step))`` of the single-network SGD step over the member axis, parameters donated."""

    name = "jax"

    def __init__(self, case):
        try:
            import jax
            import jax.numpy as jnp
        except ImportError:
            raise NotImplementedError("JAX is not installed") from None
        self.params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in _stacked_layers(case)]
        X, Y = case.data()
        self.X, self.Y = jnp.asarray(X), jnp.asarray(Y)

        def forward(params, X):
            (W1, b1), (W2, b2) = params
            return jnp.tanh(X @ W1 + b1) @ W2 + b2

        def loss(params, X, Y):
            return jnp.mean((forward(params, X) - Y) ** 2)

        def step(params, X, Y):
            value, grads = jax.value_and_grad(loss)(params, X, Y)
            return jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads), value

        self._step = jax.jit(jax.vmap(step), donate_argnums=0)
        self._forward = jax.jit(jax.vmap(forward))

    def train_step(self):
        self.params, values = self._step(self.params, self.X, self.Y)
        return values.block_until_ready()

    def forward(self):
        return self._forward(self.params, self.X).block_until_ready()


POPULATION_IMPLS = {impl.name: impl for impl in (FastbpPopulationImpl, NumpyPopulationImpl, LoopPopulationImpl,
                                                 TorchPopulationImpl, JaxPopulationImpl)}


def _fastest_torch_threads(torch, step, rounds=5):
    """The intra-op thread count at which ``step`` runs fastest: medians of paused, alternating blocks (as
    :func:`measure` times them), so a count is not judged by another's spinning pool."""
    counts = range(1, (os.cpu_count() or 1) + 1)
    once = max(_time_block(step, 1), 1e-6)
    calls = max(3, min(1000, int(0.05 / once)))
    times = {t: [] for t in counts}
    for _ in range(rounds):
        for t in counts:
            torch.set_num_threads(t)
            step()
            times[t].append(_time_block(step, calls, settle=0.05))
    return min(counts, key=lambda t: np.median(times[t]))


_FIRST_STEP = """
import time
start = time.perf_counter()
import fastbp.bench
case = fastbp.bench.CASES[{name!r}]
X, Y = case.data()
case.network().train_step(X, Y)
print(time.perf_counter() - start)
"""


def first_step_seconds(name):
    """Seconds of a fresh interpreter's import and first train step of case ``name``: with an empty cache (every
    kernel it needs compiles) and then with the cache that run left (loads)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        run = lambda: float(subprocess.run([sys.executable, "-c", _FIRST_STEP.format(name=name)], env=env,  # noqa: E731
                                           check=True, capture_output=True, text=True).stdout)
        return run(), run()


def gemm_peak(dtype, n=2048, repeats=5):
    """GFLOP/s of a large ``np.dot`` in ``dtype``, the best of ``repeats``: the machine's practical peak."""
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(n, n)).astype(dtype), rng.normal(size=(n, n)).astype(dtype)
    C = np.empty_like(A)
    np.dot(A, B, out=C)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.dot(A, B, out=C)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def machine():
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "numba_threads": numba.get_num_threads(),
            "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__}
    for mod in ("torch", "jax"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = "; ".join(f"{p.get('internal_api')} {p.get('version')} ({p.get('filepath', '').rsplit('/', 1)[-1]}"
                                 f", {p.get('num_threads')} threads, {p.get('architecture')})"
                                 for p in threadpool_info() if p.get("user_api") == "blas")
    except ImportError:
        info["blas"] = "unknown (install threadpoolctl)"
    return info


def _time_block(fn, calls, settle=0.0):
    time.sleep(settle)  # lets the other implementations' BLAS and OpenMP pools stop spinning and go to sleep
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def measure(case, op, impls, rounds, block_seconds, settle=0.2):
    """Median seconds per call of each implementation, timed in alternating rounds.

    ``impls`` are constructed adapters; each round times a block of calls of every one, in an order that rotates
    from round to round, after a pause of ``settle`` seconds: each library's thread pool spins for a while after its
    last call (OpenBLAS for about 0.1 s), and would otherwise steal the cores from the next one.
    """
    calls = {}
    for impl in impls:
        getattr(impl, "prepare", lambda: None)()
        fn = getattr(impl, op)
        fn()
        once = max(_time_block(fn, 1), 1e-7)
        calls[impl.name] = max(1, min(100_000, int(block_seconds / once)))
    times = {impl.name: [] for impl in impls}
    for r in range(rounds):
        for impl in impls[r % len(impls):] + impls[:r % len(impls)]:
            getattr(impl, "prepare", lambda: None)()
            times[impl.name].append(_time_block(getattr(impl, op), calls[impl.name], settle))
    return {name: float(np.median(t)) for name, t in times.items()}


def run(cases=tuple(CASES), ops=OPS, threads=None, quick=False, peers=("torch", "jax"), log=print):
    """Measure every case and op; returns a JSON-ready dict and logs the table at the end (progress on stderr)."""
    if threads is not None:
        numba.set_num_threads(threads)
    rounds, block = (3, 0.02) if quick else (7, 0.1)
    info = machine()
    dtypes = sorted({np.dtype(_case(c).dtype).name for c in cases})
    gemm_n = 1024 if quick else 2048
    peak = {d: gemm_peak(np.dtype(d).type, n=gemm_n) for d in dtypes}
    rows, skipped = [], {}
    for name in cases:
        case = _case(name)
        if name == POPULATION.name:
            impls = [POPULATION_IMPLS[k](case) for k in ("fastbp", "numpy", "loop")]
        else:
            impls = [FastbpImpl(case, threads), NumpyImpl(case)]
        for peer in peers:
            try:
                impls.append((POPULATION_IMPLS if name == POPULATION.name else IMPLS)[peer](case, *(
                    () if name == POPULATION.name else (threads,))))
            except NotImplementedError as exc:
                skipped[peer] = str(exc)
        for op in (o for o in ops if name != POPULATION.name or o in POPULATION_OPS):
            rows.append(_row(case, op, measure(case, op, impls, rounds, block)))
            print(f"  measured {name} {op}", file=sys.stderr)
        if "train_step" in ops and name in ("xor", "policy-online"):
            loop = NjitLoopImpl(case)
            per_step = measure(case, "train_step", [loop], rounds, block)["fastbp-njit"] / NjitLoopImpl.STEPS
            numpy_time = next(r for r in rows if r["case"] == name and r["op"] == "train_step")["us"]["numpy"]
            rows.append(_row(case, "train_step (@njit loop)", {"fastbp": per_step, "numpy": numpy_time * 1e-6}))
    first_steps = {} if quick else {name: first_step_seconds(name) for name in ("simplechains",) if name in cases}
    # A shared machine drifts: the peak is the best of a measurement before the cases and one after them.
    peak = {d: max(g, gemm_peak(np.dtype(d).type, n=gemm_n)) for d, g in peak.items()}
    for row in rows:
        row["peak_percent"] = 100 * row["gflops"] / peak[np.dtype(_case(row["case"]).dtype).name]
    log(_header(info, peak, gemm_n))
    for row in rows:
        log(_format_row(row))
    for peer, why in skipped.items():
        log(f"{peer}: skipped ({why})")
    for name, (cold, warm) in first_steps.items():
        log(f"{name}: import and first train step in a fresh process: {cold:.1f} s with an empty cache (compiles), "
            f"{warm:.2f} s from the disk cache")
    return {"machine": info, "gemm_peak_gflops": peak, "results": rows, "skipped": skipped,
            "first_step_seconds": first_steps}


def _case(name):
    return POPULATION if name == POPULATION.name else CASES[name]


def _row(case, op, seconds):
    us = {name: t * 1e6 for name, t in seconds.items()}
    gflops = case.flops(op.split()[0]) / seconds["fastbp"] / 1e9
    peers = {k: v for k, v in us.items() if k in ("torch", "jax")}
    best = min(peers, key=peers.get) if peers else None
    return {"case": case.name, "op": op, "us": us, "gflops": gflops, "peak_percent": None,
            "speedup_numpy": us["numpy"] / us["fastbp"],
            "best_peer": best, "speedup_best_peer": us[best] / us["fastbp"] if best else None}


def _header(info, peak, n):
    lines = [f"machine: {info['cpu']}, {info['cores']} cores, numba threads {info['numba_threads']}",
             f"versions: python {info['python']}, numpy {info['numpy']}, numba {info['numba']}, "
             f"torch {info['torch']}, jax {info['jax']}",
             f"BLAS: {info['blas']}",
             f"GEMM peak (np.dot, {n} square, best before and after the cases): "
             + ", ".join(f"{d} {g:.1f} GFLOP/s" for d, g in peak.items()),
             "",
             f"{'case':<14} {'op':<24} {'fastbp us':>10} {'numpy us':>10} {'torch us':>10} {'jax us':>10} "
             f"{'loop us':>10} {'GFLOP/s':>8} {'% peak':>7} {'vs numpy':>9} {'vs best peer':>13}"]
    return "\n".join(lines)


def _format_row(row):
    us = row["us"]
    cell = lambda k: f"{us[k]:10.2f}" if k in us else f"{'-':>10}"  # noqa: E731
    peer = f"{row['speedup_best_peer']:7.2f}x ({row['best_peer']})" if row["best_peer"] else f"{'-':>13}"
    return (f"{row['case']:<14} {row['op']:<24} {cell('fastbp')} {cell('numpy')} {cell('torch')} {cell('jax')} {cell('loop')} "
            f"{row['gflops']:8.2f} {row['peak_percent']:6.1f}% {row['speedup_numpy']:8.2f}x {peer}")


def plot(result, path):
    """A bar chart of fastbp's speed-up over numpy (and the best peer) per case, for the train step."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'fastbp[plot]'") from None
    rows = [r for r in result["results"] if r["op"].startswith("train_step")]
    labels = [f"{r['case']}\n{'@njit loop' if 'njit' in r['op'] else 'from Python'}" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows)), 4))
    ax.bar(x - 0.2, [r["speedup_numpy"] for r in rows], 0.4, label="vs numpy")
    ax.bar(x + 0.2, [r["speedup_best_peer"] or 0 for r in rows], 0.4, label="vs best installed peer")
    ax.axhline(1, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("fastbp speed-up (time ratio)")
    ax.set_title("fastbp train step speed-up, " + result["machine"]["cpu"])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def save_json(result, path):
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
