"""Schedules: the order stacks are timed in, the stop rule, failures."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bench.core.config import TimingConfig
from bench.measure.harness import CallSamples
from bench.measure.schedules import Hooks, Interleaved, Sequential, make


class ClockArm:
    """An arm whose calls log their order and take ``latency`` seconds of fake time."""

    def __init__(self, label, calls, fail_at=None, latency=0.01, noise=0.0, seed=0):
        self.label, self.calls, self.fail_at = label, calls, fail_at
        self.latency, self.noise = latency, noise
        self.rng = np.random.default_rng(seed)

    def warmup(self, n):
        self.calls += [(self.label, "warmup")] * n
        t = time.perf_counter()
        return [(t, t)] * n

    def time(self, n, sync_steps=True):
        if self.fail_at is not None and len([c for c in self.calls if c[0] == self.label]) >= self.fail_at:
            raise RuntimeError("kernel crashed")
        out = CallSamples()
        for _ in range(n):
            lat = self.latency * (1 + self.noise * self.rng.standard_normal())
            t = time.perf_counter()
            out.latencies_s.append(lat)
            out.bounds.append((t, t + lat))
            out.step_times_s.append([])
            self.calls.append((self.label, "timed"))
        return out


def _timing(**kw):
    kw.setdefault("warmup", 1)
    kw.setdefault("min_seconds", 0)
    return TimingConfig(**kw)


def test_interleaving_reverses_the_order_every_round_and_isolates_failures():
    calls: list = []
    a, b, c = ClockArm("A", calls), ClockArm("B", calls), ClockArm("C", calls, fail_at=3)
    blocks = []
    hooks = Hooks(before_block=lambda i: blocks.append(("in", i)), after_block=lambda i: blocks.append(("out", i)))
    schedule = Interleaved(block=2)
    ta, tb, tc = schedule.run([a, b, c], _timing(min_iterations=8, max_iterations=8), hooks)
    timed = [label for label, kind in calls if kind == "timed"]
    assert timed[:6] == ["A", "A", "B", "B", "C", "C"]  # round 0: A B C
    assert timed[6:10] == ["B", "B", "A", "A"]  # round 1 reversed: (C failed) B A
    assert ta.rounds == [0, 0, 1, 1, 2, 2, 3, 3] and len(tb.latencies_s) == 8
    assert tc.error == "RuntimeError: kernel crashed" and len(tc.latencies_s) == 2
    assert schedule.describe()["rounds"] == 4 and blocks[:2] == [("in", 0), ("out", 0)]
    with pytest.raises(RuntimeError):  # the reference failing ends the run
        Interleaved().run([ClockArm("A", [], fail_at=0), b], _timing(min_iterations=2))


def test_interleaved_stop_rule_needs_calls_and_seconds():
    t = Interleaved().run([ClockArm("A", []), ClockArm("B", [])],
                          _timing(min_iterations=3, min_seconds=0.1))
    assert len(t[0].latencies_s) >= 3 and sum(x.timed_s for x in t) >= 0.1
    t = Interleaved().run([ClockArm("A", []), ClockArm("B", [])],
                          _timing(min_iterations=3, min_seconds=60, max_seconds=0.2))
    assert sum(x.timed_s for x in t) < 1  # the cap holds


def test_target_ci_adds_rounds_until_every_speedup_is_tight():
    """A noisy pair needs more rounds than a quiet one to reach +-5%; both stop there."""
    def rounds_needed(noise):
        arms = [ClockArm("A", [], noise=noise, seed=1), ClockArm("B", [], latency=0.005, noise=noise, seed=2)]
        timings = Interleaved().run(arms, _timing(min_iterations=6, max_iterations=400, target_ci=0.05))
        widths = Interleaved.speedup_widths(timings)
        return len(timings[0].latencies_s), widths[0]

    quiet, quiet_width = rounds_needed(0.01)
    noisy, noisy_width = rounds_needed(0.2)
    assert quiet == 6 and quiet_width <= 0.05
    assert noisy > quiet and noisy_width <= 0.05


def test_sequential_times_each_arm_alone():
    calls: list = []
    ta, tb = Sequential().run([ClockArm("A", calls), ClockArm("B", calls)], _timing(min_iterations=3))
    assert [c[0] for c in calls] == ["A"] * 4 + ["B"] * 4  # warm-up and 3 calls each, in turn
    assert ta.rounds == [0, 0, 0] and tb.first_call_s is not None


def test_make_names_the_schedules():
    assert make("interleaved", block=3).describe()["block"] == 3
    assert make("sequential").name == "sequential"
    with pytest.raises(ValueError, match="unknown schedule"):
        make("random")


def test_a_hopeless_arm_is_pruned_after_a_round_and_the_run_ends():
    """With ``prune_slower_than``, an arm beyond that multiple of the reference's median leaves
    the schedule after the round that showed it, marked pruned; when no arm is left to compare
    with, the run stops instead of timing the reference alone."""
    calls: list = []
    ref, ok, slow = ClockArm("R", calls), ClockArm("ok", calls, latency=0.015), ClockArm("slow", calls, latency=0.05)
    told = []
    hooks = Hooks(failed=lambda i, why: told.append((i, why)))
    tr, tok, tslow = Interleaved().run([ref, ok, slow], _timing(min_iterations=8, max_iterations=8,
                                                                prune_slower_than=3.0), hooks)
    assert tslow.pruned and tslow.error.startswith("pruned: 5.00x slower") and len(tslow.latencies_s) == 1
    assert told == [(2, tslow.error)]
    assert not tok.pruned and len(tok.latencies_s) == 8 and len(tr.latencies_s) == 8
    calls.clear()
    tr, tslow = Interleaved().run([ClockArm("R", calls), ClockArm("slow", calls, latency=0.05)],
                                  _timing(min_iterations=8, max_iterations=8, prune_slower_than=3.0))
    assert tslow.pruned and len(tr.latencies_s) == 1  # stopped after the first round


def test_pruning_needs_a_slowdown_factor():
    with pytest.raises(ValueError, match="prune_slower_than must be > 1"):
        TimingConfig(prune_slower_than=0.5)
