"""fastbp.observe: the choice checked where it runs. A fake clock stands in for the time the candidates take, so
every check, drift and budget is exact (no timing in the tests)."""

import threading

import numpy as np
import pytest

import fastbp
from fastbp import dispatch, observe, plan
from fastbp.config import (OBSERVE_BLOCK_CALLS, OBSERVE_BLOCK_SECONDS, OBSERVE_BUDGET, OBSERVE_CONFIRM_BLOCKS,
                           OBSERVE_DRIFT, OBSERVE_INTERVAL_SECONDS, OBSERVE_RACE, OBSERVE_ROUNDS,
                           OBSERVE_SHORT_CHECKS)
from fastbp.kernels import codegen

from .conftest import TOL, make_data, ref_gradients


class Clock:
    """perf_counter's stand-in: kernels made by :meth:`kernel` advance it by their cost, and log what ran."""

    def __init__(self, monkeypatch):
        self.now, self.ran = 0.0, []
        monkeypatch.setattr(observe, "perf_counter", lambda: self.now)

    def kernel(self, name, cost, run=lambda *args: 0.0):
        def kern(*args):
            self.now += cost[name] if isinstance(cost, dict) else cost
            self.ran.append(name)
            return run(*args)
        return kern


def _observer(clock, cost, prior, seconds=1.0, on_choice=None):
    return observe.Observer({name: clock.kernel(name, cost) for name in cost}, prior, seconds, on_choice)


def test_a_check_runs_each_candidate_in_rounds_and_keeps_the_fastest(monkeypatch):
    clock, changes = Clock(monkeypatch), []
    cost = {"a": 3.0, "b": 1.0, "c": 2.0}
    obs = _observer(clock, cost, "a", on_choice=lambda: changes.append(1))
    assert obs.block == OBSERVE_BLOCK_CALLS and obs.chosen == "a" and obs.observed == {}
    for _ in range(obs.block * 3):
        obs.train_step()
    # a and c are clearly slower after one round: the race ends there
    assert clock.ran == ["a"] * obs.block + ["b"] * obs.block + ["c"] * obs.block
    assert obs.observed == cost and obs.chosen == "b" and obs.checks == 1 and changes == [1]
    clock.ran.clear()
    for _ in range(2 * obs.block):
        obs.train_step()
    assert clock.ran == ["b"] * 2 * obs.block and obs.calls == 5 * obs.block
    assert str(obs) == f"b 1000000.0us, c 2000000.0us, a 3000000.0us -> b (1 checks, {5 * obs.block} calls)"
    # it overturned the plan's choice: a second check confirms it after OBSERVE_CONFIRM_BLOCKS blocks, then the budget
    clock.ran.clear()
    while obs.checks == 1:
        obs.train_step()
    assert clock.ran == ["b"] * (OBSERVE_CONFIRM_BLOCKS - 2) * obs.block + (
        ["a"] * obs.block + ["b"] * obs.block + ["c"] * obs.block)
    assert obs.chosen == "b" and changes == [1]
    for _ in range(100 * obs.block):
        obs.train_step()
    assert obs.checks == 2
    # candidates within OBSERVE_RACE of the fastest run every round; the others drop out after the round that shows it
    clock.ran.clear()
    close = _observer(clock, {"a": 1.25, "b": 1.0, "c": 1.2 * OBSERVE_RACE}, "a")
    while close.checks == 0:
        close.train_step()
    assert clock.ran == (["a"] * close.block + ["b"] * close.block + ["c"] * close.block
                         + (["a"] * close.block + ["b"] * close.block) * (OBSERVE_ROUNDS - 1)) and close.chosen == "b"
    # blocks of about OBSERVE_BLOCK_SECONDS for short steps
    assert _observer(clock, cost, "a", seconds=OBSERVE_BLOCK_SECONDS / 40).block == 40


def test_the_median_of_the_calls_passes_over_a_wake_up(monkeypatch):
    """A twin whose threads slept pays their wake-up on the first call of each block; its other calls decide."""
    clock = Clock(monkeypatch)
    woken = iter([True, False, False, False, False] * 100)
    twin = clock.kernel("twin", 0.0, lambda: setattr(clock, "now", clock.now + (10.0 if next(woken) else 1.0)))
    obs = observe.Observer({"serial": clock.kernel("serial", 2.0), "twin": twin}, "serial", seconds=1.0)
    while obs.checks == 0:
        obs.train_step()
    assert obs.chosen == "twin" and obs.observed == {"serial": 2.0, "twin": 1.0}


