"""The population case, 1024 networks of 4-16-2 trained in one call, and its implementations: fastbp.Population,
numpy batched matmuls, a loop of single-network calls, hand-written backprop under ``torch.compile`` and
``jax.jit(jax.vmap(step))``."""

from dataclasses import dataclass

import numpy as np

from .. import SGD, Population
from .cases import LR, Case, wait_for_builds
from .timing import fastest_threads


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

    def population(self, compiled=False, threads=None):
        pop = Population(self.n, list(self.sizes), hidden=self.hidden, optimizer=SGD(lr=LR), dtype=self.dtype,
                         seed=0, compiled=compiled, threads=threads)
        wait_for_builds()
        return pop

    def flops(self, op):
        return self.n * Case(self.name, self.sizes, self.batch, self.dtype, self.hidden, "identity", "mse").flops(op)


POPULATION = PopulationCase("population", 1024, (4, 16, 2), 1, np.float32)
POPULATION_OPS = ("train_step", "forward")


class FastbpPopulationImpl:
    name = "fastbp"
    compiled = False

    def __init__(self, case, threads=None):
        self.pop = case.population(self.compiled, threads)
        self.X, self.Y = case.data()
        self.out = np.empty((case.n, case.batch, case.sizes[-1]), case.dtype)

    def train_step(self):
        return self.pop.train_step(self.X, self.Y)

    def forward(self):
        return self.pop.forward(self.X, out=self.out)


class CompiledPopulationImpl(FastbpPopulationImpl):
    """fastbp.Population on the population kernels compiled for its architecture (pop.compiled)."""

    name = "fastbp-compiled"
    compiled = True


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
        self.threads = fastest_threads(torch.set_num_threads, self.train_step)
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


POPULATION_IMPLS = {impl.name: impl for impl in (FastbpPopulationImpl, CompiledPopulationImpl, NumpyPopulationImpl,
                                                 LoopPopulationImpl, TorchPopulationImpl, JaxPopulationImpl)}
