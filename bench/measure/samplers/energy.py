"""Energy over a timed window, from a hardware counter or from integrated power samples.

The protocol prefers a hardware energy counter (NVML's total-energy counter, RAPL's
package counter) read at both edges of the timed window. A counter's own update period
makes its delta coarse over short windows, so below ``min_window_s`` the power samples
are integrated instead; the estimate always says which method produced it, and an
unavailable estimate says why, never zero.

The window may be a span of several windows (the calls of one stack timed in alternation
with others): the counter is used only when every window lasts at least ``min_window_s``,
and the deltas (or integrals) of the windows are summed.

Integrated power is attributed to a stack only from readings that resolve its calls: each
window's integral uses the samples taken inside it alone (see
:func:`~bench.measure.samplers.timeseries.integrate`), so a window with no sample inside it makes
the estimate unavailable, and so does a power reading that averages over longer than the
calls (NVML's 1 s average), since each of its readings mixes in what ran before the call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.measure.samplers.timeseries import (
    Span,
    count_summary,
    counter_delta,
    coverage_gap,
    finite_pairs,
    integrate,
    samples_per_window,
    span_length,
    unresolved,
    windows_of,
)

#: Joules in one kilowatt-hour.
J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class EnergyEstimate:
    """Energy over a window and how it was obtained.

    Attributes:
        energy_j: joules, None when unavailable.
        method: ``<counter name>`` (e.g. ``nvml-energy-counter``), ``integrated-power`` or
            ``unavailable``.
        reason: why the estimate is unavailable, or why the counter was not used.
        samples_per_window: how many readings of the series the method used (or refused)
            resolve each window, as :func:`~bench.measure.samplers.timeseries.count_summary` gives
            (min, median, max, windows, empty); None when there was no series.
    """

    energy_j: float | None
    method: str
    reason: str | None = None
    samples_per_window: dict[str, int | float] | None = None

    @property
    def ok(self) -> bool:
        return self.energy_j is not None

    def summary(self, window: Span, images: int | None) -> dict[str, Any]:
        """The estimate as a sampler's summary has it: the :func:`figures` over ``window``
        and how they were obtained."""
        return {
            **figures(self.energy_j, window, images),
            "method": self.method,
            "reason": self.reason,
            "samples_per_window": self.samples_per_window,
        }


def estimate(
    ts: Sequence[float],
    window: Span,
    *,
    counter: Sequence[float] | None = None,
    counter_name: str = "energy-counter",
    counter_missing: str | None = None,
    power: Sequence[float] | None = None,
    power_note: str = "",
    power_averaging_s: float = 0.0,
    min_window_s: float = 1.0,
) -> EnergyEstimate:
    """Energy over ``window`` from a cumulative counter series (J) or a power series (W).

    Args:
        ts: sample timestamps (perf_counter seconds).
        window: (start, end) of the timed loop, or its calls' windows.
        counter: cumulative joules per sample (NaN where unread), or None if no counter.
        counter_name: the method name recorded when the counter is used.
        counter_missing: why there is no counter (used in the reason).
        power: watts per sample (NaN where unread), or None.
        power_note: what the power reading is (instant, averaged...), appended to the method.
        power_averaging_s: seconds the power reading averages over before its timestamp
            (0: an instant reading). Only readings whose averaging interval lies inside a
            window count for it; calls shorter than this are never resolved.
        min_window_s: shortest window the counter is trusted over (every window must be
            at least this long).
    """
    if power_averaging_s < 0:
        raise ValueError(f"power_averaging_s must be >= 0, got {power_averaging_s}")
    windows = windows_of(window)
    if not windows or any(b <= a for a, b in windows):
        return EnergyEstimate(None, "unavailable", f"empty window in {windows}")
    length = min(b - a for a, b in windows)
    which = "window" if len(windows) == 1 else "shortest of its windows"
    why_not_counter = counter_missing or "no energy counter"
    if counter is not None:
        if length >= min_window_s:
            counts = count_summary(samples_per_window(finite_pairs(ts, counter)[0], windows))
            delta = counter_delta(ts, counter, window)
            if delta is not None:
                return EnergyEstimate(delta, counter_name, None, counts)
            gap = coverage_gap(finite_pairs(ts, counter)[0], window)
            why_not_counter = f"{counter_name} readings do not span the window: {gap}"
        else:
            why_not_counter = (
                f"{which} {length:.3f} s is shorter than {min_window_s:g} s, too short for "
                f"the {counter_name}'s update period"
            )
    if power is None:
        return EnergyEstimate(None, "unavailable", f"{why_not_counter}; no power readings")
    lag = power_averaging_s
    note = f" ({power_note})" if power_note else ""
    finite_ts = finite_pairs(ts, power)[0]
    counts = count_summary(samples_per_window(finite_ts, windows, lag))
    gap = coverage_gap(finite_ts, window)
    if gap:
        why = f"power readings do not span the window: {gap}"
    elif lag > 0 and length < lag:
        why = (
            f"the power reading{note} is an average over {lag:g} s, longer than the {which} "
            f"({length:.3f} s): each reading mixes this stack's call with what ran before it"
        )
    else:
        joules = integrate(ts, power, window, lag)
        if joules is not None:
            return EnergyEstimate(joules, "integrated-power" + note, why_not_counter, counts)
        why = f"power readings do not resolve every window: {unresolved(ts, power, window, lag)}"
        if lag > 0:
            why += f" (the reading{note} is an average over {lag:g} s)"
    return EnergyEstimate(None, "unavailable", f"{why_not_counter}; {why}", counts)


def figures(energy_j: float | None, window: Span, images: int | None) -> dict[str, Any]:
    """Energy, average power, joules per image and images per kWh over ``window`` (a span:
    its windows' total length)."""
    length = span_length(window)
    out: dict[str, Any] = {
        "energy_j": energy_j,
        "window_s": length,
        "images": images,
        "avg_power_w": energy_j / length if energy_j is not None and length > 0 else None,
        "j_per_image": None,
        "images_per_kwh": None,
    }
    if energy_j is not None and images:
        out["j_per_image"] = energy_j / images
        out["images_per_kwh"] = images * J_PER_KWH / energy_j if energy_j > 0 else None
    return out


__all__ = ["J_PER_KWH", "EnergyEstimate", "estimate", "figures"]
