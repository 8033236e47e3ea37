"""The single-network cases and their implementations: fastbp (from Python and from a user's ``@njit`` loop), the
plain numpy baseline, PyTorch, JAX and (inference only) ONNX Runtime, each written as its own docs recommend."""

import os
import sys
import time
from dataclasses import dataclass

import numba
import numpy as np

from .. import SGD, Network, builder
from ..baseline import NumpyMLP
from ..config import BUILD_TIMEOUT
from .timing import fastest_threads

LR = 1e-3  # small, so weights never drift far over many timed repeats of the same step


@dataclass(frozen=True)
class Case:
    name: str
    sizes: tuple
    batch: int
    dtype: type
    hidden: str  # or a tuple: one per hidden layer
    output: str
    loss: str

    @property
    def hidden_layers(self):
        """The activation of each hidden layer."""
        n = len(self.sizes) - 2
        return (self.hidden,) * n if isinstance(self.hidden, str) else tuple(self.hidden)

    def grad_output(self, seed=1):
        """A fixed dL/dP for the output activations, as a user's own loss would give (``backward_step``)."""
        rng = np.random.default_rng(seed)
        return (rng.normal(size=(self.batch, self.sizes[-1])) / self.batch).astype(self.dtype)

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

    def network(self, seed=0, threads=None, keep_grad=True):
        # The steady state a user's network reaches: its background build, and the plan it measures, finished
        # (the mode from $FASTBP_COMPILE, as for any network: `make asv-quick` checks the suites with "off").
        net = Network(list(self.sizes), hidden=self.hidden, output=self.output, loss=self.loss,
                      optimizer=SGD(lr=LR, keep_grad=keep_grad), dtype=self.dtype, seed=seed, threads=threads)
        net = net.prepare(self.batch) if net.dispatch.mode == "background" else net
        wait_for_builds()
        return net

    def flops(self, op):
        """Floating-point operations of one call: 2 per multiply-add of the forward product, the weight gradient
        and the delta recursion (none into the input layer)."""
        macs = [a * b for a, b in zip(self.sizes[:-1], self.sizes[1:])]
        forward = 2 * self.batch * sum(macs)
        return forward if op == "forward" else forward + 2 * self.batch * (sum(macs) + sum(macs[1:]))


def wait_for_builds(poll=0.1):
    """Wait until no background build runs on this machine (any process's: one left by an earlier benchmark or
    script would compile beside the timing), for at most a build's timeout."""
    start = time.monotonic()
    while builder.builds_alive() and time.monotonic() < start + BUILD_TIMEOUT:
        time.sleep(poll)
    if time.monotonic() - start > 1:
        print(f"fastbp.bench: waited {time.monotonic() - start:.0f} s for background builds to end", file=sys.stderr)


CASES = {c.name: c for c in [
    Case("xor", (2, 2, 1), 4, np.float64, "sigmoid", "sigmoid", "bce"),
    Case("policy-online", (8, 64, 64, 2), 1, np.float64, "tanh", "identity", "mse"),
    Case("policy-batch", (8, 64, 64, 2), 32, np.float32, "tanh", "identity", "mse"),
    Case("mnist", (784, 256, 128, 10), 128, np.float32, "relu", "softmax", "cross_entropy"),
    Case("wide", (1024, 1024, 1024, 1024), 256, np.float32, "relu", "identity", "mse"),
    # SimpleChains.jl's documentation example: a small network on a large full batch.
    Case("simplechains", (4, 32, 16, 4), 10_000, np.float32, "tanh", "identity", "mse"),
    # policy-batch with silu first (its derivative reads z, kept beside a): an activation per layer.
    Case("policy-mixed", (8, 64, 64, 2), 32, np.float32, ("silu", "tanh"), "identity", "mse"),
]}
OPS = ("train_step", "forward", "gradients", "backward_step")  # backward_step: backward from a given dL/dP, then SGD


class FastbpImpl:
    name = "fastbp"

    def __init__(self, case, threads=None):
        self.net = case.network(threads=threads)
        self.X, self.Y = case.data()
        self.out = np.empty((case.batch, case.sizes[-1]), case.dtype)
        self.G = case.grad_output()

    def train_step(self):
        return self.net.train_step(self.X, self.Y)

    def forward(self):
        return self.net.forward(self.X, out=self.out)

    def gradients(self):
        return self.net.gradients(self.X, self.Y)

    def backward_step(self):
        self.net.backward(self.X, self.G)
        self.net.step()


class FastbpNoGradImpl:
    """fastbp's train step from Python with ``SGD(keep_grad=False)``: a step that need not leave its gradient in
    ``net.grad``, as the numpy and JAX steps keep none (on one row, the compiled step then writes none)."""

    name = "fastbp-nograd"

    def __init__(self, case, threads=None):
        self.net = case.network(threads=threads, keep_grad=False)
        self.X, self.Y = case.data()

    def train_step(self):
        return self.net.train_step(self.X, self.Y)


