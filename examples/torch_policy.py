"""A CartPole policy trained in PyTorch and exported to ONNX, for fastbp to import (docs/guide/deploy.md and
docs/gallery/plot_deploy.py run the result inside an @njit simulation loop).

Behaviour cloning: states visited by a linear controller that balances the pole, with one action in four random so
the states spread out, labelled with the controller's action; an ``nn.Sequential(Linear(4, 32), Tanh(), Linear(32,
2))`` learns them by cross-entropy with Adam, and is exported with a ``Softmax`` appended, its batch dimension
dynamic. Needs PyTorch and onnx (not fastbp):

    python examples/torch_policy.py            # writes examples/data/cartpole_policy.onnx
"""

import argparse
import pathlib
import warnings

import numpy as np
import torch

import cartpole

CONTROLLER = np.array([0.1, 0.5, 10.0, 2.0])  # push right when x, x_dot, theta, theta_dot weigh to the right
OUT = pathlib.Path(__file__).resolve().parent / "data" / "cartpole_policy.onnx"


def demonstrations(episodes, rng):
    """(states, the controller's actions) from episodes where one action in four is random."""
    states, actions = [], []
    s = np.zeros(4)
    for _ in range(episodes):
        s[:] = rng.uniform(-0.05, 0.05, 4)  # cartpole.reset's start, from this generator
        for _ in range(cartpole.MAX_STEPS):
            best = int(CONTROLLER @ s > 0)
            states.append(s.copy())
            actions.append(best)
            if cartpole.step(s, best if rng.random() > 0.25 else rng.integers(2)):
                break
    return np.array(states, np.float32), np.array(actions)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args()
    torch.manual_seed(0)
    X, y = demonstrations(60, np.random.default_rng(0))
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    logits = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2))
    opt = torch.optim.Adam(logits.parameters(), lr=0.01)
    for epoch in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits(X), y)
        loss.backward()
        opt.step()
    accuracy = (logits(X).argmax(1) == y).float().mean().item()
    print(f"{len(X)} states, loss {loss.item():.4f}, agreement with the controller {accuracy:.3f}")
    policy = torch.nn.Sequential(*logits, torch.nn.Softmax(dim=-1)).eval()
    args.out.parent.mkdir(exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation note (dynamo=True needs onnxscript)
        torch.onnx.export(policy, (X[:1],), str(args.out), input_names=["state"], output_names=["probabilities"],
                          dynamo=False, dynamic_axes={"state": {0: "batch"}})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
