"""A point mass learns to steer to a target, trained online inside a @njit simulation loop.

An agent observes (target - position, velocity) and outputs a force. While it learns, a teacher (a PD controller)
drives and shows the right force at every step, and the agent's network takes one fastbp train step on it inside the
jitted loop: no Python per step, no allocation per step. Then the network steers alone, and we count how many
episodes end within 0.1 of the target, before and after training. The population variant trains many agents at
once, each on its own episode, with one kernel call per simulation step. With PyTorch installed, the same online
loop is timed with a PyTorch network called once per step from Python.

    python examples/point_mass.py [--episodes 200] [--agents 256]
"""

import argparse
import time

import numba
import numpy as np

import fastbp
from fastbp import kernels

DT, STEPS, TOLERANCE, MAX_FORCE, KP, KD = 0.05, 160, 0.1, 4.0, 4.0, 4.0
SIZES = [4, 32, 2]


@numba.njit(cache=True)
def reset(state):
    """Random position and target in the unit square, at rest: state = (x, y, vx, vy, target x, target y)."""
    for k in (0, 1, 4, 5):
        state[k] = np.random.uniform(-1.0, 1.0)
    state[2] = state[3] = 0.0


@numba.njit(cache=True)
def observe(state, x):
    x[0], x[1], x[2], x[3] = state[4] - state[0], state[5] - state[1], state[2], state[3]


@numba.njit(cache=True)
def teacher(x, force):
    for k in range(2):
        force[k] = min(MAX_FORCE, max(-MAX_FORCE, KP * x[k] - KD * x[k + 2]))


@numba.njit(cache=True)
def step(state, force):
    for k in range(2):
        state[k + 2] += DT * min(MAX_FORCE, max(-MAX_FORCE, force[k]))
        state[k] += DT * state[k + 2]


@numba.njit(cache=True)
def reached(state):
    return (state[4] - state[0]) ** 2 + (state[5] - state[1]) ** 2 < TOLERANCE**2


@numba.njit(cache=True)
def train(flat, spec, hyper, work, episodes, seed):
    """Online imitation: every step the network trains on the teacher's force, and the teacher drives."""
    np.random.seed(seed)
    state, x, y = np.empty(6), np.empty((1, 4)), np.empty((1, 2))
    for _ in range(episodes):
        reset(state)
        for _ in range(STEPS):
            observe(state, x[0])
            teacher(x[0], y[0])
            kernels.train_step(flat, spec, hyper, work, x, y)
            step(state, y[0])


@numba.njit(cache=True)
def evaluate(flat, spec, work, episodes, seed):
    """The fraction of episodes the network alone ends within TOLERANCE of the target."""
    np.random.seed(seed)
    state, x, force = np.empty(6), np.empty((1, 4)), np.empty((1, 2))
    hits = 0
    for _ in range(episodes):
        reset(state)
        for _ in range(STEPS):
            observe(state, x[0])
            kernels.predict(flat, spec, work, x, force)
            step(state, force[0])
        hits += reached(state)
    return hits / episodes


@numba.njit(cache=True)
def train_population(flats, spec, hypers, works, episodes, seed):
    """Every agent learns on its own episode; one population kernel call per simulation step trains them all."""
    np.random.seed(seed)
    n = flats.shape[2]  # members are the last axis
    states, X, Y, losses = np.empty((n, 6)), np.empty((n, 1, 4)), np.empty((n, 1, 2)), np.empty(n)
    for _ in range(episodes):
        for m in range(n):
            reset(states[m])
        for _ in range(STEPS):
            for m in range(n):
                observe(states[m], X[m, 0])
                teacher(X[m, 0], Y[m, 0])
            kernels.population_train_step(flats, spec, hypers, works, X, Y, losses)
            for m in range(n):
                step(states[m], Y[m, 0])


@numba.njit(cache=True)
def evaluate_population(flats, spec, works, episodes, seed):
    """The fraction of (agent, episode) pairs that end within TOLERANCE of the target, each agent steering alone."""
    np.random.seed(seed)
    n = flats.shape[2]  # members are the last axis
    states, X, F = np.empty((n, 6)), np.empty((n, 1, 4)), np.empty((n, 1, 2))
    hits = 0
    for _ in range(episodes):
        for m in range(n):
            reset(states[m])
        for _ in range(STEPS):
            for m in range(n):
                observe(states[m], X[m, 0])
            kernels.population_predict(flats, spec, works, X, F)
            for m in range(n):
                step(states[m], F[m, 0])
        for m in range(n):
            hits += reached(states[m])
    return hits / (n * episodes)


def torch_steps_per_second(episodes):
    """The same online loop with a PyTorch network called once per step from Python (None without PyTorch)."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2)).double()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    x, y = np.empty((1, 4)), np.empty((1, 2))
    start = time.perf_counter()
    for _ in range(episodes):
        state = np.concatenate([rng.uniform(-1, 1, 2), [0.0, 0.0], rng.uniform(-1, 1, 2)])
        for _ in range(STEPS):
            observe(state, x[0])
            teacher(x[0], y[0])
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
            opt.step()
            step(state, y[0])
    return episodes * STEPS / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200, help="training episodes per agent")
    parser.add_argument("--agents", type=int, default=256, help="agents in the population variant")
    args = parser.parse_args(argv)
    optimizer = fastbp.Adam(lr=3e-3)

    net = fastbp.Network(SIZES, hidden="tanh", output="identity", loss="mse", optimizer=optimizer, seed=0)
    work = net.workspace(1)
    before = evaluate(net.flat, net.spec, work, 100, 1)
    train(net.flat, net.spec, net.hyper, work, 1, 0)  # compile (or load from the cache) outside the timing
    start = time.perf_counter()
    train(net.flat, net.spec, net.hyper, work, args.episodes, 0)
    seconds = time.perf_counter() - start
    after = evaluate(net.flat, net.spec, work, 100, 1)
    print(f"one agent, {args.episodes} episodes of {STEPS} steps, trained online inside @njit:")
    print(f"  success before {before:.2f} after {after:.2f}")
    print(f"  fastbp @njit loop  {args.episodes * STEPS / seconds:12,.0f} train steps/s")
    torch_rate = torch_steps_per_second(max(1, args.episodes // 20))
    if torch_rate is not None:
        print(f"  PyTorch, per step  {torch_rate:12,.0f} train steps/s")

    pop = fastbp.Population(args.agents, SIZES, hidden="tanh", optimizer=optimizer, seed=0)
    works = pop.workspace(1)
    before = evaluate_population(pop.flats, pop.spec, works, 5, 1)
    train_population(pop.flats, pop.spec, pop.hypers, works, 1, 0)
    start = time.perf_counter()
    train_population(pop.flats, pop.spec, pop.hypers, works, args.episodes, 0)
    seconds = time.perf_counter() - start
    after = evaluate_population(pop.flats, pop.spec, works, 5, 1)
    print(f"population of {args.agents} agents, {args.episodes} episodes each, one kernel call per step:")
    print(f"  success before {before:.2f} after {after:.2f}")
    print(f"  fastbp @njit loop  {args.agents * args.episodes * STEPS / seconds:12,.0f} agent train steps/s")


if __name__ == "__main__":
    main()
