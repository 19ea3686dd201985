"""The hot loop: warm-up, then timed generation calls until a stop rule is met.

Each call is bracketed by a device synchronisation and timed with the monotonic
``time.perf_counter`` clock (the same clock the samplers stamp their samples with, so
every sample can be attributed to an iteration). Per-step times come from the model's step
callback. Every raw sample is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from bench.models.base import StepCallback

clock = time.perf_counter


@dataclass(frozen=True)
class TimingConfig:
    """How long to measure.

    Attributes:
        warmup: untimed full calls before timing (at least 2 per the protocol; strategies
            that compile or cache may need more).
        min_iterations: timed calls at least.
        min_seconds: timed seconds at least (both minimums must be met).
        max_iterations: stop after this many timed calls regardless.
        max_seconds: stop after this long regardless (once ``min_iterations`` are done).
        sync_steps: synchronise the device in the step callback so per-step times are
            exact (costs a little overlap on GPUs; no effect on the CPU).
    """

    warmup: int = 2
    min_iterations: int = 5
    min_seconds: float = 2.0
    max_iterations: int = 200
    max_seconds: float = 300.0
    sync_steps: bool = True

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.min_iterations < 1:
            raise ValueError(f"min_iterations must be >= 1, got {self.min_iterations}")
        if self.min_seconds < 0:
            raise ValueError(f"min_seconds must be >= 0, got {self.min_seconds}")
        if self.max_iterations < self.min_iterations:
            raise ValueError("max_iterations must be >= min_iterations")


@dataclass
class Timing:
    """Raw timings of one measured configuration (seconds, ``perf_counter`` clock)."""

    latencies_s: list[float] = field(default_factory=list)
    #: Per timed iteration, the duration of each step.
    step_times_s: list[list[float]] = field(default_factory=list)
    #: Per timed iteration, (start, end) on the perf_counter clock.
    bounds: list[tuple[float, float]] = field(default_factory=list)
    warmup_s: list[float] = field(default_factory=list)
    first_call_s: float | None = None

    @property
    def window(self) -> tuple[float, float]:
        """Start of the first and end of the last timed iteration."""
        return self.bounds[0][0], self.bounds[-1][1]

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


def measure(
    call: Callable[[StepCallback | None], Any],
    device: torch.device | str,
    config: TimingConfig = TimingConfig(),
    progress: Callable[[str, int], None] | None = None,
) -> Timing:
    """Warm up, then time ``call`` until the stop rule is met.

    ``call(step_callback)`` must run one full generation of the measured shape and invoke
    ``step_callback(i)`` after each step. ``progress(phase, i)`` is told of each call.
    """
    device = torch.device(device)
    timing = Timing()
    for i in range(config.warmup):
        synchronize(device)
        t0 = clock()
        call(None)
        synchronize(device)
        elapsed = clock() - t0
        timing.warmup_s.append(elapsed)
        if i == 0:
            timing.first_call_s = elapsed
        if progress:
            progress("warmup", i)

    started = clock()
    while True:
        recorder = _StepRecorder(device, config.sync_steps)
        synchronize(device)
        t0 = clock()
        call(recorder)
        synchronize(device)
        t1 = clock()
        timing.latencies_s.append(t1 - t0)
        timing.bounds.append((t0, t1))
        timing.step_times_s.append(recorder.durations(t0))
        if timing.first_call_s is None:
            timing.first_call_s = t1 - t0
        if progress:
            progress("timed", len(timing.latencies_s) - 1)
        n = len(timing.latencies_s)
        elapsed = clock() - started
        if n >= config.max_iterations:
            break
        if n >= config.min_iterations and (
            elapsed >= config.min_seconds or elapsed >= config.max_seconds
        ):
            break
    return timing
