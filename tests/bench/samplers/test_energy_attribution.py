"""Energy and power of one stack among several timed in alternation: only readings that
resolve the stack's own calls count. Instant samples inside its windows, never values
interpolated from the neighbouring calls; no sample inside a window, or a reading that
averages over longer than the calls, makes the figure unavailable with the reason; the
samples per window are recorded. The series are synthetic (no clock, no sleeping): the
sampler's rows are set as polling would have left them, then summarised."""

from __future__ import annotations

import pytest

from bench.measure.measures import energy_fields
from bench.measure.samplers import energy as energy_mod
from bench.measure.samplers.nvml import NVMLSampler
from bench.measure.samplers.timeseries import count_summary, integrate, samples_per_window
from tests.support.fake_nvml import FakeNVML

INTERVAL_S = 0.05
WATTS = {"A": 300.0, "B": 200.0}
IDLE_W = 60.0
INSTANT = "instant (NVML_FI_DEV_POWER_INSTANT)"
AVERAGED = "nvmlDeviceGetPowerUsage, a 1 s average on this GPU"


def _alternating(call_s: float, rounds: int) -> tuple[dict[str, list[tuple[float, float]]], float]:
    """Calls of A then B, back to back from t = 0, ``rounds`` times; and where they end."""
    windows: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    t = 0.0
    for _ in range(rounds):
        for stack in "AB":
            windows[stack].append((t, t + call_s))
            t += call_s
    return windows, t


def _power(t: float, windows: dict[str, list[tuple[float, float]]]) -> float:
    for stack, spans in windows.items():
        if any(a <= t < b for a, b in spans):
            return WATTS[stack]
    return IDLE_W


def _averaged(t: float, windows: dict[str, list[tuple[float, float]]], over: float = 1.0) -> float:
    """The mean power over the ``over`` seconds before ``t`` (exact for piecewise constants)."""
    edges = sorted(
        {-10.0, t - over, t, *(x for spans in windows.values() for w in spans for x in w)}
    )
    edges = [x for x in edges if t - over <= x <= t]
    joules = sum(
        (b - a) * _power((a + b) / 2, windows) for a, b in zip(edges, edges[1:], strict=False)
    )
    return joules / over


def _times(end: float, phase: float = 0.013) -> list[float]:
    """Sample times every 50 ms from a little before t = 0 to a little after ``end``."""
    n = int((end + 0.2) / INTERVAL_S) + 1
    return [phase - 0.1 + k * INTERVAL_S for k in range(n)]


def _sampler(ts: list[float], power: list[float], source: str = INSTANT, averaging_s: float = 0.0):
    """An NVML sampler holding these rows, as if it had polled them."""
    s = NVMLSampler(interval_s=INTERVAL_S, nvml=FakeNVML())
    s._rows = [
        {"t": t, "gpu0.power_w": w, "rss_mb": 1000.0 + w, "cpu_percent": w / 3}
        for t, w in zip(ts, power, strict=True)
    ]
    s.info = {
        "gpus": {
            "0": {
                "name": "NVIDIA H100 80GB HBM3",
                "power_source": source,
                "power_averaging_s": averaging_s,
            }
        }
    }
    return s


# -- (1) instant power: each stack from its own samples ------------------------------------
def test_alternating_stacks_each_get_their_own_energy():
    """100 ms calls sampled every 50 ms: interpolating across the calls' edges blended the
    stacks (A -5%, B +7% on these samples); holding each window's own samples is exact."""
    windows, end = _alternating(0.1, 20)
    ts = _times(end)
    power = [_power(t, windows) for t in ts]
    for stack, watts in WATTS.items():
        truth = watts * sum(b - a for a, b in windows[stack])
        est = energy_mod.estimate(ts, windows[stack], power=power)
        assert est.method == "integrated-power" and est.energy_j == pytest.approx(truth, rel=1e-6)
        r = _sampler(ts, power).result(window=windows[stack], images=40)
        g = r.summary["gpus"]["0"]
        assert g["energy"]["energy_j"] == pytest.approx(truth, rel=1e-6)
        assert r.summary["energy_j"] == pytest.approx(truth, rel=1e-6)
        assert r.summary["avg_power_w"] == pytest.approx(watts, rel=1e-6)
        assert g["mean_power_w"] == g["peak_power_w"] == watts  # not the other stack's samples


def test_no_value_from_outside_a_window_enters_its_integral():
    ts = [0.0, 1.0, 2.0, 3.0]
    ys = [1000.0, 10.0, 20.0, 1000.0]  # outside the window: wildly different
    # Held from 0.5 to 1, trapezoid from 1 to 2, held from 2 to 2.5.
    assert integrate(ts, ys, (0.5, 2.5)) == pytest.approx(10 * 0.5 + 15 * 1.0 + 20 * 0.5)


