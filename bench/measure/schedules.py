"""Schedules: in which order the stacks of a run are timed (the scenario axis).

* :class:`Interleaved` (the default wherever every stack fits in memory at once): rounds in
  which each stack runs ``block`` calls, the order of the stacks reversed every round
  (A B C, C B A, ...). Whatever the machine does during the run (other work, throttling)
  hits every stack alike, and each round's ratio between two stacks cancels it.
* :class:`Sequential`: each stack timed on its own, one after the other (the fallback when
  the stacks do not fit in memory together; its speedups move with the machine's drift).

A schedule only calls an arm's ``warmup(n)`` and ``time(n)`` (:mod:`bench.measure.arms`); the engine
builds the arms, runs the sampler across the schedule and attributes every sample to the
stack whose call was running. A new way of measuring is a new :class:`Schedule`, not a new
pipeline (the pytest plugin's pytest-benchmark timing is one).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.core import stats
from bench.core.compare import MIN_CONFIDENT_ROUNDS
from bench.measure.harness import Timing, TimingConfig, clock, latency_half_width

ORDER = "reversed every round (A B C, C B A, ...)"


@dataclass
class Hooks:
    """What the engine wants to know while a schedule runs.

    Attributes:
        before_block: called with an arm's index before each block of its timed calls.
        after_block: called with an arm's index after each block.
        progress: called with a short status line after each block.
        failed: called with an arm's index and why once it has failed (or been pruned) and
            left the schedule (the engine frees its memory at once).
        round_end: called between rounds (interleaved) or timed calls (sequential), outside
            every timed window: the engine times its machine-speed probe there.
    """

    before_block: Callable[[int], None] | None = None
    after_block: Callable[[int], None] | None = None
    progress: Callable[[str], None] | None = None
    failed: Callable[[int, str], None] | None = None
    round_end: Callable[[], None] | None = None


class Schedule(ABC):
    """How the arms of a run are timed.

    Attributes:
        name: recorded with every measurement (``schedule`` column of the results).
        all_at_once: True when every arm must exist before timing starts (interleaving);
            False when the engine may build, time and release the arms one at a time.
    """

    name: str = "schedule"
    all_at_once: bool = True

    def describe(self) -> dict[str, Any]:
        """The schedule's settings, saved with each record."""
        return {"name": self.name}

    @abstractmethod
    def run(self, arms: Sequence[Any], timing: TimingConfig, hooks: Hooks | None = None) -> list[Timing]:
        """Warm up and time ``arms``; one :class:`~bench.measure.harness.Timing` per arm, in order.

        An arm that raises is recorded in its ``Timing.error`` and leaves the schedule; when
        arms are timed in alternation, the first arm (the reference) raising ends it.
        """


def _attempt(timings: list[Timing], i: int, fn: Callable[[], Any], hooks: Hooks,
             fatal: bool = False) -> Any:
    """``fn()``; an exception is recorded as arm ``i``'s error (and re-raised when ``fatal``)."""
    try:
        return fn()
    except Exception as exc:  # a failing stack is a result, not the end of the run
        if fatal:
            raise
        timings[i].error = f"{type(exc).__name__}: {exc}"
        if hooks.failed:
            hooks.failed(i, timings[i].error)
        return None


def _warm(arms: Sequence[Any], timings: list[Timing], n: int, hooks: Hooks,
          fatal_first: bool) -> None:
    for i, arm in enumerate(arms):
        bounds = _attempt(timings, i, lambda arm=arm: arm.warmup(n), hooks,
                          fatal=fatal_first and i == 0) or []
        timings[i].warmup_bounds = [tuple(b) for b in bounds]
        timings[i].warmup_s = [b - a for a, b in timings[i].warmup_bounds]
        if timings[i].warmup_s:
            timings[i].first_call_s = timings[i].warmup_s[0]


class Sequential(Schedule):
    """Each arm warmed up and timed on its own until the stop rule holds for it."""

    name = "sequential"
    all_at_once = False

    def run(self, arms: Sequence[Any], timing: TimingConfig, hooks: Hooks | None = None) -> list[Timing]:
        hooks = hooks or Hooks()
        timings = [Timing() for _ in arms]
        for i, arm in enumerate(arms):
            _warm([arm], timings[i:i + 1], timing.warmup, hooks, fatal_first=False)
            if timings[i].error:
                continue
            if hooks.before_block:
                hooks.before_block(i)
            started = clock()
            while not timings[i].error:
                got = _attempt(timings, i, lambda arm=arm: arm.time(1, timing.sync_steps), hooks)
                if got is None:
                    break
                timings[i].add(got)
                if hooks.round_end:
                    hooks.round_end()
                n = len(timings[i].latencies_s)
                if hooks.progress:
                    hooks.progress(f"{arm.label}: {n} calls")
                if timing.done(n, clock() - started, latency_half_width(timings[i])):
                    break
            if hooks.after_block:
                hooks.after_block(i)
        return timings


