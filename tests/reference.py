"""The plain numpy reference: backpropagation written out layer by layer, slow and obviously correct.

It shares no code with fastbp's kernels. Where the kernels use shortcuts (``yhat - y`` for sigmoid + bce and
softmax + cross_entropy, derivatives from the activation's output), this uses the textbook chain rule: dL/da from
the loss, then the activation's Jacobian in terms of z.
"""

import numpy as np
from scipy.special import erfc

LEAKY_SLOPE = 0.01
GELU_C, GELU_K = np.sqrt(2 / np.pi), 0.044715  # PyTorch's tanh approximation of gelu


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def activation(name, z):
    if name == "identity":
        return z
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0)
    if name == "leaky_relu":
        return np.where(z > 0, z, LEAKY_SLOPE * z)
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if name == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
    if name == "softplus":  # PyTorch's: z itself above 20
        return np.where(z > 20, z, np.log1p(np.exp(np.minimum(z, 20))))
    if name == "silu":
        return z * _sigmoid(z)
    if name == "gelu":
        # z Phi(z) by erfc (PyTorch's 1 + erf is 0 below z = -8), its argument z * sqrt(1/2) as PyTorch rounds it:
        # erfc's relative error grows as 2 z**2 times the argument's.
        return 0.5 * z * erfc(-z * np.sqrt(0.5))
    if name == "gelu_tanh":
        return 0.5 * z * (1 + np.tanh(GELU_C * (z + GELU_K * z**3)))
    raise ValueError(name)


def derivative(name, z):
    """phi'(z), by the textbook (not softmax)."""
    a, s = activation(name, z), _sigmoid(z)
    if name == "gelu_tanh":
        t = np.tanh(GELU_C * (z + GELU_K * z**3))
        saturated = t**2 == 1  # where z**2 may overflow: the second term is 0
        return 0.5 * (1 + t) + np.where(saturated, 0, 0.5 * z * (1 - t**2) * GELU_C * (1 + 3 * GELU_K * z**2))
    return {"identity": np.ones_like(z), "sigmoid": a * (1 - a), "tanh": 1 - a**2,
            "relu": (z > 0).astype(z.dtype), "leaky_relu": np.where(z > 0, 1, LEAKY_SLOPE).astype(z.dtype),
            "elu": np.where(z > 0, 1, np.exp(np.minimum(z, 0))), "softplus": np.where(z > 20, 1, s),
            "silu": s + z * s * (1 - s),
            "gelu": 0.5 * erfc(-z * np.sqrt(0.5)) + z * np.exp(-z**2 / 2) / np.sqrt(2 * np.pi)}[name]


def hidden_at(hidden, l):
    """The activation of hidden layer l (0-based): ``hidden`` is one name for all, or one per layer."""
    return hidden if isinstance(hidden, str) else hidden[l]


def activation_backward(name, z, g):
    """dL/dz from dL/da = g."""
    a = activation(name, z)
    if name == "softmax":  # Jacobian diag(a) - a a^T, applied row by row
        return np.einsum("nij,nj->ni", a[:, :, None] * np.eye(a.shape[1]) - a[:, :, None] * a[:, None, :], g)
    return g * derivative(name, z)


def one_hot(Y, n_out, dtype):
    Y = np.asarray(Y)
    if Y.ndim == 1:
        out = np.zeros((Y.size, n_out), dtype)
        out[np.arange(Y.size), Y] = 1
        return out
    return Y.astype(dtype)


def loss_and_grad_a(name, a, y):
    """(mean loss, dL/da) with PyTorch's reductions."""
    n, n_out = a.shape
    if name == "mse":
        return np.mean((a - y) ** 2), 2 * (a - y) / (n * n_out)
    if name == "huber":
        r = a - y
        small = np.abs(r) <= 1
        return np.mean(np.where(small, 0.5 * r**2, np.abs(r) - 0.5)), np.where(small, r, np.sign(r)) / (n * n_out)
    if name == "bce":
        loss = -np.mean(y * np.log(a) + (1 - y) * np.log(1 - a))
        return loss, -(y / a - (1 - y) / (1 - a)) / (n * n_out)
    if name == "cross_entropy":
        return -np.sum(y * np.log(a)) / n, -y / a / n
    raise ValueError(name)


