"""Change points on synthetic series (pure numpy, seeded): detection rate and false alarms.

``pytest -s`` prints the measured rates; the module docstring of
:mod:`bench.history.changepoints` quotes the slow variant (200 series per step size).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.history.changepoints import (
    Change,
    changes,
    detect,
    noise,
    ratio_interval,
    segments,
)

CV = 0.05
N = 60


def simulate(step: float, n_series: int, seed: int, n: int = N,
             with_intervals: bool = True) -> tuple[int, int, int]:
    """(steps found within two commits, false change points, points) over ``n_series``.

    Each series is ``N`` points at coefficient of variation ``CV``; with ``step``, the level
    moves by that fraction (up and down alternately) at a random place in 15..45. A point's
    interval is its own noise's 95% interval around it.
    """
    rng = np.random.default_rng(seed)
    found = false = 0
    for i in range(n_series):
        base = np.full(n, 10.0)
        pos = int(rng.integers(15, 46))
        if step:
            base[pos:] *= (1 + step) if i % 2 == 0 else 1 / (1 + step)
        x = base * (1 + CV * rng.standard_normal(n))
        half = 1.96 * CV * base
        cps = detect(x, x - half, x + half) if with_intervals else detect(x)
        hits = [c for c in cps if step and abs(c - pos) <= 2]
        found += bool(hits)
        false += len(cps) - min(len(hits), 1)
    return found, false, n_series * n


def _rates(n_series: int) -> dict[float, tuple[int, int, int]]:
    return {step: simulate(step, n_series, seed=100 + int(step * 100))
            for step in (0.05, 0.10, 0.20, 0.0)}


def _report(rates: dict[float, tuple[int, int, int]], n_series: int) -> None:
    print(f"\nchange points, {n_series} series of {N} points at CV {CV:.0%} per step size:")
    for step, (found, false, points) in rates.items():
        what = f"found {found}/{n_series} within two commits" if step else "no step"
        print(f"  step {step:4.0%}: {what}, {100 * false / points:.2f} false per 100 points")


def test_detection_and_false_alarm_rates():
    rates = _rates(20)
    _report(rates, 20)
    assert rates[0.20][0] >= 19
    assert rates[0.10][0] >= 14
    for step, (_, false, points) in rates.items():
        assert 100 * false / points <= 1.0, step


@pytest.mark.slow
def test_detection_and_false_alarm_rates_many_series():
    rates = _rates(200)
    _report(rates, 200)
    assert rates[0.20][0] >= 195
    assert rates[0.10][0] >= 160
    for _, false, points in rates.values():
        assert 100 * false / points <= 0.5


def test_without_intervals_the_scatter_sets_the_noise():
    found, false, points = simulate(0.20, 20, seed=7, with_intervals=False)
    assert found >= 19 and 100 * false / points <= 1.0
    _, false, points = simulate(0.0, 20, seed=8, with_intervals=False)
    assert 100 * false / points <= 1.0


def test_wide_intervals_hide_a_step_the_scatter_alone_would_show():
    rng = np.random.default_rng(3)
    x = 10 * (1 + 0.02 * rng.standard_normal(40))
    x[20:] *= 1.08
    assert detect(x) == [20]
    assert detect(x, x - 3.0, x + 3.0) == []  # each point only known to +-30%


def test_narrow_intervals_are_scaled_up_to_the_scatter():
    rng = np.random.default_rng(4)
    x = 10 * (1 + 0.05 * rng.standard_normal(200))
    s = noise(x, x - 0.01, x + 0.01)
    assert s.min() > 0.3  # the intervals say 0.005; the scatter says ~0.5
    assert detect(x, x - 0.01, x + 0.01) == []


def test_short_constant_and_signed_series():
    assert detect(np.array([1.0, 2.0, 3.0])) == []
    assert detect(np.full(20, 5.0)) == []
    x = np.r_[np.zeros(15), np.ones(15) * 5] + np.random.default_rng(1).normal(0, 0.3, 30)
    assert detect(x) == [15]  # negative values: segmented as they are, not in log space
    with pytest.raises(ValueError):
        detect(np.array([1.0, np.nan, 2.0, 3.0]))
    with pytest.raises(ValueError):
        detect(x, log=True)


def test_segments_cover_the_series():
    segs = segments(np.arange(10), [3, 7])
    assert segs == [slice(0, 3), slice(3, 7), slice(7, 10)]
    assert segments(np.arange(4), []) == [slice(0, 4)]


def test_ratio_interval_covers_the_true_ratio():
    rng = np.random.default_rng(11)
    covered = 0
    for _ in range(400):
        a = 10 * (1 + 0.05 * rng.standard_normal(12))
        b = 12 * (1 + 0.05 * rng.standard_normal(9))
        r, lo, hi = ratio_interval(a, b)
        assert lo < r < hi
        covered += lo <= 1.2 <= hi
    assert 0.92 <= covered / 400 <= 0.98


def _frame(series: str, values: np.ndarray, higher: bool, metric: str) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame({
        "series": series, "model": "digits-unet", "stack": "bf16", "machine": "ci-1",
        "settings": "steps=10", "metric": metric, "unit": "x" if higher else "ms",
        "higher_is_better": higher, "commit": [f"{i:040x}" for i in range(n)],
        "commit_date": pd.date_range("2026-01-01", periods=n, freq="D"),
        "added_at": pd.date_range("2026-02-01", periods=n, freq="h"), "run": "r",
        "value": values, "low": values * 0.95, "high": values * 1.05,
    })


def test_changes_over_a_points_frame():
    rng = np.random.default_rng(5)
    speed = 2.0 * (1 + 0.03 * rng.standard_normal(40))
    speed[25:] *= 0.7
    latency = 50 * (1 + 0.03 * rng.standard_normal(40))
    latency[10:] *= 0.8
    flat = 3 * (1 + 0.03 * rng.standard_normal(40))
    points = pd.concat([_frame("a/speedup", speed, True, "speedup"),
                        _frame("b/latency", latency, False, "latency_ms"),
                        _frame("c/flat", flat, True, "speedup")], ignore_index=True)
    points.loc[points.series == "c/flat", ["low", "high"]] = math.nan
    found = changes(points)
    assert [(c.series, c.index) for c in found] == [("a/speedup", 25), ("b/latency", 10)]
    a, b = found
    assert isinstance(a, Change) and a.metric == "speedup"
    assert a.direction == "worse" and a.ratio_low < 0.7 * 1.0 < a.ratio_high * 1.05
    assert abs(a.ratio - 0.7) < 0.05 and a.ratio_low < a.ratio < a.ratio_high
    assert a.commit_before == f"{24:040x}" and a.commit_after == f"{25:040x}"
    assert b.direction == "better" and abs(b.ratio - 0.8) < 0.05  # lower latency is better
    assert changes(points.iloc[:0]) == []


def test_points_without_a_finite_value_are_skipped_but_counted():
    rng = np.random.default_rng(9)
    values = 2.0 * (1 + 0.02 * rng.standard_normal(30))
    values[15:] *= 0.7
    values[[5, 15]] = math.nan  # the first point after the step has no value
    found = changes(_frame("s", values, True, "speedup"))
    assert [(c.index, c.commit_before, c.commit_after) for c in found] == [
        (16, f"{14:040x}", f"{16:040x}")]
