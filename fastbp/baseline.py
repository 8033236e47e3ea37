"""The same network in plain numpy, written as a user would write the textbook training loop.

It is the baseline the demo and the benchmarks compare fastbp with: matmuls, an elementwise activation,
``d = (d @ W.T) * phi'(a)`` and in-place ``W -= lr * dW``. (The test oracle is ``tests/reference.py``, which spells
out the chain rule in full; this one is written for speed, as a user would.)
"""

import numpy as np

_ACT = {
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda a: a * (1 - a)),
    "tanh": (np.tanh, lambda a: 1 - a * a),
    "relu": (lambda z: np.maximum(z, 0), lambda a: (a > 0).astype(a.dtype)),
    "identity": (lambda z: z, lambda a: 1),
}


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class NumpyMLP:
    """A copy of ``net``'s architecture and weights, trained by plain SGD with learning rate ``lr``.

    Supports the pairings of the benchmark cases: sigmoid/tanh/relu/identity hidden layers; sigmoid + bce,
    softmax + cross_entropy (one-hot targets), or any of the others + mse.
    """

    def __init__(self, net, lr):
        self.Ws = [W.T.copy() for W, _ in net.layers()]  # (n_in, n_out), so a layer is a @ W + b
        self.bs = [b.copy() for _, b in net.layers()]
        self.phi, self.dphi = _ACT[net.hidden]
        self.out = _softmax if net.output == "softmax" else _ACT[net.output][0]
        self.dphi_out = None if net.output == "softmax" else _ACT[net.output][1]
        self.dout = None if net.loss in ("bce", "cross_entropy") else self.dphi_out
        self.loss, self.lr = net.loss, net.dtype.type(lr)

    def forward(self, X):
        a = X
        for W, b in zip(self.Ws[:-1], self.bs[:-1]):
            a = self.phi(a @ W + b)
        return self.out(a @ self.Ws[-1] + self.bs[-1])

    def _activations(self, X):
        acts = [X]
        for W, b in zip(self.Ws[:-1], self.bs[:-1]):
            acts.append(self.phi(acts[-1] @ W + b))
        return acts, self.out(acts[-1] @ self.Ws[-1] + self.bs[-1])

    def gradients(self, X, Y):
        """(mean loss, [dW], [db]), with dW of shape (n_in, n_out) as the stored weights."""
        acts, yhat = self._activations(X)
        if self.loss == "bce":
            loss = -np.mean(Y * np.log(yhat) + (1 - Y) * np.log(1 - yhat))
            d = (yhat - Y) / Y.size
        elif self.loss == "cross_entropy":
            loss = -np.sum(Y * np.log(yhat)) / X.shape[0]
            d = (yhat - Y) / X.shape[0]
        else:
            loss = np.mean((yhat - Y) ** 2)
            d = 2 * (yhat - Y) / Y.size * self.dout(yhat)
        return (loss, *self._backward(acts, d))

    def _backward(self, acts, d):
        dWs, dbs = [None] * len(self.Ws), [None] * len(self.Ws)
        for l in range(len(self.Ws) - 1, -1, -1):
            dWs[l] = acts[l].T @ d
            dbs[l] = d.sum(axis=0)
            if l:
                d = (d @ self.Ws[l].T) * self.dphi(acts[l])
        return dWs, dbs

    def train_step(self, X, Y):
        loss, dWs, dbs = self.gradients(X, Y)
        self._update(dWs, dbs)
        return loss

    def backward_step(self, X, G):
        """An SGD step on any loss from its gradient G = dL/dP for the output activations P."""
        acts, P = self._activations(X)
        if self.out is _softmax:  # the Jacobian of softmax: d_j = P_j (G_j - sum_k G_k P_k)
            d = P * (G - np.sum(G * P, axis=1, keepdims=True))
        else:
            d = G * self.dphi_out(P)
        self._update(*self._backward(acts, d))

    def _update(self, dWs, dbs):
        for W, b, dW, db in zip(self.Ws, self.bs, dWs, dbs):
            W -= self.lr * dW
            b -= self.lr * db