def forward(Ws, bs, hidden, output, X):
    """Pre-activations and activations per layer; Ws[l] has shape (n_out, n_in) as torch.nn.Linear."""
    zs, As = [], [X]
    for l, (W, b) in enumerate(zip(Ws, bs)):
        z = As[-1] @ W.T + b
        zs.append(z)
        As.append(activation(output if l == len(Ws) - 1 else hidden_at(hidden, l), z))
    return zs, As


def weighted_loss_and_grad_a(name, a, y, w):
    """(weighted mean loss, dL/da): sum_i w_i l_i / sum_i w_i, with l_i the loss of row i alone."""
    rows = [loss_and_grad_a(name, a[i:i + 1], y[i:i + 1]) for i in range(len(a))]
    total = w.sum()
    return sum(w[i] * value for i, (value, _) in enumerate(rows)) / total, \
        np.concatenate([w[i] * g for i, (_, g) in enumerate(rows)]) / total


def gradients(Ws, bs, hidden, output, loss, X, Y, sample_weight=None):
    """(mean loss, [dW], [db]) by the chain rule: delta_L = J_phi(z_L)^T dL/da, delta_l = (delta_{l+1} W) * phi'(z_l)."""
    zs, As = forward(Ws, bs, hidden, output, X)
    y = one_hot(Y, Ws[-1].shape[0], X.dtype)
    if sample_weight is None:
        value, g = loss_and_grad_a(loss, As[-1], y)
    else:
        value, g = weighted_loss_and_grad_a(loss, As[-1], y, np.asarray(sample_weight, np.float64))
    return (value, *backpropagate(Ws, hidden, output, zs, As, g))


def backpropagate(Ws, hidden, output, zs, As, g):
    """([dW], [db]) from g = dL/da of the output activations."""
    delta = activation_backward(output, zs[-1], g)
    dWs, dbs = [None] * len(Ws), [None] * len(Ws)
    for l in range(len(Ws) - 1, -1, -1):
        dWs[l] = delta.T @ As[l]
        dbs[l] = delta.sum(axis=0)
        if l:
            delta = activation_backward(hidden_at(hidden, l - 1), zs[l - 1], delta @ Ws[l])
    return dWs, dbs


def clip(grads, max_norm):
    """torch.nn.utils.clip_grad_norm_ written out: the gradients scaled so their global L2 norm is <= max_norm."""
    norm = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))
    coef = min(1.0, max_norm / (norm + 1e-6))
    return [g * coef for g in grads]


def scheduled_lr(kind, lr, t, warmup=0, warmup_start=0.0, step_size=1, gamma=0.1, steps=1, lr_min=0.0):
    """The learning rate of update t (0-based) under a schedule, from the formulas of PyTorch's schedulers."""
    if t < warmup:
        return lr * (warmup_start + (1 - warmup_start) * t / warmup)
    t -= warmup
    if kind == "step":
        return lr * gamma ** (t // step_size)
    if kind == "exponential":
        return lr * gamma**t
    if kind == "cosine":
        return lr_min + (lr - lr_min) * (1 + np.cos(np.pi * min(t, steps) / steps)) / 2
    return lr


class SGD:
    """torch.optim.SGD's update, written out."""

    def __init__(self, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        self.lr, self.momentum, self.nesterov, self.wd = lr, momentum, nesterov, weight_decay
        self.v = None

    def step(self, params, grads):
        if self.v is None:
            self.v = [np.zeros_like(p) for p in params]
        for p, g, v in zip(params, grads, self.v):
            g = g + self.wd * p
            if self.momentum:
                v *= self.momentum
                v += g
                g = g + self.momentum * v if self.nesterov else v
            p -= self.lr * g


class Adam:
    """AdamW (decoupled weight decay) with bias correction, written out from the paper."""

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        self.lr, self.b1, self.b2, self.eps, self.wd = lr, beta1, beta2, eps, weight_decay
        self.t, self.m, self.v = 0, None, None

    def step(self, params, grads):
        if self.m is None:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.t += 1
        for p, g, m, v in zip(params, grads, self.m, self.v):
            p *= 1 - self.lr * self.wd
            m[:] = self.b1 * m + (1 - self.b1) * g
            v[:] = self.b2 * v + (1 - self.b2) * g * g
            m_hat = m / (1 - self.b1**self.t)
            v_hat = v / (1 - self.b2**self.t)
            p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
