"""CartPole solved by REINFORCE with a learned baseline, trained entirely inside one @njit loop.

A 4-32-2 softmax policy picks the push; after each episode the policy-gradient loss
``L = -mean_t A_t log pi(a_t | s_t)``, with advantages ``A_t = G_t - V(s_t)`` (discounted returns minus a learned
baseline, normalised per episode), is a loss fastbp does not know: the loop computes its gradient with respect to the
policy's output probabilities, ``dL/dP[t, a_t] = -A_t / (T P[t, a_t])``, and hands it to ``kernels.backward`` (the
delta recursion through softmax's Jacobian) and ``kernels.step`` (Adam). The 4-32-1 baseline learns the returns
by an ordinary ``kernels.train_step`` on mse. No Python runs between episodes, and nothing is allocated per step.

Training stops when the mean return of the last 100 episodes reaches 475 (Gymnasium's threshold for CartPole-v1).
With PyTorch installed, ``--torch`` trains the same algorithm (same networks, initial weights and hyperparameters)
in PyTorch for comparison.

    python examples/cartpole_reinforce.py [--episodes 3000] [--seeds 3] [--torch]
"""

import argparse
import time

import numba
import numpy as np

import fastbp
from fastbp import kernels

import cartpole

GAMMA, WINDOW = 0.99, 100
POLICY_LR, VALUE_LR, RETURN_SCALE = 0.01, 0.01, 0.01  # the baseline learns returns scaled to about 1


def networks(seed):
    policy = fastbp.Network([4, 32, 2], hidden="tanh", output="softmax", loss="cross_entropy",
                            optimizer=fastbp.Adam(POLICY_LR), seed=seed)
    value = fastbp.Network([4, 32, 1], hidden="tanh", output="identity", loss="mse",
                           optimizer=fastbp.Adam(VALUE_LR), seed=seed + 1)
    return policy, value


@numba.njit(cache=True)
def train(policy_flat, policy_spec, policy_hyper, value_flat, value_spec, value_hyper, work, max_episodes, seed,
          returns):
    """Episodes until the last WINDOW average SOLVED (or ``max_episodes``); each episode's return into
    ``returns``. Returns (episodes, environment steps)."""
    np.random.seed(seed)
    T_max = cartpole.MAX_STEPS
    states, actions = np.empty((T_max, 4)), np.empty(T_max, np.int64)  # made once, before the loop
    probs, grad, G, V = np.empty((T_max, 2)), np.empty((T_max, 2)), np.empty((T_max, 1)), np.empty((T_max, 1))
    state, env_steps, window_sum = np.empty(4), 0, 0.0
    for episode in range(max_episodes):
        cartpole.reset(state)
        T = 0
        while T < T_max:
            states[T] = state
            kernels.predict(policy_flat, policy_spec, work, states[T:T + 1], probs[T:T + 1])
            actions[T] = 1 if np.random.random() < probs[T, 1] else 0
            T += 1
            if cartpole.step(state, actions[T - 1]):
                break
        env_steps += T
        returns[episode] = T
        window_sum += T - (returns[episode - WINDOW] if episode >= WINDOW else 0.0)
        # discounted returns, the baseline's values, and the normalised advantages
        g = 0.0
        for t in range(T - 1, -1, -1):
            g = 1.0 + GAMMA * g
            G[t, 0] = g * RETURN_SCALE
        kernels.predict(value_flat, value_spec, work, states[:T], V[:T])
        mean, var = 0.0, 0.0
        for t in range(T):
            mean += G[t, 0] - V[t, 0]
        mean /= T
        for t in range(T):
            var += (G[t, 0] - V[t, 0] - mean) ** 2
        std = np.sqrt(var / T) + 1e-8
        # the policy gradient: dL/dP of L = -mean_t A_t log P[t, a_t], then backward and step
        for t in range(T):
            advantage = (G[t, 0] - V[t, 0] - mean) / std
            grad[t, 0] = grad[t, 1] = 0.0
            grad[t, actions[t]] = -advantage / (T * probs[t, actions[t]])
        kernels.backward(policy_flat, policy_spec, work, states[:T], grad[:T])
        kernels.step(policy_flat, policy_hyper)
        kernels.train_step(value_flat, value_spec, value_hyper, work, states[:T], G[:T])
        if episode + 1 >= WINDOW and window_sum / WINDOW >= cartpole.SOLVED:
            return episode + 1, env_steps
    return max_episodes, env_steps