def test_a_drift_is_checked_once_it_has_cost_what_a_check_costs(monkeypatch):
    clock, cost = Clock(monkeypatch), {"a": 3.0, "b": 1.0}
    obs = _observer(clock, cost, "b")
    while obs.checks == 0:
        obs.train_step()
    check = obs.block * (3.0 - 1.0)  # what the check cost: a's block beyond b's time (a dropped out after it)
    cost["b"] = OBSERVE_DRIFT * 1.0  # within the drift: no loss counted
    for _ in range(40 * obs.block):
        obs.train_step()
    assert obs._samples is None and set(clock.ran[-40 * obs.block:]) == {"b"}
    cost["b"] = 4.0  # the chosen kernel slowed down (another process took a core)
    blocks = int(check // (obs.block * 3.0)) + 1  # the first block after which the loss exceeds the check's cost
    for _ in range((blocks - 1) * obs.block):
        obs.train_step()
    assert obs._samples is None  # a block or two of drift (BLAS waking after a pause) starts no check
    for _ in range(obs.block):
        obs.train_step()
    assert obs._samples is not None  # checking
    clock.ran.clear()
    while obs.checks == 1:
        obs.train_step()
    assert clock.ran == ["a"] * obs.block + ["b"] * obs.block and obs.chosen == "a"


def test_checks_cost_at_most_the_budget(monkeypatch):
    """The next check comes when the calls since the last have taken 1/OBSERVE_BUDGET times what it cost (the
    slower candidates' time beyond the chosen's), and never within OBSERVE_INTERVAL_SECONDS."""
    clock = Clock(monkeypatch)
    obs = _observer(clock, {"a": 3.0, "b": 1.0}, "b")
    while obs.checks == 0:
        obs.train_step()
    cost = obs.block * (3.0 - 1.0)
    due = max(cost / OBSERVE_BUDGET, OBSERVE_INTERVAL_SECONDS)
    calls = 0
    while obs.checks == 1 and obs._samples is None:
        obs.train_step()
        calls += 1
    assert calls == -(-due // (obs.block * 1.0)) * obs.block  # the first whole block at or past the due time
    # cheap checks (two candidates a hair apart) still wait the interval
    clock = Clock(monkeypatch)
    obs = _observer(clock, {"a": 1.0 + 1e-9, "b": 1.0}, "b", seconds=0.001)
    while obs.checks == 0:
        obs.train_step()
    start = clock.now
    while obs._samples is None:
        obs.train_step()
    assert clock.now - start >= OBSERVE_INTERVAL_SECONDS


SIG = codegen.signature([5, 9, 3], "relu", "softmax", "cross_entropy", np.float64)


def _plan(times):
    """A stored plan with the same times (microseconds) on every class."""
    return plan.Plan({rows: {name: t * 1e-6 for name, t in times.items()} for rows in plan.CLASSES})


def test_what_a_plan_observes():
    d = dispatch.Dispatch(SIG, "eager", threading.Lock(), lambda serial: None)  # both tiers loaded
    allowed = d._allowed(8, 1)
    kernel = {"generic": "g", "compiled": "c", "generic x2": "g2", "compiled x2": "c2"}.get
    # one candidate close enough: the plan's choice stands; steps too short to time cheaply are checked, not watched
    assert _plan({"generic": 30, "compiled": 90}).observer(8, allowed, kernel) is None
    assert not _plan({"generic": 10, "compiled": 15}).observer(8, allowed, kernel).watch
    stored = _plan({"generic": 30, "compiled": 40})
    obs = stored.observer(8, allowed, kernel)
    assert obs.kernels == {"generic": "g", "compiled": "c"} and obs.chosen == "generic" and obs.watch
    assert stored.observer(8, allowed, kernel) is obs and stored.observer(7, allowed, kernel) is obs  # one class
    assert stored.observer(64, allowed, kernel) is not obs
    # the fastest serial candidate is always among them, however slow the plan found it
    allowed2 = lambda candidate: True  # noqa: E731
    twins = _plan({"generic": 900, "compiled": 300, "compiled x2": 100, "generic x2": 150})
    assert set(twins.observer(4096, allowed2, kernel).kernels) == {"compiled x2", "generic x2", "compiled"}
    assert "observed, batches of class 4096: checking -> compiled x2 (0 checks, 0 calls)" in str(twins)
    # steps of a batch larger than the largest class timed scale with its rows
    assert _plan({"generic": 12, "compiled": 16}).observer(4096 * 2, allowed, kernel) is not None


def test_a_network_observes_its_own_steps(monkeypatch):
    """A network in the background mode times its train steps on the plan's close candidates (here the plan puts the
    generic kernels first, and its own calls find the compiled ones faster), keeps the faster, runs it from the hot
    path, and every step is the reference's to rounding."""
    clock = Clock(monkeypatch)
    sizes, hidden, output, loss, dtype = SIG
    net = fastbp.Network(list(sizes), hidden=hidden, output=output, loss=loss, dtype=dtype, seed=3,
                         optimizer=fastbp.SGD(lr=0.05), compiled=True)
    d = net.dispatch
    d.plan = _plan({"generic": 300, "compiled": 400})
    real = d._train_step_of
    monkeypatch.setattr(d, "_train_step_of",
                        lambda c: clock.kernel(c, {"generic": 400e-6, "compiled": 300e-6}, real(c)))
    X, Y = make_data(sizes, 8, output, loss, dtype, seed=1)
    tol = TOL[np.float64]
    for step in range(200):
        want, _, _ = ref_gradients(net, X, Y)
        np.testing.assert_allclose(net.train_step(X, Y), want, **tol)
    obs = net.plan.observers[(8, ("compiled", "generic"))]
    # a check (the generic kernels dropping out after a round), ten blocks, the confirming check
    assert obs.chosen == "compiled" and obs.checks == 2 and obs.calls == 200 - 200 % obs.block, str(obs)
    assert set(clock.ran[:2 * obs.block]) == {"generic", "compiled"} and set(clock.ran[-50:]) == {"compiled"}
    assert net._fast_step == obs.train_step  # the hot path runs the observer
    assert "observed, batches of class 8: compiled 300.0us, generic 400.0us -> compiled" in str(net.plan)
    assert d.choose(8) == (d.serial, None)  # the other methods follow its choice
    # class labels take the checked path each call, through the same observer
    labels = Y.argmax(axis=1)
    calls = obs.calls
    for _ in range(obs.block):
        net.train_step(X, labels)
    assert obs.calls == calls + obs.block


def test_a_short_step_is_checked_until_two_checks_agree_then_left_alone(monkeypatch):
    """Steps the plan puts under OBSERVE_MIN_SECONDS: checked on the network's own calls (here the plan's generic
    choice is overturned, then confirmed), then the hot path runs the chosen kernel itself, nothing timed."""
    clock = Clock(monkeypatch)
    sizes, hidden, output, loss, dtype = SIG
    net = fastbp.Network(list(sizes), hidden=hidden, output=output, loss=loss, dtype=dtype, seed=3, compiled=True)
    d = net.dispatch
    d.plan = _plan({"generic": 3, "compiled": 4})
    real = d._train_step_of
    monkeypatch.setattr(d, "_train_step_of", lambda c: clock.kernel(c, {"generic": 4e-6, "compiled": 3e-6}, real(c)))
    X, Y = make_data(sizes, 8, output, loss, dtype, seed=1)
    net.train_step(X, Y)
    obs = net.plan.observed(8)
    assert not obs.watch and obs.block == round(OBSERVE_BLOCK_SECONDS / 3e-6)
    while not obs.settled:
        net.train_step(X, Y)
    assert obs.chosen == "compiled" and obs.checks == 2 and "settled" in str(obs)
    calls = len(clock.ran)
    for _ in range(10):
        net.train_step(X, Y)
    assert net._fast_step is d.serial.train_step and len(clock.ran) == calls  # no observer around the calls
    # the checks end after OBSERVE_SHORT_CHECKS even when they keep changing their minds
    flip = {"generic": 4.0, "compiled": 3.0}
    obs = observe.Observer({c: clock.kernel(c, flip) for c in flip}, "generic", 1.0, watch=False)
    while not obs.settled:
        obs.train_step()
        if obs._samples is None:  # between checks: the slower one becomes the faster
            flip["generic"], flip["compiled"] = flip["compiled"], flip["generic"]
    assert obs.checks == OBSERVE_SHORT_CHECKS


@pytest.mark.parametrize("compiled", [True, False])
def test_the_fixed_modes_observe_nothing(compiled):
    net = fastbp.Network([5, 9, 3], compiled=compiled)
    X, Y = make_data([5, 9, 3], 8, "identity", "mse", np.float64)
    net.train_step(X, Y)
    assert net.plan is None and not isinstance(getattr(net._fast_step, "__self__", None), observe.Observer)
