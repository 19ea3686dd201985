"""The hot loop: warm-up, then timed generation calls until a stop rule is met.

Each call is bracketed by a device synchronisation and timed with the monotonic
``time.perf_counter`` clock (the same clock the samplers stamp their samples with, so
every sample can be attributed to an iteration). Per-step times come from the model's step
callback. Every raw sample is kept.

:func:`timed_calls` is the primitive every schedule uses (:mod:`bench.schedules`);
:func:`measure` is one stack's whole loop: warm-up, then calls until the stop rule is met.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from bench.config import TimingConfig
from bench.models.base import StepCallback

clock = time.perf_counter


@dataclass
class Timing:
    """Raw timings of one measured configuration (seconds, ``perf_counter`` clock)."""

    latencies_s: list[float] = field(default_factory=list)
    #: Per timed iteration, the duration of each step.
    step_times_s: list[list[float]] = field(default_factory=list)
    #: Per timed iteration, (start, end) on the perf_counter clock.
    bounds: list[tuple[float, float]] = field(default_factory=list)
    warmup_s: list[float] = field(default_factory=list)
    #: (start, end) of each warm-up call, on the perf_counter clock.
    warmup_bounds: list[tuple[float, float]] = field(default_factory=list)
    first_call_s: float | None = None
    #: Per timed iteration, the round it belongs to (interleaved schedules; 0 otherwise).
    rounds: list[int] = field(default_factory=list)
    #: Why the stack stopped being measured (it raised); None when it ran to the end.
    error: str | None = None

    @property
    def window(self) -> tuple[float, float]:
        """Start of the first and end of the last timed iteration."""
        return self.bounds[0][0], self.bounds[-1][1]

    @property
    def timed_s(self) -> float:
        """Seconds spent in timed calls."""
        return sum(self.latencies_s)

    def add(self, calls: CallSamples, round_index: int = 0) -> None:
        """Append the samples of some timed calls (of round ``round_index``)."""
        self.latencies_s += calls.latencies_s
        self.bounds += calls.bounds
        self.step_times_s += calls.step_times_s
        self.rounds += [round_index] * len(calls.latencies_s)
        if self.first_call_s is None and calls.latencies_s:
            self.first_call_s = calls.latencies_s[0]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def synchronize(device: torch.device | str) -> None:
    """Wait for all queued work on ``device`` (no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
    elif device.type == "xpu":
        torch.xpu.synchronize(device)


@dataclass
class CallSamples:
    """Raw samples of consecutive timed calls: latency, (start, end) and step durations."""

    latencies_s: list[float] = field(default_factory=list)
    bounds: list[tuple[float, float]] = field(default_factory=list)
    step_times_s: list[list[float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _StepRecorder:
    """A step callback that stamps the end of each step."""

    def __init__(self, device: torch.device, sync: bool) -> None:
        self.device = device
        self.sync = sync and device.type != "cpu"
        self.stamps: list[float] = []

    def __call__(self, step: int) -> None:
        if self.sync:
            synchronize(self.device)
        self.stamps.append(clock())

    def durations(self, start: float) -> list[float]:
        edges = [start, *self.stamps]
        return [b - a for a, b in zip(edges, edges[1:], strict=False)]


def timed_calls(
    call: Callable[[StepCallback | None], Any],
    device: torch.device | str,
    n: int,
    sync_steps: bool = True,
    on_call: Callable[[], None] | None = None,
) -> CallSamples:
    """Time ``n`` calls of ``call``: device synchronised at both ends, step ends stamped
    through the step callback. ``on_call()`` is told after each call (progress)."""
    device = torch.device(device)
    out = CallSamples()
    for _ in range(n):
        recorder = _StepRecorder(device, sync_steps)
        synchronize(device)
        t0 = clock()
        call(recorder)
        synchronize(device)
        t1 = clock()
        out.latencies_s.append(t1 - t0)
        out.bounds.append((t0, t1))
        out.step_times_s.append(recorder.durations(t0))
        if on_call:
            on_call()
    return out


def warmup_calls(
    call: Callable[[StepCallback | None], Any], device: torch.device | str, n: int,
    on_call: Callable[[], None] | None = None,
) -> list[tuple[float, float]]:
    """Run ``n`` untimed calls (no step callback); returns their (start, end) bounds."""
    device = torch.device(device)
    out = []
    for _ in range(n):
        synchronize(device)
        t0 = clock()
        call(None)
        synchronize(device)
        out.append((t0, clock()))
        if on_call:
            on_call()
    return out


def measure(
    call: Callable[[StepCallback | None], Any],
    device: torch.device | str,
    config: TimingConfig | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> Timing:
    """Warm up, then time ``call`` until the stop rule is met.

    ``call(step_callback)`` must run one full generation of the measured shape and invoke
    ``step_callback(i)`` after each step. ``progress(phase, i)`` is told of each call.
    With ``config.target_ci``, calls continue (up to the maximums) until the 95% interval of
    the median latency lies within +-target_ci of it.
    """
    from bench import stats

    config = config or TimingConfig()
    device = torch.device(device)
    timing = Timing()
    for i in range(config.warmup):
        (t0, t1), = warmup_calls(call, device, 1)
        timing.warmup_s.append(t1 - t0)
        timing.warmup_bounds.append((t0, t1))
        if i == 0:
            timing.first_call_s = t1 - t0
        if progress:
            progress("warmup", i)

    started = clock()
    while True:
        timing.add(timed_calls(call, device, 1, config.sync_steps))
        if progress:
            progress("timed", len(timing.latencies_s) - 1)
        n = len(timing.latencies_s)
        elapsed = clock() - started
        if n >= config.max_iterations or (n >= config.min_iterations and elapsed >= config.max_seconds):
            break
        if n >= config.min_iterations and elapsed >= config.min_seconds:
            if config.target_ci is None or n < 3:
                break
            if stats.relative_half_width(stats.summarize(timing.latencies_s)) <= config.target_ci:
                break
    return timing
