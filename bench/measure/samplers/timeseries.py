"""Arithmetic on sampled series: counters that wrap, values at a window's edges, integrals.

Everything here is pure Python on lists of floats, so a sampler's summary needs no numpy
and the functions can be checked against hand-computed figures. Timestamps are
``time.perf_counter`` seconds, the clock of the harness's iteration boundaries.

A *span* is one window ``(start, end)`` or a sequence of disjoint windows: the calls of one
strategy stack when several stacks are timed in alternation. Values, integrals and counter
deltas over a span are those over its windows, summed or pooled. Values and integrals of a
window come from the samples taken inside it alone (a cumulative counter's delta is read at
the window's edges by interpolating between the readings around them; the energy estimate
uses it only over windows long enough for one polling interval to matter little).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

Window = tuple[float, float]
#: One window, or several disjoint windows.
Span = Window | Sequence[Window]


def windows_of(span: Span) -> list[Window]:
    """The windows of ``span`` as a sorted list (one window becomes a list of one)."""
    if len(span) == 2 and not isinstance(span[0], (tuple, list)):
        return [(float(span[0]), float(span[1]))]  # type: ignore[arg-type]
    return sorted((float(a), float(b)) for a, b in span)  # type: ignore[misc]


def span_length(span: Span) -> float:
    """Total seconds covered by the windows of ``span``."""
    return sum(b - a for a, b in windows_of(span))


def span_bounds(span: Span) -> Window:
    """(start of the first window, end of the last)."""
    ws = windows_of(span)
    return ws[0][0], ws[-1][1]


class Counter:
    """Turns readings of a monotonic hardware counter into a cumulative total since the first.

    Hardware energy counters wrap (RAPL's ``energy_uj`` at ``max_energy_range_uj``, every
    few minutes under load) or restart (NVML's after a driver reload). A reading below the
    previous one is read as a wrap when ``modulus`` is known and the wrapped step is
    plausible (below ``max_step``), otherwise as a restart from zero; each such event is
    counted in :attr:`wraps` or :attr:`resets`.

    Args:
        scale: multiplies the raw units into the total's units (1e-3 for mJ -> J).
        modulus: the value at which the counter wraps to zero, if known.
        max_step: largest believable raw increase between two readings (None: any).
    """

    def __init__(self, scale: float = 1.0, modulus: int | None = None, max_step: int | None = None):
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = scale
        self.modulus = modulus
        self.max_step = max_step
        self._last: int | None = None
        self._total = 0
        self.wraps = 0
        self.resets = 0

    def update(self, raw: int) -> float:
        """Feed one raw reading; returns the total since the first reading, scaled."""
        raw = int(raw)
        if self._last is not None:
            step = raw - self._last
            if step < 0:
                wrapped = raw + self.modulus - self._last if self.modulus else None
                if wrapped is not None and (self.max_step is None or wrapped <= self.max_step):
                    step = wrapped
                    self.wraps += 1
                else:
                    step = raw  # the counter restarted from zero
                    self.resets += 1
            self._total += step
        self._last = raw
        return self._total * self.scale


def finite_pairs(ts: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    """The (t, y) pairs whose y is a finite number, in time order."""
    pairs = sorted((t, y) for t, y in zip(ts, ys, strict=True) if y is not None and math.isfinite(y))
    return [p[0] for p in pairs], [p[1] for p in pairs]


def interpolate(ts: Sequence[float], ys: Sequence[float], t: float) -> float | None:
    """Linear interpolation of ``ys`` at ``t``; None outside the sampled span."""
    if not ts or t < ts[0] or t > ts[-1]:
        return None
    i = bisect.bisect_left(ts, t)
    if ts[i] == t:
        return ys[i]
    t0, t1, y0, y1 = ts[i - 1], ts[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (t - t0) / (t1 - t0)


def coverage_gap(ts: Sequence[float], span: Span) -> str | None:
    """Why finite samples at ``ts`` cannot describe every window of ``span`` (None when they
    can: at least one sample at or before each window's start and one at or after its end)."""
    if len(ts) < 2:
        return f"{len(ts)} usable sample(s); at least 2 around the window are needed"
    for t0, t1 in windows_of(span):
        if ts[0] > t0:
            return f"samples start {ts[0] - t0:.3f} s after the window opens"
        if ts[-1] < t1:
            return f"samples stop {t1 - ts[-1]:.3f} s before the window closes"
    return None


def counter_delta(ts: Sequence[float], totals: Sequence[float], span: Span) -> float | None:
    """Increase of a cumulative series over ``span`` (each window's edges interpolated,
    the windows' increases summed); None if the samples do not cover it."""
    ts, totals = finite_pairs(ts, totals)
    if coverage_gap(ts, span):
        return None
    total = 0.0
    for t0, t1 in windows_of(span):
        a, b = interpolate(ts, totals, t0), interpolate(ts, totals, t1)
        if a is None or b is None:
            return None
        total += b - a
    return total


def samples_per_window(ts: Sequence[float], span: Span, lag_s: float = 0.0) -> list[int]:
    """How many of ``ts`` resolve each window of ``span``, in window order.

    A sample at ``t`` resolves the window ``(t0, t1)`` when what it read lies inside the
    window: ``t0 <= t <= t1`` for an instant reading, ``t0 <= t - lag_s`` as well for one
    that averages over the ``lag_s`` seconds before ``t``.
    """
    ts = sorted(ts)
    out = []
    for t0, t1 in windows_of(span):
        lo = bisect.bisect_left(ts, t0 + lag_s)
        hi = bisect.bisect_right(ts, t1)
        out.append(max(0, hi - lo))
    return out


def count_summary(counts: Sequence[int]) -> dict[str, int | float]:
    """A compact record of per-window sample counts: min, median, max, the number of
    windows and how many of them hold no sample."""
    if not counts:
        return {"min": 0, "median": 0, "max": 0, "windows": 0, "empty": 0}
    ordered = sorted(counts)
    n = len(ordered)
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    return {
        "min": ordered[0],
        "median": median,
        "max": ordered[-1],
        "windows": n,
        "empty": sum(1 for c in ordered if c == 0),
    }


def unresolved(
    ts: Sequence[float], ys: Sequence[float], span: Span, lag_s: float = 0.0
) -> str | None:
    """Why the finite samples cannot give each window of ``span`` an integral of its own
    (None when they can; see :func:`integrate`)."""
    ts, _ = finite_pairs(ts, ys)
    gap = coverage_gap(ts, span)
    if gap:
        return gap
    windows = windows_of(span)
    counts = samples_per_window(ts, windows, lag_s)
    empty = [w for w, c in zip(windows, counts, strict=True) if c == 0]
    if not empty:
        return None
    shortest = min(b - a for a, b in windows)
    what = "sample inside it" if lag_s <= 0 else f"sample taken {lag_s:g} s or more after it opens"
    return (
        f"{len(empty)} of {len(windows)} windows hold no {what} (shortest window "
        f"{shortest:.3f} s); a window is never filled from readings outside it"
    )


def integrate(
    ts: Sequence[float], ys: Sequence[float], span: Span, lag_s: float = 0.0
) -> float | None:
    """Integral of ``ys`` over ``span`` from the samples that resolve each window alone.

    Within a window only the samples inside it count (for a reading that averages over the
    ``lag_s`` seconds before its timestamp: those whose whole averaging interval lies inside
    the window, placed at that interval's midpoint). Between them the integral is
    trapezoidal; from the window's start to its first sample, and from its last sample to
    its end, the nearest sample's value is held. No value sampled outside a window enters
    its integral, so stacks timed in alternation do not blend at their calls' edges.

    Returns None when :func:`unresolved` gives a reason: the readings do not span the
    windows, or a window holds no resolving sample.
    """
    ts, ys = finite_pairs(ts, ys)
    if unresolved(ts, ys, span, lag_s):
        return None
    total = 0.0
    for t0, t1 in windows_of(span):
        lo = bisect.bisect_left(ts, t0 + lag_s)
        hi = bisect.bisect_right(ts, t1)
        points = [(t - lag_s / 2, y) for t, y in zip(ts[lo:hi], ys[lo:hi], strict=True)]
        first, last = points[0], points[-1]
        total += first[1] * (first[0] - t0) + last[1] * (t1 - last[0])
        total += sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(points, points[1:], strict=False))
    return total


def in_span(t: float, windows: Sequence[Window], lag_s: float = 0.0) -> bool:
    """True when ``t`` falls inside one of ``windows`` (sorted, as :func:`windows_of` gives);
    with ``lag_s``, also ``lag_s`` or more after that window opens (a reading averaged over
    the ``lag_s`` seconds before ``t`` then covers that window alone)."""
    i = bisect.bisect_right([w[0] for w in windows], t) - 1
    return i >= 0 and t <= windows[i][1] and t - lag_s >= windows[i][0]


def in_window(
    ts: Sequence[float], ys: Sequence[float], span: Span | None, lag_s: float = 0.0
) -> list[float]:
    """Finite values sampled inside ``span`` (all finite values when ``span`` is None);
    ``lag_s`` as for :func:`in_span`."""
    windows = windows_of(span) if span is not None else None
    return [
        y
        for t, y in zip(ts, ys, strict=True)
        if y is not None
        and math.isfinite(y)
        and (windows is None or in_span(t, windows, lag_s))
    ]


def window_values(series: dict[str, list[float]], key: str, window: Span | None) -> list[float]:
    """Finite values of ``key`` sampled inside ``window`` (a span; None: all of them).

    Empty when no sample falls inside, e.g. calls shorter than the polling interval: a
    stack's figures are never taken from samples of other stacks' calls or of the run."""
    ts, ys = series.get("t", []), series.get(key)
    if not ys:
        return []
    return in_window(ts, ys, window)


def iteration_index(ts: Sequence[float], bounds: Sequence[tuple[float, float]]) -> list[int]:
    """For each timestamp, the timed iteration it falls in (its index in ``bounds``), or -1."""
    starts = [b[0] for b in bounds]
    out = []
    for t in ts:
        i = bisect.bisect_right(starts, t) - 1
        out.append(i if i >= 0 and t <= bounds[i][1] else -1)
    return out


def mean(values: Sequence[float]) -> float | None:
    """Arithmetic mean, None for no values."""
    return sum(values) / len(values) if values else None


__all__ = [
    "Counter",
    "Span",
    "Window",
    "count_summary",
    "counter_delta",
    "coverage_gap",
    "finite_pairs",
    "in_span",
    "in_window",
    "integrate",
    "interpolate",
    "iteration_index",
    "mean",
    "samples_per_window",
    "span_bounds",
    "span_length",
    "unresolved",
    "window_values",
    "windows_of",
]