def run_fastbp(seed, max_episodes):
    policy, value = networks(seed)
    work = np.empty(max(policy.workspace(cartpole.MAX_STEPS).size, value.workspace(cartpole.MAX_STEPS).size))
    returns = np.zeros(max_episodes)
    start = time.perf_counter()
    episodes, steps = train(policy.flat, policy.spec, policy.hyper, value.flat, value.spec, value.hyper, work,
                            max_episodes, seed, returns)
    return episodes, steps, time.perf_counter() - start, returns[:episodes]


def run_torch(seed, max_episodes):
    """The same algorithm in PyTorch, as its tutorials write it: the policy queried once per step from Python."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    policy, value = networks(seed)  # the same initial weights
    nets = []
    for net, out in ((policy, torch.nn.Softmax(dim=-1)), (value, torch.nn.Identity())):
        model = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, net.sizes[-1]),
                                    out).double()
        model.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()})
        nets.append(model)
    policy_t, value_t = nets
    opt_p, opt_v = torch.optim.Adam(policy_t.parameters(), POLICY_LR), torch.optim.Adam(value_t.parameters(), VALUE_LR)
    returns, steps, state = [], 0, np.empty(4)
    start = time.perf_counter()
    for episode in range(max_episodes):
        state[:] = rng.uniform(-0.05, 0.05, 4)
        states, actions = [], []
        while len(states) < cartpole.MAX_STEPS:
            states.append(state.copy())
            with torch.no_grad():
                p = policy_t(torch.from_numpy(state))[1].item()
            actions.append(1 if rng.random() < p else 0)
            if cartpole.step(state, actions[-1]):
                break
        T = len(states)
        steps += T
        returns.append(T)
        G = torch.from_numpy(RETURN_SCALE * (1 - GAMMA ** np.arange(T, 0, -1)) / (1 - GAMMA)).reshape(-1, 1)
        S = torch.from_numpy(np.array(states))
        with torch.no_grad():
            A = G - value_t(S)
        A = ((A - A.mean()) / (A.std(unbiased=False) + 1e-8)).reshape(-1)
        P = policy_t(S)[torch.arange(T), torch.tensor(actions)]
        opt_p.zero_grad()
        (-(A * torch.log(P)).mean()).backward()
        opt_p.step()
        opt_v.zero_grad()
        torch.nn.functional.mse_loss(value_t(S), G).backward()
        opt_v.step()
        if len(returns) >= WINDOW and np.mean(returns[-WINDOW:]) >= cartpole.SOLVED:
            break
    return len(returns), steps, time.perf_counter() - start, np.array(returns, float)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=3000, help="at most this many episodes per run")
    parser.add_argument("--seeds", type=int, default=3, help="independent runs (seeds 0, 1, ...)")
    parser.add_argument("--torch", action="store_true", help="also train the same algorithm in PyTorch")
    args = parser.parse_args(argv)
    run_fastbp(0, 1)  # compile (or load from the cache) outside the timings
    runners = [("fastbp @njit", run_fastbp)] + ([("pytorch", run_torch)] if args.torch else [])
    for name, run in runners:
        results = []
        for seed in range(args.seeds):
            episodes, steps, seconds, returns = run(seed, args.episodes)
            solved = len(returns) >= WINDOW and returns[-WINDOW:].mean() >= cartpole.SOLVED
            first, last = returns[:WINDOW].mean(), returns[-WINDOW:].mean()
            print(f"{name} seed {seed}: {'solved' if solved else 'not solved'} after {episodes} episodes, "
                  f"{steps} environment steps, {seconds:.2f} s; mean return first {first:.1f} last {last:.1f}")
            results.append((episodes, steps, seconds, solved))
        episodes, steps, seconds, solved = (np.mean([r[k] for r in results]) for k in range(4))
        print(f"{name} mean over {args.seeds} seeds: {episodes:.0f} episodes, {steps:.0f} environment steps, "
              f"{seconds:.2f} s, {solved * 100:.0f}% solved")


if __name__ == "__main__":
    main()