class Interleaved(Schedule):
    """Rounds of ``block`` calls per arm, the order of the arms reversed every round.

    Stop rule: every arm at least ``min_iterations`` timed calls and the run at least
    ``min_seconds`` of timed calls; with ``target_ci``, rounds continue until every arm's
    speedup over the first arm has a 95% interval within +-target_ci of its estimate. Caps:
    ``max_iterations`` calls per arm, ``max_seconds`` of timed calls in all.

    Args:
        block: calls of one arm in a row within a round.
    """

    name = "interleaved"
    all_at_once = True

    def __init__(self, block: int = 1) -> None:
        if block < 1:
            raise ValueError(f"block must be >= 1, got {block}")
        self.block = block
        self.rounds_run = 0

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "block": self.block, "rounds": self.rounds_run, "order": ORDER}

    def run(self, arms: Sequence[Any], timing: TimingConfig, hooks: Hooks | None = None) -> list[Timing]:
        hooks = hooks or Hooks()
        timings = [Timing() for _ in arms]
        _warm(arms, timings, timing.warmup, hooks, fatal_first=True)
        indexed = list(enumerate(arms))
        r = 0
        while True:
            order = indexed if r % 2 == 0 else indexed[::-1]
            for i, arm in order:
                if timings[i].error:
                    continue
                if hooks.before_block:
                    hooks.before_block(i)
                got = _attempt(timings, i, lambda arm=arm: arm.time(self.block, timing.sync_steps),
                               hooks, fatal=i == 0)
                if hooks.after_block:
                    hooks.after_block(i)
                if got is not None:
                    timings[i].add(got, r)
            r += 1
            self.rounds_run = r
            if timing.prune_slower_than:
                self._prune(timings, timing.prune_slower_than, r, hooks)
            if hooks.round_end:
                hooks.round_end()
            if hooks.progress:
                hooks.progress(f"round {r}")
            if self._done(timings, timing, r):
                return timings

    @staticmethod
    def _prune(timings: list[Timing], limit: float, rounds: int, hooks: Hooks) -> None:
        """Take out of the schedule every arm whose median latency is beyond ``limit`` times
        the reference's (the first arm's)."""
        import statistics

        ref = timings[0].latencies_s
        if not ref:
            return
        for i, t in enumerate(timings[1:], start=1):
            if t.error or not t.latencies_s:
                continue
            ratio = statistics.median(t.latencies_s) / statistics.median(ref)
            if ratio > limit:
                t.error = (f"pruned: {ratio:.2f}x slower than the reference after {rounds} "
                           f"round(s) (limit {limit:.2f}x)")
                t.pruned = True
                if hooks.failed:
                    hooks.failed(i, t.error)

    def _done(self, timings: list[Timing], timing: TimingConfig, rounds: int) -> bool:
        if len(timings) > 1 and all(t.pruned for t in timings[1:]):
            return True  # nothing left to compare the reference with
        live = [t for t in timings if not t.error]
        calls = min(len(t.latencies_s) for t in live)
        return timing.done(calls, sum(t.timed_s for t in timings),
                           lambda: max(self.speedup_widths(timings), default=0.0))

    @staticmethod
    def speedup_widths(timings: Sequence[Timing]) -> list[float]:
        """Relative half-width of each arm's paired speedup over the first arm (inf until
        enough rounds)."""
        ref = timings[0]
        out = []
        for t in timings[1:]:
            if t.error:
                continue
            pairs = stats.paired_log_ratios(ref.latencies_s, ref.rounds, t.latencies_s, t.rounds)
            if len(pairs) < MIN_CONFIDENT_ROUNDS:
                out.append(float("inf"))
            else:
                out.append(stats.paired_speedup(pairs).relative_half_width)
        return out


def make(name: str, block: int = 1) -> Schedule:
    """The schedule called ``name`` (``interleaved`` or ``sequential``)."""
    if name == "interleaved":
        return Interleaved(block)
    if name == "sequential":
        return Sequential()
    raise ValueError(f"unknown schedule {name!r}: use interleaved or sequential")


__all__ = ["ORDER", "Hooks", "Interleaved", "Schedule", "Sequential", "make"]
