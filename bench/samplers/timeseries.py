"""Arithmetic on sampled series: counters that wrap, values at a window's edges, integrals.

Everything here is pure Python on lists of floats, so a sampler's summary needs no numpy
and the functions can be checked against hand-computed figures. Timestamps are
``time.perf_counter`` seconds, the clock of the harness's iteration boundaries.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

Window = tuple[float, float]


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


def coverage_gap(ts: Sequence[float], window: Window) -> str | None:
    """Why finite samples at ``ts`` cannot describe ``window`` (None when they can)."""
    t0, t1 = window
    if len(ts) < 2:
        return f"{len(ts)} usable sample(s); at least 2 around the window are needed"
    if ts[0] > t0:
        return f"samples start {ts[0] - t0:.3f} s after the window opens"
    if ts[-1] < t1:
        return f"samples stop {t1 - ts[-1]:.3f} s before the window closes"
    return None


def counter_delta(ts: Sequence[float], totals: Sequence[float], window: Window) -> float | None:
    """Increase of a cumulative series over ``window``, interpolated at both edges."""
    ts, totals = finite_pairs(ts, totals)
    if coverage_gap(ts, window):
        return None
    a = interpolate(ts, totals, window[0])
    b = interpolate(ts, totals, window[1])
    return None if a is None or b is None else b - a


def integrate(ts: Sequence[float], ys: Sequence[float], window: Window) -> float | None:
    """Trapezoidal integral of ``ys`` over ``window`` (edges interpolated); None if the
    finite samples do not span the window."""
    ts, ys = finite_pairs(ts, ys)
    if coverage_gap(ts, window):
        return None
    t0, t1 = window
    inner = [(t, y) for t, y in zip(ts, ys, strict=True) if t0 < t < t1]
    points = [(t0, interpolate(ts, ys, t0)), *inner, (t1, interpolate(ts, ys, t1))]
    return sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(points, points[1:], strict=False))


def in_window(ts: Sequence[float], ys: Sequence[float], window: Window | None) -> list[float]:
    """Finite values sampled inside ``window`` (all finite values when ``window`` is None)."""
    return [
        y
        for t, y in zip(ts, ys, strict=True)
        if y is not None
        and math.isfinite(y)
        and (window is None or window[0] <= t <= window[1])
    ]


def window_values(series: dict[str, list[float]], key: str, window: Window | None) -> list[float]:
    """Finite values of ``key`` inside ``window``; all of them if none fall inside (a window
    shorter than the polling interval)."""
    ts, ys = series.get("t", []), series.get(key)
    if not ys:
        return []
    return in_window(ts, ys, window) or in_window(ts, ys, None)


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
    "Window",
    "counter_delta",
    "coverage_gap",
    "finite_pairs",
    "in_window",
    "integrate",
    "interpolate",
    "iteration_index",
    "mean",
    "window_values",
]
