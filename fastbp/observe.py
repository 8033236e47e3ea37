"""The choice checked where it runs: a network times its own train steps on the stored plan's close candidates and
keeps the fastest, checking again as it goes.

The plan (:mod:`fastbp.plan`) is timed once, in the build's process, on calls back to back. What a kernel costs in
the process that runs it can differ: a parallel twin whose threads fall asleep between the user's calls pays their
wake-up on each call (on the 2-vCPU development VM about 7.5 ms, as the woken thread lands on the caller's core and
OpenMP's barrier spins before it yields), other libraries' thread pools may share the cores, and two serial kernels
the plan found level may not be level here. So a network runs the plan's close candidates for a batch class in turn
on its first train steps of that class (blocks of calls, alternating rounds from which the clearly slower drop out,
the median of the calls' times: on the user's own data, in the user's own pattern of calls) and keeps the fastest.
A check that changes the choice is confirmed by another soon after (the first calls of a process, or a burst after a
pause, are not always its steady state).

A class whose steps are long enough to time cheaply (``OBSERVE_MIN_SECONDS``) is watched from then on, every call
timed, and checked again

- when the chosen candidate drifts (blocks whose median is above ``OBSERVE_DRIFT`` times what it was measured at)
  and the time the drift has cost exceeds what the last check cost (the extra time its slower candidates took);
- once the calls since the last check have taken so long that its cost is at most ``OBSERVE_BUDGET`` of their time
  (and at least ``OBSERVE_INTERVAL_SECONDS`` of calls apart).

So checks cost at most ``OBSERVE_BUDGET`` of the calls' time (and a confirmation each time the choice changes), and
no more than a drift has already cost (a kernel whose time varies from block to block, BLAS waking its threads after
a pause, cannot make a network check at every block). Timing a call costs about 0.2 us (two clock reads and the
bookkeeping), at most 1% of the shortest step watched. A class of shorter steps is checked until two checks agree
and then steps aside: its calls run the chosen kernel with nothing around it.

The candidates differ in rounding only, as the plan's do: the fixed modes (``compiled=True``/``False``) observe
nothing and stay bitwise repeatable.
"""

from time import perf_counter

from .config import (OBSERVE_BLOCK_CALLS, OBSERVE_BLOCK_SECONDS, OBSERVE_BUDGET, OBSERVE_CONFIRM_BLOCKS,
                     OBSERVE_DRIFT, OBSERVE_INTERVAL_SECONDS, OBSERVE_RACE, OBSERVE_ROUNDS, OBSERVE_SHORT_CHECKS)


def _median(values):
    return sorted(values)[len(values) // 2]


class Observer:
    """The candidates of one batch class of one network, timed on its own train steps.

    Parameters
    ----------
    kernels : dict of str to callable
        Per candidate name, a callable taking a train step kernel's arguments (a thread count already applied).
    prior : str
        The stored plan's choice, run until the first check has measured.
    seconds : float
        The stored plan's seconds per step of ``prior``, which size the blocks of calls.
    on_choice : callable, optional
        Called with no argument when a check changes the choice, or a short class's checks end (the network's hot
        paths choose again).
    watch : bool
        Whether every call is timed and checked again (steps of ``OBSERVE_MIN_SECONDS`` or more); else the checks
        end once two agree.

    Attributes
    ----------
    chosen : str
        The candidate that runs the class's calls outside a check.
    observed : dict of str to float
        Median seconds per call of each candidate, from the last check (empty before it ends).
    checks : int
        The checks ended so far.
    calls : int
        The train steps timed so far.
    settled : bool
        Whether a short class's checks have ended: ``kernels[chosen]`` then runs its calls directly.
    """

    def __init__(self, kernels, prior, seconds, on_choice=None, watch=True):
        self.kernels, self.chosen, self.observed, self.checks, self.calls = kernels, prior, {}, 0, 0
        self.watch, self.settled = watch, False
        self.block = max(OBSERVE_BLOCK_CALLS, round(OBSERVE_BLOCK_SECONDS / seconds))
        self._on_choice = on_choice
        self._check()

    def _check(self):
        """Start a check: a block of each candidate per round, up to ``OBSERVE_ROUNDS`` rounds; after each round the
        candidates slower than ``OBSERVE_RACE`` times the fastest so far drop out (a race: a candidate the plan
        overrated costs one block, not every round's)."""
        self._racing, self._rounds = list(self.kernels), 0
        self._queue = list(self._racing)
        self._samples = {name: [] for name in self.kernels}
        self._next()

    def _next(self):
        self.running = self._queue.pop(0) if self._queue else self.chosen
        self._run, self._block = self.kernels[self.running], []

    def train_step(self, *args):
        """One train step of the candidate running now, timed; takes and returns what the kernels do."""
        start = perf_counter()
        loss = self._run(*args)
        self._block.append(perf_counter() - start)
        if len(self._block) == self.block:
            self._end_block()
        return loss

    def _end_block(self):
        block, self.calls = self._block, self.calls + len(self._block)
        if self._samples is not None:  # checking
            self._samples[self.running] += block
            if not self._queue:
                self._rounds += 1
                medians = {name: _median(self._samples[name]) for name in self._racing}
                fastest = min(medians.values())
                self._racing = [name for name in self._racing if medians[name] <= OBSERVE_RACE * fastest]
                if self._rounds == OBSERVE_ROUNDS or len(self._racing) == 1:
                    self._decide()
                else:
                    self._queue = list(self._racing)
            return self._next()
        expected = self.observed[self.chosen]
        self._spent += sum(block)
        if _median(block) > OBSERVE_DRIFT * expected:
            self._lost += sum(block) - len(block) * expected
        if self._lost > self._cost or self._spent >= self._due:
            return self._check()
        self._block = []

    def _decide(self):
        before, self.observed = self.chosen, {name: _median(s) for name, s in self._samples.items()}
        self.chosen = min(self.observed, key=self.observed.get)
        best = self.observed[self.chosen]
        self._cost = sum(t - best for s in self._samples.values() for t in s if t > best)  # beyond the chosen's
        self._spent, self._lost = 0.0, 0.0
        self._due = max(self._cost / OBSERVE_BUDGET, OBSERVE_INTERVAL_SECONDS)
        self._samples, self.checks = None, self.checks + 1
        changed = self.chosen != before
        if changed:  # confirmed by another check soon
            self._due = min(self._due, OBSERVE_CONFIRM_BLOCKS * self.block * best)
        if not self.watch and (not changed or self.checks == OBSERVE_SHORT_CHECKS):
            self.settled = True
        if (changed or self.settled) and self._on_choice is not None:
            self._on_choice()

    def __str__(self):
        times = ", ".join(f"{name} {t * 1e6:.1f}us" for name, t in sorted(self.observed.items(), key=lambda kv: kv[1]))
        return (f"{times or 'checking'} -> {self.chosen} ({self.checks} checks, {self.calls} calls"
                f"{', settled' if self.settled else ''})")

    def __repr__(self):
        return f"Observer(chosen={self.chosen!r}, observed={self.observed!r})"
