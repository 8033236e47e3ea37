"""CartPole in @njit, with Gymnasium's CartPole-v1 dynamics and limits, for the reinforcement learning examples.

The state is (x, x_dot, theta, theta_dot) in float64, stepped by explicit Euler with tau = 0.02 s; an episode ends
when |x| > 2.4 m or |theta| > 12 degrees (terminated), or after 500 steps (truncated). Every step, the last one
included, earns a reward of 1, so an episode's return is its length.
"""

import math

import numba
import numpy as np

GRAVITY, MASS_CART, MASS_POLE, HALF_LENGTH, FORCE, TAU = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
TOTAL_MASS = MASS_CART + MASS_POLE
POLE_MASS_LENGTH = MASS_POLE * HALF_LENGTH
X_LIMIT, THETA_LIMIT = 2.4, 12 * 2 * math.pi / 360
MAX_STEPS = 500  # CartPole-v1's time limit
SOLVED = 475.0  # Gymnasium's reward threshold: the mean return of 100 consecutive episodes


@numba.njit(cache=True)
def reset(state):
    """A start state drawn uniformly from [-0.05, 0.05]^4 (numba's generator: seed it with np.random.seed)."""
    for k in range(4):
        state[k] = np.random.uniform(-0.05, 0.05)


@numba.njit(cache=True)
def step(state, action):
    """Push left (action 0) or right (1) for one step, in place; whether the episode has terminated."""
    x, x_dot, theta, theta_dot = state[0], state[1], state[2], state[3]
    force = FORCE if action == 1 else -FORCE
    cos, sin = np.cos(theta), np.sin(theta)
    temp = (force + POLE_MASS_LENGTH * theta_dot**2 * sin) / TOTAL_MASS
    theta_acc = (GRAVITY * sin - cos * temp) / (HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * cos**2 / TOTAL_MASS))
    x_acc = temp - POLE_MASS_LENGTH * theta_acc * cos / TOTAL_MASS
    state[0] = x + TAU * x_dot
    state[1] = x_dot + TAU * x_acc
    state[2] = theta + TAU * theta_dot
    state[3] = theta_dot + TAU * theta_acc
    return not (-X_LIMIT <= state[0] <= X_LIMIT and -THETA_LIMIT <= state[2] <= THETA_LIMIT)
