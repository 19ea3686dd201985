"""The history gate: regressions in both directions, A/A false alarms, creep (seeded numpy)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.history.judge import Judgement, drift, judge


def _history(values, cv: float | None = None) -> pd.DataFrame:
    v = np.asarray(values, dtype=float)
    half = 1.96 * cv * v if cv else np.full(len(v), math.nan)
    return pd.DataFrame({"series": "s", "metric": "m", "higher_is_better": True,
                         "commit": [f"c{i:03d}" for i in range(len(v))],
                         "value": v, "low": v - half, "high": v + half})


def _noisy(rng, n: int, level: float, cv: float) -> np.ndarray:
    return level * (1 + cv * rng.standard_normal(n))


def test_a_30_percent_speedup_loss_is_caught():
    rng = np.random.default_rng(1)
    hist = _history(_noisy(rng, 12, 2.0, 0.05), 0.05)
    j = judge(hist, 1.4, 1.4 * 0.9, 1.4 * 1.1, higher_is_better=True, threshold=0.25)
    assert isinstance(j, Judgement) and j.verdict == "regression", j.reason
    centre, lo, hi = j.expected
    assert abs(centre - 2.0) < 0.1 and lo < centre < hi and 1.4 < lo
    assert "worse" in j.reason
    # the same value is better for a lower-is-better metric: no regression
    assert judge(hist, 1.4, None, None, higher_is_better=False, threshold=0.25).verdict == "pass"


def test_a_30_percent_loss_is_caught_in_most_seeds():
    """The rate at which a 30% loss (with the new point's own noise) is caught, by history
    length and noise; threshold 20%."""
    caught = {}
    for cv in (0.05, 0.10):
        for n in (6, 10):
            hits = 0
            for seed in range(100):
                rng = np.random.default_rng(seed)
                hist = _history(_noisy(rng, n, 2.0, cv), cv)
                new = 1.4 * (1 + cv * rng.standard_normal())
                hits += judge(hist, new, new * (1 - 1.96 * cv), new * (1 + 1.96 * cv),
                              higher_is_better=True, threshold=0.20).verdict == "regression"
            caught[cv, n] = hits / 100
            print(f"\n30% loss, CV {cv:.0%}, {n} points of history: caught {hits}/100")
    assert caught[0.05, 10] >= 0.95 and caught[0.05, 6] >= 0.85
    assert caught[0.10, 10] >= 0.25  # a 30% loss is only ~2.5 noise widths at CV 10%


def test_the_matching_latency_rise_is_caught():
    rng = np.random.default_rng(2)
    hist = _history(_noisy(rng, 12, 50.0, 0.05), 0.05)
    slow = 50.0 / 0.7  # what a 30% speedup loss does to latency (+43%)
    j = judge(hist, slow, None, None, higher_is_better=False, threshold=0.30)
    assert j.verdict == "regression", j.reason
    assert judge(hist, 50.0 * 0.7, None, None, higher_is_better=False,
                 threshold=0.30).verdict == "pass"  # faster is never a regression


def test_outside_the_prediction_but_within_the_threshold_passes():
    rng = np.random.default_rng(3)
    hist = _history(_noisy(rng, 20, 10.0, 0.01), 0.01)
    j = judge(hist, 9.0, None, None, higher_is_better=True, threshold=0.30)
    assert j.verdict == "pass" and "outside the prediction" in j.reason
    assert j.expected[1] > 9.0


def test_a_wide_interval_on_the_new_point_widens_the_prediction():
    rng = np.random.default_rng(4)
    hist = _history(_noisy(rng, 10, 10.0, 0.02), 0.02)
    tight = judge(hist, 6.5, 6.4, 6.6, higher_is_better=True, threshold=0.3)
    loose = judge(hist, 6.5, 1.0, 40.0, higher_is_better=True, threshold=0.3)
    assert tight.verdict == "regression" and loose.verdict == "pass"
    assert loose.expected[1] < tight.expected[1]


def test_judged_against_the_segment_since_the_last_change_point():
    rng = np.random.default_rng(5)
    values = np.r_[_noisy(rng, 15, 2.0, 0.03), _noisy(rng, 10, 1.3, 0.03)]
    hist = _history(values, 0.03)
    j = judge(hist, 1.3, None, None, higher_is_better=True, threshold=0.2)
    assert j.verdict == "pass" and j.segment_start == 15, j
    assert abs(j.expected[0] - 1.3) < 0.05 and "since commit c015" in j.reason


def test_fewer_than_three_points_is_insufficient():
    hist = _history([2.0, 2.1])
    j = judge(hist, 1.0, None, None, higher_is_better=True, threshold=0.3)
    assert j.verdict == "insufficient" and math.isnan(j.expected[1])
    assert judge(hist.iloc[:0], 1.0, None, None, higher_is_better=True,
                 threshold=0.3).verdict == "insufficient"
    with pytest.raises(ValueError):
        judge(hist, 1.0, None, None, higher_is_better=True, threshold=-1)


def _aa_alarms(seeds: int, cv: float, threshold: float, creep: float | None) -> tuple[int, int]:
    """(alarms, points judged): 10 A/A points per seed, each judged, then added."""
    alarms = judged = 0
    for seed in range(seeds):
        rng = np.random.default_rng(10_000 + seed)
        values = _noisy(rng, 10, 1.0, cv)
        for i in range(10):
            half = 1.96 * cv * values[i]
            j = judge(_history(values[:i], cv), values[i], values[i] - half, values[i] + half,
                      higher_is_better=True, threshold=threshold, creep=creep)
            if j.verdict != "insufficient":
                judged += 1
                alarms += j.verdict in ("regression", "creep")
    return alarms, judged


@pytest.mark.parametrize("cv", [0.05, 0.10])
def test_a_over_a_points_raise_no_alarm(cv):
    rows = {}
    for threshold, creep in ((0.30, None), (0.30, 0.10), (0.05, None)):
        alarms, judged = _aa_alarms(100, cv, threshold, creep)
        rows[threshold, creep] = alarms / judged
        print(f"\nA/A CV {cv:.0%}, threshold {threshold:.0%}, creep {creep}: "
              f"{alarms} alarms in {judged} judged points ({alarms / judged:.2%} per point)")
    assert rows[0.30, None] <= 0.01
    assert rows[0.30, 0.10] <= 0.01
    assert rows[0.05, None] <= 0.01  # the prediction interval alone holds the rate


@pytest.mark.slow
def test_a_over_a_false_alarm_rate_many_seeds():
    for cv in (0.05, 0.10):
        alarms, judged = _aa_alarms(1000, cv, 0.05, 0.10)
        print(f"\nA/A CV {cv:.0%}, threshold 5%, creep 10%: {alarms}/{judged} "
              f"({alarms / judged:.2%} per point)")
        assert alarms / judged <= 0.01


def test_a_slow_creep_is_flagged_by_creep_not_by_the_step_test():
    rng = np.random.default_rng(6)
    flat = _noisy(rng, 20, 2.0, 0.01)
    creeping = 2.0 * (1 - 0.015 * np.arange(1, 11)) * (1 + 0.01 * rng.standard_normal(10))
    values = np.r_[flat, creeping]
    new = 2.0 * (1 - 0.015 * 11)
    hist = _history(values, 0.01)
    step = judge(hist, new, None, None, higher_is_better=True, threshold=0.30)
    assert step.verdict == "pass", step.reason
    crept = judge(hist, new, None, None, higher_is_better=True, threshold=0.30, creep=0.10,
                  creep_window=10)
    assert crept.verdict == "creep", crept.reason
    assert "drifted" in crept.reason
    # a flat series with the same settings does not creep
    calm = judge(_history(flat, 0.01), 2.0, None, None, higher_is_better=True, threshold=0.30,
                 creep=0.10, creep_window=10)
    assert calm.verdict == "pass", calm.reason


def test_drift_sign_follows_the_direction():
    down = np.linspace(10, 8.5, 11)
    size, low, high = drift(down, higher_is_better=True)
    assert abs(size - 0.15) < 1e-9 and low <= size <= high
    assert drift(down, higher_is_better=False)[0] == pytest.approx(-0.15)


def test_points_without_a_finite_value_are_left_out():
    rng = np.random.default_rng(8)
    values = _noisy(rng, 12, 2.0, 0.03)
    values[[3, 7]] = math.nan
    j = judge(_history(values, 0.03), 1.3, None, None, higher_is_better=True, threshold=0.2)
    assert j.verdict == "regression" and abs(j.expected[0] - 2.0) < 0.1
    assert judge(_history(values), math.nan, None, None, higher_is_better=True,
                 threshold=0.2).verdict == "insufficient"
