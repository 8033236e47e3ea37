"""CartPole solved by an evolution strategy: a population of policies evaluated in one @njit call per generation.

OpenAI-ES (Salimans et al., 2017): each generation perturbs a search mean theta of a 4-32-2 softmax policy with
antithetic Gaussian noise, theta +- sigma eps, written straight into ``Population.params``; one @njit call runs
every member's CartPole episode in lockstep (``kernels.population_predict`` once per time step for the whole
population; the push is the likelier action); the returns are shaped by their centred ranks; and the search mean
takes an Adam step on the estimated gradient, through ``kernels.step`` on a flat array of its own. It is solved when
theta itself averages a return of 475 over 100 episodes from random starts (Gymnasium's threshold for
CartPole-v1), evaluated the same way with every member set to theta.

    python examples/cartpole_es.py [--generations 200] [--seeds 3]
"""

import argparse
import time

import numba
import numpy as np

import fastbp
from fastbp import kernels

import cartpole

MEMBERS, SIGMA, LR = 100, 0.1, 0.05  # 50 antithetic pairs; 100 members also make the 100 evaluation episodes


@numba.njit(cache=True)
def episodes(flats, spec, works, X, out, states, alive, seed, paired, returns):
    """Every member's return over one CartPole episode, all stepped together; with ``paired``, members m and
    m + N/2 (an antithetic pair) start from the same state."""
    np.random.seed(seed)
    N = flats.shape[2]
    for m in range(N):
        if paired and m >= N // 2:
            states[m] = states[m - N // 2]
        else:
            cartpole.reset(states[m])
        alive[m], returns[m] = True, 0.0
    for _ in range(cartpole.MAX_STEPS):
        for m in range(N):
            X[m, 0] = states[m]
        kernels.population_predict(flats, spec, works, X, out)
        running = False
        for m in range(N):
            if alive[m]:
                returns[m] += 1.0
                alive[m] = not cartpole.step(states[m], 1 if out[m, 0, 1] > out[m, 0, 0] else 0)
                running = running or alive[m]
        if not running:
            break


def centred_ranks(x):
    """Fitness shaping: the ranks of x scaled to [-0.5, 0.5]."""
    ranks = np.empty(len(x))
    ranks[np.argsort(x)] = np.arange(len(x))
    return ranks / (len(x) - 1) - 0.5


def solve(seed, max_generations):
    """Generations until theta averages SOLVED over MEMBERS episodes: (generations, episodes, seconds, theta's mean
    return, the population's mean return in the first and the last generation)."""
    pop = fastbp.Population(MEMBERS, [4, 32, 2], hidden="tanh", output="softmax", loss="cross_entropy", seed=seed)
    rng = np.random.default_rng(seed)
    # The search mean in a flat array of its own: parameters, gradient, Adam's two moments; Adam maximises the
    # shaped return by minimising its negation.
    mean = np.zeros((4, pop.n_params))
    mean[0] = pop.params[0]
    hyper = fastbp.Adam(LR).hyper()
    half = MEMBERS // 2
    works, X, out = pop.workspace(1), np.empty((MEMBERS, 1, 4)), np.empty((MEMBERS, 1, 2))
    states, alive, returns = np.empty((MEMBERS, 4)), np.empty(MEMBERS, np.bool_), np.empty(MEMBERS)
    start, played, fitness = time.perf_counter(), 0, []
    for generation in range(1, max_generations + 1):
        eps = rng.standard_normal((half, pop.n_params))
        pop.params[:half] = mean[0] + SIGMA * eps
        pop.params[half:] = mean[0] - SIGMA * eps
        episodes(pop.flats, pop.spec, works, X, out, states, alive, rng.integers(2**31), True, returns)
        fitness.append(returns.mean())
        shaped = centred_ranks(returns)
        mean[1] = -(shaped[:half] - shaped[half:]) @ eps / (MEMBERS * SIGMA)
        kernels.step(mean, hyper)
        pop.params[:] = mean[0]  # theta itself, on 100 fresh starts
        episodes(pop.flats, pop.spec, works, X, out, states, alive, rng.integers(2**31), False, returns)
        played += 2 * MEMBERS
        if returns.mean() >= cartpole.SOLVED:
            break
    return generation, played, time.perf_counter() - start, returns.mean(), fitness[0], fitness[-1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generations", type=int, default=200, help="at most this many generations per run")
    parser.add_argument("--seeds", type=int, default=3, help="independent runs (seeds 0, 1, ...)")
    args = parser.parse_args(argv)
    solve(0, 1)  # compile (or load from the cache) outside the timings
    results = []
    for seed in range(args.seeds):
        generations, played, seconds, final, first, last = solve(seed, args.generations)
        print(f"es seed {seed}: {'solved' if final >= cartpole.SOLVED else 'not solved'} after {generations} "
              f"generations ({played} episodes), {seconds:.2f} s; theta's mean return {final:.1f}; population mean "
              f"return first {first:.1f} last {last:.1f}")
        results.append((generations, seconds, final >= cartpole.SOLVED))
    generations, seconds, solved = (np.mean([r[k] for r in results]) for k in range(3))
    print(f"es mean over {args.seeds} seeds: {generations:.1f} generations, {seconds:.2f} s, "
          f"{solved * 100:.0f}% solved")


if __name__ == "__main__":
    main()
