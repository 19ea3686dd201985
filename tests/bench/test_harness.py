"""The hot loop's protocol: warm-up, stop rule, raw samples, step times."""

import time

import pytest

from bench.measure.harness import TimingConfig, measure


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


# -- per-step times on CUDA: events, no synchronisation per step --------------------------------
class _FakeGPU:
    """A device clock (ms) and a log of what the harness asked of the device."""

    def __init__(self):
        self.ms = 0.0
        self.log: list[str] = []

    def synchronize(self, device):
        self.log.append("sync")

    def event_class(self):
        gpu = self

        class Event:
            def __init__(self, enable_timing=False):
                assert enable_timing, "events without timing cannot give durations"
                self.ms = None

            def record(self, stream=None):
                self.ms = gpu.ms
                gpu.log.append("record")

            def elapsed_time(self, end):
                assert gpu.log[-1] == "sync", "read before the device was synchronised"
                return end.ms - self.ms

        return Event

    def call(self, step_ms=(10.0, 20.0, 30.0)):
        def call(cb):
            for i, ms in enumerate(step_ms):
                self.ms += ms  # the device works through the step
                if cb is not None:
                    cb(i)

        return call


def test_cuda_steps_are_timed_by_events_with_one_synchronisation_at_each_end(monkeypatch):
    from bench.measure import harness

    gpu = _FakeGPU()
    monkeypatch.setattr(harness, "synchronize", gpu.synchronize)
    out = harness.timed_calls(gpu.call(), "cuda", 2, event_class=gpu.event_class())
    # Per call: sync, the start event, one event per step, sync; nothing synchronises a step.
    assert gpu.log == ["sync", "record", "record", "record", "record", "sync"] * 2
    assert out.step_times_s == [[0.010, 0.020, 0.030]] * 2  # from the events, ms -> s
    assert out.step_clock == harness.CUDA_EVENTS
    assert len(out.latencies_s) == 2 and all(b - a == lat for (a, b), lat
                                             in zip(out.bounds, out.latencies_s, strict=True))


def test_measure_on_cuda_uses_torch_cuda_events_by_default(monkeypatch):
    import torch

    from bench.measure import harness

    gpu = _FakeGPU()
    monkeypatch.setattr(harness, "synchronize", gpu.synchronize)
    monkeypatch.setattr(torch.cuda, "Event", gpu.event_class())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: None)
    assert TimingConfig().sync_steps is False
    t = measure(gpu.call((5.0, 7.0)), "cuda", TimingConfig(warmup=0, min_iterations=3, min_seconds=0))
    assert gpu.log == ["sync", "record", "record", "record", "sync"] * 3
    assert t.step_times_s == [[0.005, 0.007]] * 3 and t.step_clock == "cuda-events"


def test_sync_steps_opts_in_to_host_stamps_after_a_synchronisation_per_step(monkeypatch):
    from bench.measure import harness

    gpu = _FakeGPU()
    monkeypatch.setattr(harness, "synchronize", gpu.synchronize)
    out = harness.timed_calls(gpu.call(), "cuda", 1, sync_steps=True, event_class=gpu.event_class())
    assert gpu.log == ["sync"] * 5 and "record" not in gpu.log
    assert out.step_clock == harness.HOST_SYNCED and len(out.step_times_s[0]) == 3


def test_cpu_steps_are_stamped_on_the_host_clock_without_synchronising(monkeypatch):
    from bench.measure import harness

    gpu = _FakeGPU()
    monkeypatch.setattr(harness, "synchronize", gpu.synchronize)
    call, _ = _work(steps=3, dt=0.001)
    out = harness.timed_calls(call, "cpu", 1, sync_steps=True)
    assert gpu.log == ["sync", "sync"]  # the call's two ends only (no-ops on the CPU)
    assert out.step_clock == harness.HOST and all(s >= 0.001 for s in out.step_times_s[0])
