"""Energy over a timed window, from a hardware counter or from integrated power samples.

The protocol prefers a hardware energy counter (NVML's total-energy counter, RAPL's
package counter) read at both edges of the timed window. A counter's own update period
makes its delta coarse over short windows, so below ``min_window_s`` the power samples
are integrated instead; the estimate always says which method produced it, and an
unavailable estimate says why, never zero.

The window may be a span of several windows (the calls of one stack timed in alternation
with others): the counter is used only when every window lasts at least ``min_window_s``,
and the deltas (or integrals) of the windows are summed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.samplers.timeseries import (
    Span,
    counter_delta,
    coverage_gap,
    finite_pairs,
    integrate,
    span_length,
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
    """

    energy_j: float | None
    method: str
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.energy_j is not None


def estimate(
    ts: Sequence[float],
    window: Span,
    *,
    counter: Sequence[float] | None = None,
    counter_name: str = "energy-counter",
    counter_missing: str | None = None,
    power: Sequence[float] | None = None,
    power_note: str = "",
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
        min_window_s: shortest window the counter is trusted over (every window must be
            at least this long).
    """
    windows = windows_of(window)
    if not windows or any(b <= a for a, b in windows):
        return EnergyEstimate(None, "unavailable", f"empty window in {windows}")
    length = min(b - a for a, b in windows)
    why_not_counter = counter_missing or "no energy counter"
    if counter is not None:
        if length >= min_window_s:
            delta = counter_delta(ts, counter, window)
            if delta is not None:
                return EnergyEstimate(delta, counter_name)
            gap = coverage_gap(finite_pairs(ts, counter)[0], window)
            why_not_counter = f"{counter_name} readings do not span the window: {gap}"
        else:
            which = "window" if len(windows) == 1 else "shortest of its windows"
            why_not_counter = (
                f"{which} {length:.3f} s is shorter than {min_window_s:g} s, too short for "
                f"the {counter_name}'s update period"
            )
    if power is not None:
        joules = integrate(ts, power, window)
        if joules is not None:
            method = "integrated-power" + (f" ({power_note})" if power_note else "")
            return EnergyEstimate(joules, method, why_not_counter)
        gap = coverage_gap(finite_pairs(ts, power)[0], window)
        return EnergyEstimate(
            None, "unavailable", f"{why_not_counter}; power readings do not span the window: {gap}"
        )
    return EnergyEstimate(None, "unavailable", f"{why_not_counter}; no power readings")


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