class NumpyImpl:
    name = "numpy"

    def __init__(self, case, threads=None):
        self.mlp = NumpyMLP(case.network(), LR)
        self.X, self.Y = case.data()
        self.G = case.grad_output()

    def train_step(self):
        return self.mlp.train_step(self.X, self.Y)

    def forward(self):
        return self.mlp.forward(self.X)

    def gradients(self):
        return self.mlp.gradients(self.X, self.Y)

    def backward_step(self):
        self.mlp.backward_step(self.X, self.G)


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
        act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity, "silu": nn.SiLU}
        layers = []
        for a, b, name in zip(case.sizes[:-1], case.sizes[1:], case.hidden_layers + ("identity",)):
            layers += [nn.Linear(a, b), act[name]()]
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
        self.G = torch.from_numpy(case.grad_output())
        self.output = torch.nn.Softmax(dim=1) if case.output == "softmax" else torch.nn.Identity()  # sigmoid: in model
        self.threads = threads or fastest_threads(torch.set_num_threads, self.train_step)
        self.prepare()

    def prepare(self):
        self.torch.set_num_threads(self.threads)

    def train_step(self):
        loss = self.gradients()
        self.opt.step()
        return loss

    def forward(self):
        with self.torch.inference_mode():
            return self.model(self.X)

    def gradients(self):
        self.opt.zero_grad()
        loss = self.loss_fn(self.model(self.X), self.Y)
        loss.backward()
        return loss.item()

    def backward_step(self):
        self.opt.zero_grad()
        self.output(self.model(self.X)).backward(self.G)
        self.opt.step()


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
        act = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "identity": lambda z: z,
               "silu": jax.nn.silu}
        phis = [act[name] for name in case.hidden_layers]

        def forward(params, X):
            a = X
            for (W, b), phi in zip(params[:-1], phis):
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

        def backward_step(params, X, G):  # a vector-Jacobian product from dL/dP, then SGD
            _, vjp = jax.vjp(lambda p: out(forward(p, X)), params)
            (grads,) = vjp(G)
            return jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads)

        self.G = jnp.asarray(case.grad_output())
        self._backward_step, self._block = jax.jit(backward_step, donate_argnums=0), jax.block_until_ready
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

    def backward_step(self):
        self.params = self._block(self._backward_step(self.params, self.X, self.G))


class OnnxRuntimeImpl:
    """ONNX Runtime, inference only, as its performance guide recommends: the network's graph
    (:meth:`fastbp.Network.to_onnx`) in an ``InferenceSession`` with every graph optimisation (the default), the
    input and a preallocated output bound once (``io_binding``), so a call runs the graph and copies nothing; the
    intra-op thread count that is fastest for the case (a session per count, the fastest kept)."""

    name = "onnxruntime"

    def __init__(self, case, threads=None):
        try:
            import onnxruntime
        except ImportError:
            raise NotImplementedError("ONNX Runtime is not installed (the extra fastbp[onnx])") from None
        graph = case.network().to_onnx().SerializeToString()
        self.X = case.data()[0]
        self.out = np.empty((case.batch, case.sizes[-1]), case.dtype)
        self.sessions = {}
        for t in range(1, (os.cpu_count() or 1) + 1) if threads is None else [threads]:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = t
            session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
            binding = session.io_binding()
            binding.bind_cpu_input("input", self.X)
            binding.bind_output("output", "cpu", 0, self.out.dtype, self.out.shape, self.out.ctypes.data)
            self.sessions[t] = session, binding
        self.use(min(self.sessions))
        if threads is None:
            self.use(fastest_threads(self.use, self.forward))

    def use(self, threads):
        self.session, self.binding = self.sessions[threads]

    def forward(self):
        self.session.run_with_iobinding(self.binding)
        return self.out


IMPLS = {impl.name: impl for impl in (FastbpImpl, NumpyImpl, TorchImpl, JaxImpl, OnnxRuntimeImpl)}
PEERS = ("torch", "jax", "onnxruntime")  # the installed ones run beside fastbp and numpy; ONNX Runtime only infers


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
    """fastbp's train step called from a user's @njit loop, as a simulation runs it: the kernel the network's plan
    chooses for the batch (``net.compiled.train_step`` or ``fastbp.kernels.train_step``)."""

    name = "fastbp-njit"
    STEPS = 1000

    def __init__(self, case, threads=None):
        self.net = case.network(threads=threads)
        self.X, self.Y = case.data()
        self.work = self.net.workspace(case.batch)
        self.loop = njit_train_loop(self.net.dispatch.kernel("train_step", case.batch)[0])
        self.train_step()

    def train_step(self):
        self.loop(self.net.flat, self.net.spec, self.net.hyper, self.work, self.X, self.Y, self.STEPS)