# -- (2) no sample inside a window: unavailable, never the run's samples ---------------------
def test_a_stack_whose_windows_hold_no_sample_is_unavailable_not_the_runs():
    ts = _times(2.0)  # samples at ...0.013, 0.063, 0.113...
    short = [(0.02 + 0.1 * k, 0.05 + 0.1 * k) for k in range(10)]  # 30 ms calls between samples
    power = [IDLE_W] * len(ts)
    r = _sampler(ts, power).result(window=short, images=10)
    g = r.summary["gpus"]["0"]
    assert r.summary["energy_j"] is None and r.summary["method"] == "unavailable"
    assert "10 of 10 windows hold no sample inside it" in r.missing["energy"]
    assert (
        g["energy"]["energy_j"] is None
        and "never filled from readings outside" in g["energy"]["reason"]
    )
    assert (
        g["peak_power_w"] is None
        and g["mean_power_w"] is None
        and "never the run's" in g["power_reason"]
    )
    assert r.summary["peak_rss_mb"] is None and r.summary["cpu_percent_mean"] is None
    assert "no sample inside any of the 10 window(s)" in r.missing["window_samples"]
    assert r.summary["samples_per_window"] == {
        "min": 0,
        "median": 0,
        "max": 0,
        "windows": 10,
        "empty": 10,
    }


def test_one_window_without_a_sample_makes_the_stack_unavailable():
    ts = _times(2.0)
    span = [(0.0, 0.5), (0.52, 0.55)]  # the second holds no sample
    power = [250.0] * len(ts)
    est = energy_mod.estimate(ts, span, power=power)
    assert est.energy_j is None and est.method == "unavailable"
    assert "1 of 2 windows hold no sample inside it" in est.reason
    assert est.samples_per_window == {"min": 0, "median": 5.0, "max": 10, "windows": 2, "empty": 1}
    r = _sampler(ts, power).result(window=span)
    assert r.summary["gpus"]["0"]["peak_power_w"] == 250.0  # peaks and means: the samples inside
    assert "window_samples" not in r.missing


# -- (3) a reading averaged over longer than the calls: unavailable, saying so ---------------
def test_power_averaged_over_1s_cannot_resolve_100ms_calls():
    windows, end = _alternating(0.1, 20)
    ts = _times(end)
    power = [_averaged(t, windows) for t in ts]
    est = energy_mod.estimate(
        ts, windows["A"], power=power, power_note=AVERAGED, power_averaging_s=1.0
    )
    assert est.energy_j is None and est.method == "unavailable"
    assert "is an average over 1 s, longer than the shortest of its windows (0.100 s)" in est.reason
    r = _sampler(ts, power, AVERAGED, 1.0).result(window=windows["A"], images=40)
    g = r.summary["gpus"]["0"]
    assert r.summary["method"] == "unavailable" and "average over 1 s" in r.missing["energy"]
    assert g["mean_power_w"] is None and g["peak_power_w"] is None
    assert "an average over 1 s" in g["power_reason"]


def test_power_averaged_over_1s_resolves_calls_longer_than_that_from_their_late_samples():
    windows, end = _alternating(3.0, 4)
    ts = _times(end)
    power = [_averaged(t, windows) for t in ts]
    for stack, watts in WATTS.items():
        truth = watts * sum(b - a for a, b in windows[stack])
        r = _sampler(ts, power, AVERAGED, 1.0).result(window=windows[stack], images=8)
        g = r.summary["gpus"]["0"]
        assert g["energy"]["energy_j"] == pytest.approx(truth, rel=1e-6)
        assert g["energy"]["method"] == f"integrated-power ({AVERAGED})"
        assert g["mean_power_w"] == pytest.approx(watts)  # readings a full second into a call
        counts = g["energy"]["samples_per_window"]
        assert counts["windows"] == 4 and 39 <= counts["min"] <= counts["max"] <= 41


# -- (4) samples per window, recorded -------------------------------------------------------
def test_samples_per_window_are_recorded():
    windows, end = _alternating(0.1, 20)
    ts = _times(end)
    r = _sampler(ts, [_power(t, windows) for t in ts]).result(window=windows["A"], images=40)
    expected = {"min": 2, "median": 2, "max": 2, "windows": 20, "empty": 0}
    g = r.summary["gpus"]["0"]
    assert r.summary["samples_per_window"] == expected
    assert g["energy"]["samples_per_window"] == expected
    assert g["power_samples_per_window"] == expected
    assert energy_fields(r)["per_device"]["cuda:0"]["samples_per_window"] == expected


def test_count_summary_and_samples_per_window():
    assert count_summary([0, 3, 1, 2]) == {
        "min": 0,
        "median": 1.5,
        "max": 3,
        "windows": 4,
        "empty": 1,
    }
    assert count_summary([]) == {"min": 0, "median": 0, "max": 0, "windows": 0, "empty": 0}
    ts = [0.1, 0.4, 0.9, 1.2, 1.9]
    assert samples_per_window(ts, [(0.0, 1.0), (1.5, 2.0)]) == [3, 1]
    # averaged over 0.5 s: only readings 0.5 s or more into a window resolve it
    assert samples_per_window(ts, [(0.0, 1.0), (1.5, 2.0)], lag_s=0.5) == [1, 0]
