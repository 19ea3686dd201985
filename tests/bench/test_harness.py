"""The hot loop's protocol: warm-up, stop rule, raw samples, step times."""

import time

import pytest

from bench.harness import TimingConfig, measure


def _work(steps=3, dt=0.002):
    calls = []

    def call(cb):
        calls.append(cb)
        for i in range(steps):
            time.sleep(dt)
            if cb is not None:
                cb(i)

    return call, calls


def test_warmup_calls_are_untimed_and_first_call_recorded():
    call, calls = _work()
    t = measure(call, "cpu", TimingConfig(warmup=2, min_iterations=3, min_seconds=0))
    assert len(calls) == 5
    assert calls[0] is None and calls[1] is None  # warm-up runs without the step recorder
    assert len(t.warmup_s) == 2 and len(t.latencies_s) == 3
    assert t.first_call_s == t.warmup_s[0]


def test_stop_rule_needs_both_minimums():
    call, _ = _work(steps=1, dt=0.01)
    t = measure(call, "cpu", TimingConfig(warmup=0, min_iterations=2, min_seconds=0.1))
    assert len(t.latencies_s) >= 2
    assert t.bounds[-1][1] - t.bounds[0][0] >= 0.1
    t = measure(call, "cpu", TimingConfig(warmup=0, min_iterations=7, min_seconds=0))
    assert len(t.latencies_s) == 7


def test_max_iterations_caps_the_loop():
    call, _ = _work(steps=1, dt=0.0)
    t = measure(call, "cpu", TimingConfig(warmup=0, min_iterations=3, min_seconds=60, max_iterations=4))
    assert len(t.latencies_s) == 4


def test_step_times_partition_each_iteration():
    call, _ = _work(steps=4, dt=0.003)
    t = measure(call, "cpu", TimingConfig(warmup=1, min_iterations=3, min_seconds=0))
    for lat, steps, (a, b) in zip(t.latencies_s, t.step_times_s, t.bounds, strict=True):
        assert len(steps) == 4
        assert all(s >= 0.003 for s in steps)
        assert sum(steps) <= lat + 1e-9
        assert b - a == pytest.approx(lat)
    # iterations do not overlap and are in order
    for (_, b0), (a1, _) in zip(t.bounds, t.bounds[1:], strict=False):
        assert b0 <= a1


def test_bad_config_rejected():
    with pytest.raises(ValueError, match="min_iterations"):
        TimingConfig(min_iterations=0)
    with pytest.raises(ValueError, match="max_iterations"):
        TimingConfig(min_iterations=5, max_iterations=3)
