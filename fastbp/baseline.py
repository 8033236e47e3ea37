"""The same network in plain numpy, written as a user would write the textbook training loop.

It is the baseline the demo and the benchmarks compare fastbp with: matmuls, an elementwise activation,
``d = (d @ W.T) * phi'(a)`` and in-place ``W -= lr * dW``. (The test oracle is ``tests/reference.py``, which spells
out the chain rule in full; this one is written for speed, as a user would.)
"""

import numpy as np

def _silu_derivative(a, z):
    s = 1 / (1 + np.exp(-z))
    return s * (1 + z * (1 - s))


# Each activation and its derivative, from the output a (or, for silu, which is not monotonic, from z).
_ACT = {
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda a, z: a * (1 - a)),
    "tanh": (np.tanh, lambda a, z: 1 - a * a),
    "relu": (lambda z: np.maximum(z, 0), lambda a, z: (a > 0).astype(a.dtype)),
    "identity": (lambda z: z, lambda a, z: 1),
    "silu": (lambda z: z / (1 + np.exp(-z)), _silu_derivative),
}


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class NumpyMLP:
    """A copy of ``net``'s architecture and weights, trained by plain SGD with learning rate ``lr``.

    Supports the pairings of the benchmark cases: sigmoid/tanh/relu/identity/silu hidden layers, one or one each;
    sigmoid + bce, softmax + cross_entropy (one-hot targets), or any of the others + mse.
    """

    def __init__(self, net, lr):
        self.Ws = [W.T.copy() for W, _ in net.layers()]  # (n_in, n_out), so a layer is a @ W + b
        self.bs = [b.copy() for _, b in net.layers()]
        self.phis, self.dphis = zip(*(_ACT[name] for name in net.activations[:-1])) if len(net.sizes) > 2 else ((), ())
        self.out = _softmax if net.output == "softmax" else _ACT[net.output][0]
        self.dphi_out = None if net.output == "softmax" else _ACT[net.output][1]
        self.dout = None if net.loss in ("bce", "cross_entropy") else self.dphi_out
        self.loss, self.lr = net.loss, net.dtype.type(lr)

    def forward(self, X):
        a = X
        for W, b, phi in zip(self.Ws[:-1], self.bs[:-1], self.phis):
            a = phi(a @ W + b)
        return self.out(a @ self.Ws[-1] + self.bs[-1])

    def _activations(self, X):
        """The inputs of every layer and their pre-activations (kept for the derivatives from z), and the output."""
        acts, zs = [X], [None]
        for W, b, phi in zip(self.Ws[:-1], self.bs[:-1], self.phis):
            zs.append(acts[-1] @ W + b)
            acts.append(phi(zs[-1]))
        return (acts, zs), self.out(acts[-1] @ self.Ws[-1] + self.bs[-1])

    def gradients(self, X, Y):
        """(mean loss, [dW], [db]), with dW of shape (n_in, n_out) as the stored weights."""
        layers, yhat = self._activations(X)
        if self.loss == "bce":
            loss = -np.mean(Y * np.log(yhat) + (1 - Y) * np.log(1 - yhat))
            d = (yhat - Y) / Y.size
        elif self.loss == "cross_entropy":
            loss = -np.sum(Y * np.log(yhat)) / X.shape[0]
            d = (yhat - Y) / X.shape[0]
        else:
            loss = np.mean((yhat - Y) ** 2)
            d = 2 * (yhat - Y) / Y.size * self.dout(yhat, None)
        return (loss, *self._backward(layers, d))

    def _backward(self, layers, d):
        acts, zs = layers
        dWs, dbs = [None] * len(self.Ws), [None] * len(self.Ws)
        for l in range(len(self.Ws) - 1, -1, -1):
            dWs[l] = acts[l].T @ d
            dbs[l] = d.sum(axis=0)
            if l:
                d = (d @ self.Ws[l].T) * self.dphis[l - 1](acts[l], zs[l])
        return dWs, dbs

    def train_step(self, X, Y):
        loss, dWs, dbs = self.gradients(X, Y)
        self._update(dWs, dbs)
        return loss

    def backward_step(self, X, G):
        """An SGD step on any loss from its gradient G = dL/dP for the output activations P."""
        layers, P = self._activations(X)
        if self.out is _softmax:  # the Jacobian of softmax: d_j = P_j (G_j - sum_k G_k P_k)
            d = P * (G - np.sum(G * P, axis=1, keepdims=True))
        else:
            d = G * self.dphi_out(P, None)
        self._update(*self._backward(layers, d))

    def _update(self, dWs, dbs):
        for W, b, dW, db in zip(self.Ws, self.bs, dWs, dbs):
            W -= self.lr * dW
            b -= self.lr * db
