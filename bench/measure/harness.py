"""The hot loop: warm-up, then timed generation calls until a stop rule is met.

Each call is bracketed by a device synchronisation and timed with the monotonic
``time.perf_counter`` clock (the same clock the samplers stamp their samples with, so
every sample can be attributed to an iteration). Per-step times come from the model's step
callback, which marks the end of each step without stalling the device
(:func:`step_recorder`): on CUDA it records a timing event on the stream (the call's start
has one too) and the durations are read from the events after the call's one final
synchronisation; on the CPU it stamps the host clock, which is exact there. Other
accelerators (MPS, XPU) synchronise at every step, as does any device with
``TimingConfig.sync_steps``. Every raw sample is kept.

:func:`timed_calls` is the primitive every schedule uses (:mod:`bench.measure.schedules`);
:func:`measure` is one stack's whole loop: warm-up, then calls until the stop rule is met.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from bench.core import stats
from bench.core.config import TimingConfig
from bench.models.base import StepCallback

clock = time.perf_counter

#: ``Timing.step_clock`` values: where the per-step durations came from.
HOST = "host"
HOST_SYNCED = "host-synced"
CUDA_EVENTS = "cuda-events"


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
    #: Why the stack stopped being measured (it raised, or was pruned); None when it ran to the end.
    error: str | None = None
    #: Left the schedule because it was hopelessly slow (``TimingConfig.prune_slower_than``).
    pruned: bool = False
    #: Where the step durations came from: ``host`` (host clock, no synchronisation),
    #: ``host-synced`` (host clock after a device synchronisation at every step) or
    #: ``cuda-events`` (CUDA events, read after the call); None before any timed call.
    step_clock: str | None = None

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
        if calls.step_clock is not None:
            self.step_clock = calls.step_clock

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
    """Raw samples of consecutive timed calls: latency, (start, end) and step durations,
    and where the step durations came from (``step_clock``, see :class:`Timing`)."""

    latencies_s: list[float] = field(default_factory=list)
    bounds: list[tuple[float, float]] = field(default_factory=list)
    step_times_s: list[list[float]] = field(default_factory=list)
    step_clock: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _StampRecorder:
    """A step callback that stamps the end of each step on the host clock, after a device
    synchronisation when ``sync`` (never on the CPU, where the clock is exact)."""

    def __init__(self, device: torch.device, sync: bool) -> None:
        self.device = device
        self.sync = sync and device.type != "cpu"
        self.clock_name = HOST_SYNCED if self.sync else HOST
        self.stamps: list[float] = []

    def start(self) -> None:
        """The call starts now (the host stamp ``t0`` is its start)."""

    def __call__(self, step: int) -> None:
        if self.sync:
            synchronize(self.device)
        self.stamps.append(clock())

    def durations(self, start: float) -> list[float]:
        """Seconds of each step, the first from the call's start ``start``."""
        edges = [start, *self.stamps]
        return [b - a for a, b in zip(edges, edges[1:], strict=False)]


class _EventRecorder:
    """A step callback that records a timing event at the end of each step, without
    synchronising: the device runs on while the host queues the next step.

    ``event_class(enable_timing=True)`` makes an event (``torch.cuda.Event``);
    ``event.record(stream)`` (``event.record()`` when ``stream`` is None) enqueues it and
    ``a.elapsed_time(b)`` gives the milliseconds between two. :meth:`durations` may only be
    read once the device has been synchronised after the call.
    """

    clock_name = CUDA_EVENTS

    def __init__(self, event_class: Callable[..., Any], stream: Any = None) -> None:
        self.event_class = event_class
        self.stream = stream
        self.begin: Any = None
        self.events: list[Any] = []

    def _record(self) -> Any:
        event = self.event_class(enable_timing=True)
        if self.stream is None:
            event.record()
        else:
            event.record(self.stream)
        return event

    def start(self) -> None:
        """Record the call's start event (right after the synchronisation before it)."""
        self.begin = self._record()

    def __call__(self, step: int) -> None:
        self.events.append(self._record())

    def durations(self, start: float) -> list[float]:
        """Seconds of each step, the first from the start event (``start``, the host stamp,
        is not used: the events share no clock with it)."""
        if self.begin is None:
            return []
        edges = [self.begin, *self.events]
        return [a.elapsed_time(b) / 1000.0 for a, b in zip(edges, edges[1:], strict=False)]


def step_recorder(device: torch.device | str, sync_steps: bool = False,
                  event_class: Callable[..., Any] | None = None) -> _StampRecorder | _EventRecorder:
    """The step callback of one timed call on ``device``.

    CUDA: CUDA events (``event_class``, default ``torch.cuda.Event``, recorded on the
    device's current stream), unless ``sync_steps`` asks for the older host stamps after a
    synchronisation at every step. CPU: host stamps. Other accelerators: host stamps after a
    synchronisation at every step (they are asynchronous, and have no events here).
    """
    device = torch.device(device)
    if device.type == "cuda" and not sync_steps:
        if event_class is None:
            return _EventRecorder(torch.cuda.Event, torch.cuda.current_stream(device))
        return _EventRecorder(event_class)
    return _StampRecorder(device, sync=device.type != "cpu")


def timed_calls(
    call: Callable[[StepCallback | None], Any],
    device: torch.device | str,
    n: int,
    sync_steps: bool = False,
    on_call: Callable[[], None] | None = None,
    event_class: Callable[..., Any] | None = None,
) -> CallSamples:
    """Time ``n`` calls of ``call``: device synchronised at both ends (and nowhere else,
    unless ``sync_steps``), step ends marked through the step callback
    (:func:`step_recorder`; ``event_class`` replaces ``torch.cuda.Event``). The latency is
    the host clock from synchronisation to synchronisation. ``on_call()`` is told after each
    call (progress)."""
    device = torch.device(device)
    out = CallSamples()
    for _ in range(n):
        recorder = step_recorder(device, sync_steps, event_class)
        synchronize(device)
        t0 = clock()
        recorder.start()
        call(recorder)
        synchronize(device)
        t1 = clock()
        out.latencies_s.append(t1 - t0)
        out.bounds.append((t0, t1))
        out.step_times_s.append(recorder.durations(t0))
        out.step_clock = recorder.clock_name
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
        if config.done(len(timing.latencies_s), clock() - started, latency_half_width(timing)):
            break
    return timing


def latency_half_width(timing: Timing) -> Callable[[], float] | None:
    """The relative half-width of the 95% interval of ``timing``'s median latency, for the
    stop rule of a stack timed on its own (None below 3 calls: no interval yet)."""
    if len(timing.latencies_s) < 3:
        return None
    return lambda: stats.relative_half_width(stats.summarize(timing.latencies_s))
