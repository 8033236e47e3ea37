"""The examples run as a user would run them, at reduced length, and learn."""

import pathlib
import re
import subprocess
import sys

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def test_point_mass_learns_online():
    out = subprocess.run([sys.executable, str(EXAMPLES / "point_mass.py"), "--episodes", "40", "--agents", "16"],
                         capture_output=True, text=True, check=True).stdout
    results = [(float(a), float(b)) for a, b in re.findall(r"success before ([\d.]+) after ([\d.]+)", out)]
    assert len(results) == 2, out  # one agent, and the population
    for before, after in results:
        assert before < 0.3 and after >= 0.9, out
    assert "train steps/s" in out


def _run(script, *args):
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                          check=True).stdout


def test_cartpole_dynamics_match_gymnasium():
    """The @njit CartPole steps exactly as Gymnasium's CartPole-v1, terminations included, for random actions."""
    import pytest

    gymnasium = pytest.importorskip("gymnasium")
    cartpole = _cartpole()
    import numpy as np

    rng = np.random.default_rng(0)
    env = gymnasium.make("CartPole-v1")
    for episode in range(20):
        observation, _ = env.reset(seed=episode)
        state = env.unwrapped.state.copy()
        np.testing.assert_array_equal(observation, state.astype(np.float32))
        for t in range(500):
            action = int(rng.integers(2))
            observation, reward, terminated, truncated, _ = env.step(action)
            ended = cartpole.step(state, action)
            np.testing.assert_allclose(state, env.unwrapped.state, rtol=1e-13, atol=1e-15)
            assert ended == terminated and reward == 1.0
            if terminated or truncated:
                break
        assert t == 499 or terminated  # every episode ran to its end


def test_cartpole_reinforce_learns():
    """At reduced length, REINFORCE inside @njit lifts the mean return far above a random policy's ~22."""
    out = _run("cartpole_reinforce.py", "--episodes", "150", "--seeds", "1")
    (first, last), = [(float(a), float(b)) for a, b in re.findall(r"mean return first ([\d.]+) last ([\d.]+)", out)]
    assert last > 100 and last > first, out
    assert "environment steps" in out


def test_cartpole_es_improves():
    out = _run("cartpole_es.py", "--generations", "8", "--seeds", "1")
    (first, last), = [(float(a), float(b)) for a, b in
                      re.findall(r"population mean return first ([\d.]+) last ([\d.]+)", out)]
    assert last > 2 * first, out


def _cartpole():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import cartpole
    finally:
        sys.path.remove(str(EXAMPLES))
    return cartpole


def _greedy_returns(policy, episodes):
    import numpy as np

    cartpole, rng, returns = _cartpole(), np.random.default_rng(0), []
    for _ in range(episodes):
        state = rng.uniform(-0.05, 0.05, 4)
        for t in range(cartpole.MAX_STEPS):
            if cartpole.step(state, int(policy.forward(state[None]).argmax())):
                break
        returns.append(t + 1)
    return returns


def test_the_pytorch_policy_balances_the_pole_in_fastbp():
    """examples/data/cartpole_policy.onnx, PyTorch's export (committed), loads as a network whose greedy actions
    balance the pole to CartPole-v1's time limit (a random policy lasts ~22 steps)."""
    import pytest

    pytest.importorskip("onnx", reason="the onnx extra is not installed")
    import fastbp.onnx

    policy = fastbp.onnx.load(EXAMPLES / "data" / "cartpole_policy.onnx")
    assert (policy.sizes, policy.hidden, policy.output, policy.dtype.name) == ([4, 32, 2], "tanh", "softmax",
                                                                               "float32")
    assert min(_greedy_returns(policy, 10)) == 500


def test_torch_policy_script_writes_the_committed_policy(tmp_path):
    """The script, run again with the installed PyTorch, writes a policy that acts as the committed one."""
    import numpy as np
    import pytest

    pytest.importorskip("torch")
    pytest.importorskip("onnx", reason="the onnx extra is not installed")
    import fastbp.onnx

    out = subprocess.run([sys.executable, str(EXAMPLES / "torch_policy.py"), "--out", str(tmp_path / "p.onnx")],
                         capture_output=True, text=True, check=True, cwd=EXAMPLES).stdout
    assert "agreement with the controller 0.9" in out, out
    new, committed = (fastbp.onnx.load(p) for p in (tmp_path / "p.onnx", EXAMPLES / "data" / "cartpole_policy.onnx"))
    states = np.random.default_rng(1).uniform(-0.2, 0.2, (1000, 4))
    assert (new.forward(states).argmax(1) == committed.forward(states).argmax(1)).mean() > 0.98
